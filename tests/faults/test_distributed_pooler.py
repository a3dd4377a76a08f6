"""The distributed shape behind PgBouncer in transaction mode (Debian's ``pgbouncer``): each
service process reaches PostgreSQL through the pooler with ``ARMILLARY_DATABASE_POOLER=true``
(the scheduler and the worker keep a direct DSN for their leader lock and LISTEN). A user's
journey passes (sign-in, project, dataset upload, a noop job run to success), and the audit
entries of data and workflows reach identity's chain over RabbitMQ."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, auth
from tests.faults.distributed_layout import Layout, http, launch, scene, submit, wait_jobs
from tests.faults.private_services import PrivatePostgres, private_pgbouncer
from tests.integration.services.test_up_distributed import rabbitmqctl

pytestmark = pytest.mark.slow


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"armillary-pooler-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


@pytest.fixture
def layout(postgres: PrivatePostgres, vhost: str, tmp_path: Path) -> Iterator[Layout]:
    bouncer = private_pgbouncer(postgres.port)
    try:
        found = launch(
            tmp_path,
            postgres.url("armillary"),
            vhost,
            service_env={
                "ARMILLARY_DATABASE_URL": bouncer.url("armillary"),
                "ARMILLARY_DATABASE_POOLER": "true",
            },
        )
        try:
            yield found
        finally:
            found.stop_all()
    finally:
        bouncer.remove()


async def test_journey_and_events_behind_pgbouncer(layout: Layout) -> None:
    found = await scene(layout)
    headers = auth(found.token)
    base = f"/api/v1/projects/{found.project}"
    async with http(layout, "data") as data:
        created = await data.post(f"{base}/datasets", json={"name": "sales"}, headers=headers)
        assert created.status_code == 201, created.text
        uploaded = await data.post(
            f"{base}/datasets/sales/versions",
            files={"file": ("sales.csv", b"a,b\n1,2\n3,4\n", "text/csv")},
            data={"format": "csv"},
            headers=headers,
        )
        assert uploaded.status_code == 201, uploaded.text
    async with http(layout, "workflows") as workflows:
        job = await submit(workflows, found)
        assert job.status_code == 201, job.text
    done = await wait_jobs(layout, found, [job.json()["id"]])
    assert set(done.values()) == {"succeeded"}, (done, layout.output("worker-1"))

    # Audit entries of data and workflows reach identity's chain over RabbitMQ.
    async with http(layout, "identity") as identity:
        admin = (
            await identity.post(
                "/api/v1/auth/token",
                data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
            )
        ).json()["access_token"]
        deadline = time.monotonic() + 60
        while True:
            answer = await identity.get("/api/v1/audit?limit=200", headers=auth(admin))
            assert answer.status_code == 200, answer.text
            actions = {entry["action"] for entry in answer.json()["items"]}
            if {"datasets.version_create", "jobs.create"} <= actions:
                break
            assert time.monotonic() < deadline, (actions, layout.output("data"))
            await asyncio.sleep(0.5)
        verified = await identity.get("/api/v1/audit/verify", headers=auth(admin))
        assert verified.json()["ok"], verified.text
    layout.assert_alive()
