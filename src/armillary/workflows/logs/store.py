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

from armillary.kit.storage import ObjectStore
from armillary.kit.storage.keys import job_artifact_key, job_prefix

_CHUNK = re.compile(r"log-(\d{4})-(\d{6})\.txt$")


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

    async def flush(self) -> None:
        async with self._lock:
            if not self._buffer:
                return
            data, self._buffer = bytes(self._buffer), bytearray()
            project_id, job_id, task, attempt = self.where
            self._seq += 1
            await self.store.put_bytes(
                chunk_key(project_id, job_id, task, attempt, self._seq), data
            )
            self._written += len(data)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.flush()


async def chunk_keys(
    store: ObjectStore, project_id: uuid.UUID, job_id: uuid.UUID, task: str, attempt: int
) -> list[str]:
    """The attempt's chunk keys, in order."""
    keys = []
    async for info in store.list(task_prefix(project_id, job_id, task)):
        match = _CHUNK.search(info.key)
        if match and int(match.group(1)) == attempt:
            keys.append((int(match.group(2)), info.key))
    return [key for _, key in sorted(keys)]
