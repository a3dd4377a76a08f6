"""Micro-batching: concurrent single rows become few predict calls, and each caller still gets
its own row's answer (or the batch's exception)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import numpy as np
import pytest
from tests.unit.serving.runtime.conftest import Trained

from armillary.contracts.training import Signature
from armillary.serving.runtime import LoadedModel, MicroBatcher, Prediction, load_model

# Long enough that a window never closes on time in these tests: batches close on size, on
# the end of a running batch, or not at all; no assertion depends on the clock.
LONG_WAIT_MS = 60_000
# Requests gathered together all join the window in the same turn of the event loop, long
# before this passes; it only closes the last, partly filled window.
SHORT_WAIT_MS = 20


class Counting:
    """Wraps a model and records the row count of every predict call (from any thread)."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.key = model.key
        self.signature: Signature = model.signature
        self.format = model.format
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.fail: Exception | None = None

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        self.calls.append(rows.shape[0])
        if self.gate is not None:
            self.gate.wait(timeout=30)
        if self.fail is not None:
            raise self.fail
        return self.model.predict(rows)


async def _called(counting: Counting) -> None:
    while not counting.calls:
        await asyncio.sleep(0.001)


@pytest.fixture
def counting(iris_rf: Trained) -> Counting:
    assert iris_rf.onnx is not None
    return Counting(load_model("v1", iris_rf.onnx, "onnx", iris_rf.signature))


async def test_concurrent_single_rows_share_few_predict_calls(
    counting: Counting, iris_rf: Trained
) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(
        counting, max_batch_rows=64, max_wait_ms=SHORT_WAIT_MS, on_batch=sizes.append
    )
    x = iris_rf.x[:100]
    # Shuffled, so that answers could not line up with requests by accident.
    order = np.random.default_rng(1).permutation(100)
    answers = await asyncio.gather(*(batcher.predict(x[i : i + 1]) for i in order))
    assert counting.calls == [64, 36]
    assert sizes == [64, 36]
    direct = counting.model.predict(x)
    assert direct.probabilities is not None
    for i, answer in zip(order, answers, strict=True):
        assert answer.outputs == [direct.outputs[i]]
        assert answer.probabilities is not None
        assert answer.probabilities[0] == pytest.approx(direct.probabilities[i], abs=1e-6)


async def test_multi_row_requests_get_their_own_slices(
    counting: Counting, iris_rf: Trained
) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=10, max_wait_ms=LONG_WAIT_MS)
    x = iris_rf.x[[0, 50, 100, 1, 51, 101, 2, 52, 102, 3]]
    first, second, third = await asyncio.gather(
        batcher.predict(x[:3]), batcher.predict(x[3:5]), batcher.predict(x[5:10])
    )
    assert counting.calls == [10]
    direct = counting.model.predict(x).outputs
    assert first.outputs == direct[:3]
    assert second.outputs == direct[3:5]
    assert third.outputs == direct[5:10]


async def test_a_request_that_would_overflow_the_window_starts_a_new_one(
    counting: Counting, iris_rf: Trained
) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=4, max_wait_ms=LONG_WAIT_MS)
    x = iris_rf.x
    await asyncio.gather(batcher.predict(x[:3]), batcher.predict(x[3:5]), batcher.predict(x[5:7]))
    assert counting.calls == [3, 4]


async def test_an_exception_reaches_every_waiter_of_the_batch(
    counting: Counting, iris_rf: Trained
) -> None:
    counting.fail = RuntimeError("the model broke")
    batcher = MicroBatcher(counting, max_batch_rows=8, max_wait_ms=LONG_WAIT_MS)
    results = await asyncio.gather(
        *(batcher.predict(iris_rf.x[i : i + 1]) for i in range(8)), return_exceptions=True
    )
    assert counting.calls == [8]
    assert all(r is counting.fail for r in results)
    counting.fail = None
    assert len(await asyncio.gather(*(batcher.predict(iris_rf.x[:1]) for _ in range(8)))) == 8


async def test_zero_wait_turns_batching_off(counting: Counting, iris_rf: Trained) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=64, max_wait_ms=0)
    answers = await asyncio.gather(*(batcher.predict(iris_rf.x[i : i + 1]) for i in range(20)))
    assert counting.calls == [1] * 20
    assert [a.outputs[0] for a in answers] == counting.model.predict(iris_rf.x[:20]).outputs


