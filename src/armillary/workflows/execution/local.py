"""``LocalExecutor``: runs each attempt on this machine in a bubblewrap sandbox of its own.

Per attempt: take a pre-started sandbox (:mod:`.pool`), or start one for task types that need
their own environment or network; rename its private directory after the attempt; link the
code bundle in; tell its API proxy whose job it serves; send the attempt over its control
socket; stream its log; watch it (wall time, memory, cancellation) until it exits; then,
with every process of the sandbox dead, copy its artifacts out (:mod:`.artifacts`) and free
its uid, cgroup and socket.

Without bubblewrap the executor refuses ``python`` tasks (user code) unless the operator set
the insecure development mode, which runs every attempt unsandboxed and says so loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from armillary.contracts.task_base import WorkerCallHandler
from armillary.kit.egress import parse_allow_networks

from . import artifacts, isolation, sandbox, worker_calls, workroot
from .cgroups import CgroupLimiter
from .pool import (
    Sandbox,
    SandboxFactory,
    SandboxFailed,
    SandboxOptions,
    WarmPool,
    read_frame,
    release,
    write_frame,
)
from .protocol import AttemptResult, AttemptSpec, LogSink, Outcome

# Imported by every sandbox before its attempt arrives; scikit-learn is left to the tasks that
# use it (ARMILLARY_WORKFLOWS_EXECUTOR_PRELOAD adds it back).
DEFAULT_PRELOAD: tuple[str, ...] = ("numpy", "polars")
EXIT_TIMEOUT = 10.0  # from SIGKILL to the exit status: the kernel is quick, this is a backstop
USER_CODE_TYPES = frozenset({"python"})
# Task types that reach outside hosts themselves, only through the worker's egress proxy
# (their sandbox has no network either; see ADR 0011).
EGRESS_TYPES = frozenset({"ingest"})
# The operator's exceptions to the address policy (networks, not secrets), the setting the
# ingest guard reads too: the proxy applies it to every egress sandbox.
EGRESS_ALLOW_ENV = "ARMILLARY_DATA_INGEST_ALLOW_NETWORKS"

log = structlog.get_logger("armillary.workflows.execution")


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing and the insecure development mode is off."""


@dataclass
class _Watch:
    """Why the executor stopped the attempt, if it did."""

    outcome: Outcome | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class UidSettings:
    """The reserved uid range of a root worker's sandboxes."""

    first: int = 200_000
    count: int = 50_000
    lock_dir: Path = Path("/run/armillary/sandbox-uids")


