"""A standby scheduler: two scheduler processes, one leads (PostgreSQL advisory lock); when
the leader is killed, the standby takes over by itself and the jobs finish."""

from __future__ import annotations

import asyncio
import signal

import pytest

from tests.faults.conftest import editor_with
from tests.faults.private_services import PrivatePostgres
from tests.integration.workflows.engine import Engine, Steps

pytestmark = pytest.mark.slow

STEPS = {
    "name": "steps",
    "tasks": [
        {"name": "one", "type": "sleep", "params": {"seconds": 0.5}},
        {"name": "two", "type": "noop", "needs": ["one"]},
    ],
}


async def test_the_standby_takes_over_when_the_leader_dies(
    platform: tuple[Engine, Steps], postgres: PrivatePostgres
) -> None:
    engine, steps = platform
    token, project = await editor_with(steps, STEPS)
    engine.start("leader", "scheduler")
    engine.start("worker", "worker", "--concurrency", "2")
    first = await steps.run(token, project, "steps")
    assert (await steps.wait(token, first["id"], timeout=120))["status"] == "succeeded"
    standby = engine.start("standby", "scheduler")
    await asyncio.sleep(2.0)  # the standby is up, and finds the lock taken
    engine.stop("leader", signal.SIGKILL)

    jobs = [(await steps.run(token, project, "steps"))["id"] for _ in range(3)]
    for job_id in jobs:
        done = await steps.wait(token, job_id, timeout=120)
        assert done["status"] == "succeeded", (done, engine.output("standby")[-2000:])
    assert standby.poll() is None
