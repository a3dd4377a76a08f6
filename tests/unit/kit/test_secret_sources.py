"""Secret settings from files (`*_FILE`) and the rules every source follows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from armillary.kit.secret_sources import SecretSourceError
from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings


def clear_armillary_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ARMILLARY_"):
            monkeypatch.delenv(name)


def test_secret_settings_are_read_from_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_armillary_env(monkeypatch)
    (tmp_path / "secret").write_text("s" * 40 + "\n")  # as a Kubernetes volume may hold it
    (tmp_path / "previous").write_text(json.dumps(["o" * 40]))
    (tmp_path / "db").write_text("pa:ss@word\n")
    (tmp_path / "s3").write_text("aws-secret")
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_FILE", str(tmp_path / "secret"))
    monkeypatch.setenv("ARMILLARY_PREVIOUS_SECRET_KEYS_FILE", str(tmp_path / "previous"))
    monkeypatch.setenv("ARMILLARY_DATABASE_URL", "postgresql+asyncpg://app@db.internal/armillary")
    monkeypatch.setenv("ARMILLARY_DATABASE_PASSWORD_FILE", str(tmp_path / "db"))
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY_FILE", str(tmp_path / "s3"))

    settings = Settings()
    assert settings.resolved_secret_key() == "s" * 40
    assert [k.get_secret_value() for k in settings.previous_secret_keys] == ["o" * 40]
    # The password is quoted into the URL the engine uses, never logged with it.
    assert settings.database_dsn == "postgresql+asyncpg://app:pa%3Ass%40word@db.internal/armillary"
    assert "pa:ss" not in repr(settings)
    ref = Settings.secret_ref("database_password")
    assert ref is not None
    assert ref.read() == "pa:ss@word"
    storage = StorageSettings()
    assert storage.s3_secret_access_key is not None
    assert storage.s3_secret_access_key.get_secret_value() == "aws-secret"
    # Only the plain environment variable is reported (the production profile warns).
    assert Settings.plain_environment_secrets() == ["ARMILLARY_DATABASE_URL"]


def test_one_source_per_secret_and_only_secret_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_armillary_env(monkeypatch)
    (tmp_path / "secret").write_text("s" * 40)
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", "e" * 40)
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_FILE", str(tmp_path / "secret"))
    with pytest.raises(SecretSourceError, match="Set only one of"):
        Settings()

    clear_armillary_env(monkeypatch)
    (tmp_path / "host").write_text("0.0.0.0")  # noqa: S104 - the value must be ignored
    monkeypatch.setenv("ARMILLARY_HOST_FILE", str(tmp_path / "host"))
    assert Settings().host == "127.0.0.1"


def test_a_missing_file_names_the_setting_not_the_path_contents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clear_armillary_env(monkeypatch)
    monkeypatch.setenv("ARMILLARY_ADMIN_PASSWORD_FILE", str(tmp_path / "absent"))
    with pytest.raises(SecretSourceError, match="ARMILLARY_ADMIN_PASSWORD"):
        Settings()
