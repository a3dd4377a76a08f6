"""Streams a ``multipart/form-data`` upload (one file in the field ``file``, plus small text
fields) to a local temporary file while hashing it.

The body is read chunk by chunk and never held whole in memory; reading stops as soon as the
file part passes the size limit, so an oversize upload is cut off at the limit instead of
being read to the end. On any failure the temporary file is removed. Used by every service
that accepts files (datasets, model files).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from armillary.kit.errors import BadRequest, DomainError

FILE_FIELD = "file"
# Form fields other than the file are small; anything bigger is not what we expect.
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 20
_MULTIPART_OVERHEAD = 64 * 1024
_BATCH_BYTES = 1024 * 1024
# Enough of the file's start to sniff its format (see ``SpoolProgress.head``).
_HEAD_BYTES = 4096
# The filename parameter as sent: quoted (with backslash escapes) or a bare token.
_FILENAME_PARAM = re.compile(r'(?:^|;)\s*filename\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.IGNORECASE)


class PayloadTooLarge(DomainError):
    status = 413
    title = "Content too large"


class UnsupportedMediaType(DomainError):
    status = 415
    title = "Unsupported media type"


@dataclass
class SpooledUpload:
    path: Path
    size: int
    sha256: str
    filename: str | None
    content_type: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class SpoolProgress:
    """How far the spool file has been written, for a reader that follows it while the body
    is still arriving (a pipelined put). ``size`` bytes of the file part are flushed to
    ``path``; ``fields`` and ``filename`` are those parsed so far."""

    path: Path
    size: int
    head: bytes
    filename: str | None
    fields: dict[str, str]


#: Called after each parsed batch; the spool holds ``size`` bytes of the file by then.
ProgressListener = Callable[[SpoolProgress], None]


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None
    value: bytearray = field(default_factory=bytearray)


class _Receiver:
    """Collects parser callbacks into the spool file and small fields."""

    def __init__(
        self, spool: IO[bytes], max_bytes: int, check_filename: Callable[[str | None], str | None]
    ) -> None:
        self.spool = spool
        self.max_bytes = max_bytes
        self.check_filename = check_filename
        self.hasher = hashlib.sha256()
        self.size = 0
        self.head = b""
        self.file_seen = False
        self.filename: str | None = None
        self.content_type: str | None = None
        self.fields: dict[str, str] = {}
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    # python-multipart callbacks
    def on_part_begin(self) -> None:
        self._part = _Part()
        self._headers = {}

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        disposition = self._headers.get(b"content-disposition", b"")
        _, options = parse_options_header(disposition)
        name = options.get(b"name")
        filename = _sent_filename(disposition, options.get(b"filename"))
        self._part.name = name.decode("utf-8", "replace") if name else None
        self._part.filename = filename.decode("utf-8", "replace") if filename is not None else None
        content_type = self._headers.get(b"content-type")
        self._part.content_type = content_type.decode("latin-1") if content_type else None
        if self._part.name == FILE_FIELD:
            if self.file_seen:
                raise BadRequest("Send exactly one file in the 'file' field")
            self.file_seen = True
            self.filename = self.check_filename(self._part.filename)
            self.content_type = self._part.content_type
        elif len(self.fields) >= _MAX_FIELDS:
            raise BadRequest("Too many form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        # A view, not a copy: the hash, the spool and a field's value each take their own.
        chunk = memoryview(data)[start:end]
        if self._part.name == FILE_FIELD:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {self.max_bytes} bytes"
                )
            self.hasher.update(chunk)
            self.spool.write(chunk)
            if len(self.head) < _HEAD_BYTES:
                self.head += bytes(chunk[: _HEAD_BYTES - len(self.head)])
        else:
            self._part.value += chunk
            if len(self._part.value) > _MAX_FIELD_BYTES:
                raise PayloadTooLarge("A form field is too large")

    def on_part_end(self) -> None:
        if self._part.name and self._part.name != FILE_FIELD:
            self.fields[self._part.name] = self._part.value.decode("utf-8", "replace")


def _sent_filename(disposition: bytes, parsed: bytes | None) -> bytes | None:
    """The filename as the client sent it. python-multipart cuts a Windows path down to its
    last part (``C:\\dir\\x.csv`` becomes ``x.csv``, an old IE workaround); keep the path, so
    that it is refused like any other path instead of being silently shortened."""
    if parsed is None:
        return None
    match = _FILENAME_PARAM.search(disposition.decode("latin-1"))
    if match is None:
        return parsed
    value = match.group(1).strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = value[1:-1].replace("\\\\", "\\").replace('\\"', '"')
    sent = value.encode("latin-1")
    return sent if sent != parsed and sent.endswith(parsed) else parsed


def _shortened(filename: str | None) -> str | None:
    return filename[:255] if filename else None


async def spool_multipart(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    spool_dir: str | None = None,
    check_filename: Callable[[str | None], str | None] = _shortened,
    prefix: str = "armillary-upload-",
    on_progress: ProgressListener | None = None,
) -> SpooledUpload:
    """Read a ``multipart/form-data`` body into a temporary file (field ``file``).

    ``check_filename`` vets the file's name as sent (raise a ``DomainError`` to refuse it).
    ``on_progress``, if given, hears after every batch how much of the file is on disk, so
    that a reader can follow the spool file while the body is still arriving."""
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data" or b"boundary" not in options:
        raise UnsupportedMediaType("Upload the file as multipart/form-data in the field 'file'")
    if (
        content_length
        and content_length.isdigit()
        and int(content_length) > max_bytes + _MULTIPART_OVERHEAD
    ):
        raise PayloadTooLarge(f"The upload is larger than the limit of {max_bytes} bytes")
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as spool:
            receiver = _Receiver(spool, max_bytes, check_filename)
            parser = MultipartParser(
                options[b"boundary"],
                {
                    "on_part_begin": receiver.on_part_begin,
                    "on_part_data": receiver.on_part_data,
                    "on_part_end": receiver.on_part_end,
                    "on_header_field": receiver.on_header_field,
                    "on_header_value": receiver.on_header_value,
                    "on_header_end": receiver.on_header_end,
                    "on_headers_finished": receiver.on_headers_finished,
                },
            )

            def write(data: bytes) -> None:
                parser.write(data)
                if on_progress is not None:
                    # A follower reads the spool through its own handle: flush first.
                    spool.flush()

            def report() -> None:
                if on_progress is not None and receiver.size:
                    on_progress(
                        SpoolProgress(
                            path=path,
                            size=receiver.size,
                            head=receiver.head,
                            filename=receiver.filename,
                            fields=dict(receiver.fields),
                        )
                    )

            # Parse and write in ~1 MiB batches on a worker thread: the event loop never
            # blocks on disk, and memory stays bounded by the batch size.
            # Chunks are joined once per batch (one copy, not one per chunk and another).
            batch: list[bytes] = []
            batched = 0
            async for chunk in body:
                batch.append(chunk)
                batched += len(chunk)
                if batched >= _BATCH_BYTES:
                    await asyncio.to_thread(write, b"".join(batch))
                    batch.clear()
                    batched = 0
                    report()
            if batch:
                await asyncio.to_thread(write, b"".join(batch))
            parser.finalize()
            report()
        if not receiver.file_seen:
            raise BadRequest("No file in the 'file' field")
        if receiver.size == 0:
            raise BadRequest("The file is empty")
        return SpooledUpload(
            path=path,
            size=receiver.size,
            sha256=receiver.hasher.hexdigest(),
            filename=receiver.filename,
            content_type=receiver.content_type,
            fields=receiver.fields,
        )
    except DomainError:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    except Exception as exc:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise BadRequest("The multipart body is malformed") from exc