async def test_large_requests_run_alone(counting: Counting, iris_rf: Trained) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=8, max_wait_ms=LONG_WAIT_MS)
    answer = await batcher.predict(iris_rf.x[:20])
    assert counting.calls == [20]
    assert answer.outputs == counting.model.predict(iris_rf.x[:20]).outputs


async def test_the_window_closes_after_max_wait(counting: Counting, iris_rf: Trained) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=64, max_wait_ms=SHORT_WAIT_MS)
    answers = await asyncio.gather(*(batcher.predict(iris_rf.x[i : i + 1]) for i in range(5)))
    assert counting.calls == [5]
    assert len(answers) == 5


async def test_when_idle_a_request_runs_at_once_and_others_batch_behind_it(
    counting: Counting, iris_rf: Trained
) -> None:
    counting.gate = threading.Event()
    batcher = MicroBatcher(
        counting, max_batch_rows=64, max_wait_ms=LONG_WAIT_MS, flush_when_idle=True
    )
    first = asyncio.ensure_future(batcher.predict(iris_rf.x[:1]))
    # The first request runs without waiting for its window (which would take a minute).
    await asyncio.wait_for(_called(counting), timeout=10)
    rest = [asyncio.ensure_future(batcher.predict(iris_rf.x[i : i + 1])) for i in range(1, 11)]
    await asyncio.sleep(0)
    assert counting.calls == [1]
    counting.gate.set()
    answers = await asyncio.gather(first, *rest)
    assert counting.calls == [1, 10]
    assert [a.outputs[0] for a in answers] == counting.model.predict(iris_rf.x[:11]).outputs


async def test_a_cancelled_waiter_leaves_the_others_answered(
    counting: Counting, iris_rf: Trained
) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=3, max_wait_ms=LONG_WAIT_MS)
    gone = asyncio.ensure_future(batcher.predict(iris_rf.x[:1]))
    await asyncio.sleep(0)
    gone.cancel()
    answers = await asyncio.gather(batcher.predict(iris_rf.x[1:2]), batcher.predict(iris_rf.x[2:3]))
    assert counting.calls == [3]
    assert [a.outputs[0] for a in answers] == counting.model.predict(iris_rf.x[1:3]).outputs


async def test_tiny_batches_can_run_inline(counting: Counting, iris_rf: Trained) -> None:
    batcher = MicroBatcher(counting, max_batch_rows=64, max_wait_ms=0, inline_max_rows=1)
    thread = threading.get_ident()
    seen: list[int] = []
    original = counting.predict

    def predict(rows: np.ndarray[Any, Any]) -> Prediction:
        seen.append(threading.get_ident())
        return original(rows)

    counting.predict = predict  # type: ignore[method-assign]
    await batcher.predict(iris_rf.x[:1])
    await batcher.predict(iris_rf.x[:2])
    assert seen[0] == thread
    assert seen[1] != thread


async def test_a_model_measured_fast_runs_inline_and_a_slow_one_stays_on_a_thread(
    counting: Counting, iris_rf: Trained
) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []
    original = counting.predict
    spin_seconds = 0.0

    def predict(rows: np.ndarray[Any, Any]) -> Prediction:
        seen.append(threading.get_ident())
        deadline = time.thread_time() + spin_seconds
        while time.thread_time() < deadline:  # CPU, as a slow model's call would use
            pass
        return original(rows)

    counting.predict = predict  # type: ignore[method-assign]
    fast = MicroBatcher(
        counting, max_batch_rows=64, max_wait_ms=0, inline_max_rows=4, inline_max_ms=5.0
    )
    for _ in range(3):
        await fast.predict(iris_rf.x[:1])
    await fast.predict(iris_rf.x[:8])  # over inline_max_rows: a thread whatever its cost
    # Unmeasured, the first call goes to a thread; measured fast, the next ones run inline.
    assert seen[0] != loop_thread
    assert seen[1:3] == [loop_thread, loop_thread]
    assert seen[3] != loop_thread

    seen.clear()
    spin_seconds = 0.003
    slow = MicroBatcher(
        counting, max_batch_rows=64, max_wait_ms=0, inline_max_rows=4, inline_max_ms=1.0
    )
    for _ in range(3):
        await slow.predict(iris_rf.x[:1])
    assert loop_thread not in seen
