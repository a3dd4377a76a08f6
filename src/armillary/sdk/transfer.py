"""Moving file bytes: a multipart body streamed from disk, and a verified download to disk.

Neither holds a file in memory: both move it in chunks of :data:`CHUNK_SIZE`.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from .errors import ChecksumMismatch
from .types import Progress

CHUNK_SIZE = 1024 * 1024


def _quote(value: str) -> str:
    # A quoted-string for Content-Disposition: escape the quote and backslash, and percent-
    # encode line breaks and other controls, which would otherwise end the header.
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or char == "\x7f":
            out.append(f"%{ord(char):02X}")
        else:
            out.append(char)
    return "".join(out)


class MultipartFile:
    """A ``multipart/form-data`` body: small text ``fields``, then one file read from disk.

    Its length is known up front (so it is sent with ``Content-Length``, not chunked), and
    each iteration reads the file again from the start, calling ``progress(sent, total)``
    after every chunk of the file.
    """

    def __init__(
        self,
        path: Path,
        fields: Mapping[str, str],
        *,
        file_field: str = "file",
        filename: str | None = None,
        content_type: str = "application/octet-stream",
        progress: Progress | None = None,
    ) -> None:
        self.path = path
        self.size = path.stat().st_size
        self.progress = progress
        boundary = secrets.token_hex(16)
        self.content_type = f"multipart/form-data; boundary={boundary}"
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
            f"{value}\r\n"
            for name, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quote(file_field)}"; '
            f'filename="{_quote(filename or path.name)}"\r\nContent-Type: {content_type}\r\n\r\n'
        )
        self._head = "".join(parts).encode("utf-8")
        self._tail = f"\r\n--{boundary}--\r\n".encode("ascii")

    @property
    def content_length(self) -> int:
        """Bytes of the whole body."""
        return len(self._head) + self.size + len(self._tail)

    @property
    def headers(self) -> dict[str, str]:
        """``Content-Type`` (with the boundary) and ``Content-Length`` of the body."""
        return {"Content-Type": self.content_type, "Content-Length": str(self.content_length)}

    def __iter__(self) -> Iterator[bytes]:
        yield self._head
        sent = 0
        if self.progress is not None:
            self.progress(0, self.size)
        with self.path.open("rb") as file:
            while chunk := file.read(CHUNK_SIZE):
                sent += len(chunk)
                yield chunk
                if self.progress is not None:
                    self.progress(sent, self.size)
        if sent != self.size:
            # Sending fewer or more bytes than Content-Length announced would corrupt the body.
            raise OSError(f"{self.path} changed size while being uploaded")
        yield self._tail


def write_verified(
    chunks: Iterable[bytes],
    dest: Path,
    *,
    size: int,
    sha256: str,
    progress: Progress | None = None,
) -> None:
    """Write ``chunks`` to ``dest`` only if they add up to ``size`` bytes with digest ``sha256``.

    Bytes go to a temporary file beside ``dest`` that replaces it at the end, so a failed or
    mismatched download leaves no partial file and never clobbers an existing one.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.part")
    digest = hashlib.sha256()
    received = 0
    try:
        with partial.open("xb") as file:
            if progress is not None:
                progress(0, size)
            for chunk in chunks:
                file.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, size)
        if received != size:
            raise ChecksumMismatch(f"Received {received} bytes, expected {size}")
        if digest.hexdigest() != sha256:
            raise ChecksumMismatch(
                f"SHA-256 of the received bytes is {digest.hexdigest()}, expected {sha256}"
            )
        os.replace(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
