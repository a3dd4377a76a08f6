"""Secret settings from files (`*_FILE`) and the rules every source follows."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.moto_server import SecretsClock

from armillary.kit.secret_sources import SecretRef, SecretSourceError
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


# --- AWS Secrets Manager (the real boto3 client against a local moto server) ------------------


@pytest.fixture
def no_armillary_env(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_armillary_env(monkeypatch)


def test_a_secret_is_found_by_its_arn(
    secretsmanager: Any, no_armillary_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"armillary/platform-{uuid.uuid4().hex}"
    arn = secretsmanager.create_secret(
        Name=name, SecretString=json.dumps({"key": "a" * 40, "other": "b" * 40})
    )["ARN"]
    assert arn.startswith("arn:aws:secretsmanager:")
    assert name in arn
    monkeypatch.setenv("ARMILLARY_SECRET_KEY_SECRET_ID", f"{arn}#key")
    assert Settings().resolved_secret_key() == "a" * 40
    # The whole ARN, without a key, is the secret string itself.
    ref = SecretRef("ARMILLARY_SECRET_KEY", "secretsmanager", arn)
    assert json.loads(ref.read())["other"] == "b" * 40


def test_a_cached_value_is_read_again_once_its_ttl_has_passed(
    secretsmanager: Any, secrets_clock: SecretsClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ARMILLARY_SECRETS_CACHE_TTL_SECONDS", "60")
    name = f"armillary/ttl-{uuid.uuid4().hex}"
    secretsmanager.create_secret(Name=name, SecretString="first-value")
    ref = SecretRef("ARMILLARY_ADMIN_PASSWORD", "secretsmanager", name)
    assert ref.read() == "first-value"
    secretsmanager.put_secret_value(SecretId=name, SecretString="second-value")
    secrets_clock.advance(59)
    assert ref.read() == "first-value"  # within the TTL: the cache answers
    secrets_clock.advance(2)
    assert ref.read() == "second-value"
    # fresh=True (an authentication failure) skips the cache at once.
    secretsmanager.put_secret_value(SecretId=name, SecretString="third-value")
    assert ref.read() == "second-value"
    assert ref.read(fresh=True) == "third-value"


def test_rotation_stages_are_followed_awscurrent_only(
    secretsmanager: Any, secrets_clock: SecretsClock
) -> None:
    """A rotation as Secrets Manager's rotation function does it: RotateSecret opens it, the
    new value is written as AWSPENDING, then AWSCURRENT moves to it (finishSecret). Only the
    AWSCURRENT value is ever used."""
    name = f"armillary/rotated-{uuid.uuid4().hex}"
    first = secretsmanager.create_secret(
        Name=name, SecretString=json.dumps({"password": "old-password-1"})
    )["VersionId"]
    ref = SecretRef("ARMILLARY_DATABASE_PASSWORD", "secretsmanager", f"{name}#password")
    assert ref.read() == "old-password-1"

    secretsmanager.rotate_secret(SecretId=name, RotateImmediately=False)
    current = stage_version(secretsmanager, name, "AWSCURRENT")
    token = str(uuid.uuid4())
    secretsmanager.put_secret_value(
        SecretId=name,
        ClientRequestToken=token,
        SecretString=json.dumps({"password": "new-password-2"}),
        VersionStages=["AWSPENDING"],
    )
    # Pending is not current: even a fresh read keeps the old value.
    assert ref.read(fresh=True) == "old-password-1"

    secretsmanager.update_secret_version_stage(
        SecretId=name, VersionStage="AWSCURRENT", MoveToVersionId=token, RemoveFromVersionId=current
    )
    assert stage_version(secretsmanager, name, "AWSCURRENT") == token
    assert first != token
    assert ref.read() == "old-password-1"  # cached until the TTL (300 s by default) passes
    secrets_clock.advance(301)
    assert ref.read() == "new-password-2"


def stage_version(client: Any, name: str, stage: str) -> str:
    versions = client.list_secret_version_ids(SecretId=name)["Versions"]
    return str(next(v["VersionId"] for v in versions if stage in v.get("VersionStages", [])))
