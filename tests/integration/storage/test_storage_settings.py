"""Storage settings from the environment, and the factory that opens the configured store."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import ValidationError

from armillary.kit.storage import (
    LocalObjectStore,
    S3ObjectStore,
    StorageSettings,
    default_local_root,
    job_artifact_key,
    open_object_store,
)
from armillary.kit.storage.settings import MIB

SECRET = "factory-test-signing-secret-0123456789"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ARMILLARY_STORAGE_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    settings = StorageSettings()

    assert settings.backend == "local"
    assert settings.local_root is None
    assert settings.s3_region == "us-east-1"
    assert settings.s3_allow_http is False
    assert settings.multipart_threshold_bytes == 64 * MIB
    assert settings.part_size == 16 * MIB
    assert settings.presign_ttl_seconds == 900
    assert settings.kms_key_id is None
    assert (settings.processed_to_ia_days, settings.noncurrent_expire_days) == (30, 90)
    assert settings.abort_multipart_days == 7


def test_reads_the_environment_with_its_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARMILLARY_STORAGE_BACKEND", "s3")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_BUCKET", "armillary-prod")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ALLOW_HTTP", "true")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("ARMILLARY_STORAGE_S3_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("ARMILLARY_STORAGE_PART_SIZE", str(8 * MIB))
    monkeypatch.setenv("ARMILLARY_STORAGE_KMS_KEY_ID", "alias/armillary")

    settings = StorageSettings()

    assert settings.backend == "s3"
    assert settings.bucket == "armillary-prod"
    assert settings.s3_endpoint_url == "http://minio:9000"
    assert settings.s3_allow_http is True
    assert settings.part_size == 8 * MIB
    assert settings.kms_key_id == "alias/armillary"
    assert settings.s3_secret_access_key is not None
    assert settings.s3_secret_access_key.get_secret_value() == "very-secret-value"
    assert "very-secret-value" not in repr(settings)


def test_local_root_defaults_under_home(tmp_path: Path) -> None:
    assert default_local_root(tmp_path) == tmp_path / "objects"
    assert StorageSettings().resolved_local_root(tmp_path) == tmp_path / "objects"
    explicit = StorageSettings(local_root=tmp_path / "elsewhere")
    assert explicit.resolved_local_root(tmp_path) == tmp_path / "elsewhere"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backend": "s3"}, "S3_BUCKET"),
        (
            {"backend": "s3", "s3_bucket": "b", "s3_endpoint_url": "http://minio:9000"},
            "ALLOW_HTTP",
        ),
        ({"backend": "s3", "s3_bucket": "b", "s3_endpoint_url": "ftp://x"}, "http"),
        ({"backend": "s3", "s3_bucket": "b", "s3_access_key_id": "only-id"}, "neither"),
        ({"part_size": 4 * MIB}, "part_size"),
        ({"multipart_threshold_bytes": MIB}, "multipart_threshold_bytes"),
        ({"processed_to_ia_days": 29}, "processed_to_ia_days"),
        ({"presign_ttl_seconds": 8 * 24 * 3600}, "presign_ttl_seconds"),
        ({"backend": "gcs"}, "backend"),
    ],
)
def test_invalid_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        StorageSettings.model_validate(values)


async def test_factory_opens_the_local_store_under_home(tmp_path: Path) -> None:
    home = tmp_path / "home"

    store = open_object_store(StorageSettings(), home=home, signing_secret=SECRET)

    assert isinstance(store, LocalObjectStore)
    assert store.root == (home / "objects").resolve()
    # Private by default: objects may be anyone's data.
    assert stat.S_IMODE((home / "objects").stat().st_mode) == 0o700
    key = job_artifact_key(uuid4(), uuid4(), "t", "x.bin")
    await store.put_bytes(key, b"hello")
    assert (home / "objects" / key).read_bytes() == b"hello"


def test_factory_needs_a_secret_for_the_local_backend(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="secret"):
        open_object_store(StorageSettings(), home=tmp_path)


async def test_factory_opens_the_s3_store(
    s3_settings: StorageSettings, s3_client: Any, tmp_path: Path
) -> None:
    s3_client.create_bucket(Bucket=s3_settings.bucket)

    store = open_object_store(s3_settings, home=tmp_path)

    assert isinstance(store, S3ObjectStore)
    key = job_artifact_key(uuid4(), uuid4(), "t", "x.bin")
    await store.put_bytes(key, b"hello")
    body = s3_client.get_object(Bucket=s3_settings.bucket, Key=key)["Body"].read()
    assert body == b"hello"
