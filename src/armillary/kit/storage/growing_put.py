"""A multipart put that follows a file while it is still being written, such as an upload's
spool file: parts reach the store while the rest of the request body is still arriving.

The file on disk is the buffer between the two: the writer never waits for the store, and the
put holds at most ``upload_concurrency`` parts in memory (see ``ObjectStore.put_stream``).
The upload completes only when the owner calls :meth:`GrowingFilePut.finish`;
:meth:`GrowingFilePut.abort` aborts the multipart upload, so a refused or broken upload leaves
no object and no pending parts.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Final

import structlog

from armillary.kit.storage.base import ObjectInfo, ObjectStore
from armillary.kit.storage.settings import MIB

log = structlog.get_logger("armillary.storage")

# Reads from the (page-cached) file; obstore gathers them into parts of ``part_size``.
_READ_BYTES: Final = 2 * MIB


class UploadAbandoned(Exception):
    """Raised into the put's byte stream so that obstore aborts the multipart upload."""


def _outcome_read(task: asyncio.Future[ObjectInfo]) -> None:
    if not task.cancelled():
        task.exception()


class _Verdict(enum.Enum):
    OPEN = "open"
    FINISH = "finish"
    ABORT = "abort"


class GrowingFilePut:
    """Puts ``path`` under ``key`` while the file grows; call :meth:`grew` as bytes land.

    Started on construction (inside a running event loop). Exactly one of :meth:`finish` or
    :meth:`abort` ends it; :meth:`abort` is also safe after :meth:`finish` (then it does
    nothing: the object is the caller's to delete).
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        path: Path,
        *,
        content_type: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        self.key = key
        self._path = path
        self._available = 0
        self._verdict = _Verdict.OPEN
        self._changed = asyncio.Event()
        self._task = asyncio.ensure_future(
            store.put_stream(key, self._chunks(), content_type=content_type, tags=tags)
        )
        # An abort whose caller was cancelled never reads the outcome: mark it read.
        self._task.add_done_callback(_outcome_read)

    def grew(self, size: int) -> None:
        """The file now holds at least ``size`` bytes, flushed so another handle reads them."""
        if size > self._available:
            self._available = size
            self._changed.set()

    async def finish(self, size: int) -> ObjectInfo:
        """The file is complete at ``size`` bytes: send the rest and complete the upload."""
        if self._verdict is not _Verdict.OPEN:
            raise RuntimeError(f"the put to {self.key} was already ended")
        self.grew(size)
        self._verdict = _Verdict.FINISH
        self._changed.set()
        return await self._task

    async def abort(self) -> None:
        """Abort the multipart upload, waiting until it is; never raises for the put itself.

        Shielded: a caller cancelled meanwhile still leaves the abort to run to its end.
        """
        if self._verdict is _Verdict.FINISH:
            return
        self._verdict = _Verdict.ABORT
        self._changed.set()
        try:
            await asyncio.shield(self._task)
        except UploadAbandoned:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            # The store failed on its own; obstore aborts on such errors too, and the bucket's
            # lifecycle rule removes any parts left by a crash.
            log.warning("pipelined_put_failed", key=self.key, exc_info=True)

    async def _chunks(self) -> AsyncIterator[bytes]:
        with await asyncio.to_thread(self._path.open, "rb") as handle:
            sent = 0
            while True:
                if self._verdict is _Verdict.ABORT:
                    raise UploadAbandoned(self.key)
                if sent < self._available:
                    want = min(_READ_BYTES, self._available - sent)
                    chunk = await asyncio.to_thread(handle.read, want)
                    if len(chunk) != want:
                        raise OSError(f"{self._path} is shorter than reported")
                    sent += want
                    yield chunk
                elif self._verdict is _Verdict.FINISH:
                    return
                else:
                    # No await between the checks above and this clear: no wake-up is lost.
                    self._changed.clear()
                    await self._changed.wait()
