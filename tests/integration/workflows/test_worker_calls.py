"""Worker calls end to end: real bubblewrap sandboxes, the worker answering on the sandbox's
API socket (as root: each attempt its own uid).

The worker holds AWS credentials; no sandbox does, not even a `train` one: what needs them
(a SageMaker job) is a worker call, which only the task types that declare it may make.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.workflows import worker_call_probe

from armillary.contracts.task_base import WorkerCall, WorkerCallFailed, WorkerCallResult
from armillary.contracts.tasks import TASK_TYPES
from armillary.workflows.execution.local import DEFAULT_PRELOAD, LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, Outcome, ResourceLimits

SECRET = "wJalrXUtnFEMI" + uuid.uuid4().hex


class Echo:
    """The worker side of ``probe_echo``: records what it got, answers with a file; a
    ``wait`` upload blocks until the attempt ends."""

    def __init__(self) -> None:
        self.calls: list[WorkerCall] = []
        self.uploads: list[str] = []
        self.secret_seen: list[bool] = []
        self.stopped = threading.Event()

    def __call__(self, call: WorkerCall) -> WorkerCallResult:
        self.calls.append(call)
        text = call.upload.read_text()
        self.uploads.append(text)
        self.secret_seen.append(os.environ.get("AWS_SECRET_ACCESS_KEY") == SECRET)
        if text == "fail":
            raise WorkerCallFailed("the remote side said no")
        if text == "wait":
            call.stop.wait(60)
            self.stopped.set()
            raise WorkerCallFailed("stopped")
        reply = call.context.workdir / "reply"
        reply.write_text(f"echo: {text} for {call.context.task}")
        return WorkerCallResult(file=reply, info={"length": len(text), "params": dict(call.params)})


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="armillary-calls-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def echo() -> Echo:
    return Echo()


@pytest.fixture(scope="module")
async def executor(base_dir: Path, echo: Echo) -> AsyncIterator[LocalExecutor]:
    # The worker's environment holds the credentials (as `armillary up` passes AWS_* on).
    saved = {name: os.environ.get(name) for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"] = "AKIAWORKERONLY"
    os.environ["AWS_SECRET_ACCESS_KEY"] = SECRET
    worker_call_probe.register()
    executor = LocalExecutor(
        base_dir / "work",
        preload=(*DEFAULT_PRELOAD, worker_call_probe.__name__),
        worker_call_handlers={worker_call_probe.CALL: echo},
        watchdog_interval=0.05,
    )
    await executor.start()
    yield executor
    await executor.close()
    worker_call_probe.unregister()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _spec(task_type: str, params: dict[str, Any], declared: list[str]) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="job-1",
        project_id="project-1",
        task="step",
        task_type=task_type,
        params=params,
        inputs={},
        declared_outputs=declared,
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9/api",
        job_token="job-token-" + uuid.uuid4().hex,
    )


def _probe(send: str, call: str = worker_call_probe.CALL) -> AttemptSpec:
    return _spec(worker_call_probe.NAME, {"send": send, "call": call}, [])


async def test_a_declared_call_is_answered_by_the_worker(
    executor: LocalExecutor, echo: Echo
) -> None:
    result = await executor.run(_probe("table bytes"))

    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs is not None
    assert result.outputs["status"] == 200
    assert result.outputs["reply"] == "echo: table bytes for step"
    assert result.outputs["info"]["length"] == len("table bytes")
    # The params are the worker's copy of the spec, and the worker held the credential.
    assert result.outputs["info"]["params"]["send"] == "table bytes"
    assert echo.secret_seen[-1] is True
    # ... which never entered the sandbox.
    assert result.outputs["aws"] == []
    # The call's files were the worker's own, and are gone with the attempt.
    assert not echo.calls[-1].context.workdir.exists()
    result.cleanup()


async def test_a_failed_call_gives_the_task_its_reason(executor: LocalExecutor) -> None:
    result = await executor.run(_probe("fail"))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs == {"status": 422, "detail": "the remote side said no", "aws": []}
    result.cleanup()


async def test_a_call_the_type_does_not_declare_is_refused(
    executor: LocalExecutor, echo: Echo
) -> None:
    before = len(echo.calls)
    result = await executor.run(_probe("x", call="sagemaker_train"))
    assert result.outputs is not None
    assert result.outputs["status"] == 404
    assert len(echo.calls) == before
    result.cleanup()


async def test_a_python_task_can_make_no_worker_call(executor: LocalExecutor, echo: Echo) -> None:
    source = (
        "import os, httpx\n"
        "def main():\n"
        "    base = os.environ['ARMILLARY_API_URL'].rstrip('/')\n"
        "    return {'status': [httpx.post(base + '/_worker/' + name, content=b'x').status_code\n"
        "                       for name in ('probe_echo', 'sagemaker_train')],\n"
        "            'aws': sorted(n for n in os.environ if n.startswith('AWS'))}\n"
    )
    before = len(echo.calls)
    result = await executor.run(_spec("python", {"source": source, "args": {}}, ["status", "aws"]))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert result.outputs == {"status": [404, 404], "aws": []}
    assert len(echo.calls) == before
    result.cleanup()


async def test_the_call_is_told_to_stop_when_the_attempt_is_cancelled(
    executor: LocalExecutor, echo: Echo
) -> None:
    cancel = asyncio.Event()
    attempt = asyncio.create_task(executor.run(_probe("wait"), cancel=cancel))
    while not echo.uploads or echo.uploads[-1] != "wait":
        await asyncio.sleep(0.05)
    cancel.set()
    result = await attempt

    assert result.outcome == Outcome.CANCELLED
    assert echo.stopped.is_set()  # the worker's side stopped (a SageMaker job is stopped)
    result.cleanup()


def test_train_makes_its_sagemaker_job_a_worker_call() -> None:
    assert TASK_TYPES["train"].worker_calls == ("sagemaker_train",)
    assert all(
        not contract.worker_calls
        for name, contract in TASK_TYPES.items()
        if name not in ("train", worker_call_probe.NAME)
    )
