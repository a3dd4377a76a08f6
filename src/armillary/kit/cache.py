"""A small JSON cache: Redis when configured, in process memory otherwise (embedded shape)."""

from __future__ import annotations

import fnmatch
import time
from typing import Any, Protocol

import orjson
from redis.asyncio import Redis

from armillary.kit.metrics import CACHE_LOOKUPS


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...
    async def get_many(self, keys: list[str]) -> list[Any | None]: ...
    async def set(self, key: str, value: Any, ttl: int) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def delete_pattern(self, pattern: str) -> None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryCache:
    """Per-process cache with expiry; enough for the single-process embedded shape."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[float, Any]] = {}

    async def get(self, key: str) -> Any | None:
        item = self._data.get(key)
        if item is None or item[0] < time.monotonic():
            self._data.pop(key, None)
            CACHE_LOOKUPS.labels("memory", "miss").inc()
            return None
        CACHE_LOOKUPS.labels("memory", "hit").inc()
        return item[1]

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        return [await self.get(key) for key in keys]

    async def set(self, key: str, value: Any, ttl: int) -> None:
        self._data[key] = (time.monotonic() + ttl, value)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def delete_pattern(self, pattern: str) -> None:
        for key in [k for k in self._data if fnmatch.fnmatchcase(k, pattern)]:
            self._data.pop(key, None)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    def __init__(self, url: str, *, prefix: str = "armillary:") -> None:
        self._redis: Redis = Redis.from_url(url)
        self._prefix = prefix

    async def get(self, key: str) -> Any | None:
        raw = await self._redis.get(self._prefix + key)
        CACHE_LOOKUPS.labels("redis", "miss" if raw is None else "hit").inc()
        return None if raw is None else orjson.loads(raw)

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """One round trip for several keys (MGET)."""
        raws = await self._redis.mget([self._prefix + k for k in keys])
        for raw in raws:
            CACHE_LOOKUPS.labels("redis", "miss" if raw is None else "hit").inc()
        return [None if raw is None else orjson.loads(raw) for raw in raws]

    async def set(self, key: str, value: Any, ttl: int) -> None:
        await self._redis.set(self._prefix + key, orjson.dumps(value), ex=ttl)

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._redis.delete(*(self._prefix + k for k in keys))

    async def delete_pattern(self, pattern: str) -> None:
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=self._prefix + pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                await self._redis.delete(*batch)
                batch.clear()
        if batch:
            await self._redis.delete(*batch)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


def create_cache(redis_url: str | None) -> Cache:
    return RedisCache(redis_url) if redis_url else MemoryCache()
