"""The connection pool keeps what a burst opened (ADR 0035): concurrency up to the burst (twice
the pool size) opens connections once, not on every request past the pool size, and never
more than the burst (ADR 0025's budget)."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from armillary.kit.db import Database

POOL_SIZE = 2
BURST = 2 * POOL_SIZE


async def _burst(db: Database, callers: int) -> int:
    """``callers`` concurrent requests, each holding a connection until the pool is at its
    burst; returns the most connections held at once."""
    holding = 0
    most = 0
    full = asyncio.Event()

    async def request() -> None:
        nonlocal holding, most
        async with db.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
            holding += 1
            most = max(most, holding)
            if holding == BURST:
                full.set()
            await asyncio.wait_for(full.wait(), timeout=30)
            holding -= 1

    await asyncio.gather(*(request() for _ in range(callers)))
    return most


async def test_a_burst_opens_its_connections_once_and_keeps_them(pg_url: str) -> None:
    db = Database(pg_url, pool_size=POOL_SIZE)
    opened: list[Any] = []
    event.listen(db.engine.sync_engine, "connect", lambda conn, _record: opened.append(conn))
    try:
        for _ in range(3):
            # More callers than the burst: the last ones wait for a connection.
            assert await _burst(db, callers=BURST + 2) == BURST
        # Three bursts, one set of connections: none was closed at check-in and reopened.
        assert len(opened) == BURST
    finally:
        await db.engine.dispose()
