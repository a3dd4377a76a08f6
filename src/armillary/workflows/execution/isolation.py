"""How a sandbox is built: the bubblewrap command line, its mounts, and its user.

Each sandbox gets new PID, mount, IPC, UTS, cgroup and network namespaces (no network, even
for a task type that declares egress: it goes out through the worker's egress proxy, whose
socket is bound at ``/run/armillary/egress.sock``); a read-only view of the host's libraries
(``/usr``), the Python installation, the virtualenv and the platform's own packages; its
private working directory at ``/attempt`` (also ``/tmp``); the worker's API socket at
``/run/armillary/api.sock``; nothing else. No host socket is bound in: ``--unshare-net``
does not stop path sockets.

Users: a root worker runs bubblewrap as root (so it can bind directories under a 0700
``ARMILLARY_HOME``) with only ``CAP_SETUID``/``CAP_SETGID`` kept, and the first command inside
is ``setpriv``, which drops to a uid of the attempt's own from a reserved range, with no
groups and no capabilities. No user namespace is involved, so uid N inside is uid N outside
(``bwrap --uid N`` with ``--unshare-user`` run by root would map N to root outside). A
non-root worker runs bubblewrap unprivileged in a user namespace as its own uid.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import secrets
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import forwarder

SANDBOX_WORKDIR = Path("/attempt")
SANDBOX_TMP = Path("/tmp")  # noqa: S108 - the sandbox's own /tmp, bound to its private directory
SANDBOX_CODE = SANDBOX_WORKDIR / "code"
SANDBOX_COVERAGE = Path("/coverage")
LAUNCHER = "armillary.workflows.execution.launcher"
# Read-only, where present: the dynamic loader's cache, time zones, CA certificates.
_ETC_FILES = ("/etc/ld.so.cache", "/etc/localtime", "/etc/ssl/certs", "/etc/ca-certificates")


def find_bwrap() -> str | None:
    """bubblewrap's path, or None when it is not installed."""
    return shutil.which("bwrap")


@dataclass(frozen=True, slots=True)
class RuntimeView:
    """The read-only directories a sandbox needs to run the platform's Python."""

    directories: tuple[Path, ...]
    python_path: tuple[Path, ...]  # put on PYTHONPATH inside (modules outside site-packages)

    @classmethod
    def of_this_interpreter(cls, modules: Iterable[str] = ()) -> RuntimeView:
        """The interpreter's installation, the virtualenv, the ``armillary`` package's source
        root, and the top-level package of each of ``modules`` found elsewhere."""
        base = Path(os.path.realpath(sys.base_prefix))
        prefix = Path(os.path.realpath(sys.prefix))
        directories: list[Path] = [base, prefix]
        python_path: list[Path] = []
        for name in ("armillary", *modules):
            top = name.split(".")[0]
            try:
                spec = importlib.util.find_spec(top)
            except (ImportError, ValueError):
                continue
            if spec is None or not spec.submodule_search_locations:
                continue
            package = Path(os.path.realpath(next(iter(spec.submodule_search_locations))))
            if any(package.is_relative_to(d) for d in directories):
                continue
            directories.append(package)
            python_path.append(package.parent)
        return cls(tuple(dict.fromkeys(directories)), tuple(dict.fromkeys(python_path)))


@dataclass(frozen=True, slots=True)
class SandboxPlan:
    """What one sandbox gets."""

    workdir: Path  # host path of its private directory (owned by its uid)
    api_socket: Path | None  # host path of the worker's proxy socket for it
    seccomp_fd: int
    info_fd: int
    uid: int | None  # the uid to drop to (root worker), None: the worker's own
    egress_socket: Path | None = None  # host path of its egress proxy's socket (egress types)
    coverage_dir: Path | None = None  # the test suite's measurements (see pool)


