"""Runs one python task attempt in a bubblewrap sandbox with the worker's own executor and
prints its outcome as JSON. tests/deploy/test_containers.py feeds it to `python3 -` in the
worker image, under the Helm chart's Localhost seccomp profile."""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, ResourceLimits

SOURCE = """
import os, socket
def main():
    print('hello from the sandbox')
    try:
        socket.create_connection(('1.1.1.1', 53), timeout=1)
        network = True
    except OSError:
        network = False
    return {'pid': os.getpid(), 'uid': os.getuid(), 'network': network}
"""


async def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="probe-"))
    executor = LocalExecutor(root / "work", prestarted=0)
    log = bytearray()

    async def collect(chunk: bytes) -> None:
        log.extend(chunk)

    spec = AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="probe",
        project_id="probe",
        task="probe",
        task_type="python",
        params={"source": SOURCE, "args": {}},
        inputs={},
        declared_outputs=["pid", "uid", "network"],
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9/api",
        job_token="probe-" + uuid.uuid4().hex,
    )
    try:
        await executor.start()
        result = await executor.run(spec, on_log=collect)
        outcome = {
            "sandboxed": executor.sandboxed,
            "outcome": result.outcome.value,
            "error": result.error,
            "outputs": result.outputs,
            "log": log.decode(errors="replace"),
        }
        result.cleanup()
    finally:
        await executor.close()
    print(json.dumps(outcome))


if __name__ == "__main__":
    asyncio.run(main())
