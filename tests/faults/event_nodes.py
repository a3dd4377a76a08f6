"""One process's event bus on a RabbitMQ node, for tests that run several copies in one event
loop (each with its own database engine, transport and relay), and small waiting helpers."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from pydantic import BaseModel
from sqlalchemy import func, select

from armillary.kit.broker import BrokerConfig, RabbitTransport
from armillary.kit.db import Database
from armillary.kit.events import EventBus, OutboxEvent, publish

PING = "tests.broker.ping"


class Ping(BaseModel):
    n: int


class Node:
    """One process's bus on the broker (tests run several in one loop, as copies)."""

    def __init__(self, db: Database, url: str, *, delivery_limit: int = 3) -> None:
        self.db = db
        self.bus = EventBus(db)
        self.bus.attach()
        config = BrokerConfig(url=url, retry_delays=(0.2, 0.4), delivery_limit=delivery_limit)
        self.transport = RabbitTransport(self.bus, config)
        self.bus.transport = self.transport
        self.relay: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.transport.start()
        await asyncio.wait_for(self.transport.connected.wait(), 30)
        self.relay = asyncio.create_task(
            self.bus.run_relay(0.2, older_than=timedelta(milliseconds=100))
        )

    async def stop(self) -> None:
        if self.relay is not None:
            self.relay.cancel()
        await self.transport.stop()
        await self.db.dispose()

    async def emit(self, n: int) -> uuid.UUID:
        async with self.db.unit_of_work() as session:
            return publish(session, PING, Ping(n=n))


async def until(check: Callable[[], Awaitable[bool] | bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result if isinstance(result, bool) else await result:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def unpublished(db: Database) -> int:
    async with db.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    return int(count or 0)


async def unpublished_is(db: Database, count: int) -> bool:
    return await unpublished(db) == count
