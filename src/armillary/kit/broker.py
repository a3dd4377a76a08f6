"""Events over RabbitMQ (ADR 0020): the outbox relay publishes committed events to a durable
topic exchange with publisher confirms; each consumer reads a durable quorum queue and acks
only after its transaction committed; failures go down a ladder of delay queues, then to the
dead letters; cache invalidations reach every process through a fanout exchange.

Topology (declared idempotently by every process at start and on each reconnect):

- ``armillary.events`` (topic): routing key = event type.
- ``armillary.events.<consumer>`` (quorum): bound to its event types and ``retry.<consumer>``;
  ``x-delivery-limit`` dead-letters a message that keeps crashing its consumer.
- ``armillary.events.<consumer>.retry.<n>`` (quorum): ``x-message-ttl`` = the n-th delay,
  dead-lettered back to ``armillary.events`` with routing key ``retry.<consumer>``.
- ``armillary.dead-letters`` (fanout exchange + quorum queue): routing key = consumer.
- ``armillary.broadcast`` (fanout): bound to ``armillary.events`` for the broadcast event types
  (so the relay publishes each event once); one exclusive auto-delete queue per process.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import structlog
from aio_pika import DeliveryMode, ExchangeType, Message
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from sqlalchemy import func, select

from armillary.kit import tracing
from armillary.kit.db import utcnow
from armillary.kit.events import Delivery, EventBus, OutboxEvent, Outgoing
from armillary.kit.metrics import (
    EVENT_CONSUMER_LAG,
    EVENT_DEAD_LETTERS,
    EVENTS_PUBLISHED,
    EVENTS_RETRIED,
    OUTBOX_LAG,
)

if TYPE_CHECKING:
    from armillary.kit.settings import Settings

log = structlog.get_logger("armillary.broker")

EXCHANGE = "armillary.events"
BROADCAST = "armillary.broadcast"
DEAD_LETTERS = "armillary.dead-letters"
ATTEMPT = "x-armillary-attempt"
CONSUMER = "x-armillary-consumer"
ERROR = "x-armillary-error"
# Quorum queues dead-letter at least once (RabbitMQ 3.10+): a delay queue's expired message
# is only removed once the events exchange took it.
_SAFE_DEAD_LETTERING = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def consumer_queue(consumer: str) -> str:
    return f"{EXCHANGE}.{consumer}"


def retry_key(consumer: str) -> str:
    return f"retry.{consumer}"


def delay_queue(consumer: str, step: int) -> str:
    return f"{EXCHANGE}.{consumer}.retry.{step}"


@dataclass(frozen=True)
class BrokerConfig:
    url: str
    prefetch: int = 32
    retry_delays: tuple[float, ...] = (1.0, 5.0, 30.0)
    delivery_limit: int = 5
    publish_timeout: float = 5.0
    metrics_interval: float = 5.0
    # amqps://: the broker's certificate and host name checked against this CA (or the
    # system's).
    ca_file: Path | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        return amqp_ssl_context(self.url, self.ca_file)

    @classmethod
    def from_settings(cls, settings: Settings) -> BrokerConfig:
        if not settings.rabbitmq_url:
            raise ValueError("ARMILLARY_RABBITMQ_URL is not set")
        return cls(
            url=settings.rabbitmq_url,
            prefetch=settings.event_prefetch,
            retry_delays=tuple(settings.event_retry_delays_seconds),
            delivery_limit=settings.event_delivery_limit,
            ca_file=settings.ca_file("rabbitmq"),
        )


def amqp_ssl_context(url: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """verify-full TLS for an ``amqps://`` URL; None for plain ``amqp://`` (loopback only in
    production, see Settings.plaintext_hops)."""
    if not url.startswith("amqps://"):
        return None
    from armillary.kit.tls import client_context

    return client_context(ca_file)


async def declare_core(channel: AbstractChannel) -> tuple[AbstractExchange, AbstractQueue]:
    """The events exchange and the dead letters (exchange and queue)."""
    events = await channel.declare_exchange(EXCHANGE, ExchangeType.TOPIC, durable=True)
    dead = await channel.declare_exchange(DEAD_LETTERS, ExchangeType.FANOUT, durable=True)
    dead_letters = await channel.declare_queue(
        DEAD_LETTERS, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_letters.bind(dead)
    return events, dead_letters


async def declare_consumer(
    channel: AbstractChannel, consumer: str, types: set[str], config: BrokerConfig
) -> AbstractQueue:
    """A consumer's queue, its bindings and its retry ladder."""
    queue = await channel.declare_queue(
        consumer_queue(consumer),
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": config.delivery_limit,
            "x-dead-letter-exchange": DEAD_LETTERS,
            "x-dead-letter-routing-key": consumer,
        },
    )
    for routing_key in [*sorted(types), retry_key(consumer)]:
        await queue.bind(EXCHANGE, routing_key)
    for step, delay in enumerate(config.retry_delays):
        await channel.declare_queue(
            delay_queue(consumer, step),
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": EXCHANGE,
                "x-dead-letter-routing-key": retry_key(consumer),
                **_SAFE_DEAD_LETTERING,
            },
        )
    return queue


