"""Leader election: exactly one active scheduler, by a PostgreSQL session advisory lock.

The lock lives as long as the connection that took it: a scheduler that dies or loses its
connection releases it, and a standby takes over on its next try. SQLite is the embedded shape,
one process: it is always the leader there.
"""

from __future__ import annotations

import contextlib
from typing import Any

import asyncpg

from armillary.kit.db import connect_direct
from armillary.kit.secret_sources import SecretRef

# A fixed 64-bit key for "the Armillary scheduler" in pg_advisory_lock's key space.
SCHEDULER_LOCK_KEY = 0x41524D494C4C0001


class Leadership:
    def __init__(
        self, dsn: str | None, *, password_ref: SecretRef | None = None, ssl: Any = None
    ) -> None:
        self.dsn = dsn
        self.password_ref = password_ref
        self.ssl = ssl
        self._connection: Any = None

    async def acquire(self) -> bool:
        """Try to become (or check that we still are) the leader."""
        if self.dsn is None:
            return True
        if self._connection is not None:
            if not self._connection.is_closed():
                try:
                    await self._connection.fetchval("SELECT 1")
                    return True
                except (OSError, asyncpg.PostgresError):
                    pass
            await self.release()
        connection = await connect_direct(self.dsn, self.password_ref, ssl=self.ssl)
        try:
            taken = await connection.fetchval("SELECT pg_try_advisory_lock($1)", SCHEDULER_LOCK_KEY)
        except BaseException:
            await connection.close()
            raise
        if not taken:
            await connection.close()
            return False
        self._connection = connection
        return True

    async def release(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await self._connection.close()
            self._connection = None
