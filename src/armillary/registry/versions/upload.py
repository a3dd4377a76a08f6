"""Streams a multipart model upload (field ``file``) to a temporary file while hashing it.

Reading stops as soon as the file passes the size limit; small form fields are collected;
on any failure the temporary file is removed. (The data service has its own; services share
no code but ``kit``.)
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header

from armillary.kit.errors import BadRequest, DomainError

FILE_FIELD = "file"
_MAX_FIELD_BYTES = 64 * 1024
_MAX_FIELDS = 20
_MULTIPART_OVERHEAD = 256 * 1024
_BATCH_BYTES = 1024 * 1024


class PayloadTooLarge(DomainError):
    status = 413
    title = "Content too large"


class NotMultipart(DomainError):
    status = 415
    title = "Unsupported media type"


@dataclass
class SpooledModel:
    path: Path
    size: int
    sha256: str
    filename: str | None
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class _Receiver:
    def __init__(self, spool: IO[bytes], max_bytes: int) -> None:
        self.spool = spool
        self.max_bytes = max_bytes
        self.hasher = hashlib.sha256()
        self.size = 0
        self.files = 0
        self.filename: str | None = None
        self.fields: dict[str, str] = {}
        self._name: str | None = None
        self._value = bytearray()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._disposition = b""

    def on_part_begin(self) -> None:
        self._name, self._value, self._disposition = None, bytearray(), b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name")
        self._name = name.decode("utf-8", "replace") if name else None
        if self._name == FILE_FIELD:
            self.files += 1
            if self.files > 1:
                raise BadRequest("Send exactly one file in the 'file' field")
            filename = options.get(b"filename")
            self.filename = filename.decode("utf-8", "replace")[:255] if filename else None
        elif len(self.fields) >= _MAX_FIELDS:
            raise BadRequest("Too many form fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._name == FILE_FIELD:
            self.size += len(chunk)
            if self.size > self.max_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than the limit of {self.max_bytes} bytes"
                )
            self.hasher.update(chunk)
            self.spool.write(chunk)
            return
        self._value += chunk
        if len(self._value) > _MAX_FIELD_BYTES:
            raise PayloadTooLarge("A form field is too large")

    def on_part_end(self) -> None:
        if self._name and self._name != FILE_FIELD:
            self.fields[self._name] = self._value.decode("utf-8", "replace")


async def spool_model(
    content_type: str | None,
    content_length: str | None,
    body: AsyncIterator[bytes],
    *,
    max_bytes: int,
    spool_dir: str | None,
) -> SpooledModel:
    media_type, options = parse_options_header(content_type or "")
    if media_type != b"multipart/form-data" or b"boundary" not in options:
        raise NotMultipart("Upload the model as multipart/form-data in the field 'file'")
    declared = int(content_length) if content_length and content_length.isdigit() else None
    if declared is not None and declared > max_bytes + _MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"The upload is larger than the limit of {max_bytes} bytes")
    fd, name = tempfile.mkstemp(prefix="armillary-model-", suffix=".part", dir=spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as spool:
            receiver = _Receiver(spool, max_bytes)
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
            batch = bytearray()
            async for chunk in body:
                batch += chunk
                if len(batch) >= _BATCH_BYTES:
                    await asyncio.to_thread(parser.write, bytes(batch))
                    batch.clear()
            if batch:
                await asyncio.to_thread(parser.write, bytes(batch))
            parser.finalize()
        if receiver.files == 0:
            raise BadRequest("No file in the 'file' field")
        if receiver.size == 0:
            raise BadRequest("The file is empty")
        return SpooledModel(
            path, receiver.size, receiver.hasher.hexdigest(), receiver.filename, receiver.fields
        )
    except DomainError:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise
    except Exception as exc:
        await asyncio.to_thread(path.unlink, missing_ok=True)
        raise BadRequest("The multipart body is malformed") from exc
