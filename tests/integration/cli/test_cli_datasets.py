"""``armillary login`` and ``armillary datasets ...`` against the platform on a loopback port."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
import yaml
from tests.integration.sdk.test_sdk_datasets import (  # the live-server helpers
    Account,
    StartServer,
    provision,
    sha256_of,
    start_server,
    write_csv,
)
from typer.testing import CliRunner

from armillary.cli.main import app

__all__ = ["start_server"]  # a fixture, used by name

# Wide enough that Rich never folds or truncates a table cell.
WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config directory, and no server or token from the environment."""
    path = tmp_path / "config"
    monkeypatch.setenv("ARMILLARY_CONFIG_DIR", str(path))
    monkeypatch.delenv("ARMILLARY_URL", raising=False)
    monkeypatch.delenv("ARMILLARY_TOKEN", raising=False)
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def account(start_server: StartServer) -> Account:
    return provision(start_server())


def login(runner: CliRunner, account: Account) -> None:
    result = runner.invoke(
        app,
        ["login", "--url", account.url + "/", "--email", account.email],
        input=account.password + "\n",
    )
    assert result.exit_code == 0, result.output


def test_login_writes_owner_only_credentials(
    runner: CliRunner, account: Account, config_dir: Path
) -> None:
    result = runner.invoke(
        app, ["login", "--url", account.url, "--email", account.email], input=account.password
    )

    assert result.exit_code == 0, result.output
    assert account.password not in result.output  # the prompt hides the input
    assert f"Signed in to {account.url} as {account.email}" in result.stdout
    path = config_dir / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = json.loads(path.read_text())
    assert stored["url"] == account.url
    assert stored["email"] == account.email
    assert stored["access_token"]
    assert stored["refresh_token"]
    assert [p.name for p in config_dir.iterdir()] == ["credentials.json"]

    logout = runner.invoke(app, ["logout"])
    assert logout.exit_code == 0, logout.output
    assert not path.exists()


def test_login_and_logout_report_as_json_without_tokens(
    runner: CliRunner, account: Account, config_dir: Path
) -> None:
    signed_in = runner.invoke(
        app,
        ["login", "--url", account.url, "--email", account.email, "-o", "json"],
        input=account.password + "\n",
    )

    assert signed_in.exit_code == 0, signed_in.output
    report = json.loads(signed_in.stdout)
    assert report["url"] == account.url
    assert report["email"] == account.email
    assert report["credentials_file"] == str(config_dir / "credentials.json")
    assert report["expires_at"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    stored = json.loads((config_dir / "credentials.json").read_text())
    for secret in (stored["access_token"], stored["refresh_token"], account.password):
        assert secret not in signed_in.output

    signed_out = runner.invoke(app, ["logout", "--output", "yaml"])
    assert signed_out.exit_code == 0, signed_out.output
    assert yaml.safe_load(signed_out.stdout) == {
        "signed_out": True,
        "url": account.url,
        "revoked": True,
    }
    again = runner.invoke(app, ["logout", "-o", "json"])
    assert json.loads(again.stdout) == {"signed_out": False, "url": None, "revoked": False}


def test_login_with_a_wrong_password_fails_cleanly(
    runner: CliRunner, account: Account, config_dir: Path
) -> None:
    result = runner.invoke(
        app, ["login", "--url", account.url, "--email", account.email], input="wrong-password\n"
    )

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert result.stderr.strip().startswith("Error:")
    assert "(401)" in result.stderr
    assert "Traceback" not in result.output
    assert not (config_dir / "credentials.json").exists()


def test_upload_list_show_download(runner: CliRunner, account: Account, tmp_path: Path) -> None:
    login(runner, account)
    source = write_csv(tmp_path / "sales.csv", rows=20_000)
    digest = sha256_of(source)
    p = ["--project", account.project, "--name", "sales"]

    uploaded = runner.invoke(app, ["datasets", "upload", str(source), *p], env=WIDE)
    assert uploaded.exit_code == 0, uploaded.output
    assert f"Uploaded sales.csv as version 1 of {account.project}/sales" in uploaded.stdout
    assert f"sha256: {digest}" in uploaded.stdout
    assert "20000 rows" in uploaded.stdout

    again = runner.invoke(app, ["datasets", "upload", str(source), *p, "--format", "csv"])
    assert again.exit_code == 0, again.output
    assert "Identical to existing version 1" in again.stdout

    second = write_csv(tmp_path / "sales-2.csv", rows=10, seed=1)
    newer = runner.invoke(app, ["datasets", "upload", str(second), *p, "--parent", "1"])
    assert newer.exit_code == 0, newer.output
    assert "as version 2" in newer.stdout

    listed = runner.invoke(app, ["datasets", "list", "-p", account.project], env=WIDE)
    assert listed.exit_code == 0, listed.output
    assert "sales" in listed.stdout
    assert "│ 2 " in listed.stdout or " 2 │" in listed.stdout

    shown = runner.invoke(app, ["datasets", "show", *p], env=WIDE)
    assert shown.exit_code == 0, shown.output
    assert "Versions" in shown.stdout
    assert digest[:12] in shown.stdout
    lines = [line for line in shown.stdout.splitlines() if digest[:12] in line]
    assert "20000" in lines[0]

    detail = runner.invoke(app, ["datasets", "show", *p, "--version", "1"], env=WIDE)
    assert detail.exit_code == 0, detail.output
    assert f"sha256:    {digest}" in detail.stdout
    for column in ("id", "label", "value"):
        assert any(line.split("│")[1].strip() == column for line in _rows(detail.stdout))
    assert "Distinct" in detail.stdout

    target = tmp_path / "downloads" / "sales-copy.csv"
    downloaded = runner.invoke(
        app, ["datasets", "download", *p, "--version", "1", "--to", str(target)], env=WIDE
    )
    assert downloaded.exit_code == 0, downloaded.output
    assert "sha256 verified" in downloaded.stdout
    assert sha256_of(target) == digest

    # --output is the format here too; into a directory, the file is named for the version.
    folder = tmp_path / "into"
    folder.mkdir()
    as_json = runner.invoke(
        app, ["datasets", "download", *p, "-v", "2", "-t", str(folder), "-o", "json"], env=WIDE
    )
    assert as_json.exit_code == 0, as_json.output
    saved = json.loads(as_json.stdout)
    assert saved == {
        "project": account.project,
        "dataset": "sales",
        "version": 2,
        "path": str(folder / "sales-v2.csv"),
        "size_bytes": second.stat().st_size,
    }
    assert sha256_of(folder / "sales-v2.csv") == sha256_of(second)


def _rows(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.count("│") >= 3]


def test_api_errors_are_one_line_and_exit_non_zero(
    runner: CliRunner, account: Account, tmp_path: Path
) -> None:
    login(runner, account)

    result = runner.invoke(app, ["datasets", "list", "--project", "no-such-project"], env=WIDE)

    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Error: ")
    assert "(404)" in lines[0]
    assert "Traceback" not in result.output

    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"")
    upload = runner.invoke(
        app, ["datasets", "upload", str(bad), "-p", account.project, "-n", "d"], env=WIDE
    )
    assert upload.exit_code == 1
    assert "(400)" in upload.stderr
    assert "Traceback" not in upload.output

    missing = runner.invoke(
        app,
        ["datasets", "download", "-p", account.project, "-n", "d", "-v", "9", "--to", "x"],
        env=WIDE,
    )
    assert missing.exit_code == 1
    assert "(404)" in missing.stderr


