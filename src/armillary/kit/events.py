"""Transactional outbox and the in-process event bus.

An event is written to the ``outbox_events`` table in the same transaction as the change it
describes and dispatched only after that transaction commits. Each consumer handles an event
in its own transaction and records the event id there, so a redelivered event has no second
effect. A relay loop re-dispatches what a crash left undelivered.

With a :class:`Transport` attached (RabbitMQ, ``kit.broker``, ADR 0020) the bus publishes
committed events to the broker instead and consumers are fed from their queues; broadcast
handlers (in-memory cache invalidation) then run in every process, not in one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog
from pydantic import BaseModel
from sqlalchemy import JSON, Integer, String, Uuid, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from armillary.kit import tracing
from armillary.kit.db import Base, Database, UTCDateTime, after_commit, new_id, utcnow
from armillary.kit.metrics import EVENTS_DELIVERED

log = structlog.get_logger("armillary.events")
_RELAY_BATCH = 100


@dataclass(frozen=True)
class Delivery:
    """An event as a consumer receives it."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]


Handler = Callable[[AsyncSession, Delivery], Awaitable[None]]
# Whether a consumer wants an event, from its payload alone (no transaction is opened for
# events nobody wants: a task's every status change is an event, most interest no one).
Filter = Callable[[dict[str, Any]], bool]
# Drops what one process keeps in memory: runs in every process, records nothing.
BroadcastHandler = Callable[[Delivery], Awaitable[None]]
DropAll = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Outgoing:
    """A committed outbox row as the transport needs it (no reload after the commit)."""

    id: uuid.UUID
    type: str
    payload: dict[str, Any]
    # The traceparent of the transaction that wrote it (ADR 0031): its publish's parent.
    trace: str | None = None


