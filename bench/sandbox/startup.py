"""Attempt start-up overhead: from ``run()`` to the first line of the user's function.

Three executors in the same run, on the same machine:

- the fork server this platform used until issue 13, rebuilt from git history (the commit
  before it was removed) into a temporary package;
- a pre-started sandbox (bubblewrap, interpreter and NumPy/Polars imports done before the
  attempt arrives; the next run waits until a warm one is ready, as a worker under a steady
  load would find one);
- a cold sandbox (started for the attempt: bubblewrap, the interpreter and the imports).

Run as root from the repository: ``.venv/bin/python bench/sandbox/startup.py [--runs 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, ResourceLimits

FORK_SERVER_COMMIT = "716b394^"  # the last commit with workflows/execution/forkserver.py
OLD_FILES = ("__init__.py", "forkserver.py", "child.py", "sandbox.py", "protocol.py", "local.py")
SOURCE = "import time\ndef main():\n    return {'t': time.time()}\n"


def spec() -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="bench",
        project_id="bench",
        task="t",
        task_type="python",
        params={"source": SOURCE, "args": {}},
        inputs={},
        declared_outputs=["t"],
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9",
        job_token="bench-token",
    )


def old_fork_server(root: Path) -> Any:
    """The fork-server executor of ``FORK_SERVER_COMMIT``, importable as ``oldexec``."""
    package = root / "oldexec"
    package.mkdir(parents=True)
    for name in OLD_FILES:
        text = subprocess.run(
            ["git", "show", f"{FORK_SERVER_COMMIT}:src/armillary/workflows/execution/{name}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = text.replace("armillary.workflows.execution.forkserver", "oldexec.forkserver")
        (package / name).write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module("oldexec.local")


async def measure(executor: Any, runs: int, *, wait_warm: bool) -> list[float]:
    delays: list[float] = []
    for index in range(runs + 3):
        if wait_warm:
            pool = executor._pool
            while pool._ready.qsize() < 1:
                await asyncio.sleep(0.05)
        before = time.time()
        result = await executor.run(spec())
        assert result.outputs is not None, result.error
        if index >= 3:  # warm-up runs are left out
            delays.append((result.outputs["t"] - before) * 1000)
        result.cleanup()
    return delays


def summary(name: str, delays: list[float]) -> str:
    ordered = sorted(delays)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"| {name} | {statistics.median(delays):.1f} ms | {p95:.1f} ms | {len(delays)} |"


async def main(runs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        root.chmod(0o711)  # the fork server's children (uid 65534) must reach their work root
        old = old_fork_server(root / "old")
        # The server is a `python -m oldexec.forkserver` of its own: it must find the package.
        os.environ["PYTHONPATH"] = str(root / "old")
        fork_server = old.LocalExecutor(root / "fork-work", preload=("numpy", "polars"))
        del os.environ["PYTHONPATH"]
        await fork_server.start()
        forked = await measure(fork_server, runs, wait_warm=False)
        await fork_server.close()

        warm = LocalExecutor(root / "warm-work", prestarted=1)
        await warm.start()
        prestarted = await measure(warm, runs, wait_warm=True)
        await warm.close()

        cold_executor = LocalExecutor(root / "cold-work", prestarted=0)
        await cold_executor.start()
        cold = await measure(cold_executor, max(5, runs // 3), wait_warm=False)
        await cold_executor.close()

    print("| executor | median | p95 | runs |")
    print("|---|---|---|---|")
    print(summary("fork server (until issue 13)", forked))
    print(summary("pre-started sandbox", prestarted))
    print(summary("cold sandbox (bwrap + interpreter + NumPy/Polars)", cold))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(main(parser.parse_args().runs))
