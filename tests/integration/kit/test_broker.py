"""Events over RabbitMQ (ADR 0020) on a private node and the real PostgreSQL: the relay marks a
row published only once confirmed, each consumer applies each event once (redeliveries
included), a failing event climbs the retry ladder into the dead letters and replay brings
it back, a broker outage loses nothing, and broadcasts reach every process."""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import make_settings
from tests.faults.event_nodes import PING, Node, unpublished, unpublished_is, until
from tests.faults.private_rabbitmq import PrivateRabbit, private_rabbitmq
from typer.testing import CliRunner

from armillary.cli.main import app as cli_app
from armillary.kit.broker import (
    DEAD_LETTERS,
    EXCHANGE,
    BrokerConfig,
    consumer_queue,
    declare_consumer,
    declare_core,
    delay_queue,
    event_message,
)
from armillary.kit.db import Database
from armillary.kit.dead_letters import list_dead_letters, replay
from armillary.kit.events import Delivery, ProcessedEvent


@pytest.fixture(scope="module")
def rabbit() -> Iterator[PrivateRabbit]:
    server = private_rabbitmq()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def make_db(clean_pg: str, tmp_path: Path) -> Iterator[Callable[[], Database]]:
    made: list[Database] = []

    def factory() -> Database:
        settings = make_settings(tmp_path / "home", database_url=clean_pg)
        made.append(Database.from_settings(settings, role="api"))
        return made[-1]

    yield factory


@pytest.fixture
async def nodes(
    rabbit: PrivateRabbit, make_db: Callable[[], Database]
) -> AsyncIterator[Callable[[], Node]]:
    made: list[Node] = []

    def factory() -> Node:
        made.append(Node(make_db(), rabbit.url))
        return made[-1]

    yield factory
    for node in made:
        await node.stop()


class Recorder:
    def __init__(self) -> None:
        self.handled: list[uuid.UUID] = []
        self.calls = 0
        self.broken = False

    async def __call__(self, _session: AsyncSession, delivery: Delivery) -> None:
        self.calls += 1
        if self.broken:
            raise RuntimeError("poison")
        self.handled.append(delivery.id)


