"""Work a task asks of its worker: what needs something no sandbox may hold.

A SageMaker training job needs AWS credentials, and no credential enters a sandbox (ADR 0011).
So the ``train`` task prepares its table in the sandbox and sends it to the worker, which
starts the job with its own credentials, follows it, and answers with the model.

A task type names the calls it may make (``TaskTypeContract.worker_calls``); implementations
are the ``armillary.worker_calls`` entry points. On the sandbox's API socket a call is
``POST /_worker/{name}`` with the input as its body. The worker saves the body in a directory
of its own (the sandbox never sees it), runs the implementation in a thread with the
attempt's params (from its own copy of the spec) and answers with the returned file as the
body and the implementation's ``info`` as JSON in ``X-Armillary-Result``; a failure is a 422
problem whose ``detail`` the task reports. When the attempt ends, its calls are told to stop
(a remote job is stopped, not left running) and waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import structlog

from armillary.contracts.task_base import (
    TaskContext,
    WorkerCall,
    WorkerCallFailed,
    WorkerCallHandler,
    WorkerCallResult,
)
from armillary.contracts.tasks import TASK_TYPES

from .protocol import AttemptSpec

log = structlog.get_logger("armillary.workflows.execution")

PREFIX = "/_worker/"
ENTRY_POINT_GROUP = "armillary.worker_calls"
MAX_UPLOAD_BYTES = 8 * 1024**3  # a training table; the sandbox's disk bounds it anyway
STOP_WAIT_SECONDS = 60.0  # for a stopped call to stop its remote work


def load_implementations() -> dict[str, WorkerCallHandler]:
    """The installed implementations by name; a broken plugin is logged and left out."""
    found: dict[str, WorkerCallHandler] = {}
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[entry_point.name] = entry_point.load()
        except Exception as exc:  # one broken plugin must not stop the others
            log.warning("worker_call.unavailable", call=entry_point.name, error=repr(exc))
    return found


@dataclass(frozen=True)
class Answer:
    """The response to one call: a status, JSON for the header or body, and maybe a file."""

    status: int
    info: Mapping[str, Any]
    file: Path | None = None


@dataclass
class CallSession:
    """The calls one attempt may make, and the ones in flight."""

    spec: AttemptSpec
    allowed: Mapping[str, WorkerCallHandler]
    scratch: Path  # the worker's own directory for this attempt's calls
    stop: threading.Event = field(default_factory=threading.Event)
    running: set[asyncio.Future[Any]] = field(default_factory=set)

    @classmethod
    def for_attempt(
        cls, spec: AttemptSpec, implementations: Mapping[str, WorkerCallHandler], scratch: Path
    ) -> CallSession | None:
        """A session when the attempt's type declares calls; None: it makes none."""
        contract = TASK_TYPES.get(spec.task_type)
        names = contract.worker_calls if contract is not None else ()
        allowed = {name: implementations[name] for name in names if name in implementations}
        return cls(spec, allowed, scratch) if names else None

    async def call(self, name: str, body: AsyncIterator[bytes]) -> Answer:
        """Run the call ``name`` with ``body`` as its upload."""
        handler = self.allowed.get(name)
        if handler is None:
            await _drain(body)
            return _problem(404, f"no worker call {name!r} for a {self.spec.task_type} task")
        if self.stop.is_set():
            await _drain(body)
            return _problem(409, "the attempt has ended")
        directory = self.scratch / f"call-{len(self.running)}-{os.urandom(4).hex()}"
        directory.mkdir(mode=0o700, parents=True)
        upload = directory / "upload"
        if not await _save(body, upload):
            return _problem(413, f"the upload is larger than {MAX_UPLOAD_BYTES} bytes")
        context = TaskContext(
            job_id=self.spec.job_id,
            project_id=self.spec.project_id,
            task=self.spec.task,
            attempt_id=self.spec.attempt_id,
            workdir=directory,
            artifacts_dir=directory / "artifacts",
            api_url=self.spec.api_url,
            _token=self.spec.job_token,
        )
        request = WorkerCall(
            params=dict(self.spec.params), context=context, upload=upload, stop=self.stop
        )
        future = _in_thread(handler, request, name=f"worker-call-{name}")
        self.running.add(future)
        try:
            result: WorkerCallResult = await asyncio.shield(future)
        except WorkerCallFailed as exc:
            return _problem(422, str(exc))
        except Exception as exc:
            log.warning("worker_call.failed", call=name, error=type(exc).__name__)
            return _problem(502, f"the worker could not do {name}: {type(exc).__name__}")
        finally:
            if future.done():
                self.running.discard(future)
        log.info("worker_call.done", call=name, attempt_id=self.spec.attempt_id)
        return Answer(200, dict(result.info), result.file)

    async def close(self) -> None:
        """Tell the calls in flight to stop, wait for them (bounded), remove their files."""
        self.stop.set()
        if self.running:
            with contextlib.suppress(Exception):
                await asyncio.wait(self.running, timeout=STOP_WAIT_SECONDS)
        await asyncio.to_thread(shutil.rmtree, self.scratch, True)


def _in_thread(
    handler: WorkerCallHandler, request: WorkerCall, *, name: str
) -> asyncio.Future[WorkerCallResult]:
    """The call in a thread of its own: it may last hours (a remote training job), and the
    loop's shared pool is for short blocking work."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[WorkerCallResult] = loop.create_future()

    def settle(result: WorkerCallResult | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = handler(request)
        except BaseException as exc:  # handed to the loop, which raises it in call()
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def _problem(status: int, detail: str) -> Answer:
    return Answer(status, {"type": "about:blank", "status": status, "detail": detail})


async def _save(body: AsyncIterator[bytes], path: Path) -> bool:
    """Write ``body`` to ``path``; False (and the rest drained) when it is too large."""
    size = 0
    with path.open("xb") as out:
        async for chunk in body:
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                await _drain(body)
                return False
            await asyncio.to_thread(out.write, chunk)
    return True


async def _drain(body: AsyncIterator[bytes]) -> None:
    async for _chunk in body:
        pass


def info_header(info: Mapping[str, Any]) -> bytes:
    """The info as the ``X-Armillary-Result`` header's value (ASCII JSON)."""
    return json.dumps(info, ensure_ascii=True, separators=(",", ":")).encode()
