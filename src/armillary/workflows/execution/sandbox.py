"""What a forked child does before it runs user code, and the environment rules.

The order in :func:`enter` matters: everything that needs root (the working directory and
its owner) happens first, then the limits, then the uid drop, and the
parent-death signal last because changing credentials clears it.
"""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import signal
import socket
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from armillary.contracts.tasks import TASK_TYPES

from .protocol import ResourceLimits

# Variables passed from the worker's environment to the fork server (and so to every task).
# An allow-list: anything else (database URLs, cloud keys, ARMILLARY_* settings) stays out.
ALLOWED_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "TZ",
    "PYTHONPATH",
    "PYTHONHASHSEED",
    "VIRTUAL_ENV",
    # Measuring coverage of the server and its children in the test suite.
    "COVERAGE_PROCESS_START",
    "COVERAGE_PROCESS_CONFIG",
    # The operator's exceptions to the ingest SSRF guard (networks, not secrets): the guard
    # runs in the task, so it must see them.
    "ARMILLARY_DATA_INGEST_ALLOW_NETWORKS",
)
# Set per attempt by the child; an operator's ``extra_env`` may not override them.
ATTEMPT_ENV = ("ARMILLARY_API_URL", "ARMILLARY_JOB_ID", "ARMILLARY_TASK", "HOME", "TMPDIR")
# Names the fork server holds only for some task types (``TaskTypeContract.env_passthrough``):
# the server's environment lists them here so a child withholds them even if its own view of
# the contracts differed from the worker's.
PASSTHROUGH_LIST = "ARMILLARY_ENV_PASSTHROUGH"
RESULT_FD = 3  # where the child keeps the result pipe (stdin, stdout and stderr come first)
DEFAULT_SANDBOX_UID = 65534  # "nobody"

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38


def passthrough_names() -> frozenset[str]:
    """The variables some task type may receive from the worker (its ``env_passthrough``)."""
    return frozenset(name for c in TASK_TYPES.values() for name in c.env_passthrough)


def server_env(
    environ: Mapping[str, str],
    extra: Mapping[str, str] | None = None,
    passthrough: Iterable[str] | None = None,
) -> dict[str, str]:
    """The fork server's environment: the allow-listed variables of ``environ``, those of
    ``passthrough`` (default: every task type's ``env_passthrough``) it has, plus ``extra``.

    ``extra`` may not set ``ARMILLARY_*`` variables or the per-attempt ones, nor may a task
    type ask for them. The children of a type get the passthrough variables only if the type
    names them (:func:`attempt_env`).
    """
    names = passthrough_names() if passthrough is None else frozenset(passthrough)
    for name in names:
        if name.startswith("ARMILLARY_") or name in ATTEMPT_ENV or name in ALLOWED_ENV:
            raise ValueError(f"a task type may not ask for {name} as a passthrough variable")
    env = {name: environ[name] for name in ALLOWED_ENV if name in environ}
    env.update({name: environ[name] for name in sorted(names) if name in environ})
    for name, value in (extra or {}).items():
        if name.startswith("ARMILLARY_") or name in ATTEMPT_ENV:
            raise ValueError(f"extra_env may not set {name}: the executor sets it per attempt")
        env[name] = value
    held = sorted(name for name in names if name in env)
    if held:
        env[PASSTHROUGH_LIST] = ",".join(held)
    return env


def withheld_env(base: Mapping[str, str], task_type: str | None) -> frozenset[str]:
    """The variables of ``base`` a child of ``task_type`` must not get: every passthrough
    variable its type does not name (unknown type: all of them), and the list itself."""
    contract = TASK_TYPES.get(task_type) if task_type is not None else None
    own = frozenset(contract.env_passthrough) if contract is not None else frozenset()
    listed = frozenset(filter(None, base.get(PASSTHROUGH_LIST, "").split(",")))
    return ((listed | passthrough_names()) - own) | {PASSTHROUGH_LIST}


def attempt_env(
    base: Mapping[str, str],
    *,
    api_url: str,
    job_id: str,
    task: str,
    workdir: Path,
    task_type: str | None = None,
) -> dict[str, str]:
    """A child's environment: the server's, without the passthrough variables that are not
    for ``task_type``, plus what identifies the attempt (no token)."""
    withheld = withheld_env(base, task_type)
    # By key first: reading a withheld value would leave a decoded copy in this process.
    kept = {name: base[name] for name in base if name not in withheld}
    return {
        **kept,
        "ARMILLARY_API_URL": api_url,
        "ARMILLARY_JOB_ID": job_id,
        "ARMILLARY_TASK": task,
        "HOME": str(workdir),
        "TMPDIR": str(workdir / "tmp"),
    }


@dataclass(frozen=True, slots=True)
class Workdir:
    """An attempt's private directory and the two directories inside it."""

    root: Path
    artifacts: Path
    tmp: Path

    @classmethod
    def of(cls, work_root: Path, attempt_id: str) -> Workdir:
        root = work_root / attempt_id
        return cls(root=root, artifacts=root / "artifacts", tmp=root / "tmp")


def make_workdir(work_root: Path, attempt_id: str, uid: int | None) -> Workdir:
    """Create the attempt's directory (0700, owned by ``uid`` when given)."""
    if not attempt_id or "/" in attempt_id or attempt_id.startswith("."):
        raise ValueError("attempt_id must be a plain name")
    workdir = Workdir.of(work_root, attempt_id)
    for path in (workdir.root, workdir.artifacts, workdir.tmp):
        path.mkdir(mode=0o700)  # fails if it exists: an attempt id is never reused
        if uid is not None:
            os.chown(path, uid, uid)
    return workdir


