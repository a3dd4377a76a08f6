"""Sandboxes: started ahead of time, each handed exactly one attempt.

A :class:`Sandbox` is a bubblewrap process tree (its own uid, namespaces, cgroup, private
directory and API socket) running :mod:`.launcher`, which imports the heavy libraries and
then waits on its control socket. :class:`WarmPool` keeps a few of them ready for the task
types that need nothing special, so an attempt starts without paying for the interpreter and
the imports; other types get a sandbox started for them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import structlog

from armillary.kit.egress import PROXY_ENV, AllowRule

from . import isolation, seccomp
from . import sandbox as sandbox_rules
from .api_proxy import ApiProxy
from .cgroups import CgroupLimiter, SandboxGroup
from .egress_proxy import EgressProxy
from .forwarder import API_PORT, EGRESS_PORT
from .launcher import MAX_FRAME

log = structlog.get_logger("armillary.workflows.execution")

START_TIMEOUT = 120.0  # the imports; polars and sklearn take a while on a cold disk
_HEADER = struct.Struct(">I")
# The number must be followed by something, or it may still be arriving.
_CHILD_PID = re.compile(rb'"child-pid":\s*(\d+)\D')


class SandboxFailed(RuntimeError):
    """A sandbox could not be started, or went away before it was ready."""


@dataclass(frozen=True, slots=True)
class SandboxOptions:
    """What distinguishes one kind of sandbox from another."""

    env: Mapping[str, str]  # its whole environment (no secret of the platform)
    egress: bool = False  # outside hosts through the worker's egress proxy


@dataclass
class Sandbox:
    """One started sandbox, for one attempt."""

    slot: str
    workdir: Path
    uid: int | None
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    log_fd: int  # read end of its stdout/stderr pipe
    proxy: ApiProxy
    api_url: str  # the API as the task sees it
    group: SandboxGroup | None
    init_pid: int | None = None  # host pid of the PID namespace's init
    info: asyncio.BaseTransport | None = None  # bubblewrap's --info-fd pipe
    egress: EgressProxy | None = None  # its way out, for a type that declares egress
    released: bool = field(default=False)

    async def wait_ready(self) -> None:
        message = await read_frame(self.reader)
        if message != {"op": "ready"}:
            raise SandboxFailed("the sandbox exited while starting")

    def task_pids(self) -> list[int]:
        """The processes running inside (host pids), the namespace's init excluded."""
        if self.init_pid is None:
            return [self.process.pid] if self.process.returncode is None else []
        found: list[int] = []
        pending = [self.init_pid]
        while pending:
            pid = pending.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as children:
                    kids = [int(p) for p in children.read().split()]
            except (OSError, ValueError):
                continue
            found += kids
            pending += kids
        return found

    def signal_task(self, signum: int) -> None:
        for pid in self.task_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)

    def kill(self) -> None:
        """SIGKILL the sandbox: its PID namespace, and so every process in it, dies."""
        for pid in (self.init_pid, self.process.pid):
            if pid is not None and self.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if self.group is not None:
            self.group.kill_all()


