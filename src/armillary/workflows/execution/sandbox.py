"""The rules of an attempt's sandbox that do not depend on bubblewrap: its environment
(an allow-list), its working directory and its resource limits (rlimits, applied inside the
sandbox just before the task's code runs)."""

from __future__ import annotations

import ctypes
import math
import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .protocol import ResourceLimits

# Variables passed from the worker's environment to the sandboxes (and so to every task).
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
ATTEMPT_ENV = (
    "ARMILLARY_API_URL",
    "ARMILLARY_JOB_ID",
    "ARMILLARY_PROJECT_ID",
    "ARMILLARY_TASK",
    "HOME",
    "TMPDIR",
)
_PR_SET_NO_NEW_PRIVS = 38


def server_env(
    environ: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The sandboxes' base environment: the allow-listed variables of ``environ``, plus
    ``extra``, which may not set ``ARMILLARY_*`` variables or the per-attempt ones. No
    credential is ever passed on: work that needs one is a worker call (ADR 0011)."""
    env = {name: environ[name] for name in ALLOWED_ENV if name in environ}
    for name, value in (extra or {}).items():
        if name.startswith("ARMILLARY_") or name in ATTEMPT_ENV:
            raise ValueError(f"extra_env may not set {name}: the executor sets it per attempt")
        env[name] = value
    return env


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
        # RLIMIT_CPU counts the process's whole life, and a pre-started sandbox has already
        # spent CPU on its imports: the budget starts from what is spent now. SIGXCPU at
        # the soft limit, SIGKILL a second later if the program ignores it.
        usage = resource.getrusage(resource.RUSAGE_SELF)
        soft = math.ceil(usage.ru_utime + usage.ru_stime) + limits.cpu_seconds
        resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1))


def _prctl(option: int, arg: int) -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(option, arg, 0, 0, 0)) == 0


def set_no_new_privs() -> bool:
    """No setuid binary or file capability can raise this process's privileges again."""
    return _prctl(_PR_SET_NO_NEW_PRIVS, 1)