def event_message(event_id: uuid.UUID, event_type: str, payload: Any, attempt: int = 0) -> Message:
    return Message(
        json.dumps(payload, separators=(",", ":")).encode(),
        message_id=str(event_id),
        type=event_type,
        content_type="application/json",
        delivery_mode=DeliveryMode.PERSISTENT,
        headers={ATTEMPT: attempt},
    )


class RabbitTransport:
    """The bus's way out of the process, and its consumers' way in (see the module doc)."""

    def __init__(self, bus: EventBus, config: BrokerConfig) -> None:
        self._bus = bus
        self._config = config
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractChannel | None = None  # publisher confirms
        self._events: AbstractExchange | None = None
        self._up = False
        self._pending: asyncio.Queue[list[Outgoing]] = asyncio.Queue()
        self._inflight: set[uuid.UUID] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._queues: dict[str, AbstractQueue] = {}
        # Held here: a robust connection restores only the channels still referenced.
        self._consumer_channels: list[AbstractChannel] = []
        self.connected = asyncio.Event()

    @property
    def up(self) -> bool:
        return self._up

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect in the background: a broker that is away at start delays events, never the
        process (the relay publishes what waited once it is back)."""
        self._tasks = [
            asyncio.create_task(self._connect()),
            asyncio.create_task(self._run_publisher()),
            asyncio.create_task(self._run_metrics()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        self._up = False

    async def _connect(self) -> None:
        try:
            await self._connect_and_declare()
        except Exception:
            # Topology refused (e.g. a queue declared earlier with other arguments): say so;
            # events wait in the outbox meanwhile.
            log.exception("broker_setup_failed")
            raise

    async def _connect_and_declare(self) -> None:
        delay = 0.5
        name = f"armillary {socket.gethostname()} pid {os.getpid()}"
        while True:
            try:
                connection = await aio_pika.connect_robust(
                    self._config.url,
                    ssl_context=self._config.ssl_context(),
                    reconnect_interval=1,
                    client_properties={"connection_name": name},
                )
                break
            except (OSError, aio_pika.exceptions.AMQPError) as exc:
                log.warning("broker_unreachable", error=type(exc).__name__, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        self._connection = connection
        connection.close_callbacks.add(self._lost)
        connection.reconnect_callbacks.add(self._reconnected)
        self._channel = await connection.channel(publisher_confirms=True)
        self._events, _ = await declare_core(self._channel)
        for consumer, (types, serial) in sorted(self._bus.consumers().items()):
            channel = await connection.channel()
            await channel.set_qos(prefetch_count=1 if serial else self._config.prefetch)
            queue = await declare_consumer(channel, consumer, types, self._config)
            self._queues[consumer] = queue
            self._consumer_channels.append(channel)
            await queue.consume(self._consumer(consumer))
        await self._declare_broadcast(connection)
        self._up = True
        self.connected.set()
        log.info("broker_connected", consumers=len(self._queues))

    async def _declare_broadcast(self, connection: AbstractRobustConnection) -> None:
        types = self._bus.broadcast_types()
        if not types:
            return
        channel = await connection.channel()
        self._consumer_channels.append(channel)  # the connection keeps only weak references
        fanout = await channel.declare_exchange(BROADCAST, ExchangeType.FANOUT, durable=True)
        for event_type in sorted(types):
            await fanout.bind(EXCHANGE, event_type)
        # Named (not server-named) so a reconnect re-declares the same queue.
        name = f"{BROADCAST}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        queue = await channel.declare_queue(
            name, exclusive=True, auto_delete=True, arguments={"x-queue-type": "classic"}
        )
        await queue.bind(fanout)
        await queue.consume(self._on_broadcast)

    def _lost(self, *_args: Any) -> None:
        if self._up:
            log.warning("broker_connection_lost")
        self._up = False

    async def _reconnected(self, *_args: Any) -> None:
        self._up = True
        log.info("broker_reconnected")
        # Broadcasts sent while this process was away are lost with its queue.
        await self._bus.drop_all_caches()

    # -- publishing ------------------------------------------------------------------------

    def enqueue(self, events: list[Outgoing]) -> None:
        # While the broker is away the relay picks these rows up later: nothing waits here.
        if self._up:
            self._inflight.update(event.id for event in events)
            self._pending.put_nowait(events)

    def in_flight(self) -> set[uuid.UUID]:
        return self._inflight

    async def _run_publisher(self) -> None:
        while True:
            batch = await self._pending.get()
            while not self._pending.empty() and len(batch) < 500:
                batch = batch + self._pending.get_nowait()
            try:
                await self._bus.publish_rows(batch)
            except Exception:
                log.exception("event_publish_failed")
            finally:
                self._inflight.difference_update(event.id for event in batch)

    async def publish(self, rows: Sequence[Outgoing | OutboxEvent]) -> list[uuid.UUID]:
        """Publish ``rows`` persistently; the ids the broker confirmed."""
        events = self._events
        if not self._up or events is None or not rows:
            return []

        async def one(row: Outgoing | OutboxEvent) -> uuid.UUID:
            message = event_message(row.id, row.type, row.payload)
            # The publish span (and the message's traceparent) continue the writer's trace.
            with tracing.attached(getattr(row, "trace", None)):
                await events.publish(
                    message, row.type, mandatory=False, timeout=self._config.publish_timeout
                )
            EVENTS_PUBLISHED.labels(row.type).inc()
            return row.id

        results = await asyncio.gather(*(one(row) for row in rows), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            error = type(failed[0]).__name__
            log.warning("event_publish_unconfirmed", count=len(failed), error=error)
        return [r for r in results if isinstance(r, uuid.UUID)]

    # -- consuming -------------------------------------------------------------------------

    def _consumer(self, consumer: str) -> Any:
        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                delivery = _delivery(message)
            except (ValueError, TypeError):
                # Not an event of ours: straight to the dead letters (the queue's DLX).
                log.error("event_malformed", consumer=consumer)
                await message.reject(requeue=False)
                return
            try:
                await self._bus.handle(consumer, delivery)
            except Exception as exc:
                try:
                    await self._retry(consumer, message, delivery, exc)
                except Exception:
                    # The retry was not confirmed: the broker redelivers the original (its
                    # delivery limit bounds how often).
                    log.exception("event_retry_failed", consumer=consumer)
                    await message.nack(requeue=True)
                    return
            await message.ack()

        return on_message

    async def _retry(
        self,
        consumer: str,
        message: AbstractIncomingMessage,
        delivery: Delivery,
        error: Exception,
    ) -> None:
        channel = self._channel
        if channel is None:
            raise RuntimeError("no publishing channel")
        seen = (message.headers or {}).get(ATTEMPT, 0)
        attempt = seen if isinstance(seen, int) else 0
        out = event_message(delivery.id, delivery.type, delivery.payload, attempt + 1)
        timeout = self._config.publish_timeout
        if attempt < len(self._config.retry_delays):
            await channel.default_exchange.publish(
                out, delay_queue(consumer, attempt), mandatory=False, timeout=timeout
            )
            EVENTS_RETRIED.labels(consumer, "delayed").inc()
            return
        # The error's class only: its message may quote payload values or secrets.
        out.headers.update({CONSUMER: consumer, ERROR: type(error).__name__})
        dead = await channel.get_exchange(DEAD_LETTERS, ensure=False)
        await dead.publish(out, consumer, mandatory=False, timeout=timeout)
        EVENTS_RETRIED.labels(consumer, "dead_lettered").inc()
        log.error(
            "event_dead_lettered",
            consumer=consumer,
            event_type=delivery.type,
            event_id=str(delivery.id),
            error=type(error).__name__,
        )

    async def _on_broadcast(self, message: AbstractIncomingMessage) -> None:
        async with message.process(ignore_processed=True):
            await self._bus.run_broadcast(_delivery(message))

    # -- metrics ---------------------------------------------------------------------------

    async def _run_metrics(self) -> None:
        while True:
            await asyncio.sleep(self._config.metrics_interval)
            try:
                await self.refresh_metrics()
            except Exception as exc:
                log.debug("event_metrics_failed", error=type(exc).__name__)

    async def refresh_metrics(self) -> None:
        async with self._bus.db.sessionmaker() as session:
            oldest = await session.scalar(
                select(func.min(OutboxEvent.created_at)).where(OutboxEvent.published_at.is_(None))
            )
        OUTBOX_LAG.set(0 if oldest is None else max((utcnow() - oldest).total_seconds(), 0))
        if not self._up or self._connection is None:
            return
        channel = await self._connection.channel()
        try:
            for consumer in self._queues:
                queue = await channel.declare_queue(consumer_queue(consumer), passive=True)
                EVENT_CONSUMER_LAG.labels(consumer).set(queue.declaration_result.message_count or 0)
            dead = await channel.declare_queue(DEAD_LETTERS, passive=True)
            EVENT_DEAD_LETTERS.set(dead.declaration_result.message_count or 0)
        finally:
            await channel.close()


def _delivery(message: AbstractIncomingMessage) -> Delivery:
    payload = json.loads(message.body)
    return Delivery(uuid.UUID(message.message_id or ""), message.type or "", payload)