class SandboxFactory:
    """Starts sandboxes under ``work_root``."""

    def __init__(
        self,
        work_root: Path,
        *,
        bwrap: str | None,
        runtime: isolation.RuntimeView,
        preload: tuple[str, ...],
        uids: isolation.UidRange | None,
        cgroups: CgroupLimiter | None,
        redirect_origins: frozenset[str] | None = None,
        egress_allow: Sequence[AllowRule] = (),
        api_ca_file: Path | None = None,
    ) -> None:
        self.work_root = work_root
        self.egress_allow = tuple(egress_allow)
        self.bwrap = bwrap
        self.runtime = runtime
        self.preload = preload
        self.uids = uids
        self.cgroups = cgroups
        self.redirect_origins = redirect_origins
        # The API's CA when it speaks HTTPS with a private certificate (ARMILLARY_TLS_CA_FILE).
        self.api_ca_file = api_ca_file

    async def start(self, options: SandboxOptions) -> Sandbox:
        """A sandbox started and warmed up, waiting for its attempt."""
        slot = "slot-" + uuid.uuid4().hex
        uid = self.uids.acquire() if self.uids is not None else None
        workdir = self.work_root / slot
        group: SandboxGroup | None = None
        proxy = ApiProxy(redirect_origins=self.redirect_origins, ca_file=self.api_ca_file)
        egress: EgressProxy | None = None
        egress_path: Path | None = None
        cleanups: list[Callable[[], None]] = []
        try:
            sandbox_rules.make_workdir(self.work_root, slot, uid)
            if self.bwrap is not None:
                socket_path = self.work_root / f"{slot}.sock"
                await proxy.listen_unix(socket_path, uid)
                cleanups.append(lambda: socket_path.unlink(missing_ok=True))
                api_url = f"http://127.0.0.1:{API_PORT}"
                if options.egress:
                    egress = EgressProxy(allow=self.egress_allow, trusted=self._store_origins())
                    path = egress_path = self.work_root / f"{slot}.egress.sock"
                    await egress.listen_unix(path, uid)
                    cleanups.append(lambda: path.unlink(missing_ok=True))
            else:
                socket_path = None
                api_url = await proxy.listen_tcp()
            if self.cgroups is not None:
                group = self.cgroups.create(slot)
            sandbox = await self._spawn(
                slot, workdir, uid, options, (socket_path, egress_path), group, proxy, api_url
            )
            sandbox.egress = egress
            try:
                await asyncio.wait_for(sandbox.wait_ready(), START_TIMEOUT)
            except BaseException:
                # What it printed tells the operator why (a missing library, a mount).
                log.warning("sandbox.start_failed", output=_early_output(sandbox.log_fd))
                await release(sandbox)
                raise
            return sandbox
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            for cleanup in cleanups:
                cleanup()
            if group is not None:
                await asyncio.to_thread(group.remove)
            await proxy.close()
            if egress is not None:
                await egress.close()
            if uid is not None and self.uids is not None:
                self.uids.release(uid)
            raise

    def _store_origins(self) -> list[tuple[str, int]]:
        """(host, port) of the configured object store: an ingest of an ``s3://`` source reads
        a URL the platform presigned there, wherever the operator put the store."""
        found: list[tuple[str, int]] = []
        for origin in self.redirect_origins or ():
            parts = urlsplit(origin)
            if parts.hostname:
                default = 443 if parts.scheme == "https" else 80
                found.append((parts.hostname.lower(), parts.port or default))
        return found

    async def _spawn(
        self,
        slot: str,
        workdir: Path,
        uid: int | None,
        options: SandboxOptions,
        sockets: tuple[Path | None, Path | None],  # the API proxy's, the egress proxy's
        group: SandboxGroup | None,
        proxy: ApiProxy,
        api_url: str,
    ) -> Sandbox:
        parent, inside = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = isolation.launcher_command(self.preload, control_fd=inside.fileno())
        info_r, info_w = os.pipe()
        seccomp_fd = -1
        coverage_dir: Path | None = None
        if self.bwrap is not None:
            seccomp_fd = seccomp.program_fd()
            coverage_dir = _coverage_dir(workdir, uid, options.env)
            plan = isolation.SandboxPlan(
                coverage_dir=coverage_dir,
                workdir=workdir,
                api_socket=sockets[0],
                seccomp_fd=seccomp_fd,
                info_fd=info_w,
                uid=uid,
                egress_socket=sockets[1],
            )
            command = isolation.bwrap_argv(self.bwrap, plan, self.runtime, command)
        if group is not None:
            # Join the cgroup(s) before bubblewrap starts: all it forks is counted from the
            # first process on.
            files = [str(p) for p in group.procs_files]
            files += files[-1:] * (2 - len(files))
            join = 'a=$1; b=$2; shift 2; echo $$ > "$a" && echo $$ > "$b" && exec "$@"'
            command = ["/bin/sh", "-c", join, "sh", *files, *command]
        log_r, log_w = os.pipe()
        env = {**options.env, "ARMILLARY_API_URL": api_url}
        if sockets[1] is not None:
            env.update(_proxy_env())
        if self.bwrap is not None and coverage_dir is not None:
            env["COVERAGE_PROCESS_CONFIG"] = _coverage_config(env["COVERAGE_PROCESS_CONFIG"])
        if self.bwrap is not None and self.runtime.python_path:
            # Packages mounted from outside the virtualenv (an editable checkout).
            env["PYTHONPATH"] = os.pathsep.join(map(str, self.runtime.python_path))
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_w,
                stderr=log_w,
                pass_fds=_fds(inside.fileno(), seccomp_fd, info_w),
                env={**env, **_attempt_env(workdir, self.bwrap is not None)},
                cwd=str(workdir) if self.bwrap is None else "/",
            )
        finally:
            for fd in (log_w, info_w, seccomp_fd):
                if fd >= 0:
                    os.close(fd)
            inside.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=MAX_FRAME)
        sandbox = Sandbox(
            slot=slot,
            workdir=workdir,
            uid=uid,
            process=process,
            reader=reader,
            writer=writer,
            log_fd=log_r,
            proxy=proxy,
            api_url=api_url,
            group=group,
        )
        if self.bwrap is not None:
            sandbox.init_pid, sandbox.info = await _watch_info(info_r)
        else:
            os.close(info_r)
        return sandbox


