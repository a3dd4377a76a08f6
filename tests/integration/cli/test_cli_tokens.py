"""``armillary tokens create/list/revoke`` against the platform on a loopback port: the token
is printed once, works on its project's API, is never listed, and stops working when revoked."""

from __future__ import annotations

import json

import httpx
import pytest
from tests.integration.cli.test_cli_datasets import WIDE, config_dir, login, runner
from tests.integration.sdk.test_sdk_datasets import Account, StartServer, provision, start_server
from typer.testing import CliRunner

from armillary.cli.main import app

__all__ = ["config_dir", "runner", "start_server"]  # fixtures, used by name


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


def test_create_list_and_revoke(runner: CliRunner, account: Account) -> None:
    login(runner, account)
    created = runner.invoke(
        app, ["tokens", "create", "-p", account.project, "-n", "ci", "--days", "7"], env=WIDE
    )
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.count(".") == 2
    assert "\n" not in token
    assert "shown only now" in created.stderr

    search = f"{account.url}/mlflow/{account.project}/api/2.0/mlflow/experiments/search"
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.post(search, json={"max_results": 1}, headers=headers).status_code == 200

    listed = runner.invoke(app, ["tokens", "list", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    assert token not in listed.stdout
    (item,) = json.loads(listed.stdout)
    assert item["name"] == "ci"
    assert item["revoked_at"] is None
    table = runner.invoke(app, ["tokens", "list"], env=WIDE)
    assert item["id"] in table.stdout
    assert token not in table.stdout

    too_long = runner.invoke(
        app, ["tokens", "create", "-p", account.project, "-n", "x", "--days", "91"]
    )
    assert too_long.exit_code != 0

    revoked = runner.invoke(app, ["tokens", "revoke", item["id"]])
    assert revoked.exit_code == 0, revoked.output
    assert httpx.post(search, json={"max_results": 1}, headers=headers).status_code == 401
    again = json.loads(runner.invoke(app, ["tokens", "list", "-o", "json"]).stdout)
    assert again[0]["revoked_at"] is not None
