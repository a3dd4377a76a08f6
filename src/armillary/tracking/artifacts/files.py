"""A run's files in the object store: stream in under a size limit, list one level, stream
out, delete. Keys come only from ``kit.storage.keys.run_artifact_key`` and the run's prefix."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from armillary.kit.multipart import PayloadTooLarge
from armillary.kit.storage import ObjectStore
from armillary.kit.storage.base import ObjectInfo


@dataclass(frozen=True)
class FileEntry:
    """One entry of a listing: a file (with its size) or a directory, by name."""

    name: str
    is_dir: bool
    size: int | None = None

    def as_json(self, path: str) -> dict[str, Any]:
        out: dict[str, Any] = {"path": path, "is_dir": self.is_dir}
        if not self.is_dir:
            out["file_size"] = self.size
        return out


def refuse_declared_size(content_length: str | None, max_bytes: int) -> None:
    """413 before reading a body whose declared length is over the limit."""
    if content_length and content_length.isdigit() and int(content_length) > max_bytes:
        raise PayloadTooLarge(f"An artifact may hold at most {max_bytes} bytes")


async def _limited(chunks: AsyncIterable[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    # Counts what really arrives: a chunked body declares no length.
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"An artifact may hold at most {max_bytes} bytes")
        yield chunk


async def _prepend(head: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield head
    async for chunk in rest:
        yield chunk


async def upload(
    store: ObjectStore,
    key: str,
    chunks: AsyncIterable[bytes],
    *,
    max_bytes: int,
    buffer_bytes: int,
) -> ObjectInfo:
    """Store the body under ``key`` as it arrives. At most ``buffer_bytes`` are held before
    the bytes go to a multipart upload (whose parts the store bounds); a body that ends
    sooner goes in one put. Over ``max_bytes``, the upload is aborted and nothing is stored."""
    body = _limited(chunks, max_bytes)
    head = bytearray()
    async for chunk in body:
        head += chunk
        if len(head) >= buffer_bytes:
            return await store.put_stream(key, _prepend(bytes(head), body))
    return await store.put_bytes(key, bytes(head))


async def listing(store: ObjectStore, prefix: str) -> list[FileEntry]:
    """The files and directories directly under ``prefix`` (none if it names a file)."""
    entries: dict[str, FileEntry] = {}
    async for info in store.list(prefix):
        name, nested, _ = info.key[len(prefix) + 1 :].partition("/")
        if nested:
            entries.setdefault(name, FileEntry(name, is_dir=True))
        else:
            entries[name] = FileEntry(name, is_dir=False, size=info.size)
    return sorted(entries.values(), key=lambda e: e.name)


async def delete_tree(store: ObjectStore, key: str) -> None:
    """Delete everything under ``key`` as a directory or, if it holds nothing, the file there."""
    # Listed first: a local store refuses to delete a directory as if it were a file.
    nested = [info.key async for info in store.list(key)]
    for found in nested:
        await store.delete(found)
    if not nested:
        await store.delete(key)
