"""pgBackRest's configuration as `armillary backup pgbackrest-config` renders it, and the
backup bucket's history keys and retention (``kit.object_history``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from armillary.cli.main import app
from armillary.kit.object_history import Entry, needed
from armillary.kit.pitr import (
    DatabaseHost,
    Repository,
    archive_conf,
    cipher_pass_conf,
    pgbackrest_config,
)

T0 = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _config(**overrides: object) -> str:
    values: dict[str, object] = {
        "stanza": "armillary",
        "pg_data": Path("/var/lib/postgresql/16/main"),
        "pg_port": 5432,
        "pg_socket_dir": None,
        "repo": Repository(s3_bucket="backups", s3_region="eu-west-1"),
        "cipher_pass": None,
        "work_dir": Path("/var/lib/pgbackrest"),
        **overrides,
    }
    return pgbackrest_config(**values)  # type: ignore[arg-type]


def test_without_a_cipher_pass_the_file_holds_no_secret_but_still_encrypts() -> None:
    text = _config()
    assert "repo1-cipher-type=aes-256-cbc" in text
    assert not any(line.startswith("repo1-cipher-pass=") for line in text.splitlines())
    assert "repo1-retention-full=2" in text
    assert "repo1-retention-diff=7" in text
    assert "repo1-s3-endpoint=s3.eu-west-1.amazonaws.com" in text


def test_a_backup_job_elsewhere_reaches_the_database_host_over_tls() -> None:
    tls = Path("/etc/pgbackrest/tls")
    host = DatabaseHost("db.internal", tls / "ca.crt", tls / "tls.crt", tls / "tls.key")
    lines = _config(pg_host=host).splitlines()
    assert "pg1-host=db.internal" in lines
    assert "pg1-host-type=tls" in lines
    assert "pg1-host-cert-file=/etc/pgbackrest/tls/tls.crt" in lines
    assert "pg1-host" not in _config()


def test_archive_settings_as_postgresql_conf_lines_quote_their_values() -> None:
    text = archive_conf(Path("/etc/it's/pgbackrest.conf"), "armillary")
    assert "archive_mode = 'on'" in text
    # The directory, so conf.d/secrets.conf beside the file is read too.
    assert (
        "archive_command = 'pgbackrest --config-path=/etc/it''s --stanza=armillary archive-push %p'"
    ) in text
    assert "--config=/srv/other.conf " in archive_conf(Path("/srv/other.conf"), "armillary")


def test_the_cipher_pass_lives_in_a_file_of_its_own() -> None:
    assert cipher_pass_conf("p" * 32) == "[global]\nrepo1-cipher-pass=" + "p" * 32 + "\n"
    with pytest.raises(ValueError, match="32 characters"):
        cipher_pass_conf("short")


def test_the_command_prints_both_files_and_no_secret() -> None:
    result = CliRunner().invoke(
        app,
        [
            "backup",
            "pgbackrest-config",
            "--pg-data",
            "/srv/pg",
            "--repo-bucket",
            "backups",
            "--pg-host",
            "db.internal",
            "-o",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    rendered = json.loads(result.output)
    assert "repo1-s3-bucket=backups" in rendered["pgbackrest_conf"]
    assert "pg1-host-type=tls" in rendered["pgbackrest_conf"]
    assert "archive-push %p" in rendered["postgresql_conf"]
    assert "cipher-pass=" not in result.output


def test_history_keys_name_their_entry_whatever_the_key_holds() -> None:
    for key in ("datasets/1/v2/data.parquet", "odd~name/with~tildes", "a/20261201T120000Z"):
        for kind in ("object", "deleted"):
            entry = Entry(key, T0, kind, "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY.v~1")  # type: ignore[arg-type]
            assert Entry.parse(entry.history_key) == entry
    assert Entry.parse("history/key/not-a-stamp~object~v") is None
    assert Entry.parse("elsewhere/key/20261201T120000.000000Z~object~v") is None


def test_retention_keeps_what_a_restore_inside_the_window_needs() -> None:
    horizon = T0 + timedelta(days=30)
    old = Entry("k", T0, "object", "1")
    at_horizon = Entry("k", T0 + timedelta(days=10), "object", "2")
    recent = Entry("k", T0 + timedelta(days=40), "object", "3")
    gone_old = Entry("g", T0, "object", "1")
    gone = Entry("g", T0 + timedelta(days=5), "deleted", "2")
    kept = needed([old, at_horizon, recent, gone_old, gone], horizon)
    # A restore to the window's start needs version 2 of k; g was deleted by then.
    assert kept == {at_horizon, recent}
    assert needed([old, gone], None) == {old, gone}