def apply_limits(limits: ResourceLimits) -> None:
    """Resource limits of the child, inherited by anything it starts.

    RLIMIT_DATA rather than RLIMIT_AS: address space reservations (thread stacks, allocator
    arenas, mapped libraries) are far larger than what a process uses, so RLIMIT_AS fails
    healthy programs; RLIMIT_DATA counts private writable memory, which is what grows.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if limits.memory_bytes is not None:
        resource.setrlimit(resource.RLIMIT_DATA, (limits.memory_bytes, limits.memory_bytes))
    if limits.cpu_seconds is not None:
        # SIGXCPU at the soft limit, SIGKILL a second later if the program ignores it.
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1))


def _prctl(option: int, arg: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0)) == 0


def set_no_new_privs() -> bool:
    """No setuid binary or file capability can raise this process's privileges again."""
    return _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def drop_privileges(uid: int) -> None:
    """Become ``uid`` (group of the same number) for good: real, effective and saved ids."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def redirect_fds(log_fd: int, result_fd: int) -> None:
    """stdin from /dev/null, stdout and stderr to the log pipe, the result pipe on
    :data:`RESULT_FD`, and every other descriptor (the server's socket included) closed."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    if result_fd != RESULT_FD:
        os.dup2(result_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    for stream in (sys.stdout, sys.stderr):
        # A pipe is block-buffered by default: lines should reach the log as they are printed.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)


def enter(
    *,
    work_root: Path,
    attempt_id: str,
    limits: ResourceLimits,
    uid: int | None,
    env: Mapping[str, str],
    log_fd: int,
    result_fd: int,
    server_pid: int,
    withheld: Collection[str] = (),
) -> Workdir:
    """Turn the freshly forked child into the attempt's sandbox; returns its directories.

    ``withheld`` names server variables the attempt must not get: their values are wiped from
    this process's memory, not only left out of ``env``."""
    redirect_fds(log_fd, result_fd)  # first: from here on, fd 3 is the result pipe
    os.setsid()  # its own process group: the parent kills the whole group
    for signum in (signal.SIGCHLD, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.umask(0o077)
    workdir = make_workdir(work_root, attempt_id, uid)
    apply_limits(limits)
    set_no_new_privs()
    if uid is not None:
        drop_privileges(uid)
    # After the uid change, which clears it: the child dies with its fork server.
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != server_pid:
        os._exit(70)  # the server died before the line above
    os.chdir(workdir.root)
    wipe_values(withheld)
    os.environ.clear()
    os.environ.update(env)
    wipe_initial_environ()
    return workdir


def wipe_values(names: Collection[str]) -> None:
    """Overwrite the values of ``names`` in this process's copy of the environment.

    Clearing ``os.environ`` frees the values but leaves their bytes in freed memory, where
    user code could find them (ctypes reads its own process's memory). The values are bytes
    objects no one else refers to; one-byte and empty ones are shared singletons, so they are
    left alone (a credential is longer).
    """
    environ: dict[bytes, bytes] = os.environ._data  # type: ignore[attr-defined]
    for name in names:
        value = environ.get(os.fsencode(name))
        if value is not None and len(value) > 1:
            address = ctypes.cast(ctypes.c_char_p(value), ctypes.c_void_p).value
            if address is not None:
                ctypes.memset(address, 0, len(value))


def wipe_initial_environ() -> None:
    """Zero the environment block the process was started with (and that forked children
    share): it still holds every variable after ``os.environ`` is cleared, and
    ``/proc/self/environ`` shows it. Call only once nothing points into it (the C library's
    ``environ`` is rebuilt by clearing and refilling ``os.environ``)."""
    with open("/proc/self/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[47]), int(fields[48])  # env_start, env_end: fields 50 and 51
    if 0 < start < end:
        ctypes.memset(start, 0, end - start)


_coverage: Any = None


def restart_coverage(uid: int | None) -> None:  # pragma: no cover - runs before measuring
    """Measure the child on its own when the server is measured (the test suite).

    The inherited collector would save under the server's file name; a new one gets a name
    of its own, chosen here (coverage renames a file with its own suffix on save, which the
    child can no longer do after the uid drop). The data file is created now, as root, and
    given to ``uid``; coverage writes it without a journal file, so no other file is needed.
    """
    global _coverage
    try:
        _coverage = _start_child_coverage(uid)
    except Exception as exc:  # measuring must never fail an attempt
        print(f"coverage: {exc!r}", file=sys.stderr)


def _start_child_coverage(uid: int | None) -> Any:  # pragma: no cover - runs before measuring
    coverage = sys.modules.get("coverage")
    if coverage is None or coverage.Coverage.current() is None:
        return None
    coverage.Coverage.current().stop()
    config_data = os.environ.get("COVERAGE_PROCESS_CONFIG")
    config = ":data:" + config_data if config_data else os.environ.get("COVERAGE_PROCESS_START")
    if not config:
        return None
    suffix = f"{socket.gethostname()}.attempt{os.getpid()}.{secrets.token_hex(4)}"
    cov = coverage.Coverage(config_file=config, data_suffix=suffix)
    # As coverage's own process start-up does: the platform was imported before measuring.
    cov._warn_no_data = cov._warn_preimported_source = cov._warn_unimported_source = False
    cov.start()
    data = cov.get_data()
    data.add_lines({})  # creates the data file now, while we may
    if uid is not None:
        os.chown(data.data_filename(), uid, -1)
    return cov


def save_coverage() -> None:
    """Save the child's coverage data before ``os._exit`` (which skips atexit handlers)."""
    if _coverage is not None:  # pragma: no cover - only under coverage
        try:
            _coverage.stop()
            _coverage.save()
        except Exception as exc:
            print(f"coverage: {exc}", file=sys.stderr)
