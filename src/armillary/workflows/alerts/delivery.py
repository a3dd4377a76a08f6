"""The delivery loop: sends the pending deliveries that are due, with retries.

A delivery row is written in the transaction that decided to alert (outbox style) and sent
here after that commit. Each attempt first claims the row in a short transaction of its own
(the attempt is counted and the row locked for a lease), then sends with no transaction open,
then records the outcome: ``sent`` once the receiver accepted, otherwise the error and the next
attempt after an exponential backoff with jitter, or ``failed`` after the last attempt. A sent
row is never due again, so a receiver that failed twice and then accepted has one message.
Several processes may run the loop: a claim succeeds for one of them only.

The backoff is computed here rather than with tenacity: retries outlive the process (they are
rows with ``next_attempt_at``), which an in-memory retry loop cannot give.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import httpx
import structlog

from armillary.kit.db import Database, utcnow
from armillary.kit.runtime import Runtime
from armillary.kit.secretbox import SecretBox

from ..settings import WorkflowSettings
from . import repository as repo
from . import senders
from .models import AlertChannel, AlertDelivery, DeliveryStatus, RuleKind
from .service import CHANNEL_PURPOSE, send_now

log = structlog.get_logger("armillary.workflows.alerts")

#: Key of the component in ``runtime.services`` and the consumer name on the bus.
ALERTS = "workflows.alerts"
_CONCURRENCY = 8
_BATCH = 100
_random = random.SystemRandom()


def backoff_seconds(attempt: int, *, base: float, cap: float) -> float:
    """Seconds before the attempt after ``attempt`` (1-based): ``base * 2**(attempt-1)``
    capped, then jittered into its upper half so retries of many rows spread out."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    return delay / 2 + _random.uniform(0, delay / 2)


@dataclass
class Alerts:
    """The alerts component of one process: secrets box, settings and the delivery loop."""

    db: Database
    settings: WorkflowSettings
    box: SecretBox
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Whether any task-duration rule exists, refreshed every loop: while none does, a task's
    # success opens no consumer transaction (a busy engine has thousands a minute).
    duration_rules: bool = True

    @classmethod
    def create(cls, runtime: Runtime, settings: WorkflowSettings) -> Alerts:
        previous = [key.get_secret_value() for key in runtime.settings.previous_secret_keys]
        box = SecretBox(runtime.settings.resolved_secret_key(), CHANNEL_PURPOSE, previous=previous)
        return cls(runtime.db, settings, box)

    def wake(self) -> None:
        self._wake.set()

    async def notify(self) -> None:
        """After-commit callback: new deliveries are waiting."""
        self.wake()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Deliver what is due whenever woken or every poll interval; check job deadlines
        every ``alert_deadline_check_seconds``. Ends on :meth:`stop` or cancellation."""
        from .consumers import check_deadlines

        next_check = 0.0
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.settings.alert_deadline_check_seconds
                    async with self.db.unit_of_work() as session:
                        await check_deadlines(
                            session, utcnow(), lookback=self._lookback, alerts=self
                        )
                await self.refresh_rule_kinds()
                await self.deliver_due()
            except Exception:
                log.exception("alert_loop_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.alert_poll_seconds)

    async def refresh_rule_kinds(self) -> None:
        """Note whether any task-duration rule is enabled (see :attr:`duration_rules`)."""
        async with self.db.read_only() as session:
            self.duration_rules = await repo.any_active_rule(session, RuleKind.TASK_DURATION_P95)

    @property
    def _lookback(self) -> timedelta:
        return timedelta(hours=self.settings.alert_deadline_lookback_hours)

    async def deliver_due(self, now: datetime | None = None) -> int:
        """One pass over the due deliveries; returns how many were sent."""
        now = now or utcnow()
        async with self.db.read_only() as session:
            ids = await repo.due_delivery_ids(session, now, _BATCH)
        if not ids:
            return 0
        gate = asyncio.Semaphore(_CONCURRENCY)
        timeout = self.settings.alert_send_timeout_seconds
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as http:

            async def one(delivery_id: uuid.UUID) -> bool:
                async with gate:
                    return await self.attempt(http, delivery_id, now)

            results = await asyncio.gather(*(one(i) for i in ids))
        return sum(results)

    async def attempt(self, http: httpx.AsyncClient, delivery_id: uuid.UUID, now: datetime) -> bool:
        """Claim, send and record one attempt of one delivery. True when it was sent."""
        lease = timedelta(seconds=self.settings.alert_send_timeout_seconds * 3 + 30)
        async with self.db.unit_of_work() as session:
            if not await repo.claim(session, delivery_id, now, now + lease):
                return False
            delivery = await session.get(AlertDelivery, delivery_id)
            if delivery is None:  # pragma: no cover - deleted with its channel meanwhile
                return False
            channel = await session.get(AlertChannel, delivery.channel_id)
            attempts = delivery.attempts
            payload = dict(delivery.payload)
        error = await self._send(http, channel, payload)
        values: dict[str, object]
        if error is None:
            values = {"status": DeliveryStatus.SENT, "sent_at": utcnow(), "last_error": None}
        elif attempts >= self.settings.alert_max_attempts or channel is None:
            values = {"status": DeliveryStatus.FAILED, "last_error": error}
        else:
            delay = backoff_seconds(
                attempts,
                base=self.settings.alert_backoff_seconds,
                cap=self.settings.alert_backoff_max_seconds,
            )
            values = {"next_attempt_at": now + timedelta(seconds=delay), "last_error": error}
        async with self.db.unit_of_work() as session:
            await repo.finish_attempt(session, delivery_id, values)
        if error is not None:
            log.warning(
                "alert_delivery_attempt_failed",
                delivery_id=str(delivery_id),
                attempt=attempts,
                final=values.get("status") == DeliveryStatus.FAILED,
                error=error,
            )
        return error is None

    async def _send(
        self, http: httpx.AsyncClient, channel: AlertChannel | None, payload: dict[str, object]
    ) -> str | None:
        """None when the receiver accepted, else an error message without secrets."""
        if channel is None:
            return "the channel was deleted"
        if not channel.enabled:
            return "the channel is disabled"
        alert = senders.Alert.from_payload(dict(payload))
        return await send_now(self.box, self.settings, http, channel, alert)


def alerts_of(runtime: Runtime) -> Alerts:
    component = runtime.services[ALERTS]
    assert isinstance(component, Alerts)  # noqa: S101 - wired by workflows.app.install
    return component


async def deliver_due(runtime: Runtime, now: datetime | None = None) -> int:
    """Send what is due now (or at ``now``); for tests and operators who will not wait."""
    return await alerts_of(runtime).deliver_due(now)
