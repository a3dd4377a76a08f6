"""Starts a dataset version's put while its body is still arriving.

Once the file part has passed the store's multipart threshold, the put to the version's own
key (``datasets/{dataset_id}/{version_id}.{ext}``, ADR 0010) follows the spool file as it
grows (:class:`~armillary.kit.storage.growing_put.GrowingFilePut`). The key needs the format,
so the put starts only when the format can already be told: the ``format`` field if it came
before the file, else the file name, else the file's first bytes. The upload completes only
after the hash, the dedup and the format check have accepted the file; anything else aborts
the multipart upload, so a refused or broken upload stores nothing. The key holds the
version's fresh id: no other request writes or deletes it. The profiler child that makes the
check starts with the put, so its start-up also overlaps the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

from armillary.kit.db import new_id
from armillary.kit.errors import DomainError
from armillary.kit.multipart import SpoolProgress
from armillary.kit.storage import ObjectClass, ObjectStore, class_tags, dataset_object_key
from armillary.kit.storage.growing_put import GrowingFilePut

from ..profiling.runner import ProfilerProcess
from .formats import CONTENT_TYPES, format_of
from .schemas import DatasetFormat


class PipelinedPut:
    """Listens to the spool's progress (:meth:`on_progress`) and runs the put it starts."""

    def __init__(
        self,
        store: ObjectStore,
        project_id: uuid.UUID,
        dataset_id: uuid.UUID,
        *,
        threshold: int,
        start_profiler: Callable[[], Awaitable[ProfilerProcess]],
    ) -> None:
        self.version_id = new_id()
        self._start_profiler = start_profiler
        self._profiler: asyncio.Future[ProfilerProcess] | None = None
        self._store = store
        self._project_id = project_id
        self._dataset_id = dataset_id
        self._threshold = threshold
        self._declined = not store.pipelines_puts
        self._format: DatasetFormat | None = None
        self._put: GrowingFilePut | None = None

    @property
    def started(self) -> bool:
        return self._put is not None

    def on_progress(self, progress: SpoolProgress) -> None:
        if self._put is None:
            if self._declined or progress.size < self._threshold:
                return
            try:
                fmt = format_of(progress.fields.get("format"), progress.filename, progress.head)
            except DomainError:
                # Refused once the body is in, with the whole answer; nothing to send.
                self._declined = True
                return
            self._format = fmt
            self._put = GrowingFilePut(
                self._store,
                dataset_object_key(self._project_id, self._dataset_id, self.version_id, fmt.value),
                progress.path,
                content_type=CONTENT_TYPES[fmt],
                tags=class_tags(ObjectClass.RAW),
            )
            self._profiler = asyncio.ensure_future(self._start_profiler())
        self._put.grew(progress.size)

    async def claim(self, dataset_id: uuid.UUID, fmt: DatasetFormat) -> GrowingFilePut | None:
        """The running put, if it goes where the version with this dataset and format is
        stored; otherwise ``None``, and a put that went elsewhere (a ``format`` field sent
        after the file that overrode the name) is aborted."""
        if self._put is None:
            return None
        if dataset_id == self._dataset_id and fmt is self._format:
            return self._put
        await self.abort()
        return None

    async def take_profiler(self) -> ProfilerProcess | None:
        """The profiler child started with the put, ready for its arguments; ``None`` if none
        was started or it failed to start (the caller starts its own)."""
        if self._profiler is None:
            return None
        starting, self._profiler = self._profiler, None
        try:
            return await starting
        except Exception:
            return None

    async def abort(self) -> None:
        """Abort the put unless it completed, and end a profiler child nobody took; no-op
        when none started."""
        if self._put is not None:
            await self._put.abort()
        unused = await self.take_profiler()
        if unused is not None:
            with contextlib.suppress(Exception):
                await unused.discard()