def test_environment_overrides_and_stored_tokens_stay_with_their_server(
    runner: CliRunner, account: Account, start_server: StartServer
) -> None:
    not_signed_in = runner.invoke(app, ["datasets", "list", "-p", account.project])
    assert not_signed_in.exit_code == 1
    assert "armillary login" in not_signed_in.stderr

    env = {"ARMILLARY_URL": account.url, "ARMILLARY_TOKEN": account.token, **WIDE}
    with_env = runner.invoke(app, ["datasets", "list", "-p", account.project], env=env)
    assert with_env.exit_code == 0, with_env.output
    assert "No datasets" in with_env.stdout

    login(runner, account)
    elsewhere = runner.invoke(
        app, ["datasets", "list", "-p", account.project], env={"ARMILLARY_URL": "http://x.test"}
    )
    assert elsewhere.exit_code == 1
    assert "Not signed in to http://x.test" in elsewhere.stderr


def test_renewed_tokens_are_written_back(
    runner: CliRunner, start_server: StartServer, config_dir: Path
) -> None:
    account = provision(start_server(access_token_ttl_seconds=2))
    login(runner, account)
    path = config_dir / "credentials.json"
    before = json.loads(path.read_text())
    time.sleep(2.5)

    first = runner.invoke(app, ["datasets", "list", "-p", account.project])
    assert first.exit_code == 0, first.output
    after = json.loads(path.read_text())
    assert after["refresh_token"] != before["refresh_token"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    # The old refresh token was rotated away; the stored one keeps working.
    time.sleep(2.5)
    second = runner.invoke(app, ["datasets", "list", "-p", account.project])
    assert second.exit_code == 0, second.output


def test_a_failed_first_upload_leaves_no_empty_dataset(
    runner: CliRunner, account: Account, tmp_path: Path
) -> None:
    from armillary.sdk import ArmillaryError, Client

    login(runner, account)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    p = ["-p", account.project]

    refused = runner.invoke(app, ["datasets", "upload", str(bad), *p, "-n", "fresh"], env=WIDE)

    assert refused.exit_code == 1
    assert "Error:" in refused.stderr
    with Client(account.url, account.token) as client:
        assert [d["name"] for d in client.datasets.list(account.project)] == []

        # Interrupted half-way (Ctrl-C while the bytes go out): no dataset either.
        def interrupt(done: int, total: int) -> None:
            raise KeyboardInterrupt

        good = write_csv(tmp_path / "good.csv", rows=2_000)
        with pytest.raises(KeyboardInterrupt):
            client.datasets.upload(account.project, "cut", good, progress=interrupt)
        assert client.datasets.list(account.project) == []

        # A dataset that existed before the failed upload stays, with its versions.
        client.datasets.create(account.project, "kept")
        with pytest.raises(ArmillaryError):
            client.datasets.upload(account.project, "kept", bad)
        assert [d["name"] for d in client.datasets.list(account.project)] == ["kept"]
        client.datasets.upload(account.project, "kept", good)
        with pytest.raises(ArmillaryError):
            client.datasets.upload(account.project, "kept", bad)
        assert len(client.datasets.versions(account.project, "kept")) == 1
