"""The object-store interface every service uses, implemented once over obstore.

Backends (local directory, S3) differ only in how the underlying obstore store is built, which
put options they support and how a client downloads an object directly; everything else
(streaming, multipart uploads, listing, key checks) is shared here.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Final

import obstore

from armillary.kit.storage.errors import ObjectNotFound
from armillary.kit.storage.keys import validate_key, validate_prefix
from armillary.kit.storage.settings import MIB, StorageSettings

if TYPE_CHECKING:
    from obstore import Attributes, GetOptions, GetResult, ObjectMeta
    from obstore.store import ObjectStore as ObstoreStore

#: Tag that lifecycle rules select on (see ``admin.init_bucket``).
CLASS_TAG: Final = "armillary-class"

_DEFAULT_STREAM_CHUNK: Final = 1 * MIB
_FILE_CHUNK: Final = 4 * MIB
_LIST_PAGE: Final = 1000
# S3 object tag limits and character set.
_MAX_TAGS: Final = 10
_TAG_KEY: Final = re.compile(r"[A-Za-z0-9 +\-=._:/@]{1,128}")
_TAG_VALUE: Final = re.compile(r"[A-Za-z0-9 +\-=._:/@]{0,256}")


class ObjectClass(StrEnum):
    """Values of the :data:`CLASS_TAG` tag; lifecycle rules act on them."""

    RAW = "raw"
    PROCESSED = "processed"
    MODEL = "model"
    ARTIFACT = "artifact"


def class_tags(object_class: ObjectClass) -> dict[str, str]:
    """Tags that put an object in a lifecycle class, e.g. ``{"armillary-class": "processed"}``."""
    return {CLASS_TAG: object_class.value}


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What the store knows about one object."""

    key: str
    size: int
    last_modified: datetime
    e_tag: str | None = None
    version: str | None = None
    # Only backends that keep attributes (S3) report it, and only from head/put.
    content_type: str | None = None


def _info(meta: ObjectMeta, attributes: Attributes | None = None) -> ObjectInfo:
    content_type = (attributes or {}).get("Content-Type")
    return ObjectInfo(
        key=meta["path"],
        size=meta["size"],
        last_modified=meta["last_modified"],
        e_tag=meta["e_tag"],
        version=meta["version"],
        content_type=content_type,
    )


def checked_tags(tags: Mapping[str, str] | None) -> dict[str, str] | None:
    if not tags:
        return None
    if len(tags) > _MAX_TAGS:
        raise ValueError(f"at most {_MAX_TAGS} tags per object")
    for name, value in tags.items():
        if _TAG_KEY.fullmatch(name) is None or name.lower().startswith("aws:"):
            raise ValueError(f"invalid tag key: {name!r}")
        if _TAG_VALUE.fullmatch(value) is None:
            raise ValueError(f"invalid tag value for {name!r}")
    return dict(tags)


