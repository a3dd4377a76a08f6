"""Object keys, built only from ids (DESIGN §8) and validated component by component.

Layout:
    projects/{project_id}/datasets/{dataset_id}/{version_id}.{ext}
    projects/{project_id}/models/{model_id}/{version_id}/{name}
    projects/{project_id}/jobs/{job_id}/{task}/attempt-{n}/{name}   (artifacts)
    projects/{project_id}/jobs/{job_id}/{task}/{name}               (log chunks)
    projects/{project_id}/code/{bundle_id}/{sha256}.{py|zip}
    projects/{project_id}/runs/{run_id}/artifacts/{path}            (tracking runs' files)

An object is written under a key that contains the id of the row that will own it (or, for
a task's files, the attempt), so no other request can write, or on rollback delete, the same
key (ADR 0010). Rows store the keys they own; rows written before this layout keep theirs.

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
# Anything but these would need quoting (or break the header) in a Content-Disposition name.
_UNSAFE_IN_FILENAME: Final = re.compile(r"[^A-Za-z0-9._-]")

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


def dataset_object_key(project_id: UUID, dataset_id: UUID, version_id: UUID, ext: str) -> str:
    """Key of a dataset version's object: ``projects/{p}/datasets/{d}/{version_id}.{ext}``."""
    if ext not in DATASET_EXTENSIONS:
        raise InvalidObjectKey(f"extension not allowed: {ext!r}")
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "datasets",
        _uuid(dataset_id, "dataset_id"),
        f"{_uuid(version_id, 'version_id')}.{ext}",
    )


def model_artifact_key(project_id: UUID, model_id: UUID, version_id: UUID, name: str) -> str:
    """Key of a model version's artifact: ``projects/{p}/models/{m}/{version_id}/{name}``.

    The version's row id, not its number: a number is only known, and only unique, once the
    transaction that allocates it commits.
    """
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "models",
        _uuid(model_id, "model_id"),
        _uuid(version_id, "version_id"),
        validate_segment(name, what="artifact name"),
    )


def job_artifact_key(project_id: UUID, job_id: UUID, task: str, name: str) -> str:
    """Key of a task's file within a job: ``projects/{p}/jobs/{j}/{task}/{name}`` (log chunks,
    which carry their attempt in ``name``; artifacts use :func:`attempt_artifact_key`)."""
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "jobs",
        _uuid(job_id, "job_id"),
        validate_segment(task, what="task name"),
        validate_segment(name, what="artifact name"),
    )


def attempt_artifact_key(project_id: UUID, job_id: UUID, task: str, attempt: int, name: str) -> str:
    """Key of a file one attempt of a task wrote:
    ``projects/{p}/jobs/{j}/{task}/attempt-{n}/{name}``.

    Per attempt, so an attempt that lost its lease (and keeps running) cannot overwrite what
    the attempt after it wrote; the task run records the keys of the attempt that succeeded.
    """
    return _joined(
        "projects",
        _uuid(project_id, "project_id"),
        "jobs",
        _uuid(job_id, "job_id"),
        validate_segment(task, what="task name"),
        f"attempt-{_positive(attempt, 'attempt')}",
        validate_segment(name, what="artifact name"),
    )


def _positive(value: int, what: str) -> int:
    # bool is an int subclass; True must not become attempt "True" or 1.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_VERSION:
        raise InvalidObjectKey(f"{what} must be a positive integer")
    return value


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


def run_artifacts_prefix(project_id: UUID, run_id: UUID) -> str:
    """Prefix of a tracking run's files: ``projects/{p}/runs/{run_id}/artifacts``."""
    return _joined(
        "projects", _uuid(project_id, "project_id"), "runs", _uuid(run_id, "run_id"), "artifacts"
    )


def run_artifact_key(project_id: UUID, run_id: UUID, path: str) -> str:
    """Key of a file a tracking run logged, at the relative ``path`` (``a/b/c.txt``) the
    client chose: every segment of ``path`` must be a safe segment, so no path leaves the
    run's prefix."""
    if not isinstance(path, str) or not path:
        raise InvalidObjectKey("artifact path must not be empty")
    segments = [validate_segment(s, what="artifact path segment") for s in path.split("/")]
    return _joined(run_artifacts_prefix(project_id, run_id), *segments)


def project_prefix(project_id: UUID) -> str:
    """Prefix under which every object of a project lives (for listing or purging)."""
    return _joined("projects", _uuid(project_id, "project_id"))


def job_prefix(project_id: UUID, job_id: UUID) -> str:
    """Prefix of every object a job's tasks wrote (logs, artifacts): for reading or purging."""
    return _joined("projects", _uuid(project_id, "project_id"), "jobs", _uuid(job_id, "job_id"))


def attachment_disposition(key: str) -> str:
    """A ``Content-Disposition`` that saves the object as a file named after its last segment.

    Never ``inline``: a browser must not render a user-supplied object on the platform's
    (or the bucket's) origin.
    """
    name = _UNSAFE_IN_FILENAME.sub("_", key.rsplit("/", 1)[-1]) or "download"
    return f'attachment; filename="{name}"'
