"""Micro-batching: concurrent small requests to one model run as one ``predict`` call.

The first request opens a window; the window closes after ``max_wait_ms`` or as soon as it
holds ``max_batch_rows`` rows. The batch's rows are concatenated, predicted once in a worker
thread and the outputs split back to each waiter in order. With ``flush_when_idle`` a request
that finds no batch of this model running starts one at once (no added latency at low load),
and the window then closes when the running batch finishes, if that comes first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from armillary.kit.lazy_import import lazy

from .model import LoadedModel, Prediction

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

_Waiter = tuple["np.ndarray[Any, Any]", "asyncio.Future[Prediction]"]


class MicroBatcher:
    """Batches ``predict`` calls to one model. ``max_wait_ms <= 0`` turns batching off.
    ``on_batch`` is called with the row count of every ``predict`` run (for metrics).
    Requests of ``max_batch_rows`` rows or more run on their own, never delayed."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_batch_rows: int,
        max_wait_ms: float,
        on_batch: Callable[[int], None] | None = None,
        flush_when_idle: bool = False,
        inline_max_rows: int = 0,
        inline_max_ms: float | None = None,
    ) -> None:
        if max_batch_rows < 1:
            raise ValueError("max_batch_rows must be at least 1")
        self.model = model
        self.max_batch_rows = max_batch_rows
        self.max_wait = max(0.0, max_wait_ms) / 1000
        self.on_batch = on_batch
        self.flush_when_idle = flush_when_idle
        # Batches this small run on the event loop: a thread hop costs more than a tiny
        # ONNX call. With ``inline_max_ms``, only while this model's small batches are
        # measured to take no longer (CPU time of the calling thread, so that waiting for
        # the GIL does not count): a slow model never blocks the loop for long.
        self.inline_max_rows = inline_max_rows
        self.inline_max_seconds = None if inline_max_ms is None else inline_max_ms / 1000
        self._small_cost: float | None = None  # moving average, seconds
        self._pending: list[_Waiter] = []
        self._pending_rows = 0
        self._timer: asyncio.TimerHandle | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        """The model's prediction for ``rows``, possibly computed with others' rows."""
        n = rows.shape[0]
        if self.max_wait <= 0 or n >= self.max_batch_rows:
            return await self._run_alone(rows)
        if self._pending_rows + n > self.max_batch_rows:
            self._flush()
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        self._pending_rows += n
        if self._pending_rows >= self.max_batch_rows or (
            self.flush_when_idle and not self._running
        ):
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._flush)
        return await future

    async def _run_alone(self, rows: np.ndarray[Any, Any]) -> Prediction:
        if self.on_batch is not None:
            self.on_batch(rows.shape[0])
        if rows.shape[0] > self.inline_max_rows:
            return await asyncio.to_thread(self.model.predict, rows)
        if self.inline_max_seconds is None:
            return self.model.predict(rows)
        if self._small_cost is not None and self._small_cost <= self.inline_max_seconds:
            return self._measured(rows)
        return await asyncio.to_thread(self._measured, rows)

    def _measured(self, rows: np.ndarray[Any, Any]) -> Prediction:
        started = time.thread_time()
        try:
            return self.model.predict(rows)
        finally:
            took = time.thread_time() - started
            cost = self._small_cost
            self._small_cost = took if cost is None else 0.8 * cost + 0.2 * took

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._pending:
            return
        batch, self._pending, self._pending_rows = self._pending, [], 0
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self.flush_when_idle and not self._running and self._pending:
            self._flush()

    async def _run(self, batch: list[_Waiter]) -> None:
        blocks = [rows for rows, _ in batch]
        stacked = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
        try:
            prediction = await self._run_alone(stacked)
        except asyncio.CancelledError:  # shutting down: nobody gets an answer
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # every waiter of the batch fails with it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for rows, future in batch:
            end = start + rows.shape[0]
            if not future.done():  # a waiter that was cancelled meanwhile
                probabilities = prediction.probabilities
                future.set_result(
                    Prediction(
                        prediction.outputs[start:end],
                        probabilities[start:end] if probabilities is not None else None,
                    )
                )
            start = end
