"""The engine end to end: scheduler and workers as their own processes on PostgreSQL, tasks in
sandboxed children, the API over real HTTP."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import auth
from tests.integration.workflows.engine import (
    Engine,
    Steps,
    tasks_by_name,
)

from armillary.kit.settings import Settings

pytestmark = pytest.mark.slow
JWT = re.compile(r"eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+")


def at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


def python_task(name: str, source: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "python", "params": {"source": source}, **extra}


async def test_a_diamond_runs_in_dependency_order_with_branches_in_parallel(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker", "--concurrency", "4")
    token, project = editor["token"], editor["project"]
    branch = "import time\ndef main(x):\n    time.sleep(1.0)\n    return {'y': x * 2}\n"
    await steps.workflow(
        token,
        project,
        {
            "name": "diamond",
            "parameters": {"start": 3},
            "tasks": [
                python_task(
                    "a",
                    "def main(n):\n    return {'x': n + 1}\n",
                    outputs=["x"],
                    params={
                        "source": "def main(n):\n    return {'x': n + 1}\n",
                        "args": {"n": "${params.start}"},
                    },
                ),
                python_task(
                    "b",
                    branch,
                    needs=["a"],
                    outputs=["y"],
                    params={"source": branch, "args": {"x": "${tasks.a.outputs.x}"}},
                ),
                python_task(
                    "c",
                    branch,
                    needs=["a"],
                    outputs=["y"],
                    params={"source": branch, "args": {"x": "${tasks.a.outputs.x}"}},
                ),
                python_task(
                    "d",
                    "",
                    needs=["b", "c"],
                    outputs=["total"],
                    params={
                        "source": "def main(inputs):\n"
                        "    return {'total': inputs['b']['y'] + inputs['c']['y']}\n"
                    },
                ),
            ],
        },
    )
    job = await steps.run(token, project, "diamond")
    done = await steps.wait(token, job["id"])
    assert done["status"] == "succeeded", done
    runs = tasks_by_name(done)
    assert runs["a"]["outputs"] == {"x": 4}
    assert runs["d"]["outputs"] == {"total": 16}
    # Dependency order: each task started after everything it needs finished.
    assert at(runs["a"]["finished_at"]) <= at(runs["b"]["started_at"])
    assert at(runs["a"]["finished_at"]) <= at(runs["c"]["started_at"])
    for branch_name in ("b", "c"):
        assert at(runs[branch_name]["finished_at"]) <= at(runs["d"]["started_at"])
    # The independent branches overlapped in time.
    assert at(runs["b"]["started_at"]) < at(runs["c"]["finished_at"])
    assert at(runs["c"]["started_at"]) < at(runs["b"]["finished_at"])
    assert all(len(r["attempts"]) == 1 for r in runs.values())


async def test_retries_back_off_then_fail_and_dependents_are_upstream_failed(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    await steps.workflow(
        token,
        project,
        {
            "name": "flaky",
            "tasks": [
                {
                    "name": "boom",
                    "type": "fail",
                    "params": {"message": "no luck"},
                    "retries": 2,
                    "retry_backoff_seconds": 0.4,
                },
                {"name": "after", "type": "noop", "needs": ["boom"]},
                {"name": "later", "type": "noop", "needs": ["after"]},
            ],
        },
    )
    job = await steps.run(token, project, "flaky")
    done = await steps.wait(token, job["id"])
    assert done["status"] == "failed"
    assert "boom" in (done["error"] or "")
    runs = tasks_by_name(done)
    boom = runs["boom"]
    assert boom["status"] == "failed"
    assert "no luck" in boom["error"]
    attempts = boom["attempts"]
    assert [a["number"] for a in attempts] == [1, 2, 3]
    assert all(a["outcome"] == "failed" for a in attempts)
    # Each retry waited at least half its (doubling) backoff after the previous failure.
    for before, after, base in ((attempts[0], attempts[1], 0.4), (attempts[1], attempts[2], 0.8)):
        gap = (at(after["started_at"]) - at(before["finished_at"])).total_seconds()
        assert gap >= base / 2
    assert runs["after"]["status"] == "upstream_failed"
    assert runs["later"]["status"] == "upstream_failed"
    assert runs["after"]["attempts"] == []


async def test_a_hanging_task_is_killed_at_its_timeout(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    await steps.workflow(
        token,
        project,
        {
            "name": "hang",
            "tasks": [
                {"name": "stuck", "type": "sleep", "params": {"seconds": 600}, "timeout_seconds": 1}
            ],
        },
    )
    job = await steps.run(token, project, "hang")
    # The scheduler and worker processes start with the test: on a loaded machine that alone
    # took a minute once (the task was queued 57 s after the job).
    done = await steps.wait(token, job["id"], timeout=180)
    assert done["status"] == "failed"
    stuck = tasks_by_name(done)["stuck"]
    assert stuck["attempts"][0]["outcome"] == "timed_out"
    assert "timed out" in stuck["error"]


async def test_cancelling_a_job_stops_its_running_task(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    await steps.workflow(
        token,
        project,
        {
            "name": "long",
            "tasks": [
                {"name": "nap", "type": "sleep", "params": {"seconds": 600}},
                {"name": "next", "type": "noop", "needs": ["nap"]},
            ],
        },
    )
    job = await steps.run(token, project, "long")
    await steps.wait_task(token, job["id"], "nap", "running")
    response = await steps.client.post(
        f"/api/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    done = await steps.wait(token, job["id"], timeout=60)
    assert done["status"] == "cancelled"
    runs = tasks_by_name(done)
    assert runs["nap"]["status"] == "cancelled"
    assert runs["nap"]["attempts"][0]["outcome"] == "cancelled"
    assert runs["next"]["status"] == "cancelled"


async def test_a_cached_task_reuses_an_earlier_result(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    source = "import random\ndef main():\n    return {'r': random.random()}\n"
    await steps.workflow(
        token,
        project,
        {
            "name": "cached",
            "tasks": [python_task("pick", source, outputs=["r"], cache=True)],
        },
    )
    first = await steps.wait(token, (await steps.run(token, project, "cached"))["id"])
    second = await steps.wait(token, (await steps.run(token, project, "cached"))["id"])
    one, two = tasks_by_name(first)["pick"], tasks_by_name(second)["pick"]
    assert two["status"] == "succeeded"
    assert two["cached_from"] == one["id"]
    assert two["outputs"] == one["outputs"]
    assert two["attempts"] == []


def _pid_of(worker: str) -> int:
    # Worker names are host:pid:suffix.
    return int(worker.split(":")[1])


async def test_a_killed_worker_loses_its_lease_and_the_task_runs_again_once(
    platform: tuple[Engine, Steps], editor: dict[str, Any], settings: Settings
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    first = engine.start("worker-1", "worker")
    token, project = editor["token"], editor["project"]
    source = "import time\ndef main():\n    time.sleep(2)\n    return {'done': True}\n"
    await steps.workflow(
        token,
        project,
        {"name": "survivor", "tasks": [python_task("work", source, outputs=["done"])]},
    )
    job = await steps.run(token, project, "survivor")
    running = await steps.wait_task(token, job["id"], "work", "running")
    holder = running["attempts"][0]["worker"]
    assert _pid_of(holder) == first.pid
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    engine.start("worker-2", "worker")
    done = await steps.wait(token, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    work = tasks_by_name(done)["work"]
    assert work["outputs"] == {"done": True}
    lost, second = work["attempts"]
    assert lost["outcome"] == "lost"
    assert lost["reason"].startswith("lease expired")
    assert holder in lost["reason"]
    assert second["outcome"] == "succeeded"
    assert second["worker"] != holder
    # The killed attempt's result, arriving late, is refused by its stale fencing token.
    await _late_result_is_refused(settings, job["id"])


async def _late_result_is_refused(settings: Settings, job_id: str) -> None:
    import uuid

    from sqlalchemy import select

    from armillary.kit.db import Database, utcnow
    from armillary.workflows.execution import claims
    from armillary.workflows.execution.protocol import AttemptResult, Outcome
    from armillary.workflows.jobs.models import TaskRun

    db = Database(str(settings.database_url))
    try:
        async with db.unit_of_work() as session:
            run = await session.scalar(select(TaskRun).where(TaskRun.job_id == uuid.UUID(job_id)))
            assert run is not None
            stale = claims.Claim(
                run_id=run.id,
                job_id=run.job_id,
                project_id=uuid.uuid4(),
                started_by=None,
                task=run.name,
                task_type=run.type,
                attempt=1,
                fencing_token=1,
                params={},
                inputs={},
                declared_outputs=[],
                timeout_seconds=None,
                bundle=None,
                attempt_id=uuid.uuid4(),
            )
            result = AttemptResult(Outcome.SUCCEEDED, {"done": "late"}, None, 0, {}, Path("/"))
            # The second attempt finished: the run is final, and the stale token is refused.
            with pytest.raises(claims.LateResult):
                await claims.report(session, stale, result, utcnow())
        async with db.read_only() as session:
            run = await session.scalar(select(TaskRun).where(TaskRun.job_id == uuid.UUID(job_id)))
            assert run is not None
            assert run.outputs == {"done": True}
    finally:
        await db.dispose()


async def test_a_restarted_scheduler_carries_on_and_no_task_runs_twice(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker", "--concurrency", "2")
    token, project = editor["token"], editor["project"]
    await steps.workflow(
        token,
        project,
        {
            "name": "steady",
            "tasks": [
                {"name": "one", "type": "sleep", "params": {"seconds": 1.5}},
                {"name": "two", "type": "sleep", "params": {"seconds": 1.5}, "needs": ["one"]},
                {"name": "three", "type": "sleep", "params": {"seconds": 0.5}, "needs": ["two"]},
            ],
        },
    )
    job = await steps.run(token, project, "steady")
    await steps.wait_task(token, job["id"], "one", "running")
    engine.stop("scheduler", signal.SIGKILL)
    # The worker keeps running (and continuing) the chain while no scheduler is up, but
    # only a scheduler finishes a job.
    await steps.wait_task(token, job["id"], "three", "succeeded")
    await asyncio.sleep(1.0)
    assert (await steps.job(token, job["id"]))["status"] == "running"
    engine.start("scheduler-2", "scheduler")
    done = await steps.wait(token, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    for run in done["tasks"]:
        assert [a["number"] for a in run["attempts"]] == [1], run
        assert run["attempts"][0]["outcome"] == "succeeded"


SNOOP = """
import json, os, urllib.request, urllib.error