def bwrap_argv(
    bwrap: str, plan: SandboxPlan, runtime: RuntimeView, command: Sequence[str]
) -> list[str]:
    """The full command line: bubblewrap, then (as root) ``setpriv``, then ``command``."""
    argv = [
        # bubblewrap's own --die-with-parent covers the sandbox's init, not bubblewrap: were
        # the worker to die, the sandbox would live on without this.
        "/usr/bin/setpriv",
        "--pdeathsig=KILL",
        "--",
        bwrap,
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        "sandbox",
        "--die-with-parent",
        "--new-session",
        "--seccomp",
        str(plan.seccomp_fd),
        "--info-fd",
        str(plan.info_fd),
        "--unshare-net",
    ]
    if plan.uid is None:
        argv.append("--unshare-user")
    else:
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        path = Path("/", name)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), str(path)]
        elif path.is_dir():
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for file in _ETC_FILES:
        argv += ["--ro-bind-try", file, file]
    # The private /attempt and /tmp first: a runtime that lives under /tmp (a checkout in
    # /tmp/...) is then bound on top of the private /tmp instead of being hidden by it.
    argv += ["--bind", str(plan.workdir), str(SANDBOX_WORKDIR)]
    argv += ["--bind", str(plan.workdir / "tmp"), str(SANDBOX_TMP)]
    # The directories on the way to a mount point are made by bubblewrap as root: searchable
    # by the sandbox user only when they say so.
    for parent in _parents_of(runtime.directories):
        argv += ["--perms", "0755", "--dir", str(parent)]
    for directory in runtime.directories:
        argv += ["--ro-bind", str(directory), str(directory)]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    if plan.api_socket is not None:
        socket_dir = str(Path(forwarder.SOCKET_PATH).parent)
        argv += ["--perms", "0755", "--dir", socket_dir]
        argv += ["--bind", str(plan.api_socket), forwarder.SOCKET_PATH]
    if plan.egress_socket is not None:
        argv += ["--bind", str(plan.egress_socket), forwarder.EGRESS_SOCKET_PATH]
    if plan.coverage_dir is not None:
        argv += ["--bind", str(plan.coverage_dir), str(SANDBOX_COVERAGE)]
    argv += ["--chdir", str(SANDBOX_WORKDIR), "--"]
    if plan.uid is not None:
        argv += [
            "/usr/bin/setpriv",
            f"--reuid={plan.uid}",
            f"--regid={plan.uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return argv + list(command)


def _parents_of(directories: Iterable[Path]) -> list[Path]:
    parents = {p for d in directories for p in d.parents if p != Path("/")}
    return sorted(parents, key=lambda p: len(p.parts))


def launcher_command(preload: Sequence[str], *, control_fd: int) -> list[str]:
    """The launcher, run by this interpreter (the virtualenv's, so its packages resolve)."""
    return [
        sys.executable,
        "-m",
        LAUNCHER,
        "--control",
        str(control_fd),
        "--preload",
        ",".join(preload),
    ]


class UidRange:
    """Hands out uids of a reserved range, one per live sandbox, machine-wide.

    A uid is held through an exclusive lock on a file named after it, so two workers on one
    machine (sharing ``lock_dir``) never give the same uid to two sandboxes at once.
    """

    def __init__(self, first: int, count: int, lock_dir: Path) -> None:
        if first < 1000 or count < 1:
            raise ValueError("the sandbox uid range must lie above the system users")
        self.first, self.count, self.lock_dir = first, count, lock_dir
        self._held: dict[int, int] = {}

    def acquire(self) -> int:
        """A free uid of the range (locked until :meth:`release`)."""
        self.lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        start = secrets.randbelow(self.count)
        for offset in range(self.count):
            uid = self.first + (start + offset) % self.count
            if uid in self._held:
                continue
            fd = os.open(self.lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            self._held[uid] = fd
            return uid
        raise RuntimeError("every uid of the sandbox range is in use")

    def release(self, uid: int) -> None:
        fd = self._held.pop(uid, None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
