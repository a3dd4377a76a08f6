"""Object storage for every service: one async interface, local-directory and S3 backends.

Build keys with :mod:`armillary.kit.storage.keys`; open the configured store with
:func:`open_object_store`; administer the S3 bucket with :mod:`armillary.kit.storage.admin`.
"""

from __future__ import annotations

from pathlib import Path

from armillary.kit.storage.base import (
    CLASS_TAG,
    ObjectClass,
    ObjectInfo,
    ObjectStore,
    class_tags,
)
from armillary.kit.storage.errors import (
    DownloadTokenExpired,
    InvalidDownloadToken,
    InvalidObjectKey,
    ObjectNotFound,
)
from armillary.kit.storage.keys import (
    attempt_artifact_key,
    dataset_object_key,
    job_artifact_key,
    model_artifact_key,
    project_prefix,
    validate_key,
)
from armillary.kit.storage.local import LocalObjectStore
from armillary.kit.storage.s3 import S3ObjectStore
from armillary.kit.storage.settings import StorageSettings, default_local_root

__all__ = [
    "CLASS_TAG",
    "DownloadTokenExpired",
    "InvalidDownloadToken",
    "InvalidObjectKey",
    "LocalObjectStore",
    "ObjectClass",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "StorageSettings",
    "attempt_artifact_key",
    "class_tags",
    "dataset_object_key",
    "default_local_root",
    "job_artifact_key",
    "model_artifact_key",
    "open_object_store",
    "project_prefix",
    "validate_key",
]


def open_object_store(
    settings: StorageSettings, *, home: Path, signing_secret: str | None = None
) -> ObjectStore:
    """The store the settings select.

    ``home`` places the local root when ``local_root`` is unset; ``signing_secret`` (e.g.
    ``Settings.resolved_secret_key()``) keys local download tokens and is required for the
    local backend.
    """
    if settings.backend == "s3":
        return S3ObjectStore(settings)
    if signing_secret is None:
        raise ValueError("the local storage backend needs a signing secret for download links")
    return LocalObjectStore(
        settings.resolved_local_root(home), settings, signing_secret=signing_secret
    )
