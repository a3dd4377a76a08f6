"""One Redis round trip per rate-limited request (issue 18, item 1).

The ``limits`` library counts a request with one script and reads the window (for the
``X-RateLimit-Remaining`` and ``Retry-After`` headers) with a second one: two round trips on
every request. :class:`SlidingWindowInOneTrip` does both in one script, on the library's own
keys and with its arithmetic, so every other path (a service's budgets, login throttling,
clearing) still reads and writes the same counters through the library.

Only the sliding-window counter (the default strategy) on Redis takes this path; the other
strategies and the in-memory store (no round trip to save) keep the library's two calls.
"""

from __future__ import annotations

import math
import time
from typing import Any, cast

from limits import RateLimitItem
from limits.aio.storage import RedisStorage, Storage
from limits.aio.storage.redis.redispy import RedispyBridge
from limits.util import WindowStats

# The library's acquire_sliding_window.lua, returning the window it leaves instead of only
# whether it counted. Time is in milliseconds here (TTLs, expiry).
_ACQUIRE_AND_READ = """
local limit = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2]) * 1000
local amount = tonumber(ARGV[3])

local current_ttl = tonumber(redis.call('pttl', KEYS[2]))
if current_ttl > 0 and current_ttl < expiry then
    -- The current window has ended: it becomes the previous one.
    redis.call('rename', KEYS[2], KEYS[1])
    redis.call('set', KEYS[2], 0, 'PX', current_ttl + expiry)
end

local previous_count = tonumber(redis.call('get', KEYS[1])) or 0
local previous_ttl = math.max(tonumber(redis.call('pttl', KEYS[1])) or 0, 0)
local current_count = tonumber(redis.call('get', KEYS[2])) or 0
current_ttl = math.max(tonumber(redis.call('pttl', KEYS[2])) or 0, 0)
if previous_count == 0 then previous_ttl = 0 end

local weighted = math.floor(previous_count * previous_ttl / expiry) + current_count
local acquired = 0
if amount <= limit and weighted + amount <= limit then
    acquired = 1
    if redis.call('exists', KEYS[2]) == 1 then
        redis.call('incrby', KEYS[2], amount)
    else
        redis.call('set', KEYS[2], amount, 'PX', expiry * 2)
        current_ttl = expiry * 2
    end
    current_count = current_count + amount
end
return {acquired, previous_count, previous_ttl, current_count, current_ttl}
"""


class SlidingWindowInOneTrip:
    """Counts one request against a sliding-window-counter limit and reads what remains of
    the window, in one Redis call, with the ``limits`` library's keys and arithmetic."""

    def __init__(self, storage: RedisStorage) -> None:
        self._storage = storage
        self._bridge = cast(RedispyBridge, storage.bridge)
        self._script = self._bridge.get_connection().register_script(_ACQUIRE_AND_READ.encode())

    @classmethod
    def for_storage(cls, storage: Storage, strategy: str) -> SlidingWindowInOneTrip | None:
        """The one-trip counter when ``storage`` and ``strategy`` allow it, else None."""
        redis_py = isinstance(storage, RedisStorage) and isinstance(storage.bridge, RedispyBridge)
        if strategy != "sliding-window-counter" or not redis_py:
            return None
        return cls(cast(RedisStorage, storage))

    async def hit(self, item: RateLimitItem, *identifiers: str) -> tuple[bool, WindowStats]:
        key = item.key_for(*identifiers)
        keys = [
            self._bridge.prefixed_key(self._storage._previous_window_key(key)),
            self._bridge.prefixed_key(self._storage._current_window_key(key)),
        ]
        expiry = item.get_expiry()
        result: list[Any] = await self._script(keys, [item.amount, expiry, 1])
        acquired, previous_count, previous_ttl_ms, current_count, current_ttl_ms = result
        return bool(acquired), _stats(
            item,
            int(previous_count),
            previous_ttl_ms / 1000,
            int(current_count),
            current_ttl_ms / 1000,
        )


def _stats(
    item: RateLimitItem,
    previous_count: int,
    previous_expires_in: float,
    current_count: int,
    current_expires_in: float,
) -> WindowStats:
    """``SlidingWindowCounterRateLimiter.get_window_stats``' arithmetic on the counters."""
    expiry = item.get_expiry()
    weighted = previous_count * previous_expires_in / expiry + current_count
    remaining = max(0, item.amount - math.floor(weighted))
    now = time.time()
    if not (previous_count or current_count):
        return WindowStats(now, remaining)
    previous_reset_in = current_reset_in = math.inf
    if previous_count:
        previous_reset_in = previous_expires_in % (expiry / previous_count)
    if current_count:
        current_reset_in = current_expires_in % expiry
    return WindowStats(now + min(previous_reset_in, current_reset_in), remaining)
