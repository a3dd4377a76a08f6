"""A worker that is not root (a container's user) still runs each attempt in bubblewrap: as
its own uid, separated by user, PID, mount, IPC and network namespaces. Proven here by
running an executor as uid 65534 (the test process must be root to become it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

WORKER_UID = 65534

SCRIPT = """
import asyncio, json, sys, uuid
from pathlib import Path
from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, ResourceLimits

SOURCE = '''
import os, socket
def main():
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
        postgres = "connected"
    except OSError as exc:
        postgres = type(exc).__name__
    return {"uid": os.getuid(), "pid": os.getpid(), "postgres": postgres,
            "home_visible": os.path.exists(sys_home)}
'''

async def main(work: str, home: str) -> None:
    executor = LocalExecutor(Path(work), prestarted=0)
    spec = AttemptSpec(str(uuid.uuid4()), "job", "project", "t", "python",
                       {"source": f"sys_home = {home!r}\\n" + SOURCE, "args": {}}, {}, [],
                       ResourceLimits(), "http://127.0.0.1:9", "job-token")
    try:
        result = await executor.run(spec)
    finally:
        await executor.close()
    print(json.dumps({"outcome": str(result.outcome), "outputs": result.outputs,
                      "error": result.error}))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest.fixture
def worker_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="armillary-nonroot-"))
    os.chown(path, WORKER_UID, WORKER_UID)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user needs root")
def test_a_non_root_worker_sandboxes_its_attempts(worker_dir: Path) -> None:
    script = worker_dir / "run.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={WORKER_UID}",
            f"--regid={WORKER_UID}",
            "--clear-groups",
            sys.executable,
            str(script),
            str(worker_dir / "work"),
            str(worker_dir),
        ],
        env={"PATH": os.environ["PATH"], "HOME": str(worker_dir), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["outcome"] == "succeeded", report
    outputs = report["outputs"]
    assert outputs["uid"] == WORKER_UID  # the worker's own uid: no uid to drop to
    assert outputs["pid"] == 2  # a PID namespace of its own (bubblewrap's init is 1)
    assert outputs["postgres"] != "connected"  # no network
    assert outputs["home_visible"] is False  # a mount namespace of its own
