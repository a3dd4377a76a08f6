"""Object keys, built only from ids (DESIGN §8) and validated component by component.

Layout:
    projects/{project_id}/datasets/{dataset_id}/{sha256}.{ext}
    projects/{project_id}/models/{model_id}/{version}/{name}
    projects/{project_id}/jobs/{job_id}/{task}/{name}
    projects/{project_id}/code/{bundle_id}/{sha256}.{py|zip}

Every store operation re-checks its key with :func:`validate_key`, so a key that was not built
here (a user path, a percent-encoded traversal, a Windows separator) never reaches a backend.
"""

from __future__ import annotations

import re
from typing import Final
from uuid import UUID

from armillary.kit.storage.errors import InvalidObjectKey

# One path segment: starts alphanumeric, then a small safe alphabet. This alone excludes "/",
# "\\", "%", NUL and every other control or non-ASCII character.
_SEGMENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256: Final = re.compile(r"[0-9a-f]{64}")
_MAX_KEY_LENGTH: Final = 1024  # S3's limit on key length in bytes (keys here are ASCII).
_MAX_VERSION: Final = 10**9

#: Extensions a dataset object may carry; anything else is refused.
DATASET_EXTENSIONS: Final = frozenset(
    {"csv", "tsv", "json", "jsonl", "ndjson", "parquet", "arrow", "feather", "xlsx", "txt"}
)


def validate_segment(value: str, *, what: str = "segment") -> str:
    """Return ``value`` if it is one safe key segment, else raise :class:`InvalidObjectKey`."""
    if not isinstance(value, str) or _SEGMENT.fullmatch(value) is None or ".." in value:
        raise InvalidObjectKey(f"invalid {what}: {value!r}")
    return value


def validate_key(key: str) -> str:
    """Return ``key`` if every ``/``-separated segment is safe, else raise.

    Rejects absolute paths, empty segments, ``.``/``..`` and anything containing them,
    backslashes, percent-encoding and control characters.
    """
    if not isinstance(key, str) or not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidObjectKey("invalid object key")
    for segment in key.split("/"):
        validate_segment(segment, what="key segment")
    return key


def validate_prefix(prefix: str) -> str:
    """Validate a listing prefix: empty (everything) or a key, with an optional trailing ``/``."""
    stripped = prefix.removesuffix("/")
    return "" if not stripped else validate_key(stripped)


def _uuid(value: UUID, what: str) -> str:
    # Only a real UUID: a string that merely looks like one could carry anything.
    if not isinstance(value, UUID):
        raise InvalidObjectKey(f"{what} must be a UUID")
    return str(value)


def _joined(*segments: str) -> str:
    return validate_key("/".join(segments))


def dataset_object_key(project_id: UUID, dataset_id: UUID, sha256: str, ext: str) -> str:
    """Content-addressed key of a dataset object: ``projects/{p}/datasets/{d}/{sha256}.{ext}``."""
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise InvalidObjectKey("sha256 must be 64 lowercase hex characters")
    if ext not in DATASET_EXTENSIONS:
        raise InvalidObjectKey(f"extension not allowed: {ext!r}")
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "datasets",
        _uuid(dataset_id, "dataset_id"),
        f"{sha256}.{ext}",
    )


def model_artifact_key(project_id: UUID, model_id: UUID, version: int, name: str) -> str:
    """Key of a model version's artifact: ``projects/{p}/models/{m}/{version}/{name}``."""
    # bool is an int subclass; True must not become version "True" or 1.
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or not 1 <= version <= _MAX_VERSION
    ):
        raise InvalidObjectKey("version must be a positive integer")
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "models",
        _uuid(model_id, "model_id"),
        str(version),
        validate_segment(name, what="artifact name"),
    )


def job_artifact_key(project_id: UUID, job_id: UUID, task: str, name: str) -> str:
    """Key of a task's output within a job: ``projects/{p}/jobs/{j}/{task}/{name}``."""
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "jobs",
        _uuid(job_id, "job_id"),
        validate_segment(task, what="task name"),
        validate_segment(name, what="artifact name"),
    )


#: Extensions a code bundle object may carry: one Python file or a zip archive.
CODE_BUNDLE_EXTENSIONS: Final = frozenset({"py", "zip"})


def code_bundle_key(project_id: UUID, bundle_id: UUID, sha256: str, ext: str) -> str:
    """Key of a code bundle version: ``projects/{p}/code/{bundle_id}/{sha256}.{py|zip}``."""
    if not isinstance(sha256, str) or _SHA256.fullmatch(sha256) is None:
        raise InvalidObjectKey("sha256 must be 64 lowercase hex characters")
    if ext not in CODE_BUNDLE_EXTENSIONS:
        raise InvalidObjectKey(f"extension not allowed: {ext!r}")
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "code",
        _uuid(bundle_id, "bundle_id"),
        f"{sha256}.{ext}",
    )


def project_prefix(project_id: UUID) -> str:
    """Prefix under which every object of a project lives (for listing or purging)."""
    return _joined("projects", _uuid(project_id, "project_id"))


def job_prefix(project_id: UUID, job_id: UUID) -> str:
    """Prefix of every object a job's tasks wrote (logs, artifacts): for reading or purging."""
    return _joined("projects", _uuid(project_id, "project_id"), "jobs", _uuid(job_id, "job_id"))
