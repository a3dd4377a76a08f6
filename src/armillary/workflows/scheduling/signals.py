"""Wake-ups between the scheduler and the workers.

On PostgreSQL a change is announced with ``NOTIFY`` inside the transaction that made it, so
it is delivered only once the change is visible; listeners hold one connection each. SQLite has
no notifications: waiting there is polling at a short interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from typing import Any

import asyncpg
import structlog
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import after_commit, connect_direct
from armillary.kit.secret_sources import SecretRef

log = structlog.get_logger("armillary.workflows.signals")

# Tasks were queued (workers listen).
TASKS_QUEUED = "armillary_tasks_queued"
# A task or job changed in a way the scheduler must look at (the scheduler listens).
SCHEDULER_WANTED = "armillary_scheduler_wanted"


def asyncpg_dsn(sqlalchemy_url: str) -> str | None:
    """The plain libpq DSN of a PostgreSQL SQLAlchemy URL, or None for other databases."""
    url = make_url(sqlalchemy_url)
    if url.get_backend_name() != "postgresql":
        return None
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


# Listeners in this process, by channel: woken directly after a commit, which is all SQLite
# has (the embedded scheduler shares the API's process).
_LOCAL: dict[str, weakref.WeakSet[Listener]] = {}


async def notify(session: AsyncSession, channel: str) -> None:
    """Announce ``channel`` when ``session`` commits: to every process on PostgreSQL, to this
    process's listeners everywhere."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": channel})
    local = _LOCAL.get(channel)
    if local:

        async def wake() -> None:
            for listener in list(local):
                listener.wake()

        after_commit(session, wake)


# Without notifications (SQLite) an idle waiter polls ever less often, up to this interval:
# busy, it reacts within ``poll_seconds``; idle, it costs next to nothing.
IDLE_POLL_SECONDS = 1.0


class Listener:
    """Waits for notifications on one channel, or for ``poll_seconds`` at most (with no
    notifications, backing off towards :data:`IDLE_POLL_SECONDS` while nothing happens)."""

    def __init__(
        self,
        dsn: str | None,
        channel: str,
        *,
        poll_seconds: float,
        password_ref: SecretRef | None = None,
        ssl: Any = None,
    ) -> None:
        self.dsn = dsn
        self.password_ref = password_ref
        self.ssl = ssl
        self.channel = channel
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()
        self._connection: Any = None
        self._idle_rounds = 0
        _LOCAL.setdefault(channel, weakref.WeakSet()).add(self)

    def busy(self) -> None:
        """There was work: poll at the short interval again."""
        self._idle_rounds = 0

    def _interval(self) -> float:
        if self.dsn is not None:
            return self.poll_seconds
        backoff = self.poll_seconds * float(2 ** min(self._idle_rounds, 16))
        return min(max(backoff, self.poll_seconds), max(IDLE_POLL_SECONDS, self.poll_seconds))

    async def start(self) -> None:
        if self.dsn is None:
            return
        self._connection = await connect_direct(self.dsn, self.password_ref, ssl=self.ssl)
        await self._connection.add_listener(self.channel, self._notified)

    async def start_when_possible(self, stopping: asyncio.Event) -> None:
        """:meth:`start`, retried with backoff while the database is away (a process may
        start before its database is up); returns early when ``stopping`` is set."""
        delay = 0.2
        while not stopping.is_set():
            try:
                await self.start()
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("listener.database_unreachable", error=type(exc).__name__)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), delay)
                delay = min(delay * 2, 5.0)

    def _notified(self, *_args: Any) -> None:
        self._event.set()

    def wake(self) -> None:
        """Wake the waiter from inside this process."""
        self._event.set()

    async def wait(self) -> bool:
        """Until a notification or the poll interval; True when notified."""
        if self._connection is not None and self._connection.is_closed():
            # The server dropped the listening connection: reconnect, and look now.
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                await self.start()
            return True
        try:
            await asyncio.wait_for(self._event.wait(), self._interval())
        except TimeoutError:
            self._idle_rounds += 1
            return False
        self._event.clear()
        self._idle_rounds = 0
        return True

    async def close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._connection.close()
            self._connection = None
