"""The CLI starts light: building the command tree and printing help import neither the
server application nor its heavy libraries (each costs CPU that every command would pay)."""

from __future__ import annotations

import json
import os
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
    # Help exits 0; an API command against a closed port fails cleanly with 1.
    assert result.exit_code in (0, 1), (args, result.output)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), (args, result.exception)
print(json.dumps(sorted(sys.modules)))
"""


def _loaded_after(argv: list[list[str]]) -> set[str]:
    # A fresh interpreter: this test process has long imported the server for other tests.
    env = {**os.environ, "ARMILLARY_URL": "http://127.0.0.1:9", "ARMILLARY_TOKEN": "t"}
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)],
        capture_output=True,
        text=True,
        check=False,
        env=env,
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
        # Commands that call the API, run for real (the server is unreachable).
        [["jobs", "list", "-p", "demo"], ["jobs", "show", "6aa0"], ["datasets", "list", "-p", "d"]],
    ],
    ids=["root-help", "api-commands-help", "server-commands-help", "other-help", "api-commands"],
)
def test_start_up_imports_no_server_code(argv: list[list[str]]) -> None:
    loaded = _loaded_after(argv)
    assert "armillary.cli.main" in loaded
    assert _offenders(loaded) == []
