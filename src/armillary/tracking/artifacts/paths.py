"""Artifact paths as MLflow's client sends them, checked before any becomes an object key.

A path arrives percent-decoded once (by the server, in the URL path or the ``path`` query).
It is refused, with a 400 that says why, if it could name anything outside the run's
prefix or be read differently by another layer: absolute paths, ``..`` and ``.`` segments,
backslashes, NUL and control characters, and any ``%`` left after that one decoding
(double-encoded traversal such as ``%252e%252e%252f``). Each segment must then be a key
segment of the object store (``kit.storage.keys``), which the store checks again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from armillary.kit.storage.errors import InvalidObjectKey
from armillary.kit.storage.keys import validate_segment

from ..wire_errors import DoesNotExist, InvalidParameter

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_DRIVE: Final = re.compile(r"[A-Za-z]:")
# Where a run's files sit in the proxy's namespace, as in `mlflow server --serve-artifacts`:
# mlflow-artifacts:/<experiment_id>/<run_id>/artifacts/<path>.
RUN_ARTIFACTS_SEGMENT: Final = "artifacts"


class ArtifactPathRefused(InvalidParameter):
    title = "Invalid artifact path"


def relative_path(raw: str) -> str:
    """``raw`` as a relative path of safe segments joined by ``/``; ``""`` is the root."""
    if _CONTROL.search(raw):
        raise ArtifactPathRefused("An artifact path must not contain NUL or control characters")
    if "\\" in raw:
        raise ArtifactPathRefused("An artifact path separates its parts with '/', not '\\'")
    if "%" in raw:
        raise ArtifactPathRefused("An artifact path must not contain '%' (no encoded characters)")
    if raw.startswith("/") or _WINDOWS_DRIVE.match(raw):
        raise ArtifactPathRefused("An artifact path must be relative to the run's artifacts")
    if not raw:
        return ""
    segments = raw.split("/")
    if any(s in (".", "..") for s in segments):
        raise ArtifactPathRefused("An artifact path must not contain '.' or '..' parts")
    if any(not s for s in segments):
        raise ArtifactPathRefused("An artifact path must not contain empty parts ('//')")
    for segment in segments:
        try:
            validate_segment(segment)
        except InvalidObjectKey:
            raise ArtifactPathRefused(
                "Each part of an artifact path starts with a letter or digit and holds only "
                "letters, digits, '.', '_' and '-' (at most 128 characters)"
            ) from None
    return raw


def join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


@dataclass(frozen=True)
class ProxiedPath:
    """A path in the proxy's namespace: a run (by experiment and run id) and a path in it."""

    experiment_ref: str
    run_ref: str
    path: str


def proxied_path(raw: str) -> ProxiedPath:
    """Split ``<experiment_id>/<run_id>/artifacts[/<path>]`` (checked as a whole first)."""
    checked = relative_path(raw)
    segments = checked.split("/") if checked else []
    if len(segments) < 3 or segments[2] != RUN_ARTIFACTS_SEGMENT:
        raise DoesNotExist(
            "Artifacts live at <experiment_id>/<run_id>/artifacts/<path>: no run's artifacts here"
        )
    return ProxiedPath(segments[0], segments[1], "/".join(segments[3:]))
