"""``LocalExecutor``: runs attempts on this machine through one fork server.

The asyncio side of :mod:`.forkserver`. ``run`` sends the request and two pipe write ends to
the server, learns the child's pid, streams the log pipe to ``on_log``, and watches the
child (wall time, RSS, cancellation) until the server reports its exit status; it then kills
whatever is left of the child's process group and reads the result pipe.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import structlog

from . import sandbox
from .forkserver import CHUNK
from .protocol import AttemptResult, AttemptSpec, LogSink, Outcome

# Every attempt pays for the size of the server it is forked from (page tables to copy, an
# address space to tear down): scikit-learn doubles it and costs ~4 ms per attempt, so it is
# imported by the tasks that use it (ARMILLARY_WORKFLOWS_EXECUTOR_PRELOAD adds it back).
DEFAULT_PRELOAD: tuple[str, ...] = ("numpy", "polars")
START_TIMEOUT = 120.0  # the server's imports; polars and sklearn take a while on a cold disk
EXIT_TIMEOUT = 10.0  # from SIGKILL to the exit status: the kernel is quick, this is a backstop
MAX_RESULT_BYTES = 2 * 1024 * 1024  # the child caps outputs at 1 MiB of JSON
_SERVER_MODULE = "armillary.workflows.execution.forkserver"

log = structlog.get_logger("armillary.workflows.execution")


class ForkServerDied(RuntimeError):
    """The fork server went away while an attempt was running."""


def _default_sandbox_uid() -> int | None:
    return sandbox.DEFAULT_SANDBOX_UID if os.geteuid() == 0 else None


@dataclass
class _Attempt:
    started: asyncio.Future[int]
    exited: asyncio.Future[dict[str, Any]]


@dataclass
class _Watch:
    """Why the parent killed the child, if it did."""

    outcome: Outcome | None = None
    error: str | None = None
    rss_bytes: int = field(default=0)


class LocalExecutor:
    """Runs each attempt in a child forked from one pre-warmed server process."""

    def __init__(
        self,
        work_root: Path,
        *,
        preload: Sequence[str] = DEFAULT_PRELOAD,
        sandbox_uid: int | None = _default_sandbox_uid(),
        extra_env: Mapping[str, str] | None = None,
        watchdog_interval: float = 0.1,
        stop_grace_seconds: float = 5.0,
    ) -> None:
        self.work_root = Path(work_root).absolute()
        self.preload = tuple(preload)
        self.sandbox_uid = sandbox_uid
        self.env = sandbox.server_env(os.environ, extra_env)
        self.watchdog_interval = watchdog_interval
        # A cancelled or timed-out task first gets SIGTERM, so that it can release what it
        # holds outside this machine (a SageMaker training job); SIGKILL after the grace.
        self.stop_grace_seconds = stop_grace_seconds
        self._process: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[int] | None = None
        self._attempts: dict[str, _Attempt] = {}
        self._start_lock = asyncio.Lock()
        self._send_lock = asyncio.Lock()

    @property
    def server_pid(self) -> int | None:
        """The fork server's pid while it runs."""
        return self._process.pid if self._alive() else None  # type: ignore[union-attr]

    def _alive(self) -> bool:
        return (
            self._process is not None
            and self._process.returncode is None
            and self._reader is not None
            and not self._reader.done()
        )

    async def start(self) -> None:
        """Start the fork server, or start it again if it died."""
        async with self._start_lock:
            if self._alive():
                return
            await self._stop_server()
            self.work_root.mkdir(parents=True, exist_ok=True)
            if self.sandbox_uid is not None:
                _check_reachable(self.work_root)
            parent, server = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                self._process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    _SERVER_MODULE,
                    str(server.fileno()),
                    "--preload",
                    ",".join(self.preload),
                    pass_fds=(server.fileno(),),
                    env=self.env,
                    stdin=asyncio.subprocess.DEVNULL,
                )
            finally:
                server.close()
            parent.setblocking(False)
            self._sock = parent
            loop = asyncio.get_running_loop()
            self._ready = loop.create_future()
            self._reader = asyncio.create_task(self._read_messages(parent, self._ready))
            try:
                await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT)
            except BaseException:
                await self._stop_server()
                raise

    async def close(self) -> None:
        """Stop the fork server; attempts still running are killed by it."""
        async with self._start_lock:
            await self._stop_server()

    async def _stop_server(self) -> None:
        if self._reader is not None:
            self._reader.cancel()  # its cleanup fails the attempts still in flight
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        if self._sock is not None:
            self._sock.close()  # the server sees EOF, kills its children and exits
            self._sock = None
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            try:
                await asyncio.wait_for(process.wait(), EXIT_TIMEOUT)
            except TimeoutError:
                process.kill()
                await process.wait()

    async def _read_messages(self, sock: socket.socket, ready: asyncio.Future[int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    data = await loop.sock_recv(sock, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                message = json.loads(data)
                if message["op"] == "ready":
                    ready.set_result(message["pid"])
                    continue
                attempt = self._attempts.get(message["id"])
                if attempt is None:
                    if message["op"] == "started":
                        _kill_group(message["pid"])  # its run() was cancelled meanwhile
                    continue
                if message["op"] == "started" and not attempt.started.done():
                    attempt.started.set_result(message["pid"])
                elif message["op"] == "exited":
                    if not attempt.started.done():
                        attempt.started.set_result(message["pid"] or 0)
                    if not attempt.exited.done():
                        attempt.exited.set_result(message)
        finally:
            died = ForkServerDied("the fork server died")
            if not ready.done():
                ready.set_exception(died)
            for attempt in self._attempts.values():
                for future in (attempt.started, attempt.exited):
                    if not future.done():
                        future.set_exception(died)

    async def _send(self, data: bytes, fds: Sequence[int] = ()) -> None:
        sock = self._sock
        if sock is None:
            raise ForkServerDied("the fork server is not running")
        ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock.sendmsg([data], ancillary)
                return
            except BlockingIOError:
                await _writable(loop, sock)
            except OSError as exc:
                raise ForkServerDied(f"the fork server is not reachable: {exc}") from exc

    async def run(
        self,
        spec: AttemptSpec,
        *,
        on_log: LogSink | None = None,
        cancel: asyncio.Event | None = None,
    ) -> AttemptResult:
        """Run one attempt to its end; see :class:`~.protocol.Executor`."""
        if spec.attempt_id in self._attempts:
            raise ValueError(f"attempt {spec.attempt_id} is already running")
        await self.start()
        loop = asyncio.get_running_loop()
        workdir = sandbox.Workdir.of(self.work_root, spec.attempt_id)
        attempt = _Attempt(started=loop.create_future(), exited=loop.create_future())
        self._attempts[spec.attempt_id] = attempt
        watch = _Watch()
        pid: int | None = None
        log_task: asyncio.Task[None] | None = None
        result_task: asyncio.Task[bytes | None] | None = None
        try:
            try:
                log_r, result_r = await self._launch(spec)
            except ForkServerDied:
                # It died since the last attempt (the reader may not have noticed yet): once
                # more with a new server. Nothing reached the old one.
                async with self._start_lock:
                    await self._stop_server()
                await self.start()
                _consume(attempt)
                attempt.started = loop.create_future()
                attempt.exited = loop.create_future()
                log_r, result_r = await self._launch(spec)
            log_task = asyncio.create_task(_pump_log(log_r, on_log))
            result_task = asyncio.create_task(_read_all(result_r, MAX_RESULT_BYTES))
            pid = await attempt.started
            status = await self._watch(spec, pid, attempt, watch, cancel)
        except ForkServerDied as exc:
            status = {"returncode": None, "error": str(exc)}
        finally:
            if pid:
                _kill_group(pid, leader_alive=not attempt.exited.done())
            self._attempts.pop(spec.attempt_id, None)
            _consume(attempt)
            raw_result = await _finish(result_task)
            await _finish(log_task)
        return _result(spec, status, raw_result, watch, workdir)

    async def _launch(self, spec: AttemptSpec) -> tuple[int, int]:
        """Send the request and the pipes' write ends; returns the read ends."""
        request = json.dumps(
            {
                "spec": asdict(spec),
                "work_root": str(self.work_root),
                "sandbox_uid": self.sandbox_uid,
            }
        ).encode()
        header = json.dumps({"op": "run", "id": spec.attempt_id, "size": len(request)}).encode()
        log_r, log_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            async with self._send_lock:
                await self._send(header, (log_w, result_w))
                for offset in range(0, len(request), CHUNK):
                    await self._send(request[offset : offset + CHUNK])
        except BaseException:
            os.close(log_r)
            os.close(result_r)
            raise
        finally:
            os.close(log_w)
            os.close(result_w)
        return log_r, result_r

    async def _watch(
        self,
        spec: AttemptSpec,
        pid: int,
        attempt: _Attempt,
        watch: _Watch,
        cancel: asyncio.Event | None,
    ) -> dict[str, Any]:
        """Wait for the child's exit, killing it at the wall time, memory limit or cancel."""
        loop = asyncio.get_running_loop()
        limits = spec.limits
        deadline = None if limits.wall_seconds is None else loop.time() + limits.wall_seconds
        cancelled = asyncio.ensure_future(cancel.wait()) if cancel is not None else None
        try:
            while not attempt.exited.done():
                waiters: set[asyncio.Future[Any]] = {attempt.exited}
                if cancelled is not None:
                    waiters.add(cancelled)
                timeout = self.watchdog_interval
                if deadline is not None:
                    timeout = max(0.0, min(timeout, deadline - loop.time()))
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if attempt.exited.done():
                    break
                if cancelled is not None and cancelled.done():
                    watch.outcome, watch.error = Outcome.CANCELLED, "cancelled"
                elif deadline is not None and loop.time() >= deadline:
                    watch.outcome = Outcome.TIMED_OUT
                    watch.error = f"timed out after {limits.wall_seconds:g} s"
                elif limits.memory_bytes is not None:
                    watch.rss_bytes = max(watch.rss_bytes, _rss_bytes(pid))
                    if watch.rss_bytes > limits.memory_bytes:
                        watch.outcome = Outcome.MEMORY_EXCEEDED
                        watch.error = (
                            f"memory limit of {_mib(limits.memory_bytes)} exceeded "
                            f"(resident {_mib(watch.rss_bytes)})"
                        )
                if watch.outcome is not None:
                    if watch.outcome in (Outcome.CANCELLED, Outcome.TIMED_OUT):
                        await self._terminate(pid, attempt)
                    _kill_group(pid, leader_alive=True)
                    break
            try:
                return await asyncio.wait_for(asyncio.shield(attempt.exited), EXIT_TIMEOUT)
            except TimeoutError:
                return {"returncode": None, "error": "the fork server reported no exit status"}
        finally:
            if cancelled is not None:
                cancelled.cancel()

    async def _terminate(self, pid: int, attempt: _Attempt) -> None:
        """SIGTERM the attempt's process group and wait up to the grace period for it to go."""
        if self.stop_grace_seconds <= 0:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(attempt.exited), self.stop_grace_seconds)


def _consume(attempt: _Attempt) -> None:
    """Mark the futures' exceptions as seen (they are reported through the result)."""
    for future in (attempt.started, attempt.exited):
        if future.done() and not future.cancelled():
            future.exception()


def _result(
    spec: AttemptSpec,
    status: dict[str, Any],
    raw_result: bytes | None,
    watch: _Watch,
    workdir: sandbox.Workdir,
) -> AttemptResult:
    returncode: int | None = status.get("returncode")
    artifacts = _artifacts(workdir.artifacts)

    def ended(
        outcome: Outcome, error: str | None, outputs: dict[str, Any] | None = None
    ) -> AttemptResult:
        return AttemptResult(
            outcome=outcome,
            outputs=outputs,
            error=error,
            exit_code=returncode,
            artifacts=artifacts,
            workdir=workdir.root,
        )

    if watch.outcome is not None:
        return ended(watch.outcome, watch.error)
    if "error" in status:
        return ended(Outcome.CRASHED, status["error"])
    answer = _parse_result(raw_result)
    if answer is not None and returncode in (0, 1):
        if answer.get("ok") is True and isinstance(answer.get("outputs"), dict):
            return ended(Outcome.SUCCEEDED, None, answer["outputs"])
        error = str(answer.get("error") or "the task failed")
        memory = answer.get("kind") == "memory"
        result = ended(Outcome.MEMORY_EXCEEDED if memory else Outcome.FAILED, error)
        report = answer.get("report")
        result.report = report if isinstance(report, dict) else None
        return result
    limits = spec.limits
    cpu_seconds = float(status.get("cpu_seconds") or 0.0)
    if (
        returncode in (-signal.SIGXCPU, -signal.SIGKILL)
        and limits.cpu_seconds is not None
        and cpu_seconds >= limits.cpu_seconds - 0.5
    ):
        return ended(Outcome.FAILED, f"CPU time limit of {limits.cpu_seconds} s exceeded")
    max_rss = int(status.get("max_rss_bytes") or 0)
    if (
        returncode == -signal.SIGKILL
        and limits.memory_bytes is not None
        and max_rss >= limits.memory_bytes * 0.9
    ):
        return ended(Outcome.MEMORY_EXCEEDED, f"killed near the memory limit ({_mib(max_rss)})")
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else ""
        return ended(
            Outcome.CRASHED, f"the task process was killed by signal {name or -returncode}"
        )
    return ended(
        Outcome.CRASHED, f"the task process exited with code {returncode} without a result"
    )


def _parse_result(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        answer = json.loads(raw)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


def _artifacts(directory: Path) -> dict[str, Path]:
    """Regular files under ``directory``, by relative name.

    Symbolic links and hard-linked files are left out: the task runs as another user, and a
    link could otherwise make the (root) worker upload a file the task could not read.
    """
    found: dict[str, Path] = {}
    for root, _dirs, files in os.walk(directory, followlinks=False):
        for name in files:
            path = Path(root, name)
            with contextlib.suppress(OSError):
                st = path.lstat()
                if path.is_symlink() or not path.is_file() or st.st_nlink != 1:
                    continue
                found[path.relative_to(directory).as_posix()] = path
    return dict(sorted(found.items()))


async def _pump_log(fd: int, on_log: LogSink | None) -> None:
    """Hand the log to ``on_log`` chunk by chunk as the task writes it, until EOF.

    The pipe is drained even if ``on_log`` fails, or the task would block on its next print.
    """
    reader = await _open_reader(fd)
    while chunk := await reader.read(65536):
        if on_log is None:
            continue
        try:
            await on_log(chunk)
        except Exception:
            log.exception("attempt_log_sink_failed")
            on_log = None


async def _read_all(fd: int, limit: int) -> bytes | None:
    """The whole result pipe, or None if it is larger than ``limit`` (drained all the same,
    so that a writer never blocks on it)."""
    reader = await _open_reader(fd)
    data = bytearray()
    too_large = False
    while chunk := await reader.read(65536):
        if not too_large:
            data += chunk
            too_large = len(data) > limit
    return None if too_large else bytes(data)


async def _open_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    pipe = os.fdopen(fd, "rb", buffering=0)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


async def _writable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_writer(sock, wake)
    try:
        await ready
    finally:
        loop.remove_writer(sock)


async def _finish(task: asyncio.Task[Any] | None) -> Any:
    """A reader's result once the pipe closes; a process that escaped the group could hold
    it open forever, so give up after a while."""
    if task is None:
        return None
    try:
        return await asyncio.wait_for(task, EXIT_TIMEOUT)
    except TimeoutError:
        return None


def _kill_group(pid: int, *, leader_alive: bool = True) -> None:
    """SIGKILL the attempt's process group (the child did ``setsid``, so its pgid is its pid).

    ``leader_alive``: the child has not been reaped, so its pid cannot belong to anyone else,
    and a child killed before its ``setsid`` is killed on its own.
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        if leader_alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


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


def _check_reachable(path: Path) -> None:
    """The sandbox user must be able to reach its workdir (and HOME/TMPDIR inside it)."""
    for directory in (path, *path.parents):
        if not os.stat(directory).st_mode & 0o001:
            raise PermissionError(
                f"{directory} is not searchable by other users: the sandbox user could not "
                f"reach its working directory under {path} (chmod o+x, or another work_root)"
            )
