"""The connection budget of the distributed shape: 2 copies of each of the 5 services, 2
schedulers and 4 workers, with the documented pool sizes (kit.db.POOL_SIZE_BY_ROLE), on a
private PostgreSQL with ``max_connections=100`` (`make soak`; CI runs one copy of each
service, a scheduler and 2 workers on a cluster sized to their burst). Under c = 16 reads
aimed at each service process in turn (driving its pool to its burst) and a few jobs, the
peak count of client connections in pg_stat_activity stays within max_connections less the
superuser slots, every read is served and every job succeeds."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from armillary.kit.db import POOL_SIZE_BY_ROLE
from armillary.migrations.runner import upgrade
from tests.conftest import auth, make_settings
from tests.faults.distributed_layout import (
    SERVICES,
    Layout,
    http,
    launch,
    read_paths,
    scene,
    submit,
    wait_jobs,
)
from tests.faults.private_services import PrivatePostgres, private_postgres
from tests.integration.services.test_up_distributed import rabbitmqctl

pytestmark = pytest.mark.slow

RESERVED = 3  # PostgreSQL's superuser_reserved_connections
# The layout on PostgreSQL's default max_connections; it takes about 4 minutes on 2
# cores, so `make soak` runs it (ARMILLARY_FAULT_BUDGET_FULL=1) and CI runs a smaller layout
# on a cluster with just its burst budget plus the superuser slots.
FULL_LAYOUT = (2, 2, 4)
FULL = os.environ.get("ARMILLARY_FAULT_BUDGET_FULL") == "1"
COPIES, SCHEDULERS, WORKERS = FULL_LAYOUT if FULL else (1, 1, 2)


def burst(copies: int, schedulers: int, workers: int) -> int:
    """At a burst each process opens twice its pool; a scheduler also holds its leader lock
    and LISTEN connections, a worker its LISTEN connection."""
    services = sum(2 * POOL_SIZE_BY_ROLE[s] for s in SERVICES) * copies
    return (
        services
        + schedulers * (2 * POOL_SIZE_BY_ROLE["scheduler"] + 2)
        + workers * (2 * POOL_SIZE_BY_ROLE["worker"] + 1)
    )


MAX_CONNECTIONS = 100 if FULL else burst(COPIES, SCHEDULERS, WORKERS) + RESERVED
READERS = 16
READS_PER_PROCESS = 96
JOBS = 6


@pytest.fixture(scope="module")
def small_postgres() -> Iterator[PrivatePostgres]:
    server = private_postgres(max_connections=MAX_CONNECTIONS)
    try:
        server.create_database("armillary")
        upgrade(make_settings(Path(server.root), database_url=server.url("armillary")))
        yield server
    finally:
        server.remove()


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"armillary-budget-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def layout(small_postgres: PrivatePostgres, vhost: str, tmp_path: Path) -> Iterator[Layout]:
    found = launch(
        tmp_path,
        small_postgres.url("armillary"),
        vhost,
        copies=COPIES,
        schedulers=SCHEDULERS,
        workers=WORKERS,
    )
    try:
        yield found
    finally:
        found.stop_all()


def test_the_documented_pool_sizes_add_up_within_the_budget() -> None:
    """2 copies of each service, 2 schedulers and 4 workers within the default 100."""
    assert burst(*FULL_LAYOUT) <= 100 - RESERVED


async def test_the_distributed_layout_stays_within_max_connections(
    layout: Layout, small_postgres: PrivatePostgres
) -> None:
    watcher = await asyncpg.connect(small_postgres.url("armillary").replace("+asyncpg", ""))
    peak = 0
    watching = True

    async def watch() -> None:
        nonlocal peak
        while watching:
            # Every client connection but the watcher's own.
            count = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            peak = max(peak, count)
            await asyncio.sleep(0.05)

    watcher_task = asyncio.create_task(watch())
    try:
        found = await scene(layout)
        jobs: list[str] = []
        statuses: list[int] = []
        paths = read_paths(found)
        # A few jobs, spread over both copies of workflows.
        for n in range(JOBS):
            async with http(layout, layout.copies("workflows")[n % COPIES]) as client:
                answer = await submit(client, found)
                assert answer.status_code == 201, answer.text
                jobs.append(answer.json()["id"])
        # c = 16 reads at each service process in turn: its pool opens to its burst.
        for name in layout.ports:
            path = paths[name.split("-")[0]]
            async with http(layout, name) as client:

                async def reader(client: object = client, path: str = path) -> list[int]:
                    seen = []
                    for _ in range(READS_PER_PROCESS // READERS):
                        got = await client.get(path, headers=auth(found.token))  # type: ignore[attr-defined]
                        seen.append(got.status_code)
                    return seen

                for seen in await asyncio.gather(*(reader() for _ in range(READERS))):
                    statuses += seen
        done = await wait_jobs(layout, found, jobs)
        assert set(done.values()) == {"succeeded"}, done
        assert set(statuses) == {200}, sorted(set(statuses))
        layout.assert_alive()
    finally:
        watching = False
        await watcher_task
        await watcher.close()
    # Something was measured: at least one connection of each process at some point.
    assert peak >= len(layout.processes), peak
    assert peak <= MAX_CONNECTIONS - RESERVED, (peak, MAX_CONNECTIONS)