class LocalExecutor:
    """Runs each attempt in a fresh bubblewrap sandbox, ``prestarted`` of them kept warm."""

    def __init__(
        self,
        work_root: Path,
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        prestarted: int = 2,
        extra_env: Mapping[str, str] | None = None,
        watchdog_interval: float = 0.1,
        stop_grace_seconds: float = 5.0,
        insecure_no_sandbox: bool = False,
        uids: UidSettings | None = None,
        pids_max: int = 512,
        cgroup_root: Path | None = None,
        artifact_limits: artifacts.Limits | None = None,
        redirect_origins: frozenset[str] | None = None,
        api_ca_file: Path | None = None,
        worker_call_handlers: Mapping[str, WorkerCallHandler] | None = None,
    ) -> None:
        self.work_root = Path(work_root).absolute()
        self.preload = tuple(preload)
        self.prestarted = prestarted
        self.base_env = _sandbox_env(sandbox.server_env(os.environ, extra_env))
        self.watchdog_interval = watchdog_interval
        # A cancelled or timed-out task first gets SIGTERM, so that it can release what it
        # holds outside this machine (a SageMaker training job); SIGKILL after the grace.
        self.stop_grace_seconds = stop_grace_seconds
        self.insecure = insecure_no_sandbox
        self.uid_settings = uids or UidSettings()
        self.pids_max = pids_max
        self.cgroup_root = cgroup_root
        self.artifact_limits = artifact_limits or artifacts.Limits(
            max_files=10_000, max_file_bytes=10 * 1024**3, max_total_bytes=20 * 1024**3
        )
        self.redirect_origins = redirect_origins
        self.api_ca_file = api_ca_file
        self.bwrap: str | None = None
        self._factory: SandboxFactory | None = None
        self._pool: WarmPool | None = None
        self._running: set[str] = set()
        self._start_lock = asyncio.Lock()
        # None: the installed ``armillary.worker_calls`` entry points, loaded at start.
        self._worker_calls = None if worker_call_handlers is None else dict(worker_call_handlers)

    @property
    def sandboxed(self) -> bool:
        """Attempts run in bubblewrap (False only in the insecure development mode)."""
        return self.bwrap is not None

    async def start(self) -> None:
        """Check the work root and find bubblewrap; sandboxes start on the first attempt."""
        async with self._start_lock:
            if self._factory is not None:
                return
            workroot.ensure_private(self.work_root)
            if self._worker_calls is None:
                self._worker_calls = worker_calls.load_implementations()
            self.bwrap = isolation.find_bwrap()
            if self.bwrap is None:
                if not self.insecure:
                    log.error(
                        "sandbox.bubblewrap_missing",
                        detail="python tasks are refused; install bubblewrap",
                    )
                else:
                    log.warning(
                        "sandbox.INSECURE_MODE",
                        detail="tasks run WITHOUT a sandbox: user code can reach everything "
                        "this worker can. For development only.",
                    )
            root = os.geteuid() == 0
            uid_range = None
            if root and self.bwrap is not None:
                u = self.uid_settings
                uid_range = isolation.UidRange(u.first, u.count, u.lock_dir)
            limiter = CgroupLimiter.detect(delegated_root=self.cgroup_root, pids_max=self.pids_max)
            if limiter is None and self.bwrap is not None:
                log.warning("sandbox.no_cgroups", detail="memory and process limits are rlimits")
            elif limiter is not None:
                await asyncio.to_thread(limiter.sweep)
            self._factory = SandboxFactory(
                self.work_root,
                bwrap=self.bwrap,
                runtime=isolation.RuntimeView.of_this_interpreter(self.preload),
                preload=self.preload,
                uids=uid_range,
                cgroups=limiter,
                redirect_origins=self.redirect_origins,
                api_ca_file=self.api_ca_file,
                egress_allow=parse_allow_networks(os.environ.get(EGRESS_ALLOW_ENV)),
            )
            if self.bwrap is not None or self.insecure:
                # Not filled here: a worker at rest holds no sandbox (each is a Python of tens
                # of MB). The first attempt starts its own, and the pool fills behind it.
                self._pool = WarmPool(self._factory, SandboxOptions(self.base_env), self.prestarted)

    async def warm_up(self) -> None:
        """Start the pre-started sandboxes now instead of on the first attempt."""
        await self.start()
        if self._pool is not None:
            self._pool.fill()

    async def close(self) -> None:
        """Stop the warm sandboxes (running attempts end with their own ``run``)."""
        async with self._start_lock:
            if self._pool is not None:
                await self._pool.close()
            self._pool = None
            self._factory = None

    async def run(
        self,
        spec: AttemptSpec,
        *,
        on_log: LogSink | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AttemptResult:
        """Run one attempt to its end; see :class:`~.protocol.Executor`."""
        if spec.attempt_id in self._running:
            raise ValueError(f"attempt {spec.attempt_id} is already running")
        workdir = sandbox.Workdir.of(self.work_root, spec.attempt_id)
        if not spec.attempt_id or "/" in spec.attempt_id or spec.attempt_id.startswith("."):
            raise ValueError("attempt_id must be a plain name")
        await self.start()
        self._running.add(spec.attempt_id)
        try:
            try:
                box = await self._sandbox_for(spec)
            except (SandboxUnavailable, SandboxFailed, OSError, RuntimeError) as exc:
                workdir.root.mkdir(mode=0o700)
                if isinstance(exc, SandboxUnavailable):
                    error = f"the sandbox could not be started: {exc}"
                else:  # the details (host paths) are for the operator, not the task's viewers
                    log.error("sandbox.start_failed", error=f"{type(exc).__name__}: {exc}")
                    error = "the sandbox could not be started (the worker's log says why)"
                if on_log is not None:
                    await on_log(f"[armillary] {error}\n".encode())
                return AttemptResult(Outcome.CRASHED, None, error, None, {}, workdir.root)
            return await self._run_in(box, spec, workdir, on_log, cancel)
        finally:
            self._running.discard(spec.attempt_id)

    async def _sandbox_for(self, spec: AttemptSpec) -> Sandbox:
        factory = self._factory
        if factory is None:  # pragma: no cover - start() sets it
            raise SandboxUnavailable("the executor is not started")
        if self.bwrap is None and not self.insecure and spec.task_type in USER_CODE_TYPES:
            raise SandboxUnavailable(
                "bubblewrap is not installed, and python tasks run only in its sandbox"
            )
        options = self._options_for(spec)
        if options is None and self._pool is not None:
            return await self._pool.take()
        return await factory.start(options or SandboxOptions(self.base_env))

    def _options_for(self, spec: AttemptSpec) -> SandboxOptions | None:
        """A sandbox of its own for types with egress; None: any warm one does."""
        if spec.task_type not in EGRESS_TYPES:
            return None
        return SandboxOptions(dict(self.base_env), egress=True)

    async def _run_in(
        self,
        box: Sandbox,
        spec: AttemptSpec,
        workdir: sandbox.Workdir,
        on_log: LogSink | None,
        cancel: asyncio.Event | None,
    ) -> AttemptResult:
        watch = _Watch()
        log_task = asyncio.create_task(_pump_log(box.log_fd, on_log))
        box.log_fd = -1  # the pump owns it now
        answer: dict[str, Any] | None = None
        returncode: int | None = None
        oom_peak: int | None = None  # the group's peak, when the kernel killed for memory
        try:
            os.rename(box.workdir, workdir.root)
            box.workdir = workdir.root
            if spec.bundle_dir:
                await asyncio.to_thread(_link_bundle, Path(spec.bundle_dir), workdir.root / "code")
            if box.group is not None:
                box.group.set_memory(spec.limits.memory_bytes)
            calls = worker_calls.CallSession.for_attempt(
                spec, self._worker_calls or {}, self.work_root / f"{spec.attempt_id}.calls"
            )
            box.proxy.authorize(spec.job_token, spec.api_url, calls)
            inside = isolation.SANDBOX_WORKDIR if self.sandboxed else workdir.root
            await write_frame(
                box.writer, {"spec": _sandbox_spec(spec, box, inside), "workdir": str(inside)}
            )
            result = asyncio.create_task(read_frame(box.reader))
            returncode = await self._watch(box, spec, watch, cancel)
            if box.group is not None and box.group.oom_kills():
                oom_peak = box.group.peak_bytes()
            answer = await _finish(result)
        except (OSError, ConnectionError) as exc:
            watch.outcome, watch.error = Outcome.CRASHED, f"the sandbox failed: {exc}"
        finally:
            box.kill()
            await release(box)
            await _finish(log_task)
            collected = await asyncio.to_thread(self._collect, box, workdir)
            if self._factory is not None and self._factory.uids is not None and box.uid:
                self._factory.uids.release(box.uid)
        return _result(spec, returncode, answer, watch, oom_peak, workdir, collected)

    def _collect(self, box: Sandbox, workdir: sandbox.Workdir) -> dict[str, Path]:
        """The artifacts, copied by descriptor once no process of the sandbox is left."""
        if box.group is not None and box.group.members():
            box.group.kill_all()
        dest = workdir.root / f".collected-{uuid.uuid4().hex}"
        return artifacts.collect(workdir.artifacts, dest, self.artifact_limits)

    async def _watch(
        self, box: Sandbox, spec: AttemptSpec, watch: _Watch, cancel: asyncio.Event | None
    ) -> int | None:
        """Wait for the sandbox to exit, stopping it at the wall time, on cancel, or when the
        kernel killed inside it for want of memory; returns its exit status."""
        loop = asyncio.get_running_loop()
        limits = spec.limits
        deadline = None if limits.wall_seconds is None else loop.time() + limits.wall_seconds
        exited = asyncio.ensure_future(box.process.wait())
        cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            while not exited.done():
                waiters: set[asyncio.Future[Any]] = {exited}
                if cancelled is not None:
                    waiters.add(cancelled)
                timeout = self.watchdog_interval
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - loop.time()))
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if exited.done():
                    break
                if cancelled is not None and cancelled.done():
                    watch.outcome, watch.error = Outcome.CANCELLED, "cancelled"
                elif deadline is not None and loop.time() >= deadline:
                    watch.outcome = Outcome.TIMED_OUT
                    watch.error = f"timed out after {limits.wall_seconds:g} s"
                elif box.group is None and limits.memory_bytes is not None:
                    # No cgroup: shared memory escapes RLIMIT_DATA, so watch what is resident.
                    resident = sum(_rss_bytes(pid) for pid in box.task_pids())
                    if resident > limits.memory_bytes:
                        watch.outcome = Outcome.MEMORY_EXCEEDED
                        watch.error = (
                            f"memory limit of {_mib(limits.memory_bytes)} exceeded "
                            f"(resident {_mib(resident)})"
                        )
                if watch.outcome is not None:
                    await self._terminate(box, exited)
                    box.kill()
                    break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(exited), EXIT_TIMEOUT)
            return _exit_status(box.process.returncode, self.sandboxed)
        finally:
            if cancelled is not None:
                cancelled.cancel()

    async def _terminate(self, box: Sandbox, exited: asyncio.Future[Any]) -> None:
        """SIGTERM the task's processes and wait up to the grace period for them to go."""
        if self.stop_grace_seconds <= 0:
            return
        box.signal_task(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(exited), self.stop_grace_seconds)


