"""The process's loaded models, by model version id: each loaded once, least recently used
evicted beyond a limit."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from .model import LoadedModel


class ModelCache:
    """Concurrent :meth:`get` calls for one key share a single load (single flight): they all
    get its model, or all its exception; the next ``get`` after a failure tries again. A
    cancelled caller does not cancel the load the others wait for."""

    def __init__(self, max_models: int = 32) -> None:
        if max_models < 1:
            raise ValueError("max_models must be at least 1")
        self.max_models = max_models
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}

    def __contains__(self, key: object) -> bool:
        return key in self._models

    def __len__(self) -> int:
        return len(self._models)

    def keys(self) -> list[str]:
        """The cached keys, least recently used first."""
        return list(self._models)

    async def get(self, key: str, load: Callable[[], Awaitable[LoadedModel]]) -> LoadedModel:
        """The model of ``key``, loading it with ``load`` if it is not cached yet."""
        model = self._models.get(key)
        if model is not None:
            self._models.move_to_end(key)
            return model
        task = self._loading.get(key)
        if task is None:
            task = asyncio.ensure_future(load())
            self._loading[key] = task
            task.add_done_callback(lambda done: self._loaded(key, done))
        return await asyncio.shield(task)

    def _loaded(self, key: str, task: asyncio.Task[LoadedModel]) -> None:
        if self._loading.get(key) is not task:
            return  # evicted while loading: the waiters get it, the cache does not keep it
        del self._loading[key]
        if task.cancelled() or task.exception() is not None:
            return  # the waiters see the exception; retrieving it here keeps asyncio quiet
        self._models[key] = task.result()
        self._models.move_to_end(key)
        while len(self._models) > self.max_models:
            self._models.popitem(last=False)

    def evict(self, key: str) -> None:
        """Forget ``key`` (a load in flight still answers its waiters but is not kept)."""
        self._models.pop(key, None)
        task = self._loading.pop(key, None)
        if task is not None and task.done() and not task.cancelled():
            task.exception()
