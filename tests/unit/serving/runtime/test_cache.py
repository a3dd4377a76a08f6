"""The model cache: one load per key however many ask at once, least recently used evicted."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from armillary.contracts.training import Signature
from armillary.serving.runtime import LoadedModel, ModelCache, Prediction

SIGNATURE = Signature.model_validate(
    {
        "inputs": [{"name": "a", "dtype": "Float64"}],
        "target": {"name": "y", "dtype": "Float64"},
        "problem": "regression",
    }
)


class Constant:
    """A model that answers its key's length for every row."""

    format = "onnx"
    signature = SIGNATURE

    def __init__(self, key: str) -> None:
        self.key = key

    def predict(self, rows: np.ndarray[Any, Any]) -> Prediction:
        return Prediction([float(len(self.key))] * rows.shape[0], None)


class Loader:
    """Counts loads per key; each load yields to the loop a few times (like a thread hop)."""

    def __init__(self, fail: bool = False) -> None:
        self.loads: Counter[str] = Counter()
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()

    def __call__(self, key: str) -> Callable[[], Awaitable[LoadedModel]]:
        async def load() -> LoadedModel:
            self.loads[key] += 1
            await self.release.wait()
            for _ in range(5):
                await asyncio.sleep(0)
            if self.fail:
                raise RuntimeError(f"cannot load {key}")
            return Constant(key)

        return load


async def test_fifty_concurrent_gets_load_once() -> None:
    cache = ModelCache()
    loader = Loader()
    models = await asyncio.gather(*(cache.get("v1", loader("v1")) for _ in range(50)))
    assert loader.loads == {"v1": 1}
    assert all(m is models[0] for m in models)
    assert await cache.get("v1", loader("v1")) is models[0]
    assert loader.loads == {"v1": 1}


async def test_the_least_recently_used_model_is_evicted() -> None:
    cache = ModelCache(max_models=2)
    loader = Loader()
    a = await cache.get("a", loader("a"))
    await cache.get("b", loader("b"))
    assert await cache.get("a", loader("a")) is a  # a is now the most recently used
    await cache.get("c", loader("c"))
    assert cache.keys() == ["a", "c"]
    assert "b" not in cache
    assert len(cache) == 2
    await cache.get("b", loader("b"))
    assert loader.loads == {"a": 1, "b": 2, "c": 1}
    assert cache.keys() == ["c", "b"]


async def test_every_concurrent_waiter_sees_a_failed_load_and_the_next_get_retries() -> None:
    cache = ModelCache()
    loader = Loader(fail=True)
    results = await asyncio.gather(
        *(cache.get("v1", loader("v1")) for _ in range(10)), return_exceptions=True
    )
    assert loader.loads == {"v1": 1}
    assert all(isinstance(r, RuntimeError) and str(r) == "cannot load v1" for r in results)
    assert "v1" not in cache
    loader.fail = False
    assert (await cache.get("v1", loader("v1"))).key == "v1"
    assert loader.loads == {"v1": 2}


async def test_evict_forces_a_reload() -> None:
    cache = ModelCache()
    loader = Loader()
    first = await cache.get("v1", loader("v1"))
    cache.evict("v1")
    cache.evict("never-loaded")
    second = await cache.get("v1", loader("v1"))
    assert second is not first
    assert loader.loads == {"v1": 2}


async def test_a_cancelled_caller_does_not_cancel_the_load_others_wait_for() -> None:
    cache = ModelCache()
    loader = Loader()
    loader.release.clear()
    impatient = asyncio.ensure_future(cache.get("v1", loader("v1")))
    patient = asyncio.ensure_future(cache.get("v1", loader("v1")))
    await asyncio.sleep(0)
    impatient.cancel()
    loader.release.set()
    model = await patient
    assert impatient.cancelled()
    assert model.key == "v1"
    assert "v1" in cache
    assert loader.loads == {"v1": 1}


async def test_a_model_evicted_while_loading_answers_its_waiters_but_is_not_kept() -> None:
    cache = ModelCache()
    loader = Loader()
    loader.release.clear()
    waiting = asyncio.ensure_future(cache.get("v1", loader("v1")))
    await asyncio.sleep(0)
    cache.evict("v1")
    loader.release.set()
    assert (await waiting).key == "v1"
    assert "v1" not in cache


def test_the_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ModelCache(max_models=0)
