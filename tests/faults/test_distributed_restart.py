"""A PostgreSQL restart of a few seconds under load in the distributed shape: each service as a
process of its own, a scheduler and a worker, c = 16 reads through the service ports and job
submissions. No process exits, every job submitted before and after (and any accepted during)
finishes, and every failed request is a 503 with Retry-After: never a 500."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import auth
from tests.faults.distributed_layout import (
    SERVICES,
    Layout,
    Scene,
    http,
    launch,
    read_paths,
    scene,
    submit,
    wait_jobs,
)
from tests.faults.private_services import PrivatePostgres
from tests.integration.services.test_up_distributed import rabbitmqctl

pytestmark = pytest.mark.slow

READERS = 16
OUTAGE_SECONDS = 4.0


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"armillary-restart-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def layout(postgres: PrivatePostgres, vhost: str, tmp_path: Path) -> Iterator[Layout]:
    # Each process as its service's own database role: the journey holds with the GRANTs.
    found = launch(tmp_path, postgres.url("armillary"), vhost, database_roles=True)
    try:
        yield found
    finally:
        found.stop_all()


async def _read_until(
    layout: Layout, found: Scene, service: str, stop: asyncio.Event
) -> list[tuple[str, int, str | None]]:
    seen = []
    path = read_paths(found)[service]
    async with http(layout, service) as client:
        while not stop.is_set():
            try:
                answer = await client.get(path, headers=auth(found.token))
            except httpx.HTTPError as exc:  # a process gone or hung: never expected
                seen.append((service, 0, type(exc).__name__))
                continue
            seen.append((service, answer.status_code, answer.headers.get("retry-after")))
            if answer.status_code != 200:
                await asyncio.sleep(0.2)
    return seen


async def _submit_until_accepted(layout: Layout, found: Scene, timeout: float = 60) -> str:
    """A job submitted after the restart: a 503 (the database not back yet) is retried."""
    deadline = time.monotonic() + timeout
    async with http(layout, "workflows") as client:
        while True:
            answer = await submit(client, found)
            if answer.status_code == 201:
                return str(answer.json()["id"])
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0
            assert time.monotonic() < deadline, answer.text
            await asyncio.sleep(0.5)


async def test_the_distributed_shape_outlives_a_postgres_restart(
    layout: Layout, postgres: PrivatePostgres
) -> None:
    found = await scene(layout)
    jobs = [await _submit_until_accepted(layout, found) for _ in range(3)]
    stop = asyncio.Event()
    readers = [
        asyncio.create_task(_read_until(layout, found, SERVICES[n % len(SERVICES)], stop))
        for n in range(READERS)
    ]
    await asyncio.sleep(1.0)
    await asyncio.to_thread(postgres.stop, "fast")
    # Submissions while it is down: refused for now (503 with Retry-After) or accepted.
    during: list[httpx.Response] = []
    async with http(layout, "workflows") as client:
        for _ in range(3):
            during.append(await submit(client, found))
            await asyncio.sleep(OUTAGE_SECONDS / 3)
    await asyncio.to_thread(postgres.start)
    jobs += [await _submit_until_accepted(layout, found) for _ in range(3)]
    await asyncio.sleep(2.0)  # reads after the restart too
    stop.set()
    seen = [entry for entries in await asyncio.gather(*readers) for entry in entries]

    by_status = Counter((service, status) for service, status, _ in seen)
    failed = [entry for entry in seen if entry[1] != 200]
    assert all(status == 503 and retry for _, status, retry in failed), by_status
    assert any(status == 503 for _, status, _ in seen), by_status
    for answer in during:
        assert answer.status_code in (201, 503), answer.text
        if answer.status_code == 503:
            assert int(answer.headers["retry-after"]) > 0
        else:
            jobs.append(answer.json()["id"])
    # Every service answers again once the database is back (a service whose circuit to
    # identity opened during the outage probes it again after the breaker's reset time).
    async with httpx.AsyncClient(timeout=30) as client:
        for service, path in read_paths(found).items():
            deadline = time.monotonic() + 60
            while True:
                answer = await client.get(layout.url(service) + path, headers=auth(found.token))
                if answer.status_code == 200:
                    break
                assert answer.status_code == 503, answer.text
                assert int(answer.headers["retry-after"]) > 0
                assert time.monotonic() < deadline, (service, answer.text)
                await asyncio.sleep(1.0)

    done = await wait_jobs(layout, found, jobs)
    assert set(done.values()) == {"succeeded"}, (done, layout.output("worker-1"))
    layout.assert_alive()
