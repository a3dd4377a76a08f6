"""Model files copied from the shared object store into a local cache, verified by SHA-256
before anything may load them (once per file and process)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.ids import parse_uuid
from armillary.kit.storage import ObjectNotFound, ObjectStore

log = structlog.get_logger("armillary.serving.artifacts")


class ModelUnavailable(ServiceUnavailable):
    title = "Model unavailable"


@dataclass(frozen=True, slots=True)
class ModelFile:
    format: Literal["onnx", "skops"]
    signature: dict[str, Any]
    path: Path


def _sha256(path: Path) -> tuple[str, int]:
    with path.open("rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    return digest, path.stat().st_size


class ArtifactCache:
    def __init__(self, store: ObjectStore, root: Path) -> None:
        self._store = store
        self._root = root
        self._verified: set[Path] = set()
        self._locks: dict[Path, asyncio.Lock] = {}

    async def fetch(
        self, model_version_id: str, name: str, *, key: str, sha256: str, size_bytes: int
    ) -> Path:
        """The local copy of one artifact, downloaded once and checked against the digest the
        registry recorded; :class:`ModelUnavailable` when the stored object does not match."""
        if parse_uuid(model_version_id) is None or name not in ("model.onnx", "model.skops"):
            raise ValueError("not a model file of a model version")
        path = self._root / model_version_id / name
        if path in self._verified:
            return path
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            if path in self._verified:
                return path
            if path.exists() and await asyncio.to_thread(_sha256, path) == (sha256, size_bytes):
                self._verified.add(path)
                return path
            await self._download(path, key=key, sha256=sha256, size_bytes=size_bytes)
            self._verified.add(path)
            return path

    async def _download(self, path: Path, *, key: str, sha256: str, size_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = path.with_name(f".{path.name}.{secrets.token_hex(8)}.part")
        try:
            try:
                await self._store.get_to_file(key, part)
            except ObjectNotFound:
                log.error("serving.artifact_missing", model_file=path.name)
                raise ModelUnavailable("The model file is missing from the store") from None
            if await asyncio.to_thread(_sha256, part) != (sha256, size_bytes):
                log.error("serving.artifact_tampered", model_file=path.name)
                raise ModelUnavailable("The model file failed its integrity check")
            # Readers see no file or the whole verified one.
            os.replace(part, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