def _sandbox_env(env: Mapping[str, str]) -> dict[str, str]:
    """The sandboxes' environment. Of the test suite's coverage variables only the inline
    configuration works inside (a configuration file is not in the sandbox)."""
    return {name: value for name, value in env.items() if name != "COVERAGE_PROCESS_START"}


def _sandbox_spec(spec: AttemptSpec, box: Sandbox, inside: Path) -> dict[str, Any]:
    """The attempt as the sandbox sees it: no token, its own API address and paths."""
    data = asdict(spec)
    data.pop("job_token")
    data["api_url"] = box.api_url
    if spec.bundle_dir:
        data["bundle_dir"] = str(inside / "code")
    return data


def _exit_status(returncode: int | None, sandboxed: bool) -> int | None:
    """The task's exit status as subprocess reports it (negative: killed by that signal).

    bubblewrap's init exits with 128 + the signal that killed the task."""
    if returncode is None or not sandboxed or returncode <= 128:
        return returncode
    signum = returncode - 128
    return -signum if signum in signal.valid_signals() else returncode


def _result(
    spec: AttemptSpec,
    returncode: int | None,
    answer: dict[str, Any] | None,
    watch: _Watch,
    oom_peak: int | None,
    workdir: sandbox.Workdir,
    collected: dict[str, Path],
) -> AttemptResult:
    def ended(
        outcome: Outcome, error: str | None, outputs: dict[str, Any] | None = None
    ) -> AttemptResult:
        return AttemptResult(
            outcome=outcome,
            outputs=outputs,
            error=error,
            exit_code=returncode,
            artifacts=collected,
            workdir=workdir.root,
        )

    limits = spec.limits
    if watch.outcome is not None:
        return ended(watch.outcome, watch.error)
    if oom_peak is not None and limits.memory_bytes is not None:
        return ended(
            Outcome.MEMORY_EXCEEDED,
            f"memory limit of {_mib(limits.memory_bytes)} exceeded (resident {_mib(oom_peak)})",
        )
    if answer is not None and returncode in (0, 1):
        if answer.get("ok") is True and isinstance(answer.get("outputs"), dict):
            return ended(Outcome.SUCCEEDED, None, answer["outputs"])
        error = str(answer.get("error") or "the task failed")
        memory = answer.get("kind") == "memory"
        result = ended(Outcome.MEMORY_EXCEEDED if memory else Outcome.FAILED, error)
        report = answer.get("report")
        result.report = report if isinstance(report, dict) else None
        return result
    if returncode == -signal.SIGXCPU and limits.cpu_seconds is not None:
        return ended(Outcome.FAILED, f"CPU time limit of {limits.cpu_seconds} s exceeded")
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        return ended(
            Outcome.CRASHED, f"the task process was killed by signal {name or -returncode}"
        )
    return ended(
        Outcome.CRASHED, f"the task process exited with code {returncode} without a result"
    )


