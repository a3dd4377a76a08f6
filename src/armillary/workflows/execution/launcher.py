"""The program a sandbox runs: warm up, wait for exactly one attempt, run it, report, exit.

Started by :mod:`.pool` as ``python -m armillary.workflows.execution.launcher --control FD
--preload a,b`` inside bubblewrap, with the log pipe on stdout and stderr and its control
socket on ``FD``. Frames on the control socket (a 4-byte length, then JSON):

- launcher -> worker: ``{"op": "ready"}`` once the imports are done;
- worker -> launcher: ``{"spec": {...}, "workdir": ...}``: the attempt (no token: the
  worker's proxy adds it to each API request);
- launcher -> worker: ``{"ok": true, "outputs": ...}`` or ``{"ok": false, ...}``.

A sandbox serves one attempt and one attempt only: nothing of one tenant's attempt can be
found by the next one, which runs in a fresh interpreter in a fresh sandbox.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import socket
import struct
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import child, forwarder, sandbox
from .protocol import ResourceLimits

MAX_FRAME = 64 * 1024**2  # the request carries upstream outputs inline; they are capped well below
_HEADER = struct.Struct(">I")


def send_frame(sock: socket.socket, message: dict[str, Any]) -> None:
    """One length-prefixed JSON frame."""
    data = json.dumps(message).encode()
    sock.sendall(_HEADER.pack(len(data)) + data)


def receive_frame(sock: socket.socket) -> dict[str, Any] | None:
    """The next frame, or None when the other side has gone."""
    header = _receive_exactly(sock, _HEADER.size)
    if header is None:
        return None
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        return None
    body = _receive_exactly(sock, size)
    if body is None:
        return None
    message: dict[str, Any] = json.loads(body)
    return message


def _receive_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1024**2))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


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
            print(f"sandbox: task type {entry_point.name}: {exc!r}", file=sys.stderr)
            continue
        loaded.append(entry_point.value)
    return loaded


def run_attempt(request: dict[str, Any]) -> dict[str, Any]:
    """Enter the attempt (limits, directory, environment) and run it; returns the result."""
    spec = request["spec"]
    # The forwarder's address as it was bound (a free port where the network is shared).
    spec["api_url"] = os.environ.get("ARMILLARY_API_URL") or spec["api_url"]
    limits = ResourceLimits(**spec["limits"])
    workdir = sandbox.Workdir.of(Path(request["workdir"]).parent, Path(request["workdir"]).name)
    try:
        os.umask(0o077)
        sandbox.apply_limits(limits)
        os.chdir(workdir.root)
        os.environ.update(
            {
                "ARMILLARY_JOB_ID": spec["job_id"],
                # Where a task's own API clients (armillary.tracking) address the project.
                "ARMILLARY_PROJECT_ID": spec["project_id"],
                "ARMILLARY_TASK": spec["task"],
                "HOME": str(workdir.root),
            }
        )
        return child.run_in_sandbox(spec, workdir, limits)
    except Exception as exc:
        return child.failure(f"the sandbox could not be set up: {type(exc).__name__}: {exc}")


def main(argv: list[str]) -> int:  # pragma: no cover - runs inside the sandbox
    options = dict(zip(argv[::2], argv[1::2], strict=False))
    control_fd = int(options["--control"])
    modules = options.get("--preload", "").split(",")
    control = socket.socket(fileno=control_fd)
    for stream in (sys.stdout, sys.stderr):
        # A pipe is block-buffered by default: lines should reach the log as they are printed.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    if os.path.exists(forwarder.SOCKET_PATH):
        wanted = urlsplit(os.environ.get("ARMILLARY_API_URL", "")).port
        port = forwarder.start(
            close=(control_fd,), port=forwarder.API_PORT if wanted is None else wanted
        )
        os.environ["ARMILLARY_API_URL"] = f"http://127.0.0.1:{port}"
    if os.path.exists(forwarder.EGRESS_SOCKET_PATH):  # only a type that declares egress
        forwarder.start(
            close=(control_fd,),
            port=forwarder.EGRESS_PORT,
            socket_path=forwarder.EGRESS_SOCKET_PATH,
        )
    preload([m for m in modules if m])
    send_frame(control, {"op": "ready"})
    request = receive_frame(control)
    if request is None:
        return 0  # the worker no longer needs this sandbox
    result = run_attempt(request)
    del request
    _run_exit_handlers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # user code may have closed them
            stream.flush()
    with contextlib.suppress(OSError):
        send_frame(control, result)
    return 0 if result["ok"] else 1


def _run_exit_handlers() -> None:  # pragma: no cover - runs inside the sandbox
    """What the task registered with ``atexit`` (a tracking client sending its queued
    metrics), run while the attempt's API proxy still answers: the sandbox ends with
    ``os._exit``, which would skip them."""
    try:
        atexit._run_exitfuncs()
    except Exception as exc:
        print(f"sandbox: exit handlers: {exc!r}", file=sys.stderr)


def _save_coverage() -> None:  # pragma: no cover - the test suite's measurements
    """os._exit skips coverage's own save at exit."""
    coverage = sys.modules.get("coverage")
    current = coverage.Coverage.current() if coverage is not None else None
    if current is not None:
        with contextlib.suppress(Exception):
            current.stop()
            current.save()


if __name__ == "__main__":  # pragma: no cover - runs inside the sandbox
    code = main(sys.argv[1:])
    _save_coverage()
    # Not sys.exit: threads a task left behind must not keep the sandbox alive.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
