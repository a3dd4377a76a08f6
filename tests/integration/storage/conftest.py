"""Storage fixtures: a store per backend; the moto server comes from ``tests.moto_server``."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from tests.moto_server import ACCESS_KEY, REGION, SECRET_KEY

from armillary.kit.storage import (
    LocalObjectStore,
    ObjectStore,
    S3ObjectStore,
    StorageSettings,
)
from armillary.kit.storage.settings import S3_MIN_PART_SIZE

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SIGNING_SECRET = "storage-tests-signing-secret-0123456789"
# Small, so a test file of a few MiB still spans several parts; 5 MiB is S3's minimum part.
PART_SIZE = S3_MIN_PART_SIZE


S3SettingsFactory = Callable[..., StorageSettings]


@pytest.fixture
def s3_settings_factory(moto_endpoint: str) -> S3SettingsFactory:
    """Builds S3 settings for the moto server: a fresh bucket name, small multipart sizes."""

    def build(**overrides: object) -> StorageSettings:
        values: dict[str, object] = {
            "backend": "s3",
            # A fresh bucket per test, so tests never see each other's objects.
            "s3_bucket": f"armillary-test-{uuid.uuid4().hex[:16]}",
            "s3_endpoint_url": moto_endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY,
            "s3_secret_access_key": SECRET_KEY,
            "s3_allow_http": True,
            "multipart_threshold_bytes": PART_SIZE,
            "part_size": PART_SIZE,
            **overrides,
        }
        return StorageSettings.model_validate(values)

    return build


@pytest.fixture
def s3_settings(s3_settings_factory: S3SettingsFactory) -> StorageSettings:
    return s3_settings_factory()


@pytest.fixture
def s3_client(s3_settings: StorageSettings) -> S3Client:
    """A raw boto3 client on the moto server, for checking what the code under test did."""
    from armillary.kit.storage.admin import s3_client as make_client

    return make_client(s3_settings)


@pytest.fixture
def local_settings(tmp_path: Path) -> StorageSettings:
    return StorageSettings(
        backend="local",
        local_root=tmp_path / "objects",
        multipart_threshold_bytes=PART_SIZE,
        part_size=PART_SIZE,
    )


@pytest.fixture
def local_store(local_settings: StorageSettings) -> LocalObjectStore:
    assert local_settings.local_root is not None
    return LocalObjectStore(
        local_settings.local_root, local_settings, signing_secret=SIGNING_SECRET
    )


@pytest.fixture
def s3_store(s3_settings: StorageSettings, s3_client: S3Client) -> S3ObjectStore:
    s3_client.create_bucket(Bucket=s3_settings.bucket)
    return S3ObjectStore(s3_settings)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> ObjectStore:
    """The same behaviour tests run against each backend."""
    if request.param == "local":
        return request.getfixturevalue("local_store")  # type: ignore[no-any-return]
    return request.getfixturevalue("s3_store")  # type: ignore[no-any-return]


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A random file of 2.5 parts: big enough for a three-part multipart upload."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(2 * PART_SIZE + PART_SIZE // 2))
    return path
