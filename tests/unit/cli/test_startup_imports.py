"""The CLI starts light: building the command tree and printing help import neither the
server application nor its heavy libraries (each costs CPU that every command would pay)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Importing any of these at start-up is a regression: the server composition, each service's
# application and server wiring, the web framework, the database layer, the ML stack.
FORBIDDEN = (
    "armillary.app",
    "armillary.identity.app",
    "armillary.data.app",
    "armillary.workflows.app",
    "armillary.training.app",
    "armillary.registry.app",
    "armillary.serving.app",
    "armillary.kit.runtime",
    "armillary.kit.app_factory",
    "armillary.migrations",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "sklearn",
    "scipy",
    "numpy",
    "polars",
    "onnxruntime",
    "skops",
    "duckdb",
)

_PROBE = """
import json, sys
import typer.main
from typer.testing import CliRunner
from armillary.cli.main import app

typer.main.get_command(app)  # every command registered, every option built
for args in {argv!r}:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_after(argv: list[list[str]]) -> set[str]:
    # A fresh interpreter: this test process has long imported the server for other tests.
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    return set(json.loads(probe.stdout.strip().splitlines()[-1]))


def _offenders(loaded: set[str]) -> list[str]:
    return sorted(
        name
        for name in loaded
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN)
    )


@pytest.mark.parametrize(
    "argv",
    [
        [["--help"]],
        [["jobs", "--help"], ["jobs", "list", "--help"], ["datasets", "upload", "--help"]],
        [["up", "--help"], ["db", "upgrade", "--help"], ["worker", "--help"]],
        [["users", "create", "--help"], ["models", "show", "--help"], ["quickstart", "--help"]],
    ],
    ids=["root-help", "api-commands-help", "server-commands-help", "other-help"],
)
def test_help_imports_no_server_code(argv: list[list[str]]) -> None:
    loaded = _loaded_after(argv)
    assert "armillary.cli.main" in loaded
    assert _offenders(loaded) == []