def main(context, home, own, other):
    print(json.dumps(dict(os.environ)), flush=True)
    try:
        listing = os.listdir(home)
    except OSError as exc:
        listing = type(exc).__name__
    print("home:", listing, flush=True)
    secrets_read = []
    for root, _dirs, files in os.walk(home):
        for name in files:
            try:
                with open(os.path.join(root, name), "rb") as f:
                    secrets_read.append(name if f.read(1) is not None else name)
            except OSError:
                pass
    def status(project):
        request = urllib.request.Request(
            context.api_url + "/api/v1/projects/" + project, headers=context.api_headers()
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
    print("cmdline:", open("/proc/self/cmdline", "rb").read(), flush=True)
    return {"listing": str(listing), "read": secrets_read,
            "own": status(own), "other": status(other)}
"""


async def test_a_task_sees_no_secrets_and_its_token_reaches_only_its_project(
    platform: tuple[Engine, Steps], editor: dict[str, Any], settings: Settings
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    # The same user's second project: their own token may read it, the job's may not.
    other = (await steps.create_project(token))["slug"]
    assert (
        await steps.client.get(
            f"/api/v1/projects/{other}", headers={"Authorization": f"Bearer {token}"}
        )
    ).status_code == 200
    await steps.workflow(
        token,
        project,
        {
            "name": "snoop",
            "tasks": [
                {
                    "name": "look",
                    "type": "python",
                    "params": {
                        "source": SNOOP,
                        "args": {"home": str(settings.home), "own": project, "other": other},
                    },
                    "outputs": ["listing", "read", "own", "other"],
                }
            ],
        },
    )
    job = await steps.run(token, project, "snoop")
    done = await steps.wait(token, job["id"])
    log = await steps.logs(token, job["id"], "look")
    assert done["status"] == "succeeded", (done["tasks"], log)
    outputs = tasks_by_name(done)["look"]["outputs"]
    assert outputs["own"] == 200
    assert outputs["other"] == 404
    # The sandbox has no view of the platform's home at all (ADR 0011).
    assert outputs["listing"] == "FileNotFoundError"
    assert outputs["read"] == []
    environment = log.splitlines()[0]
    for needle in ("DATABASE", "SECRET", "REDIS", "AWS", "PASSWORD", "ARMILLARY_HOME"):
        assert needle not in environment
    assert "home:" in log
    # No JWT (header.payload.signature, base64url JSON) anywhere in the output, argv included.
    assert JWT.search(log) is None


async def test_logs_can_be_followed_while_the_task_runs(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    source = (
        "import time\ndef main():\n    print('first line', flush=True)\n"
        "    time.sleep(2)\n    print('last line', flush=True)\n    return {}\n"
    )
    await steps.workflow(token, project, {"name": "chatty", "tasks": [python_task("talk", source)]})
    job = await steps.run(token, project, "chatty")
    await steps.wait_task(token, job["id"], "talk", "running")
    seen: list[str] = []
    async with steps.client.stream(
        "GET",
        f"/api/v1/jobs/{job['id']}/tasks/talk/logs",
        params={"follow": "true"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=None,
    ) as response:
        assert response.status_code == 200
        async for chunk in response.aiter_text():
            seen.append(chunk)
            if "first line" in "".join(seen) and "last line" not in "".join(seen):
                # Output arrived before the task ended.
                running = await steps.job(token, job["id"])
                assert tasks_by_name(running)["talk"]["status"] == "running"
    text = "".join(seen)
    assert text.index("first line") < text.index("last line")
    done = await steps.wait(token, job["id"])
    assert done["status"] == "succeeded"
    assert "last line" in await steps.logs(token, job["id"], "talk", attempt=1)

    # Read from a byte offset, at most `limit` bytes: what a console polling the log asks.
    # The two lines were written two seconds apart, so they are two chunks of the store.
    url = f"/api/v1/jobs/{job['id']}/tasks/talk/logs"
    whole = await steps.client.get(url, headers=auth(token))
    size = int(whole.headers["X-Log-Size"])
    assert size == len(whole.content)
    second = whole.content.index(b"last line")
    for offset, limit in [(0, None), (3, 4), (second, None), (second + 1, 3), (size, None)]:
        params = {"offset": offset, **({"limit": limit} if limit else {})}
        part = await steps.client.get(url, params=params, headers=auth(token))
        assert part.status_code == 200, part.text
        end = offset + limit if limit else size
        assert part.content == whole.content[offset:end], (offset, limit)
        assert part.headers["X-Log-Size"] == str(size)
    past_the_end = await steps.client.get(url, params={"offset": size + 10}, headers=auth(token))
    assert past_the_end.content == b""
    for bad in ({"offset": -1}, {"limit": 0}):
        assert (await steps.client.get(url, params=bad, headers=auth(token))).status_code == 422


async def test_a_python_task_runs_from_a_code_bundle(
    platform: tuple[Engine, Steps], editor: dict[str, Any]
) -> None:
    import io
    import zipfile

    engine, steps = platform
    engine.start("scheduler", "scheduler")
    engine.start("worker", "worker")
    token, project = editor["token"], editor["project"]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("pkg/__init__.py", "")
        bundle.writestr("pkg/helpers.py", "def double(x):\n    return 2 * x\n")
        bundle.writestr(
            "pkg/entry.py",
            "import os\n"
            "from pkg.helpers import double\n"
            "def run(x, context):\n"
            "    (context.artifacts_dir / 'note.txt').write_text('hello')\n"
            "    try:\n"
            "        others = os.listdir(context.bundle_dir.parent)\n"
            "    except OSError as exc:\n"
            "        others = type(exc).__name__\n"
            "    return {'y': double(x), 'others': others}\n",
        )
    uploaded = await steps.client.put(
        f"/api/v1/projects/{project}/code/mylib",
        content=archive.getvalue(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/zip"},
    )
    assert uploaded.status_code == 201, uploaded.text
    await steps.workflow(
        token,
        project,
        {
            "name": "bundled",
            "tasks": [
                {
                    "name": "calc",
                    "type": "python",
                    "params": {"bundle": "mylib", "entrypoint": "pkg.entry.run", "args": {"x": 21}},
                    "outputs": ["y", "others"],
                }
            ],
        },
    )
    done = await steps.wait(token, (await steps.run(token, project, "bundled"))["id"])
    assert done["status"] == "succeeded", done
    calc = tasks_by_name(done)["calc"]
    assert calc["outputs"]["y"] == 42
    # The bundle is linked into the attempt's own directory: no other bundle is in view.
    assert set(calc["outputs"]["others"]) <= {"artifacts", "code", "tmp"}
    assert set(calc["artifacts"]) == {"note.txt"}
    # Keyed by the attempt that made it (on a loaded machine a lost lease can add attempts).
    assert calc["artifacts"]["note.txt"].endswith(f"/calc/attempt-{calc['attempt']}/note.txt")
    url = f"/api/v1/jobs/{done['id']}/tasks/calc/artifacts/note.txt"
    response = await steps.client.get(url, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.text == "hello"
    missing = await steps.client.get(
        url.replace("note.txt", "other.txt"), headers={"Authorization": f"Bearer {token}"}
    )
    assert missing.status_code == 404
