"""Where task logs live and how they are written and read.

An attempt's output is a series of chunk objects,
``projects/{p}/jobs/{j}/{task}/log-{attempt:04d}-{seq:06d}.txt``: the worker writes a chunk
every ``log_flush_seconds`` or ``log_flush_bytes`` while the task runs, so the log can be read
(and followed) before the task ends, without rewriting an ever-growing object.
"""

from __future__ import annotations

import asyncio
import re
import uuid

from armillary.kit.redaction import redact_token_bytes
from armillary.kit.storage import ObjectInfo, ObjectStore
from armillary.kit.storage.keys import job_artifact_key, job_prefix

_CHUNK = re.compile(r"log-(\d{4})-(\d{6})\.txt$")
# A partial last line shorter than this waits for the rest of its line before it is stored, so
# a token split across two writes is still seen whole by the redaction (tokens are < 4 KiB).
_HOLD_PARTIAL_LINE_BYTES = 8192


def chunk_key(project_id: uuid.UUID, job_id: uuid.UUID, task: str, attempt: int, seq: int) -> str:
    return job_artifact_key(project_id, job_id, task, f"log-{attempt:04d}-{seq:06d}.txt")


def task_prefix(project_id: uuid.UUID, job_id: uuid.UUID, task: str) -> str:
    return f"{job_prefix(project_id, job_id)}/{task}"


class LogWriter:
    """Buffers an attempt's output and writes it as chunks; the last chunk on :meth:`close`."""

    def __init__(
        self,
        store: ObjectStore,
        project_id: uuid.UUID,
        job_id: uuid.UUID,
        task: str,
        attempt: int,
        *,
        flush_seconds: float,
        flush_bytes: int,
        max_bytes: int,
    ) -> None:
        self.store = store
        self.where = (project_id, job_id, task, attempt)
        self.flush_seconds = flush_seconds
        self.flush_bytes = flush_bytes
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        self._seq = 0
        self._written = 0
        self._truncated = False
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def write(self, data: bytes) -> None:
        if self._written + len(self._buffer) >= self.max_bytes:
            if not self._truncated:
                self._truncated = True
                self._buffer += b"\n[armillary] log truncated: the task wrote more than the limit\n"
            return
        self._buffer += data
        if len(self._buffer) >= self.flush_bytes:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_seconds)
        self._timer = None
        await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        async with self._lock:
            data = self._take(final)
            if not data:
                return
            # Tasks may print a token (their own, a leaked one): viewers read these logs.
            data = redact_token_bytes(data)
            project_id, job_id, task, attempt = self.where
            self._seq += 1
            await self.store.put_bytes(
                chunk_key(project_id, job_id, task, attempt, self._seq), data
            )
            self._written += len(data)

    def _take(self, final: bool) -> bytes:
        """The buffered output to store now: all of it at the end, else up to the last line
        end (a short partial line stays buffered, for the redaction to see it whole)."""
        cut = len(self._buffer)
        if not final:
            partial = len(self._buffer) - (self._buffer.rfind(b"\n") + 1)
            if partial < _HOLD_PARTIAL_LINE_BYTES:
                cut -= partial
        data = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        if self._buffer and self._timer is None and not final:
            self._timer = asyncio.create_task(self._flush_later())
        return data

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush(final=True)


async def chunks(
    store: ObjectStore, project_id: uuid.UUID, job_id: uuid.UUID, task: str, attempt: int
) -> list[ObjectInfo]:
    """The attempt's chunks (key and size), in order."""
    found = []
    async for info in store.list(task_prefix(project_id, job_id, task)):
        match = _CHUNK.search(info.key)
        if match and int(match.group(1)) == attempt:
            found.append((int(match.group(2)), info))
    return [info for _, info in sorted(found, key=lambda pair: pair[0])]