def gauge(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def cli(*args: str) -> str:
    # In a thread: the command runs its own event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli_app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def consumer_name() -> str:
    return f"tests.c{uuid.uuid4().hex[:8]}"


async def test_topology_is_durable_quorum_with_a_retry_ladder(
    nodes: Callable[[], Node], rabbit: PrivateRabbit
) -> None:
    node, name = nodes(), consumer_name()
    node.bus.subscribe(PING, name, Recorder())
    await node.start()
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        # Passive declarations fail (closing the channel) when a queue is missing.
        for queue in [consumer_queue(name), delay_queue(name, 0), delay_queue(name, 1)]:
            await channel.declare_queue(queue, passive=True)
        await channel.declare_queue(DEAD_LETTERS, passive=True)
        with pytest.raises(aio_pika.exceptions.ChannelNotFoundEntity):
            await channel.declare_queue(delay_queue(name, 2), passive=True)
        # Re-declaring with other arguments is refused: the queues are quorum queues.
        channel = await connection.channel()
        with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
            await channel.declare_queue(consumer_queue(name), durable=True)


async def test_each_event_is_applied_once_and_marked_published_after_its_confirm(
    nodes: Callable[[], Node],
) -> None:
    node, name, recorder = nodes(), consumer_name(), Recorder()
    # Serial: prefetch 1, so the messages are handled in the order they were sent.
    node.bus.subscribe(PING, name, recorder, serial=True)
    await node.start()
    ids = [await node.emit(n) for n in range(20)]
    await until(lambda: len(recorder.handled) == 20)
    await until(lambda: unpublished_is(node.db, 0))
    # The same events again (a relay that crashed before marking them): no second effect.
    rows = await node.bus.load(ids)
    assert len(await node.transport.publish(rows)) == 20
    sentinel = await node.emit(99)
    await until(lambda: sentinel in recorder.handled)
    assert sorted(recorder.handled) == sorted([*ids, sentinel])
    async with node.db.sessionmaker() as session:
        records = await session.scalar(
            select(func.count()).select_from(ProcessedEvent).where(ProcessedEvent.consumer == name)
        )
    assert records == 21


async def test_a_poison_event_is_dead_lettered_after_its_retries_and_replayed_once_fixed(
    nodes: Callable[[], Node], rabbit: PrivateRabbit
) -> None:
    node, name, recorder = nodes(), consumer_name(), Recorder()
    node.bus.subscribe(PING, name, recorder)
    recorder.broken = True
    await node.start()
    event_id = await node.emit(1)

    async def dead() -> bool:
        return any(d.event_id == str(event_id) for d in await list_dead_letters(rabbit.url))

    await until(dead)
    assert recorder.calls == 3  # the first try and one per delay queue
    (letter,) = [d for d in await list_dead_letters(rabbit.url) if d.event_id == str(event_id)]
    assert (letter.consumer, letter.event_type, letter.error) == (name, PING, "RuntimeError")
    assert recorder.handled == []
    await node.transport.refresh_metrics()
    assert gauge("armillary_event_dead_letters") >= 1
    # The operator's view: listed (and left there), then replayed once fixed.
    listed = await cli("events", "dead-letters", "list", "--url", rabbit.url, "-o", "json")
    assert {"event_id": str(event_id), "consumer": name, "error": "RuntimeError"}.items() <= next(
        d for d in json.loads(listed) if d["event_id"] == str(event_id)
    ).items()
    assert await replay(rabbit.url, {str(uuid.uuid4())}) == []
    recorder.broken = False
    out = await cli(
        "events", "dead-letters", "replay", "--id", str(event_id), "--url", rabbit.url, "-o", "json"
    )
    assert [d["event_id"] for d in json.loads(out)] == [str(event_id)]
    await until(lambda: recorder.handled == [event_id])
    assert not await dead()
    await asyncio.sleep(0.5)
    assert recorder.handled == [event_id]


async def test_events_written_while_the_broker_is_away_arrive_once_it_is_back(
    nodes: Callable[[], Node], rabbit: PrivateRabbit
) -> None:
    node, name, recorder = nodes(), consumer_name(), Recorder()
    node.bus.subscribe(PING, name, recorder)
    dropped: list[int] = []

    async def drop_all() -> None:
        dropped.append(1)

    async def ignore(_delivery: Delivery) -> None:
        return None

    node.bus.broadcast(PING, "tests.cache", ignore, drop_all=drop_all)
    await node.start()
    before = await node.emit(0)
    await until(lambda: recorder.handled == [before])
    rabbit.stop()
    try:
        ids = [await node.emit(n) for n in range(1, 31)]  # writes go on without the broker
        assert await unpublished(node.db) == 30
        await node.transport.refresh_metrics()
        assert gauge("armillary_outbox_lag_seconds") > 0
        published = gauge("armillary_events_published_total", type=PING)
    finally:
        rabbit.start()
    await until(lambda: len(recorder.handled) == 31, timeout=60)
    assert sorted(recorder.handled) == sorted([before, *ids])
    await until(lambda: dropped == [1])  # the reconnect dropped the process's caches
    await until(lambda: unpublished_is(node.db, 0))
    assert gauge("armillary_events_published_total", type=PING) >= published + 30
    await node.transport.refresh_metrics()
    assert gauge("armillary_outbox_lag_seconds") == 0
    assert gauge("armillary_event_consumer_lag_messages", consumer=name) == 0


async def test_broadcasts_reach_every_process_within_a_second(nodes: Callable[[], Node]) -> None:
    a, b = nodes(), nodes()
    seen: dict[str, dict[uuid.UUID, float]] = {"a": {}, "b": {}}

    def handler(copy: str) -> Callable[[Delivery], Awaitable[None]]:
        async def run(delivery: Delivery) -> None:
            seen[copy][delivery.id] = time.monotonic()

        return run

    async def nothing() -> None:
        return None

    a.bus.broadcast(PING, "tests.cache", handler("a"), drop_all=nothing)
    b.bus.broadcast(PING, "tests.cache", handler("b"), drop_all=nothing)
    await a.start()
    await b.start()
    delays = []
    for n in range(50):
        sent = time.monotonic()
        event_id = await a.emit(n)
        await until(lambda e=event_id: e in seen["a"] and e in seen["b"], timeout=5)
        delays.append(seen["b"][event_id] - sent)
    delays.sort()
    assert delays[math.ceil(len(delays) * 0.99) - 1] < 1.0  # nearest-rank p99


async def test_a_malformed_message_goes_straight_to_the_dead_letters(
    nodes: Callable[[], Node], rabbit: PrivateRabbit
) -> None:
    node, name, recorder = nodes(), consumer_name(), Recorder()
    node.bus.subscribe(PING, name, recorder)
    await node.start()
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(EXCHANGE)
        body = aio_pika.Message(b"not json", message_id="not-a-uuid", type=PING)
        await exchange.publish(body, PING)

    async def dead() -> list[Any]:
        return [d for d in await list_dead_letters(rabbit.url) if d.event_id == "not-a-uuid"]

    await until(lambda: _nonempty(dead()))
    (letter,) = await dead()
    assert (letter.consumer, letter.error) == (name, "broker: rejected")
    assert recorder.calls == 0


async def _nonempty(found: Awaitable[list[Any]]) -> bool:
    return bool(await found)


async def test_a_message_that_keeps_crashing_its_consumer_is_dead_lettered_at_the_limit(
    rabbit: PrivateRabbit,
) -> None:
    name = consumer_name()
    config = BrokerConfig(url=rabbit.url, delivery_limit=3)
    connection = await aio_pika.connect(rabbit.url)
    async with connection:
        channel = await connection.channel()
        await declare_core(channel)
        queue = await declare_consumer(channel, name, {PING}, config)
        event_id = uuid.uuid4()
        exchange = await channel.get_exchange(EXCHANGE)
        await exchange.publish(event_message(event_id, PING, {"n": 1}), PING)
        # Each crash returns the message unacked (a nack with requeue, as a closed channel).
        deliveries = 0
        while (message := await queue.get(fail=False, timeout=5)) is not None:
            deliveries += 1
            await message.nack(requeue=True)
            assert deliveries <= 10
    assert deliveries == 4  # the first delivery and the limit's three redeliveries
    letters = [d for d in await list_dead_letters(rabbit.url) if d.event_id == str(event_id)]
    assert [(d.consumer, d.error) for d in letters] == [(name, "broker: delivery_limit")]
