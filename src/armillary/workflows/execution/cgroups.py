"""Memory and process-count limits of a sandbox through control groups.

cgroup v2 when the operator delegated a directory with the memory and pids controllers
enabled for its children (``executor_cgroup_root``); else cgroup v1's memory and pids
hierarchies under the worker's own groups (this is what a v1 host, or a hybrid one whose v2
tree has no controllers, offers); else none, and the sandbox keeps only its rlimits.

A group counts everything its processes use: page cache and shared memory included, which
``RLIMIT_DATA`` misses, and every process, so a fork bomb stops at ``pids.max``. The kernel
kills inside the group when memory runs out; :meth:`SandboxGroup.oom_kills` tells so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger("armillary.workflows.execution")

CGROUP_FS = Path("/sys/fs/cgroup")
GROUP_PREFIX = "armillary-sandboxes"


@dataclass(frozen=True, slots=True)
class SandboxGroup:
    """One sandbox's group(s): a single v2 directory, or a v1 memory and a v1 pids one."""

    version: int
    memory: Path
    pids: Path

    @property
    def procs_files(self) -> tuple[Path, ...]:
        """Where a process writes its pid to join (each hierarchy once)."""
        return tuple(dict.fromkeys((self.memory / "cgroup.procs", self.pids / "cgroup.procs")))

    def set_memory(self, limit_bytes: int | None) -> None:
        """The attempt's memory limit (unlimited when None); set before its code runs."""
        if self.version == 2:
            _write(self.memory / "memory.max", "max" if limit_bytes is None else str(limit_bytes))
            _write(self.memory / "memory.swap.max", "0", missing_ok=True)
        else:
            value = "-1" if limit_bytes is None else str(limit_bytes)
            _write(self.memory / "memory.limit_in_bytes", value)
            # Without this a limited group swaps instead of failing (where memsw exists).
            _write(self.memory / "memory.memsw.limit_in_bytes", value, missing_ok=True)

    def oom_kills(self) -> int:
        """How many processes of the group the kernel killed for want of memory."""
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (self.memory / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def peak_bytes(self) -> int:
        """The group's highest memory use (0 when the kernel does not say)."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        try:
            return int((self.memory / name).read_text())
        except (OSError, ValueError):
            return 0

    def pids_peak(self) -> int:
        """The most processes the group held at once (0 when the kernel does not say)."""
        try:
            return int((self.pids / "pids.peak").read_text())
        except (OSError, ValueError):
            return 0

    def members(self) -> list[int]:
        """The processes in the group now."""
        found: set[int] = set()
        for procs in self.procs_files:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(pid) for pid in procs.read_text().split())
        return sorted(found)

    def kill_all(self) -> None:
        """SIGKILL whatever is left in the group (the PID namespace normally saw to it)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(self.memory / "cgroup.kill", "1")
                return
        for pid in self.members():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def remove(self, *, attempts: int = 200) -> None:
        """Delete the group's directories. Only an empty group can go, and killed processes
        leave it only once reaped, a moment later: so this retries for a while (blocking:
        call it off the event loop)."""
        for directory in dict.fromkeys((self.memory, self.pids)):
            for attempt in range(attempts):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if attempt == attempts - 1:
                        log.warning(
                            "sandbox.cgroup_not_removed", group=directory.name, error=str(exc)
                        )
                    else:
                        time.sleep(0.01)


class CgroupLimiter:
    """Creates a group per sandbox under one parent per hierarchy."""

    def __init__(self, version: int, memory_parent: Path, pids_parent: Path, pids_max: int):
        self.version = version
        self.memory_parent = memory_parent
        self.pids_parent = pids_parent
        self.pids_max = pids_max

    @classmethod
    def detect(cls, *, delegated_root: Path | None, pids_max: int) -> CgroupLimiter | None:
        """The best mechanism this host offers, or None (rlimits only)."""
        if delegated_root is not None:
            controllers = _read(delegated_root / "cgroup.subtree_control").split()
            if {"memory", "pids"} <= set(controllers):
                return cls(2, delegated_root, delegated_root, pids_max)
            log.warning(
                "sandbox.cgroup_root_unusable",
                reason="memory and pids are not enabled in its cgroup.subtree_control",
            )
        memory, pids = _v1_own_group("memory"), _v1_own_group("pids")
        if memory is None or pids is None:
            return None
        memory_parent, pids_parent = memory / GROUP_PREFIX, pids / GROUP_PREFIX
        try:
            for parent in (memory_parent, pids_parent):
                parent.mkdir(exist_ok=True)
        except OSError:
            return None  # not ours to write: a non-root worker on a v1 host
        if not all(os.access(p, os.W_OK) for p in (memory_parent, pids_parent)):
            return None  # made by another (root) worker: not ours either
        return cls(1, memory_parent, pids_parent, pids_max)

    def sweep(self, *, older_than: float = 600.0) -> int:
        """Remove empty sandbox groups left by a worker that died before removing them;
        returns how many. Only old ones: a new, empty group may be another worker's sandbox
        that is about to join it."""
        removed = 0
        now = time.time()
        for parent in dict.fromkeys((self.memory_parent, self.pids_parent)):
            for group in parent.glob("slot-*"):
                try:
                    if now - group.stat().st_mtime < older_than:
                        continue
                    group.rmdir()  # fails unless empty
                    removed += 1
                except OSError:
                    continue
        return removed

    def create(self, name: str) -> SandboxGroup:
        """A new, empty group for one sandbox, with the process limit set."""
        memory = self.memory_parent / name
        pids = self.pids_parent / name
        memory.mkdir()
        if pids != memory:
            pids.mkdir()
        group = SandboxGroup(self.version, memory, pids)
        _write(pids / "pids.max", str(self.pids_max))
        return group


def _v1_own_group(controller: str) -> Path | None:
    """This process's group in the v1 ``controller`` hierarchy, if that hierarchy exists."""
    mount = CGROUP_FS / controller
    if not (mount / "cgroup.procs").exists():
        return None
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _id, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return mount / path.lstrip("/")
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, value: str, *, missing_ok: bool = False) -> None:
    try:
        path.write_text(value)
    except FileNotFoundError:
        if not missing_ok:
            raise
