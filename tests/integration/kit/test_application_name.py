"""Each process names itself to PostgreSQL, so pg_stat_activity tells who holds a connection."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import text

from armillary.kit.db import Database
from armillary.kit.settings import Settings


@pytest.mark.parametrize("role", ["api", "worker", "scheduler", "registry"])
async def test_connections_carry_the_process_role(
    settings_factory: Callable[..., Settings], role: str
) -> None:
    db = Database.from_settings(settings_factory(), role=role)
    try:
        async with db.sessionmaker() as session:
            name = await session.scalar(
                text("SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            )
        assert name == f"armillary-{role}"
    finally:
        await db.dispose()
