"""A small JSON cache: Redis when configured, in process memory otherwise (embedded shape).

Answers in Redis decide who may do what (kit.authz), and anything that can reach Redis could
write them. So every value is stored with an HMAC-SHA256 under a key derived from the platform
secret, which Redis never holds, over the entry's name and bytes: a forged, altered or moved
entry is a miss (and a warning), never an answer.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ssl
import time
from pathlib import Path
from typing import Any, Protocol

import orjson
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from armillary.kit.metrics import CACHE_LOOKUPS, CACHE_UNAVAILABLE

log = structlog.get_logger(__name__)

_FORMAT = b"v1"
_MAC_HEX = 64


class Cache(Protocol):
    async def get(self, key: str) -> Any | None: ...
    async def get_many(self, keys: list[str]) -> list[Any | None]: ...
    async def set(self, key: str, value: Any, ttl: int) -> None: ...
    async def add(self, key: str, value: Any, ttl: int) -> bool: ...
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

    async def add(self, key: str, value: Any, ttl: int) -> bool:
        """Set ``key`` only if it holds nothing (or only an expired value)."""
        item = self._data.get(key)
        if item is not None and item[0] >= time.monotonic():
            return False
        await self.set(key, value, ttl)
        return True

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


class EntrySigner:
    """Seals cache entries as ``v1.<hex HMAC-SHA256(name, payload)>.<json>`` and opens them."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the cache signing key must have at least 256 bits")
        self._key = key

    def _mac(self, name: str, payload: bytes) -> bytes:
        # The name is part of the MAC, so a genuine entry copied under another key is refused.
        message = name.encode() + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).hexdigest().encode()

    def seal(self, name: str, value: Any) -> bytes:
        payload = orjson.dumps(value)
        return b".".join((_FORMAT, self._mac(name, payload), payload))

    def open(self, name: str, raw: bytes) -> Any | None:
        """The value of a genuine entry; None (logged) for a forged or malformed one."""
        version, _, rest = raw.partition(b".")
        mac, _, payload = rest.partition(b".")
        if (
            version != _FORMAT
            or len(mac) != _MAC_HEX
            or not hmac.compare_digest(mac, self._mac(name, payload))
        ):
            log.warning("cache.entry_rejected", key=name)
            return None
        return orjson.loads(payload)


# Connection trouble: Redis restarting, a pooled connection it closed, a timeout.
_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)


def redis_tls_options(url: str, ca_file: Path | None) -> dict[str, Any]:
    """``rediss://``: the certificate and host name verified against ``ca_file`` (or the
    system's CAs), TLS 1.2 at least."""
    if not url.startswith("rediss://"):
        return {}
    options: dict[str, Any] = {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_min_version": ssl.TLSVersion.TLSv1_2,
    }
    if ca_file is not None:
        options["ssl_ca_certs"] = str(ca_file)
    return options


def healing_client(url: str, ca_file: Path | None = None) -> Redis:
    """A client that survives a Redis restart: a pooled connection idle for a while is
    checked before use, a failed call is retried on a fresh connection (briefly, with
    backoff), and no call waits long for a Redis that is gone."""
    return Redis.from_url(
        url,
        **redis_tls_options(url, ca_file),
        health_check_interval=5,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


class RedisCache:
    """A cache over Redis that is only ever a cache: when Redis cannot be reached, a read
    is a miss (the caller asks the source of truth) and a write is skipped. An invalidation
    (delete) still fails loudly, so that whoever asked for it retries it."""

    def __init__(
        self,
        url: str,
        signer: EntrySigner,
        *,
        prefix: str = "armillary:",
        ca_file: Path | None = None,
    ) -> None:
        self._redis: Redis = healing_client(url, ca_file)
        self._signer = signer
        self._prefix = prefix

    def _open(self, key: str, raw: bytes | str | None) -> Any | None:
        if isinstance(raw, str):  # only with decode_responses, which this client never sets
            raw = raw.encode()
        value = None if raw is None else self._signer.open(self._prefix + key, raw)
        CACHE_LOOKUPS.labels("redis", "miss" if value is None else "hit").inc()
        return value

    async def get(self, key: str) -> Any | None:
        try:
            raw = await self._redis.get(self._prefix + key)
        except _UNAVAILABLE as exc:
            _unavailable("get", exc)
            raw = None
        return self._open(key, raw)

    async def get_many(self, keys: list[str]) -> list[Any | None]:
        """One round trip for several keys (MGET)."""
        try:
            raws = await self._redis.mget([self._prefix + k for k in keys])
        except _UNAVAILABLE as exc:
            _unavailable("get_many", exc)
            raws = [None] * len(keys)
        return [self._open(key, raw) for key, raw in zip(keys, raws, strict=True)]

    async def set(self, key: str, value: Any, ttl: int) -> None:
        name = self._prefix + key
        try:
            await self._redis.set(name, self._signer.seal(name, value), ex=ttl)
        except _UNAVAILABLE as exc:
            _unavailable("set", exc)

    async def add(self, key: str, value: Any, ttl: int) -> bool:
        """Set ``key`` only if it holds nothing (``SET NX``); False when it does or Redis is
        away."""
        name = self._prefix + key
        try:
            added = await self._redis.set(name, self._signer.seal(name, value), ex=ttl, nx=True)
        except _UNAVAILABLE as exc:
            _unavailable("add", exc)
            return False
        return bool(added)

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


def _unavailable(operation: str, exc: BaseException) -> None:
    # The type only: a message could carry the URL with its password.
    CACHE_UNAVAILABLE.labels(operation).inc()
    log.warning("cache.unavailable", operation=operation, error=type(exc).__name__)


def create_cache(
    redis_url: str | None, signing_key: bytes, *, ca_file: Path | None = None
) -> Cache:
    """Redis when ``redis_url`` is set, its entries MAC'd under ``signing_key``; else memory."""
    if not redis_url:
        return MemoryCache()
    return RedisCache(redis_url, EntrySigner(signing_key), ca_file=ca_file)