class Transport(Protocol):
    """Where committed events go when they leave the process (``kit.broker``)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def enqueue(self, events: list[Outgoing]) -> None:
        """Publish these committed rows soon, without making the caller wait."""

    def in_flight(self) -> set[uuid.UUID]:
        """Rows enqueued and not yet through: the relay leaves them alone."""

    async def publish(self, rows: Sequence[Outgoing | OutboxEvent]) -> list[uuid.UUID]:
        """Publish ``rows``; return the ids the broker confirmed."""


class OutboxEvent(Base):
    __tablename__ = "outbox_events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(120), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)


class ProcessedEvent(Base):
    """Which consumer has handled which event: the idempotency record."""

    __tablename__ = "processed_events"

    consumer: Mapped[str] = mapped_column(String(120), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


def publish(session: AsyncSession, event_type: str, event: BaseModel) -> uuid.UUID:
    """Write ``event`` to the outbox in the caller's transaction; it is dispatched only after
    that transaction commits, and never if it rolls back."""
    if session.info.get("read_only"):
        raise RuntimeError("events cannot be published from a read-only session")
    payload = event.model_dump(mode="json")
    bus = session.info.get("bus")
    if isinstance(bus, EventBus) and not bus.wanted(event_type, payload):
        # Nobody consumes it (every process subscribes the same consumers): it is kept for
        # the record, already published, with no dispatch round trips after the commit.
        kept = OutboxEvent(id=new_id(), type=event_type, payload=payload, published_at=utcnow())
        session.add(kept)
        return kept.id
    row = OutboxEvent(id=new_id(), type=event_type, payload=payload)
    session.add(row)
    pending: list[uuid.UUID] = session.info.setdefault("outbox_pending", [])
    if not pending and isinstance(bus, EventBus):
        after_commit(session, lambda: bus._dispatch_pending(session))
    pending.append(row.id)
    if isinstance(bus, EventBus) and bus.transport is not None:
        outgoing = Outgoing(row.id, event_type, payload, tracing.traceparent())
        session.info.setdefault("outbox_outgoing", []).append(outgoing)
    return row.id


class EventBus:
    """In-process publish/subscribe over the outbox (the embedded shape's broker)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._handlers: dict[str, list[tuple[str, Handler]]] = defaultdict(list)
        self._filters: dict[tuple[str, str], Filter] = {}
        self._serial: dict[str, asyncio.Lock] = {}
        self._broadcasts: dict[str, list[tuple[str, BroadcastHandler]]] = defaultdict(list)
        self._drop_all: list[DropAll] = []
        self.transport: Transport | None = None

    def subscribe(
        self,
        event_type: str,
        consumer: str,
        handler: Handler,
        *,
        serial: bool = False,
        when: Filter | None = None,
    ) -> None:
        """``serial``: this process hands the consumer one event at a time, transaction
        included (for consumers that extend a chain; across processes they lock rows).
        ``when``: the consumer gets only the events whose payload it accepts."""
        self._handlers[event_type].append((consumer, handler))
        if when is not None:
            self._filters[(event_type, consumer)] = when
        if serial:
            self._serial.setdefault(consumer, asyncio.Lock())

    @property
    def db(self) -> Database:
        return self._db

    def broadcast(
        self, event_type: str, name: str, handler: BroadcastHandler, *, drop_all: DropAll
    ) -> None:
        """``handler`` runs in every process that subscribed it (no transaction, no record):
        for in-memory caches. ``drop_all`` empties the whole cache; it runs when this process
        may have missed broadcasts (its broker connection came back)."""
        self._broadcasts[event_type].append((name, handler))
        if drop_all not in self._drop_all:
            self._drop_all.append(drop_all)

    def consumers(self) -> dict[str, tuple[set[str], bool]]:
        """Each consumer's event types and whether it is serial (for the broker topology)."""
        found: dict[str, tuple[set[str], bool]] = {}
        for event_type, handlers in self._handlers.items():
            for consumer, _ in handlers:
                types, _serial = found.setdefault(consumer, (set(), consumer in self._serial))
                types.add(event_type)
        return found

    def broadcast_types(self) -> set[str]:
        return set(self._broadcasts)

    async def run_broadcast(self, delivery: Delivery) -> None:
        for name, handler in self._broadcasts.get(delivery.type, ()):
            try:
                await handler(delivery)
            except Exception:
                log.exception("broadcast_handler_failed", handler=name, event_type=delivery.type)

    async def drop_all_caches(self) -> None:
        for drop in self._drop_all:
            try:
                await drop()
            except Exception:
                log.exception("cache_drop_failed")

    def _wants(self, event_type: str, consumer: str, payload: dict[str, Any]) -> bool:
        accepts = self._filters.get((event_type, consumer))
        return accepts is None or accepts(payload)

    def wanted(self, event_type: str, payload: dict[str, Any]) -> bool:
        """Whether any consumer in this process wants the event. With a transport every
        event leaves (consumers may live in other processes: they filter on their side)."""
        if self.transport is not None or event_type in self._broadcasts:
            return True
        return any(
            self._wants(event_type, consumer, payload)
            for consumer, _ in self._handlers.get(event_type, ())
        )

    def attach(self) -> None:
        """Make :func:`publish` on this database's sessions dispatch through this bus."""
        self._db.sessionmaker.configure(info={"bus": self})

    async def _dispatch_pending(self, session: AsyncSession) -> None:
        ids: list[uuid.UUID] = session.info.pop("outbox_pending", [])
        outgoing: list[Outgoing] = session.info.pop("outbox_outgoing", [])
        if outgoing and self.transport is not None:
            self.transport.enqueue(outgoing)
        elif ids:
            await self._dispatch_ids(ids)

    async def _dispatch_ids(self, ids: list[uuid.UUID]) -> None:
        async with self._db.sessionmaker() as session:
            rows = (await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).all()
        rows = sorted(rows, key=lambda r: ids.index(r.id))
        for row in rows:
            await self.deliver(row)

    async def deliver(self, row: OutboxEvent) -> bool:
        """Hand one event to each of its consumers; mark it published when all succeeded."""
        ok = True
        delivery = Delivery(row.id, row.type, row.payload)
        await self.run_broadcast(delivery)
        for consumer, _handler in self._handlers.get(row.type, []):
            try:
                await self.handle(consumer, delivery)
            except Exception:
                ok = False
        async with self._db.unit_of_work() as session:
            values: dict[str, Any] = {"attempts": OutboxEvent.attempts + 1}
            if ok:
                values["published_at"] = utcnow()
            await session.execute(
                update(OutboxEvent).where(OutboxEvent.id == row.id).values(**values)
            )
        return ok

    async def handle(self, consumer: str, delivery: Delivery) -> bool:
        """Run ``consumer`` on ``delivery`` in its own transaction, once: returns False when
        it is not for this consumer or was handled already; raises when the handler failed."""
        handler = next((h for c, h in self._handlers.get(delivery.type, ()) if c == consumer), None)
        if handler is None or not self._wants(delivery.type, consumer, delivery.payload):
            return False
        guard: AbstractAsyncContextManager[object] = self._serial.get(consumer) or nullcontext()
        try:
            async with guard, self._db.unit_of_work() as session:
                if await self._already_handled(session, consumer, delivery.id):
                    return False
                await handler(session, delivery)
            EVENTS_DELIVERED.labels(delivery.type, "ok").inc()
            return True
        except IntegrityError:
            # Another process recorded this (consumer, event) first: it has been handled.
            if await self._handled_elsewhere(consumer, delivery.id):
                return False
            log.exception("event_consumer_failed", consumer=consumer, event_type=delivery.type)
            raise
        except Exception:
            EVENTS_DELIVERED.labels(delivery.type, "failed").inc()
            log.exception("event_consumer_failed", consumer=consumer, event_type=delivery.type)
            raise

    async def _already_handled(
        self, session: AsyncSession, consumer: str, event_id: uuid.UUID
    ) -> bool:
        # Recorded in the consumer's transaction: its effect and this row commit together. One
        # statement: a copy handling the same event at the same time waits for its commit.
        dialect = session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        stmt = (
            insert(ProcessedEvent)
            .values(consumer=consumer, event_id=event_id, processed_at=utcnow())
            .on_conflict_do_nothing()
            .returning(ProcessedEvent.event_id)
        )
        return (await session.execute(stmt)).first() is None

    async def _handled_elsewhere(self, consumer: str, event_id: uuid.UUID) -> bool:
        async with self._db.sessionmaker() as session:
            return await session.get(ProcessedEvent, (consumer, event_id)) is not None

    async def relay_once(
        self, *, older_than: timedelta = timedelta(seconds=5), limit: int = _RELAY_BATCH
    ) -> int:
        """Deliver events a crash or a failing consumer left unpublished. Returns how many."""
        cutoff = utcnow() - older_than
        async with self._db.sessionmaker() as session:
            stmt = (
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None), OutboxEvent.created_at <= cutoff)
                .order_by(OutboxEvent.created_at)
                .limit(limit)
            )
            rows = (await session.scalars(stmt)).all()
        if self.transport is not None:
            busy = self.transport.in_flight()
            return await self.publish_rows([row for row in rows if row.id not in busy])
        delivered = 0
        for row in rows:
            delivered += int(await self.deliver(row))
        return delivered

    async def publish_rows(self, rows: Sequence[Outgoing | OutboxEvent]) -> int:
        """Publish through the transport; a row is marked published only once confirmed."""
        if self.transport is None or not rows:
            return 0
        confirmed = await self.transport.publish(rows)
        done = set(confirmed)
        failed = [row.id for row in rows if row.id not in done]
        async with self._db.unit_of_work() as session:
            if confirmed:
                await session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(confirmed))
                    .values(
                        attempts=OutboxEvent.attempts + 1,
                        published_at=func.coalesce(OutboxEvent.published_at, utcnow()),
                    )
                )
            if failed:
                await session.execute(
                    update(OutboxEvent)
                    .where(OutboxEvent.id.in_(failed))
                    .values(attempts=OutboxEvent.attempts + 1)
                )
        return len(confirmed)

    async def load(self, ids: list[uuid.UUID]) -> list[OutboxEvent]:
        async with self._db.sessionmaker() as session:
            rows = (await session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids)))).all()
        return sorted(rows, key=lambda r: ids.index(r.id))

    async def run_relay(
        self, interval: float = 2.0, older_than: timedelta = timedelta(seconds=5)
    ) -> None:
        """Background loop of :meth:`relay_once`; cancelled at shutdown. A full batch is
        followed at once by the next (a backlog after a broker outage drains quickly)."""
        delay = interval
        while True:
            try:
                if await self.relay_once(older_than=older_than) >= _RELAY_BATCH:
                    await asyncio.sleep(0)
                    continue
                delay = interval
            except Exception:
                log.exception("outbox_relay_failed")
                delay = min(delay * 2, 30.0)
            await asyncio.sleep(delay)
