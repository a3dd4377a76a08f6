"""The key schedule: each identity process wakes when a key's grace period ends (or a
rotation is due) and does it, so every process refuses a retired key at once (ADR 0023)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

import structlog

from armillary.kit.db import Database, utcnow

from .service import KeyRing

log = structlog.get_logger("armillary.identity.keys")

# The longest sleep: a change nobody told this process about is seen by then.
MAX_SLEEP = 60.0
# Back off this long when the database is unreachable.
RETRY = 5.0


class KeySchedule:
    def __init__(self, db: Database, keyring: KeyRing) -> None:
        self._db = db
        self._keyring = keyring
        self._wake = asyncio.Event()
        self._stopped = False

    def poke(self) -> None:
        """Keys changed (an event): the next instant to wake at may be sooner."""
        self._wake.set()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopped:
            self._wake.clear()
            try:
                async with self._db.unit_of_work() as session:
                    due = await self._keyring.ensure(session)
                delay = _until(due)
            except Exception as exc:  # a database outage must not end the schedule
                log.warning("key_schedule_failed", error=type(exc).__name__)
                delay = RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)


def _until(due: datetime | None) -> float:
    if due is None:
        return MAX_SLEEP
    # A little after the instant, so the comparison with "now" in the database query holds.
    return min(MAX_SLEEP, max(0.0, (due - utcnow()).total_seconds()) + 0.01)
