"""The consumer process of the ``kill -9`` test: it takes a message, writes its effect in its
transaction, says so in a marker file and hangs before committing until it is killed.

Run as ``python -m tests.faults.crash_consumer DATABASE_URL RABBITMQ_URL CONSUMER MARKER``."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import Database
from armillary.kit.events import Delivery
from armillary.kit.settings import Settings
from tests.faults.event_nodes import PING, Node

EFFECT = text("INSERT INTO test_event_effects (event_id, consumer) VALUES (:id, :consumer)")


async def main(database_url: str, rabbitmq_url: str, consumer: str, marker: Path) -> None:
    settings = Settings(database_url=database_url, home=marker.parent)

    async def hang(session: AsyncSession, delivery: Delivery) -> None:
        await session.execute(EFFECT, {"id": delivery.id, "consumer": consumer})
        await session.flush()
        marker.write_text(f"handling {delivery.id}")
        await asyncio.sleep(3600)

    node = Node(Database.from_settings(settings, role="worker"), rabbitmq_url, delivery_limit=5)
    node.bus.subscribe(PING, consumer, hang)
    await node.start()
    marker.write_text("ready")
    await asyncio.sleep(3600)


if __name__ == "__main__":
    url, broker, name, path = sys.argv[1:5]
    asyncio.run(main(url, broker, name, Path(path)))
