"""`armillary backup objects-sync` against the moto server: the store's history copied into a
backup bucket, retention, and a restore to a moment from the copy alone."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from tests.integration.storage.conftest import S3SettingsFactory
from typer.testing import CliRunner

from armillary.cli import backup as backup_cli
from armillary.cli.main import app
from armillary.kit.object_history import backup_entries, backup_settings, sync
from armillary.kit.pitr import restore_objects_as_of
from armillary.kit.storage import StorageSettings
from armillary.kit.storage.admin import init_bucket, s3_client


def test_the_copy_holds_every_version_and_deletion_once(
    s3_settings_factory: S3SettingsFactory,
) -> None:
    storage = s3_settings_factory()
    init_bucket(storage)
    client = s3_client(storage)
    client.put_object(Bucket=storage.bucket, Key="k", Body=b"one")
    client.put_object(Bucket=storage.bucket, Key="k", Body=b"two")
    client.put_object(Bucket=storage.bucket, Key="gone", Body=b"x")
    time.sleep(1.1)  # S3 keeps times to the second: the deletion is the newer
    client.delete_object(Bucket=storage.bucket, Key="gone")
    first = backup_cli.sync_objects(storage, f"{storage.bucket}-copy", None, 0)
    assert (first["copied"], first["deletions"], first["already"]) == (3, 1, 0)
    again = backup_cli.sync_objects(storage, f"{storage.bucket}-copy", None, 0)
    assert (again["copied"], again["deletions"], again["already"]) == (0, 0, 4)

    # Sixty days on, a thirty-day window needs k's newest version only; what it prunes
    # is not copied again from the store's old versions.
    backup = backup_settings(storage, f"{storage.bucket}-copy", None)
    later = datetime.now(UTC) + timedelta(days=60)
    pruned = sync(storage, backup, retention=timedelta(days=30), now=later)
    assert (pruned.pruned, pruned.copied, pruned.already) == (3, 0, 1)
    steady = sync(storage, backup, retention=timedelta(days=30), now=later)
    assert (steady.pruned, steady.copied, steady.already) == (0, 0, 1)
    (kept,) = backup_entries(s3_client(backup), backup.bucket)
    body = s3_client(backup).get_object(Bucket=backup.bucket, Key=kept.history_key)["Body"]
    assert (kept.key, body.read()) == ("k", b"two")


def test_a_lost_bucket_comes_back_as_of_a_moment_from_the_copy(
    s3_settings_factory: S3SettingsFactory,
) -> None:
    storage = s3_settings_factory()
    init_bucket(storage)
    client = s3_client(storage)
    client.put_object(Bucket=storage.bucket, Key="model", Body=b"first")
    client.put_object(Bucket=storage.bucket, Key="was-deleted", Body=b"x")
    time.sleep(1.1)  # S3 keeps times to the second
    client.delete_object(Bucket=storage.bucket, Key="was-deleted")
    time.sleep(1.1)
    moment = datetime.now(UTC)
    time.sleep(1.1)
    client.put_object(Bucket=storage.bucket, Key="model", Body=b"second")
    client.put_object(Bucket=storage.bucket, Key="after", Body=b"y")
    backup = backup_settings(storage, f"{storage.bucket}-copy", None)
    backup_cli.sync_objects(storage, backup.bucket, None, 35)

    _delete_bucket(storage)
    init_bucket(storage)
    counts = restore_objects_as_of(storage, moment, backup)
    assert counts["from_backup"] == 1
    listed = client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
    assert [item["Key"] for item in listed] == ["model"]
    assert client.get_object(Bucket=storage.bucket, Key="model")["Body"].read() == b"first"
    # Run again, the same state.
    again = restore_objects_as_of(storage, moment, backup)
    assert again["deleted"] == 0
    listed = client.list_objects_v2(Bucket=storage.bucket).get("Contents", [])
    assert [item["Key"] for item in listed] == ["model"]
    assert client.get_object(Bucket=storage.bucket, Key="model")["Body"].read() == b"first"


def _delete_bucket(storage: StorageSettings) -> None:
    """Every version and deletion of the store's bucket, then the bucket."""
    client = s3_client(storage)
    listed = client.list_object_versions(Bucket=storage.bucket)
    for item in [*listed.get("Versions", []), *listed.get("DeleteMarkers", [])]:
        client.delete_object(Bucket=storage.bucket, Key=item["Key"], VersionId=item["VersionId"])
    client.delete_bucket(Bucket=storage.bucket)


def test_objects_sync_needs_a_backup_bucket() -> None:
    result = CliRunner().invoke(app, ["backup", "objects-sync"])
    assert result.exit_code == 2
    assert "backup bucket" in result.output


def test_objects_sync_refuses_a_local_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMILLARY_STORAGE_BACKEND", "local")
    result = CliRunner().invoke(app, ["backup", "objects-sync", "--backup-bucket", "copy"])
    assert result.exit_code == 2
    assert "local" in result.output
