"""The mechanism under every allocation: a locking read (``SELECT ... FOR UPDATE``) sees the
latest committed value and holds it until commit, on PostgreSQL (a row lock) and on SQLite
(``kit.db`` starts ``BEGIN IMMEDIATE`` first). Checked with asyncio tasks on one engine and,
for SQLite, with OS processes on one file, as the embedded shape runs API, scheduler and
workers."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, select, text, update
from tests.integration.concurrency.conftest import WRITERS

from armillary.kit.db import Database
from armillary.kit.settings import Settings

_metadata = MetaData()
counters = Table(
    "concurrency_test_counters",
    _metadata,
    Column("id", Integer, primary_key=True),
    Column("value", Integer, nullable=False),
)


@pytest.fixture
async def db(db_settings: Settings) -> AsyncIterator[Database]:
    database = Database(db_settings.database_dsn)
    async with database.engine.begin() as conn:
        await conn.run_sync(_metadata.drop_all)
        await conn.run_sync(_metadata.create_all)
        await conn.execute(counters.insert().values(id=1, value=0))
    yield database
    async with database.engine.begin() as conn:
        await conn.run_sync(_metadata.drop_all)
    await database.dispose()


async def _increment(db: Database) -> int:
    async with db.unit_of_work() as session:
        current = await session.scalar(
            select(counters.c.value).where(counters.c.id == 1).with_for_update()
        )
        assert current is not None
        # Yield to the others while holding what was read: the race the lock must close.
        await asyncio.sleep(0)
        await session.execute(update(counters).where(counters.c.id == 1).values(value=current + 1))
        return current + 1


async def _value(db: Database) -> int:
    async with db.read_only() as session:
        return int(await session.scalar(select(counters.c.value)) or 0)


async def test_locking_reads_serialise_concurrent_increments(db: Database) -> None:
    numbers = await asyncio.gather(*(_increment(db) for _ in range(WRITERS)))
    assert sorted(numbers) == list(range(1, WRITERS + 1))
    assert await _value(db) == WRITERS


async def test_a_savepoint_before_the_first_write_stays_inside_the_transaction(
    db: Database,
) -> None:
    """On SQLite a SAVEPOINT outside a transaction became the transaction, so its RELEASE
    committed and a later rollback kept the write."""

    async def fails_after_a_savepoint() -> None:
        async with db.unit_of_work() as session:
            async with session.begin_nested():
                await session.execute(update(counters).values(value=41))
            raise RuntimeError("the request fails after the savepoint")

    with pytest.raises(RuntimeError):
        await fails_after_a_savepoint()
    assert await _value(db) == 0


# One OS process: its own engine on the shared file, incrementing under the locking read.
_PROCESS = """
import asyncio, json, sys
from sqlalchemy import select, update, Column, Integer, MetaData, Table
from armillary.kit.db import Database

counters = Table("concurrency_test_counters", MetaData(), Column("id", Integer, primary_key=True),
                 Column("value", Integer, nullable=False))

async def main(url, times):
    db = Database(url)
    numbers = []
    for _ in range(times):
        async with db.unit_of_work() as session:
            current = await session.scalar(
                select(counters.c.value).where(counters.c.id == 1).with_for_update())
            await asyncio.sleep(0.001)
            await session.execute(update(counters).values(value=current + 1))
            numbers.append(current + 1)
    await db.dispose()
    print(json.dumps(numbers))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.sqlite
async def test_processes_on_one_sqlite_file_never_read_a_stale_counter(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}")
    async with db.engine.begin() as conn:
        await conn.run_sync(_metadata.create_all)
        await conn.execute(text("INSERT INTO concurrency_test_counters VALUES (1, 0)"))
    processes, times = 4, 5
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", _PROCESS, db.url, str(times), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(processes)
    ]
    outputs = [await child.communicate() for child in children]
    assert [child.returncode for child in children] == [0] * processes
    numbers = sorted(n for stdout, _ in outputs for n in json.loads(stdout))
    assert numbers == list(range(1, processes * times + 1))
    assert await _value(db) == processes * times
    await db.dispose()
