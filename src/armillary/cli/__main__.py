"""``python -m armillary.cli``: the ``armillary`` command, for child processes."""

from armillary.cli.main import app

app()
