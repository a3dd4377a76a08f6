"""The transactional outbox and the in-process bus on the real PostgreSQL: delivery only after
commit, once per consumer, idempotent redelivery, retries by the relay, and an audit chain
without gaps under concurrent writes."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from tests.conftest import Api, auth, client_for

from armillary.app import create_app
from armillary.contracts.events import AuditEntry
from armillary.identity.audit.models import AuditRecord
from armillary.kit.events import Delivery, EventBus, OutboxEvent, ProcessedEvent, publish
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings

PING = "tests.ping"


class Ping(BaseModel):
    n: int


class Recorder:
    """A consumer that remembers which event ids it handled (and can fail on demand)."""

    def __init__(self, fail_times: int = 0) -> None:
        self.handled: list[uuid.UUID] = []
        self.calls = 0
        self.fail_times = fail_times

    async def __call__(self, session: AsyncSession, delivery: Delivery) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise RuntimeError("consumer failed")
        assert delivery.type == PING
        Ping.model_validate(delivery.payload)
        self.handled.append(delivery.id)


@pytest.fixture
def runtime(app: FastAPI) -> Runtime:
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
def bus(runtime: Runtime) -> EventBus:
    return runtime.bus


async def _row(runtime: Runtime, event_id: uuid.UUID) -> OutboxEvent | None:
    async with runtime.db.sessionmaker() as session:
        return await session.get(OutboxEvent, event_id)


async def _processed(runtime: Runtime, event_id: uuid.UUID) -> set[str]:
    async with runtime.db.sessionmaker() as session:
        rows = await session.scalars(
            select(ProcessedEvent.consumer).where(ProcessedEvent.event_id == event_id)
        )
        return set(rows)


async def _publish(runtime: Runtime, n: int) -> uuid.UUID:
    async with runtime.db.unit_of_work() as session:
        return publish(session, PING, Ping(n=n))


async def test_an_event_of_a_rolled_back_transaction_is_never_delivered(
    runtime: Runtime, bus: EventBus
) -> None:
    consumer = Recorder()
    bus.subscribe(PING, "tests.recorder", consumer)
    published: list[uuid.UUID] = []

    async def aborted_transaction() -> None:
        async with runtime.db.unit_of_work() as session:
            published.append(publish(session, PING, Ping(n=1)))
            await session.flush()  # it reached the database inside the transaction
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError, match="abort"):
        await aborted_transaction()
    [event_id] = published
    assert await _row(runtime, event_id) is None
    await bus.relay_once(older_than=timedelta(0))
    assert consumer.calls == 0
    # The bus keeps working for the next, committed, transaction.
    committed = await _publish(runtime, 2)
    assert consumer.handled == [committed]


async def test_a_committed_event_reaches_each_consumer_once(
    runtime: Runtime, bus: EventBus
) -> None:
    first, second = Recorder(), Recorder()
    bus.subscribe(PING, "tests.first", first)
    bus.subscribe(PING, "tests.second", second)

    async with runtime.db.unit_of_work() as session:
        event_id = publish(session, PING, Ping(n=1))
        await session.flush()
        assert first.calls == second.calls == 0  # nothing before the commit
    assert first.handled == second.handled == [event_id]
    row = await _row(runtime, event_id)
    assert row is not None
    assert row.published_at is not None
    assert row.attempts == 1
    assert await _processed(runtime, event_id) == {"tests.first", "tests.second"}

    # Redelivery (a relay after a crash, a duplicate from a broker) has no second effect.
    assert await bus.deliver(row) is True
    assert await bus.deliver(row) is True
    assert await bus.relay_once(older_than=timedelta(0)) == 0
    assert first.handled == second.handled == [event_id]
    assert first.calls == second.calls == 1


async def test_concurrent_duplicate_deliveries_have_one_effect(
    runtime: Runtime, bus: EventBus
) -> None:
    consumer = Recorder()
    async with runtime.db.unit_of_work() as session:
        event_id = publish(session, PING, Ping(n=7))  # no consumer yet: stays undelivered
    bus.subscribe(PING, "tests.recorder", consumer)
    row = await _row(runtime, event_id)
    assert row is not None
    results = await asyncio.gather(*(bus.deliver(row) for _ in range(5)))
    assert all(results)
    assert consumer.handled == [event_id]
    assert await _processed(runtime, event_id) == {"tests.recorder"}


async def test_a_failing_consumer_is_retried_by_the_relay_and_succeeds_once(
    runtime: Runtime, bus: EventBus
) -> None:
    healthy, flaky = Recorder(), Recorder(fail_times=1)
    bus.subscribe(PING, "tests.healthy", healthy)
    bus.subscribe(PING, "tests.flaky", flaky)

    event_id = await _publish(runtime, 3)
    assert healthy.handled == [event_id]
    assert flaky.handled == []
    row = await _row(runtime, event_id)
    assert row is not None
    assert row.published_at is None  # not every consumer has it yet
    assert row.attempts == 1
    assert await _processed(runtime, event_id) == {"tests.healthy"}  # the failure rolled back

    assert await bus.relay_once(older_than=timedelta(0)) == 1
    assert flaky.handled == [event_id]
    assert healthy.handled == [event_id]  # not handed the event a second time
    row = await _row(runtime, event_id)
    assert row is not None
    assert row.published_at is not None
    assert row.attempts == 2
    assert await _processed(runtime, event_id) == {"tests.healthy", "tests.flaky"}

    assert await bus.relay_once(older_than=timedelta(0)) == 0
    assert flaky.calls == 2
    assert healthy.calls == 1


async def test_relay_waits_for_events_younger_than_its_cutoff(
    runtime: Runtime, bus: EventBus
) -> None:
    flaky = Recorder(fail_times=1)
    bus.subscribe(PING, "tests.flaky", flaky)
    event_id = await _publish(runtime, 4)
    assert await bus.relay_once(older_than=timedelta(hours=1)) == 0
    assert flaky.handled == []
    assert await bus.relay_once(older_than=timedelta(0)) == 1
    assert flaky.handled == [event_id]


async def test_redelivering_an_audit_entry_appends_no_second_record(
    runtime: Runtime, bus: EventBus, api: Api
) -> None:
    admin = await api.admin_token()
    await api.create_user(admin, "user")
    async with runtime.db.sessionmaker() as session:
        rows = (
            await session.scalars(select(OutboxEvent).where(OutboxEvent.type == AuditEntry.TYPE))
        ).all()
        records = await session.scalar(select(func.count()).select_from(AuditRecord))
    assert rows
    assert records == len(rows)
    assert all(r.published_at is not None for r in rows)
    for row in rows:
        assert await bus.deliver(row) is True
    async with runtime.db.sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(AuditRecord)) == records
    response = await api.client.get("/api/v1/audit/verify", headers=auth(admin))
    assert response.json()["ok"] is True, response.text


@pytest.fixture
async def second_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """Another replica on the same database and home (as two processes would be)."""
    other = create_app(settings, configure_logs=False)
    async with LifespanManager(other, startup_timeout=60):
        yield other


async def test_audit_chain_has_no_gaps_under_concurrent_writes(
    app: FastAPI, second_app: FastAPI, api: Api
) -> None:
    admin = await api.admin_token()

    async def create(target: FastAPI, i: int) -> int:
        async with client_for(target) as c:
            response = await c.post(
                "/api/v1/users",
                json={
                    "email": f"c{i}-{secrets.token_hex(3)}@example.com",
                    "name": f"C{i}",
                    "role": "user",
                    "password": "pw-" + secrets.token_hex(8),
                },
                headers=auth(admin),
            )
        return response.status_code

    # Half through each replica, all at once.
    statuses = await asyncio.gather(*(create(app if i % 2 else second_app, i) for i in range(20)))
    assert statuses == [201] * 20

    runtime: Runtime = app.state.runtime
    async with runtime.db.sessionmaker() as session:
        seqs = list(await session.scalars(select(AuditRecord.seq).order_by(AuditRecord.seq)))
        created = await session.scalar(
            select(func.count())
            .select_from(AuditRecord)
            .where(AuditRecord.action == "users.create")
        )
        unpublished = await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )
    assert seqs == list(range(1, len(seqs) + 1))
    assert created == 20
    assert unpublished == 0
    response = await api.client.get("/api/v1/audit/verify", headers=auth(admin))
    report = response.json()
    assert report["ok"] is True, report
    assert report["records_checked"] == len(seqs)


async def test_a_consumer_gets_only_the_events_it_wants_and_unwanted_ones_cost_nothing(
    runtime: Runtime, bus: EventBus
) -> None:
    recorder = Recorder()
    bus.subscribe(PING, "tests.even", recorder, when=lambda payload: payload["n"] % 2 == 0)
    async with runtime.db.unit_of_work() as session:
        odd = publish(session, PING, Ping(n=1))
        even = publish(session, PING, Ping(n=2))
    assert recorder.handled == [even]
    async with runtime.db.read_only() as session:
        rows = {
            row.id: row
            for row in (
                await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_([odd, even])))
            ).all()
        }
        # The odd one was stored as published at once, and no consumer recorded it.
        assert rows[odd].published_at is not None
        assert rows[odd].attempts == 0
        assert rows[even].published_at is not None
        assert await session.get(ProcessedEvent, ("tests.even", odd)) is None
