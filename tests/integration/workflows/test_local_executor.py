"""LocalExecutor end to end: real bubblewrap sandboxes, real limits (no database).

As root (our machines), each attempt runs as a uid of its own from the reserved range."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from armillary.workflows.execution.cgroups import CgroupLimiter
from armillary.workflows.execution.child import TOKEN_PLACEHOLDER
from armillary.workflows.execution.forwarder import API_PORT
from armillary.workflows.execution.local import LocalExecutor, UidSettings
from armillary.workflows.execution.pool import SandboxOptions
from armillary.workflows.execution.protocol import (
    AttemptResult,
    AttemptSpec,
    Outcome,
    ResourceLimits,
)

TOKEN = "job-token-" + uuid.uuid4().hex
IS_ROOT = os.geteuid() == 0
SANDBOX_API = f"http://127.0.0.1:{API_PORT}"
UIDS = UidSettings()


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    """Not pytest's tmp_path: that sits in a 0700 directory the sandbox user cannot enter."""
    path = Path(tempfile.mkdtemp(prefix="armillary-exec-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def executor(base_dir: Path) -> AsyncIterator[LocalExecutor]:
    executor = LocalExecutor(base_dir / "work", watchdog_interval=0.05)
    await executor.start()
    yield executor
    await executor.close()


def spec(
    task_type: str,
    params: dict[str, Any],
    *,
    limits: ResourceLimits | None = None,
    declared: list[str] | None = None,
    inputs: dict[str, dict[str, Any]] | None = None,
    bundle_dir: str | None = None,
) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="job-1",
        project_id="project-1",
        task="step",
        task_type=task_type,
        params=params,
        inputs=inputs or {},
        declared_outputs=declared or [],
        limits=limits or ResourceLimits(),
        api_url="http://127.0.0.1:9/api",
        job_token=TOKEN,
        bundle_dir=bundle_dir,
    )


def python(source: str, **kwargs: Any) -> AttemptSpec:
    args = kwargs.pop("args", {})
    return spec("python", {"source": source, "args": args}, **kwargs)


class Log:
    """Collects the log and tells when a marker has been seen."""

    def __init__(self, marker: bytes = b"") -> None:
        self.data = bytearray()
        self.marker = marker
        self.seen = asyncio.Event()

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk
        if self.marker and self.marker in self.data:
            self.seen.set()

    @property
    def text(self) -> str:
        return self.data.decode()


def gone(pid: int) -> bool:
    """The process no longer runs (absent, or a zombie waiting for its reaper)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


async def finished(executor: LocalExecutor, attempt: AttemptSpec, **kwargs: Any) -> AttemptResult:
    result = await executor.run(attempt, **kwargs)
    assert result.workdir.name == attempt.attempt_id
    return result


async def test_noop_round_trip(executor: LocalExecutor) -> None:
    result = await finished(executor, spec("noop", {"values": {"a": 1}}, declared=["a"]))
    assert (result.outcome, result.outputs, result.error, result.exit_code) == (
        Outcome.SUCCEEDED,
        {"a": 1},
        None,
        0,
    )
    assert result.workdir.is_dir()
    result.cleanup()
    assert not result.workdir.exists()


async def test_python_gets_args_inputs_and_context(executor: LocalExecutor) -> None:
    source = """
import os
def main(scale, inputs, context):
    return {
        "total": scale * inputs["prepare"]["rows"],
        "ids": [context.job_id, context.project_id, context.task, context.attempt_id],
        "api": [context.api_url, os.environ["ARMILLARY_API_URL"], os.environ["ARMILLARY_JOB_ID"]],
        "token": context.token(),
        "auth": context.api_headers()["Authorization"] == "Bearer " + context.token(),
        "dirs": [os.getcwd(), os.environ["HOME"], str(context.workdir), os.environ["TMPDIR"]],
        "uid": os.getuid(),
    }
"""
    attempt = python(
        source, args={"scale": 3}, inputs={"prepare": {"rows": 5}}, declared=["total", "ids"]
    )
    result = await finished(executor, attempt)
    assert result.outcome == Outcome.SUCCEEDED, result.error
    outputs = result.outputs
    assert outputs is not None
    assert outputs["total"] == 15
    assert outputs["ids"] == ["job-1", "project-1", "step", attempt.attempt_id]
    # The task talks to its sandbox's loopback forwarder; the worker's proxy adds the token.
    assert outputs["api"] == [SANDBOX_API, SANDBOX_API, "job-1"]
    assert outputs["token"] == TOKEN_PLACEHOLDER
    assert outputs["auth"] is True
    assert outputs["dirs"] == ["/attempt", "/attempt", "/attempt", "/tmp"]
    if IS_ROOT:
        assert UIDS.first <= outputs["uid"] < UIDS.first + UIDS.count
    else:
        assert outputs["uid"] == os.getuid()
    result.cleanup()


async def test_task_sees_no_secrets_and_no_platform_files(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker's environment holds secrets; none may reach the task.
    for name, value in {
        "DATABASE_URL": "postgresql://u:pw@db/x",
        "ARMILLARY_DATABASE_URL": "postgresql://u:pw@db/x",
        "ARMILLARY_SECRET_KEY": "k" * 32,
        "AWS_SECRET_ACCESS_KEY": "aws",
        "REDIS_PASSWORD": "pw",
        "SOME_API_KEY": "key",
        "ARMILLARY_JOB_TOKEN": TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    home = base_dir / "armillary-home"  # stands in for ARMILLARY_HOME: root's, 0700
    home.mkdir(exist_ok=True)
    (home / "secret.key").write_text("signing key")
    home.chmod(0o700)
    monkeypatch.setenv("ARMILLARY_HOME", str(home))
    source = f"""
import os
def main(context):
    print("ENV", sorted(os.environ), flush=True)
    found = {{}}
    for name, action in [
        ("list", lambda: os.listdir({str(home)!r})),
        ("read", lambda: open({str(home / "secret.key")!r}).read()),
    ]:
        try:
            action()
            found[name] = "allowed"
        except OSError:  # not even there: the sandbox has no view of it
            found[name] = "denied"
    with open("/proc/self/cmdline", "rb") as f:
        cmdline = f.read().decode()
    try:
        with open("/proc/self/environ", "rb") as f:
            environ = f.read().decode()
    except PermissionError:
        environ = ""  # not readable after the uid drop (the process is not dumpable)
    token = context.token()
    found["token_in_cmdline"] = {TOKEN!r} in cmdline
    found["token_in_environ"] = {TOKEN!r} in environ or {TOKEN!r} in repr(dict(os.environ))
    found["token_known"] = token == {TOKEN!r}
    return found
"""
    executor = LocalExecutor(base_dir / "work-secrets", prestarted=0)
    log = Log()
    try:
        result = await executor.run(python(source), on_log=log)
    finally:
        await executor.close()
    assert result.outcome == Outcome.SUCCEEDED, result.error
    outputs = result.outputs
    assert outputs is not None
    env_line = next(line for line in log.text.splitlines() if line.startswith("ENV"))
    for word in ("DATABASE", "SECRET", "KEY", "TOKEN", "PASSWORD", "AWS", "ARMILLARY_HOME"):
        assert word not in env_line
    assert "ARMILLARY_API_URL" in env_line
    assert outputs["token_known"] is False  # the task never holds its token
    assert outputs["token_in_cmdline"] is False
    assert outputs["token_in_environ"] is False
    assert TOKEN not in log.text
    assert (outputs["list"], outputs["read"]) == ("denied", "denied")
    result.cleanup()


async def test_failure_reports_the_user_frames(executor: LocalExecutor) -> None:
    log = Log()
    result = await finished(
        executor, python("def main():\n    raise ValueError('bad rows')\n"), on_log=log
    )
    assert result.outcome == Outcome.FAILED
    assert result.exit_code == 1
    assert result.error is not None
    assert result.error.startswith("ValueError: bad rows")
    assert '"<task:step>", line 2, in main' in result.error
    assert "site-packages" not in result.error
    assert "armillary" not in result.error
    assert "ValueError: bad rows" in log.text
    result.cleanup()


async def test_fail_type_and_bad_outputs(executor: LocalExecutor) -> None:
    failed = await finished(executor, spec("fail", {"message": "on purpose"}))
    assert (failed.outcome, failed.error) == (Outcome.FAILED, "TaskFailed: on purpose")
    missing = await finished(executor, spec("noop", {"values": {"a": 1}}, declared=["a", "b"]))
    assert (missing.outcome, missing.error) == (Outcome.FAILED, "missing declared outputs: b")
    huge = await finished(executor, python("def main():\n    return {'x': 'a' * 2_000_000}\n"))
    assert huge.outcome == Outcome.FAILED
    assert huge.error is not None
    assert "more than the limit of 1048576" in huge.error
    bad_params = await finished(executor, spec("sleep", {"seconds": -1}))
    assert bad_params.outcome == Outcome.FAILED
    assert bad_params.error is not None
    assert bad_params.error.startswith("invalid params for the sleep type")
    for result in (failed, missing, huge, bad_params):
        result.cleanup()


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and not gone(int(entry.name)):
                    found.append(int(entry.name))
            except FileNotFoundError:
                continue
    return found


async def test_timeout_kills_every_process_of_the_sandbox(executor: LocalExecutor) -> None:
    source = """
import os, subprocess, time
def main():
    helper = subprocess.Popen(["sleep", "60"])
    print("UID", os.getuid(), flush=True)
    time.sleep(60)
"""
    log = Log()
    result = await finished(
        executor, python(source, limits=ResourceLimits(wall_seconds=1)), on_log=log
    )
    assert result.outcome == Outcome.TIMED_OUT
    assert result.error == "timed out after 1 s"
    # SIGTERM first (the grace period), which Python's default disposition dies of.
    assert result.exit_code == -signal.SIGTERM
    line = next(line for line in log.text.splitlines() if line.startswith("UID"))
    if IS_ROOT:  # the uid is the attempt's own: nothing of it may run any more
        assert processes_of(int(line.split()[1])) == []
    result.cleanup()


async def test_a_cancelled_task_may_clean_up_then_one_that_lingers_is_killed(
    executor: LocalExecutor,
) -> None:
    # A task that releases something on SIGTERM (as the SageMaker backend stops its remote
    # job) gets to do it; one that ignores SIGTERM is killed when the grace period ends.
    source = """
import signal, sys, time
def main():
    def stop(signum, frame):
        print("released the remote job", flush=True)
        if not IGNORE:
            sys.exit(3)
    signal.signal(signal.SIGTERM, stop)
    print("running", flush=True)
    time.sleep(60)
"""
    executor.stop_grace_seconds = 1.0
    for ignore, exit_code in ((False, 1), (True, -signal.SIGKILL)):
        log = Log()
        code = f"IGNORE = {ignore}\n{source}"
        result = await finished(
            executor, python(code, limits=ResourceLimits(wall_seconds=1)), on_log=log
        )
        assert result.outcome == Outcome.TIMED_OUT
        assert "released the remote job" in log.text
        assert result.exit_code == exit_code
        result.cleanup()


async def test_cancel_kills_a_running_task(executor: LocalExecutor) -> None:
    cancel = asyncio.Event()
    cancel.set()
    result = await finished(executor, spec("sleep", {"seconds": 60}), cancel=cancel)
    assert (result.outcome, result.error) == (Outcome.CANCELLED, "cancelled")
    result.cleanup()


async def test_log_arrives_while_the_task_runs(executor: LocalExecutor) -> None:
    source = (
        "import time\ndef main():\n    print('step one done', flush=True)\n    time.sleep(60)\n"
    )
    log = Log(b"step one done")
    cancel = asyncio.Event()
    running = asyncio.create_task(executor.run(python(source), on_log=log, cancel=cancel))
    await asyncio.wait_for(log.seen.wait(), 30)
    assert not running.done()  # the line came through while the task was still sleeping
    cancel.set()
    result = await running
    assert result.outcome == Outcome.CANCELLED
    result.cleanup()


async def test_allocating_past_the_memory_limit(executor: LocalExecutor) -> None:
    limits = ResourceLimits(memory_bytes=200 * 1024**2)
    result = await finished(
        executor, python("def main():\n    return {'n': len(bytearray(1024**3))}\n", limits=limits)
    )
    assert result.outcome == Outcome.MEMORY_EXCEEDED
    assert result.error is not None
    assert "memory limit of 200 MiB" in result.error
    result.cleanup()


async def test_rss_watchdog_catches_memory_the_data_limit_misses(executor: LocalExecutor) -> None:
    # Shared anonymous memory is not counted by RLIMIT_DATA, but it is resident.
    source = """
import mmap, time
def main():
    shared = mmap.mmap(-1, 1200 * 1024**2)
    chunk = b"x" * 1024**2
    for _ in range(1200):
        shared.write(chunk)
    time.sleep(60)
"""
    # The limit is well above what the child inherits from the fork server (the preloaded
    # libraries, and the coverage tracer under `make test`), so only the watchdog can stop it.
    limits = ResourceLimits(memory_bytes=500 * 1024**2)
    result = await finished(executor, python(source, limits=limits))
    assert result.outcome == Outcome.MEMORY_EXCEEDED
    assert result.error is not None
    assert result.error.startswith("memory limit of 500 MiB exceeded (resident")
    result.cleanup()


async def test_cpu_time_limit(executor: LocalExecutor) -> None:
    source = "def main():\n    while True:\n        pass\n"
    result = await finished(executor, python(source, limits=ResourceLimits(cpu_seconds=1)))
    assert (result.outcome, result.error) == (Outcome.FAILED, "CPU time limit of 1 s exceeded")
    result.cleanup()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("os.kill(os.getpid(), signal.SIGSEGV)", "killed by signal SIGSEGV"),
        ("os._exit(3)", "exited with code 3 without a result"),
    ],
)
async def test_a_child_dying_without_a_result_crashed(
    executor: LocalExecutor, body: str, error: str
) -> None:
    source = f"import os, signal\ndef main():\n    {body}\n"
    result = await finished(executor, python(source))
    assert result.outcome == Outcome.CRASHED
    assert result.error is not None
    assert error in result.error
    result.cleanup()


async def test_artifacts_are_listed_without_links(executor: LocalExecutor) -> None:
    source = """
import os
def main(context):
    (context.artifacts_dir / "model.txt").write_text("weights")
    (context.artifacts_dir / "plots").mkdir()
    (context.artifacts_dir / "plots" / "loss.csv").write_text("1,0.5")
    os.symlink("/etc/passwd", context.artifacts_dir / "passwd")
    return {}
"""
    result = await finished(executor, python(source))
    assert result.outcome == Outcome.SUCCEEDED, result.error
    assert sorted(result.artifacts) == ["model.txt", "plots/loss.csv"]
    assert result.artifacts["model.txt"].read_text() == "weights"
    result.cleanup()
    assert not result.artifacts["model.txt"].exists()


async def test_bundle_entrypoint(executor: LocalExecutor, base_dir: Path) -> None:
    bundle = Path(tempfile.mkdtemp(dir=base_dir))
    bundle.chmod(0o755)
    (bundle / "pipeline").mkdir(mode=0o755)
    (bundle / "pipeline" / "__init__.py").write_text("")
    (bundle / "pipeline" / "steps.py").write_text("def train(lr):\n    return {'lr': lr}\n")
    for path in bundle.rglob("*.py"):
        path.chmod(0o644)
    params = {"bundle": "pipeline", "entrypoint": "pipeline.steps.train", "args": {"lr": 0.1}}
    result = await finished(executor, spec("python", params, bundle_dir=str(bundle)))
    assert (result.outcome, result.outputs) == (Outcome.SUCCEEDED, {"lr": 0.1})
    result.cleanup()


async def test_large_inputs_travel_in_chunks(executor: LocalExecutor) -> None:
    blob = "x" * 3_000_000  # far more than one socket packet, or the socket buffer
    source = "def main(inputs):\n    return {'size': len(inputs['up']['blob'])}\n"
    result = await finished(executor, python(source, inputs={"up": {"blob": blob}}))
    assert (result.outcome, result.outputs) == (Outcome.SUCCEEDED, {"size": 3_000_000})
    result.cleanup()


async def test_attempts_run_concurrently(executor: LocalExecutor) -> None:
    attempts = [spec("noop", {"values": {"i": i}}) for i in range(4)]
    attempts.append(spec("sleep", {"seconds": 0.2}))
    results = await asyncio.gather(*(executor.run(a) for a in attempts))
    assert [r.outcome for r in results] == [Outcome.SUCCEEDED] * 5
    assert [r.outputs for r in results] == [{"i": i} for i in range(4)] + [{"seconds": 0.2}]
    for result in results:
        result.cleanup()


async def test_a_warm_sandbox_that_died_is_replaced(base_dir: Path) -> None:
    executor = LocalExecutor(base_dir / "work-replaced", prestarted=1)
    await executor.warm_up()
    try:
        pool = executor._pool
        assert pool is not None
        warm = await asyncio.wait_for(pool._ready.get(), 120)
        os.kill(warm.process.pid, signal.SIGKILL)
        await warm.process.wait()
        pool._ready.put_nowait(warm)
        result = await finished(executor, spec("noop", {"values": {"again": True}}))
        assert (result.outcome, result.outputs) == (Outcome.SUCCEEDED, {"again": True})
        result.cleanup()
    finally:
        await executor.close()


async def test_sandboxes_start_on_first_use_then_stay_warm(base_dir: Path) -> None:
    # A worker at rest holds no sandbox (issue 18, memory); after its first attempt the pool
    # keeps `prestarted` ready, so later attempts skip the start-up.
    executor = LocalExecutor(base_dir / "work-first-use", prestarted=1)
    await executor.start()
    try:
        pool = executor._pool
        assert pool is not None
        await asyncio.sleep(0.5)
        assert pool._ready.qsize() == 0
        assert not pool._starting
        result = await finished(executor, spec("noop", {"values": {"first": True}}))
        assert result.outcome is Outcome.SUCCEEDED
        result.cleanup()
        warm = await asyncio.wait_for(pool._ready.get(), 120)
        assert warm.process.returncode is None
        pool._ready.put_nowait(warm)
    finally:
        await executor.close()


async def test_ingest_sandboxes_run_side_by_side(executor: LocalExecutor) -> None:
    # ingest declares egress: each sandbox has its own network namespace and egress proxy, so
    # two at once do not fight over the forwarders' loopback ports.
    attempts = [spec("ingest", {"url": "http://127.0.0.1:1/rows.csv"}) for _ in range(2)]
    results = await asyncio.gather(*(executor.run(a) for a in attempts))
    for result in results:
        assert result.outcome == Outcome.FAILED
        assert result.error is not None
        assert result.error.startswith("BlockedDestination: refused to connect to 127.0.0.1")
        result.cleanup()


async def test_without_cgroups_the_rss_watchdog_stops_shared_memory(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Hosts without usable cgroups keep only rlimits, which shared memory escapes.
    monkeypatch.setattr(CgroupLimiter, "detect", classmethod(lambda cls, **_: None))
    executor = LocalExecutor(base_dir / "work-no-cgroups", prestarted=0, watchdog_interval=0.05)
    source = """
import mmap, time
def main():
    shared = mmap.mmap(-1, 1200 * 1024**2)
    chunk = b"x" * 1024**2
    for _ in range(1200):
        shared.write(chunk)
    time.sleep(60)
"""
    try:
        limits = ResourceLimits(memory_bytes=500 * 1024**2)
        result = await finished(executor, python(source, limits=limits))
    finally:
        await executor.close()
    assert result.outcome == Outcome.MEMORY_EXCEEDED
    assert result.error is not None
    assert result.error.startswith("memory limit of 500 MiB exceeded (resident")
    result.cleanup()


def test_only_ingest_gets_egress(executor: LocalExecutor) -> None:
    remote = spec("train", {"backend": "sagemaker"})  # its worker talks to AWS, not the task
    local = spec("train", {"backend": "local"})
    assert executor._options_for(spec("ingest", {})) is not None
    assert (executor._options_for(spec("ingest", {})) or SandboxOptions({})).egress
    assert executor._options_for(remote) is None
    assert executor._options_for(local) is None
    assert executor._options_for(spec("python", {})) is None  # a warm one: no network