def _link_bundle(bundle: Path, target: Path) -> None:
    """The code bundle inside the attempt's directory, as hard links of the worker's
    read-only copy (root's files, 0644: the task reads them and cannot change them)."""
    for root, dirs, files in os.walk(bundle, followlinks=False):
        relative = Path(root).relative_to(bundle)
        (target / relative).mkdir(mode=0o755, exist_ok=True)
        for name in files:
            source = Path(root, name)
            if source.is_symlink() or not source.is_file():
                continue
            os.link(source, target / relative / name, follow_symlinks=False)
        dirs[:] = [d for d in dirs if not Path(root, d).is_symlink()]


async def _pump_log(fd: int, on_log: LogSink | None) -> None:
    """Hand the log to ``on_log`` chunk by chunk as the task writes it, until EOF.

    The pipe is drained even if ``on_log`` fails, or the task would block on its next print.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while chunk := await reader.read(65536):
            if on_log is None:
                continue
            try:
                await on_log(chunk)
            except Exception:
                log.exception("attempt_log_sink_failed")
                on_log = None
    finally:
        transport.close()


async def _finish(task: asyncio.Task[Any] | None) -> Any:
    """A reader's result once its pipe closes, giving up after a while."""
    if task is None:
        return None
    try:
        return await asyncio.wait_for(task, EXIT_TIMEOUT)
    except TimeoutError:
        return None


def _rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _mib(size: int) -> str:
    return f"{size / 1024**2:.0f} MiB"