def _proxy_env() -> dict[str, str]:
    """Every common spelling of the proxy variables (httpx, requests, boto3, curl); the
    platform's own API on loopback is reached directly."""
    proxy = f"http://127.0.0.1:{EGRESS_PORT}"
    env = {name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")}
    env.update({"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"})
    env[PROXY_ENV] = proxy  # the platform's own fetches use it explicitly (NO_PROXY aside)
    return env


def _attempt_env(workdir: Path, sandboxed: bool) -> dict[str, str]:
    if sandboxed:
        home, tmp = isolation.SANDBOX_WORKDIR, isolation.SANDBOX_TMP
    else:
        home, tmp = workdir, workdir / "tmp"
    return {"HOME": str(home), "TMPDIR": str(tmp), "USER": "sandbox", "LOGNAME": "sandbox"}


def _early_output(fd: int) -> str:
    """Whatever a sandbox that failed to start wrote, without waiting for more."""
    try:
        os.set_blocking(fd, False)
        return os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return ""


def _fds(*fds: int) -> tuple[int, ...]:
    return tuple(fd for fd in fds if fd >= 0)


async def _watch_info(info_fd: int) -> tuple[int | None, asyncio.BaseTransport]:
    """The PID namespace init's host pid, from bubblewrap's ``--info-fd`` document; and the
    pipe's transport, to keep open while the sandbox lives (bubblewrap writes more later, and
    a closed pipe would kill it)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(info_fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    data = b""
    try:
        while _CHILD_PID.search(data) is None:
            chunk = await asyncio.wait_for(reader.read(4096), START_TIMEOUT)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    found = _CHILD_PID.search(data)
    return (int(found.group(1)) if found else None), transport


def _coverage_dir(workdir: Path, uid: int | None, env: Mapping[str, str]) -> Path | None:
    """Under the test suite (coverage measuring subprocesses), a directory the sandbox saves
    its measurements in; they are moved beside the worker's own once the sandbox is dead."""
    if "COVERAGE_PROCESS_CONFIG" not in env:
        return None
    directory = workdir.with_name(f"{workdir.name}.coverage")
    directory.mkdir(mode=0o700)
    if uid is not None:
        os.chown(directory, uid, uid)
    return directory


def _coverage_config(serialized: str) -> str:  # pragma: no cover - test suite only
    """coverage's inline configuration, saving into the sandbox's coverage directory."""
    config = json.loads(base64.b64decode(serialized))
    config["data_file"] = str(isolation.SANDBOX_COVERAGE / ".coverage")
    return base64.b64encode(json.dumps(config).encode()).decode()


def _collect_coverage(slot: str, work_root: Path) -> None:  # pragma: no cover - test suite only
    directory = work_root / f"{slot}.coverage"
    if not directory.is_dir():
        return
    try:
        import coverage

        current = coverage.Coverage.current()
        target = Path(current.config.data_file if current else ".coverage").absolute().parent
        for data in directory.iterdir():
            if data.is_file() and not data.is_symlink() and data.name.startswith(".coverage."):
                shutil.copyfile(data, target / data.name, follow_symlinks=False)
    except (ImportError, OSError) as exc:
        log.warning("sandbox.coverage_lost", error=str(exc))
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next length-prefixed JSON frame, or None at EOF."""
    try:
        header = await reader.readexactly(_HEADER.size)
        (size,) = _HEADER.unpack(header)
        if size > MAX_FRAME:
            return None
        message: Any = json.loads(await reader.readexactly(size))
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return None
    return message if isinstance(message, dict) else None


async def write_frame(writer: asyncio.StreamWriter, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    writer.write(_HEADER.pack(len(data)) + data)
    await writer.drain()


async def release(sandbox: Sandbox, *, uids: isolation.UidRange | None = None) -> None:
    """Kill the sandbox (if it still runs) and free what it held, but its directory."""
    if sandbox.released:
        return
    sandbox.released = True
    sandbox.kill()
    with contextlib.suppress(ProcessLookupError):
        await sandbox.process.wait()
    sandbox.writer.close()
    if sandbox.info is not None:
        sandbox.info.close()
    with contextlib.suppress(OSError):
        os.close(sandbox.log_fd)
    await sandbox.proxy.close()
    sandbox.workdir.with_name(f"{sandbox.slot}.sock").unlink(missing_ok=True)
    if sandbox.egress is not None:
        await sandbox.egress.close()
        sandbox.workdir.with_name(f"{sandbox.slot}.egress.sock").unlink(missing_ok=True)
    if sandbox.group is not None:
        sandbox.group.kill_all()
        await asyncio.to_thread(sandbox.group.remove)
    await asyncio.to_thread(_collect_coverage, sandbox.slot, sandbox.workdir.parent)
    if uids is not None and sandbox.uid is not None:
        uids.release(sandbox.uid)


async def discard(sandbox: Sandbox, uids: isolation.UidRange | None) -> None:
    """Release a sandbox that never ran an attempt, its directory included."""
    await release(sandbox, uids=uids)
    await asyncio.to_thread(shutil.rmtree, sandbox.workdir, True)


class WarmPool:
    """Keeps up to ``size`` started sandboxes of one kind ready."""

    def __init__(
        self,
        factory: SandboxFactory,
        options: SandboxOptions,
        size: int,
    ) -> None:
        self.factory = factory
        self.options = options
        self.size = size
        self._ready: asyncio.Queue[Sandbox] = asyncio.Queue()
        self._starting: set[asyncio.Task[None]] = set()
        self._closed = False

    def fill(self) -> None:
        """Start sandboxes in the background until ``size`` are ready or starting."""
        while not self._closed and self._ready.qsize() + len(self._starting) < self.size:
            task = asyncio.create_task(self._start_one())
            self._starting.add(task)
            task.add_done_callback(self._starting.discard)

    async def _start_one(self) -> None:
        try:
            sandbox = await self.factory.start(self.options)
        except Exception as exc:
            log.warning("sandbox.prestart_failed", error=f"{type(exc).__name__}: {exc}")
            return
        if self._closed:
            await discard(sandbox, self.factory.uids)
            return
        self._ready.put_nowait(sandbox)

    async def take(self) -> Sandbox:
        """A ready sandbox: a warm one if there is one (whose replacement starts now), else
        one started for this attempt."""
        while not self._ready.empty():
            sandbox = self._ready.get_nowait()
            self.fill()
            if sandbox.process.returncode is None:
                return sandbox
            await discard(sandbox, self.factory.uids)
        # This attempt's sandbox first, the pool's after it: on a worker's first attempt the
        # pool is empty, and starting its replacements alongside would slow the one waited on.
        try:
            return await self.factory.start(self.options)
        finally:
            self.fill()

    async def close(self) -> None:
        self._closed = True
        for task in list(self._starting):
            task.cancel()
        for task in list(self._starting):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        while not self._ready.empty():
            await discard(self._ready.get_nowait(), self.factory.uids)
