"""Behind PgBouncer in transaction mode (Debian's 1.18, without prepared-statement support),
with ``ARMILLARY_DATABASE_POOLER=true``: many concurrent transactions of one process all
succeed; without it, named prepared statements meet other clients' server connections and
fail. PgBouncer is a private one on its own loopback port, in front of the test database."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from armillary.kit.db import Database
from tests.ports import free_port

pytestmark = pytest.mark.slow

TRANSACTIONS = 300


@pytest.fixture(scope="module")
def pgbouncer(pg_url: str) -> Iterator[str]:
    binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    if not Path(binary).exists():
        pytest.fail("pgbouncer is not installed (scripts/ensure-services.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="armillary-pgbouncer-"))
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        "[databases]\n* = host=127.0.0.1 port=5432\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root}/users.txt\n"
        "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 5\n"
        # search_path: so that a Database not told about the pooler (it sends its search
        # path at start-up) still connects, and fails where the negative test looks.
        "ignore_startup_parameters = extra_float_digits,search_path\n"
        f"logfile = {root}/pgbouncer.log\n"
    )
    argv = [binary, str(root / "pgbouncer.ini")]
    if os.geteuid() == 0:  # it refuses to run as root
        shutil.chown(root, "postgres", "postgres")
        for file in root.iterdir():
            shutil.chown(file, "postgres", "postgres")
        argv = ["runuser", "-u", "postgres", "--", *argv]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while (
            subprocess.run(
                ["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            assert time.monotonic() < deadline, "pgbouncer did not start"
            time.sleep(0.1)
        database = make_url(pg_url).database
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/{database}"
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(root, ignore_errors=True)


async def _failures(db: Database) -> list[str]:
    async def one(number: int) -> None:
        async with db.unit_of_work() as session:
            await session.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": number})
            await session.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_name = :t"),
                {"t": f"t{number % 7}"},
            )

    results = await asyncio.gather(*(one(i) for i in range(TRANSACTIONS)), return_exceptions=True)
    return [f"{type(r).__name__}: {r}"[:300] for r in results if isinstance(r, Exception)]


async def _read_failures(db: Database) -> list[str]:
    """Reads outside a unit of work (the hot read paths: principal and access look-ups)."""

    async def one(number: int) -> None:
        async with db.read_connection() as connection:
            await connection.execute(text("SELECT CAST(:n AS integer) + 1"), {"n": number})
        async with db.read_only() as session:
            await session.execute(
                text("SELECT count(*) FROM information_schema.tables WHERE table_name = :t"),
                {"t": f"t{number % 7}"},
            )

    results = await asyncio.gather(*(one(i) for i in range(TRANSACTIONS)), return_exceptions=True)
    return [f"{type(r).__name__}: {r}"[:300] for r in results if isinstance(r, Exception)]


async def test_every_read_succeeds_with_the_pooler_setting(pgbouncer: str) -> None:
    # Autocommit reads broke here: the prepare and the execute of one statement met two
    # server connections (the identity process's intermittent 503s behind PgBouncer).
    db = Database(pgbouncer, pool_size=20, behind_pooler=True)
    try:
        failures = await _read_failures(db)
        assert failures == [], (len(failures), failures[:3])
    finally:
        await db.engine.dispose()


async def test_every_transaction_succeeds_with_the_pooler_setting(pgbouncer: str) -> None:
    db = Database(pgbouncer, pool_size=20, behind_pooler=True)
    try:
        failures = await _failures(db)
        assert failures == [], (len(failures), failures[:3])
    finally:
        await db.engine.dispose()


async def test_without_the_setting_the_pooler_breaks_prepared_statements(pgbouncer: str) -> None:
    """What the setting is for (measured: most of 300 transactions failed)."""
    db = Database(pgbouncer, pool_size=20)
    try:
        failures = await _failures(db)
        assert failures, "expected failures without the pooler setting"
        assert any("prepared statement" in failure for failure in failures), failures[:3]
    finally:
        await db.engine.dispose()
