"""The fork server: imports the heavy libraries once, then forks a child per attempt.

Started by :class:`~armillary.workflows.execution.local.LocalExecutor` as
``python -m armillary.workflows.execution.forkserver FD [--preload a,b]`` with one end of a
``SOCK_SEQPACKET`` socket pair on ``FD``. Messages (JSON, one per packet):

- parent -> server: ``{"op": "run", "id": ..., "size": N}`` carrying two descriptors (the
  write ends of the log pipe and the result pipe), followed by the N-byte request in packets
  of at most :data:`CHUNK` bytes. The request holds the job token: it is never written
  anywhere but this socket.
- server -> parent: ``{"op": "ready", "pid": ...}`` once, then per attempt
  ``{"op": "started", "id", "pid"}`` and ``{"op": "exited", "id", "pid", "returncode",
  "cpu_seconds", "max_rss_bytes"}`` (``returncode`` negative for a signal, as in subprocess).

The server is a child subreaper, so grandchildren left behind by a task are reaped here too.
When the parent closes the socket the server kills what it started and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import socket
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from . import child, sandbox

CHUNK = 32 * 1024
MAX_FDS = 2
_PR_SET_CHILD_SUBREAPER = 36


def preload(modules: Iterable[str]) -> list[str]:
    """Import ``modules`` (those not installed are skipped) and every registered task type."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    for entry_point in entry_points(group=child.ENTRY_POINT_GROUP):
        try:
            child.IMPLEMENTATIONS[entry_point.name] = entry_point.load()
        except Exception as exc:  # one broken plugin must not stop the others
            print(f"forkserver: task type {entry_point.name}: {exc!r}", file=sys.stderr)
            continue
        loaded.append(entry_point.value)
    return loaded


class ForkServer:
    """The server loop: requests in, children out, exit statuses back."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.children: dict[int, str] = {}  # pid -> attempt id
        self.wakeup_r, self.wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(self.wakeup_w, False)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.send(json.dumps(message).encode())

    def serve(self) -> None:
        # SIGCHLD wakes the loop through a pipe; the handler itself does nothing.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self.wakeup_w, warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self.wakeup_r, selectors.EVENT_READ)
        self.send({"op": "ready", "pid": os.getpid()})
        try:
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self.sock:
                        if not self.receive():
                            return
                    else:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self.wakeup_r, 4096)
                self.reap()
        finally:
            selector.close()
            self.kill_children()

    def receive(self) -> bool:
        """Handle one request; False when the parent has gone."""
        data, fds, _flags, _addr = socket.recv_fds(self.sock, CHUNK, MAX_FDS)
        if not data:
            return False
        header = json.loads(data)
        body = bytearray()
        while len(body) < header["size"]:
            chunk = self.sock.recv(CHUNK)
            if not chunk:
                return False
            body += chunk
        if len(fds) != MAX_FDS:
            for fd in fds:
                os.close(fd)
            self.send({"op": "exited", "id": header["id"], "pid": None, "returncode": 70})
            return True
        self.fork(header["id"], bytes(body), fds[0], fds[1])
        return True

    def fork(self, attempt_id: str, body: bytes, log_fd: int, result_fd: int) -> None:
        server_pid = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child; measured through sandbox/child instead
            code = 70
            try:
                signal.set_wakeup_fd(-1)
                request = json.loads(body)
                del body
                # Before child.run so that its frames are traced, and before the uid drop.
                sandbox.restart_coverage(request.get("sandbox_uid"))
                code = child.run(request, log_fd, result_fd, server_pid)
            except BaseException as exc:
                print(f"attempt child failed: {exc!r}", file=sys.stderr)
            finally:
                os._exit(code)
        os.close(log_fd)
        os.close(result_fd)
        self.children[pid] = attempt_id
        self.send({"op": "started", "id": attempt_id, "pid": pid})

    def reap(self) -> None:
        while True:
            try:
                pid, status, usage = os.wait4(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            attempt_id = self.children.pop(pid, None)
            if attempt_id is None:
                continue  # an orphaned grandchild, adopted as subreaper
            self.send(
                {
                    "op": "exited",
                    "id": attempt_id,
                    "pid": pid,
                    "returncode": os.waitstatus_to_exitcode(status),
                    "cpu_seconds": usage.ru_utime + usage.ru_stime,
                    "max_rss_bytes": usage.ru_maxrss * 1024,
                }
            )

    def kill_children(self) -> None:
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    fd = int(argv[0])
    modules = argv[2].split(",") if len(argv) > 2 and argv[1] == "--preload" else []
    # Ctrl-C in a terminal reaches the whole process group; the worker decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sandbox._prctl(_PR_SET_CHILD_SUBREAPER, 1)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    preload([m for m in modules if m])
    server = ForkServer(sock)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the parent went away
        server.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
