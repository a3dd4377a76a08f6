"""The ``armillary`` command."""
