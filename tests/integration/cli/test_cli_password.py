"""A password piped on standard input signs in without a prompt and without getpass's
``GetPassWarning`` (run as a real process with a pipe for stdin, as a CI job runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server
from typer.testing import CliRunner

from armillary.cli.main import app

__all__ = ["start_server"]  # a fixture, used by name


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


def _armillary(args: list[str], stdin: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ARMILLARY_URL", "ARMILLARY_TOKEN")}
    env["ARMILLARY_CONFIG_DIR"] = str(config)
    return subprocess.run(
        [sys.executable, "-W", "default", "-m", "armillary.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("flag", [["--password-stdin"], []], ids=["password-stdin", "piped"])
def test_a_piped_password_signs_in_without_a_warning(
    account: Account, tmp_path: Path, flag: list[str]
) -> None:
    config = tmp_path / "config"
    args = ["login", "--url", account.url, "--email", account.email, *flag]

    result = _armillary(args, account.password + "\n", config)

    assert result.returncode == 0, result.stderr
    assert "GetPassWarning" not in result.stderr
    assert "Warning" not in result.stderr
    assert "Password:" not in result.stdout + result.stderr  # no prompt either
    assert account.password not in result.stdout + result.stderr
    stored = json.loads((config / "credentials.json").read_text())
    assert stored["email"] == account.email


def test_password_stdin_refuses_an_empty_stdin_and_a_second_password(
    account: Account, tmp_path: Path
) -> None:
    base = ["login", "--url", account.url, "--email", account.email, "--password-stdin"]
    empty = _armillary(base, "", tmp_path / "config")
    assert empty.returncode == 1
    assert "No password on standard input" in empty.stderr

    both = _armillary([*base, "--password", "x"], account.password, tmp_path / "config")
    assert both.returncode == 1
    assert "exclude each other" in both.stderr
    assert not (tmp_path / "config" / "credentials.json").exists()


def test_help_documents_password_stdin() -> None:
    runner = CliRunner()
    for command in (["login"], ["users", "create"], ["quickstart"]):
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        assert "--password-stdin" in result.stdout, command