class ObjectStore(ABC):
    """Async object store addressed by keys from :mod:`armillary.kit.storage.keys`.

    Every method validates its key first; a key that is not a platform key raises
    :class:`~armillary.kit.storage.errors.InvalidObjectKey` before any I/O.
    """

    backend: ClassVar[str]
    # LocalStore refuses attributes outright and ignores tags.
    _supports_attributes: ClassVar[bool] = True
    _supports_tags: ClassVar[bool] = True
    #: Whether an upload gains from :meth:`put_stream` while its body still arrives. A local
    #: store copies a finished file kernel-side instead: streaming would buffer parts.
    pipelines_puts: ClassVar[bool] = True

    def __init__(self, store: ObstoreStore, settings: StorageSettings) -> None:
        self._store = store
        self._settings = settings

    def _key(self, key: str) -> str:
        """Validate a key before use; backends add their own checks."""
        return validate_key(key)

    def _put_options(
        self, content_type: str | None, tags: Mapping[str, str] | None
    ) -> tuple[Attributes | None, dict[str, str] | None]:
        checked = checked_tags(tags)
        attributes: Attributes | None = None
        if content_type is not None and self._supports_attributes:
            attributes = {"Content-Type": content_type}
        return attributes, checked if self._supports_tags else None

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a local file, streaming it; files at or above the threshold go multipart.

        Parts of ``part_size`` are read from disk as they are sent, at most
        ``upload_concurrency`` at a time, so memory stays bounded whatever the file size.
        A file below ``multipart_threshold_bytes`` goes in one PUT, which obstore buffers:
        the threshold is also the most a single upload holds in memory.
        The write is atomic: readers see the old object or the whole new one.
        """
        key = self._key(key)
        attributes, checked_tags = self._put_options(content_type, tags)
        size = (await asyncio.to_thread(os.stat, path)).st_size
        settings = self._settings
        # Handing obstore the Path (not bytes) lets it read the file chunk by chunk in Rust.
        result = await obstore.put_async(
            self._store,
            key,
            Path(path),
            attributes=attributes,
            tags=checked_tags,
            use_multipart=size >= settings.multipart_threshold_bytes,
            chunk_size=settings.part_size,
            max_concurrency=settings.upload_concurrency,
        )
        return await self._head(key, result["version"])

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload the bytes ``chunks`` yields as one multipart upload, parts of ``part_size``
        sent while later chunks are still being produced. At most ``upload_concurrency`` parts
        are held: one being filled and the others in flight.

        The object appears when ``chunks`` ends. If ``chunks`` raises, the multipart upload
        is aborted, nothing is stored, and the exception propagates. Cancelling this call
        does not abort the upload (obstore drops it, leaving its parts to the bucket's
        lifecycle rule): to give up, make ``chunks`` raise.
        """
        key = self._key(key)
        attributes, checked_tags = self._put_options(content_type, tags)
        settings = self._settings
        result = await obstore.put_async(
            self._store,
            key,
            chunks,
            attributes=attributes,
            tags=checked_tags,
            use_multipart=True,
            chunk_size=settings.part_size,
            # obstore fills the next part while this many are in flight.
            max_concurrency=max(1, settings.upload_concurrency - 1),
        )
        return await self._head(key, result["version"])

    async def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Upload a small in-memory object in one request (use :meth:`put_file` for big ones)."""
        key = self._key(key)
        attributes, checked_tags = self._put_options(content_type, tags)
        result = await obstore.put_async(
            self._store,
            key,
            bytes(data),
            attributes=attributes,
            tags=checked_tags,
            use_multipart=False,
        )
        return await self._head(key, result["version"])

    async def _get(self, key: str, options: GetOptions | None = None) -> GetResult:
        try:
            return await obstore.get_async(self._store, key, options=options)
        except FileNotFoundError:
            # obstore maps a missing object to the builtin FileNotFoundError.
            raise ObjectNotFound(key) from None

    async def _head(self, key: str, version: str | None = None) -> ObjectInfo:
        options: GetOptions = {"head": True}
        # "null" is S3's version id of an object written while versioning was off.
        if version and version != "null":
            options["version"] = version
        # A HEAD through get() also returns attributes (Content-Type), which head() does not.
        result = await self._get(key, options)
        return _info(result.meta, result.attributes)

    async def open_stream(
        self, key: str, *, chunk_size: int = _DEFAULT_STREAM_CHUNK
    ) -> AsyncIterator[bytes]:
        """Start a download and return its body as chunks of at least ``chunk_size`` bytes.

        The request is made before this returns, so a missing object raises
        :class:`ObjectNotFound` here, before a caller has started an HTTP response.
        """
        result = await self._get(self._key(key))
        return result.stream(min_chunk_size=chunk_size)

    async def get_bytes(self, key: str) -> bytes:
        """Read a whole (small) object into memory."""
        result = await self._get(self._key(key))
        return bytes(await result.bytes_async())

    async def get_to_file(self, key: str, path: Path) -> ObjectInfo:
        """Download an object to ``path``, streaming; ``path`` appears only once complete."""
        key = self._key(key)
        result = await self._get(key)
        info = _info(result.meta, result.attributes)
        target = Path(path)
        # Same directory, so the final rename is atomic and never crosses filesystems.
        fd, temp_name = tempfile.mkstemp(
            dir=target.parent, prefix=f".{target.name}.", suffix=".part"
        )
        try:
            written = 0
            with os.fdopen(fd, "wb") as handle:
                async for chunk in result.stream(min_chunk_size=_FILE_CHUNK):
                    await asyncio.to_thread(handle.write, chunk)
                    written += len(chunk)
                await asyncio.to_thread(os.fsync, handle.fileno())
            if written != info.size:
                raise OSError(f"short download: {written} of {info.size} bytes")
            await asyncio.to_thread(os.replace, temp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        return info

    async def head(self, key: str) -> ObjectInfo:
        """Metadata of an object; raises :class:`ObjectNotFound` if there is none."""
        return await self._head(self._key(key))

    async def exists(self, key: str) -> bool:
        """Whether an object exists at ``key``."""
        try:
            await self.head(key)
        except ObjectNotFound:
            return False
        return True

    async def delete(self, key: str) -> None:
        """Delete an object; deleting a missing object is not an error (as on S3).

        On a versioned bucket this adds a delete marker; lifecycle rules expire the
        noncurrent versions later.
        """
        key = self._key(key)
        with contextlib.suppress(FileNotFoundError):
            await obstore.delete_async(self._store, key)

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Yield every object under ``prefix``, page by page, never the whole listing at once.

        Prefixes match whole segments: ``projects/a`` lists ``projects/a/...`` but not
        ``projects/ab``.
        """
        checked = validate_prefix(prefix)
        if checked:
            checked = self._key(checked)
        stream = obstore.list(self._store, prefix=checked or None, chunk_size=_LIST_PAGE)
        async for page in stream:
            for meta in page:
                yield _info(meta)

    async def list_keys(self, prefix: str = "") -> builtins.list[str]:
        """All keys under ``prefix``, sorted; for small listings such as tests and admin."""
        return sorted([info.key async for info in self.list(prefix)])

    @abstractmethod
    async def presigned_get_url(self, key: str, ttl: timedelta | None = None) -> str | None:
        """A URL a client can GET the object from directly, or ``None`` if the backend has none.

        ``None`` means the API must stream the object itself (the local backend signs a
        download route instead, see ``LocalObjectStore.sign_download``).
        """

    def _ttl(self, ttl: timedelta | None) -> timedelta:
        chosen = ttl if ttl is not None else timedelta(seconds=self._settings.presign_ttl_seconds)
        if chosen <= timedelta(0):
            raise ValueError("ttl must be positive")
        return chosen
