"""Real sandboxes for the attack-modelled tests (no database). As root, each attempt runs as
a uid of its own; tests that prove something only root can show say so and skip otherwise."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, ResourceLimits


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="armillary-sandbox-sec-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
async def executor(base_dir: Path) -> AsyncIterator[LocalExecutor]:
    executor = LocalExecutor(base_dir / "work", watchdog_interval=0.05, stop_grace_seconds=0.5)
    await executor.start()
    yield executor
    await executor.close()


def python(
    source: str,
    *,
    args: dict[str, Any] | None = None,
    limits: ResourceLimits | None = None,
    project: str = "project-1",
    token: str | None = None,
    api_url: str = "http://127.0.0.1:9",
    declared: list[str] | None = None,
) -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="job-" + uuid.uuid4().hex[:8],
        project_id=project,
        task="step",
        task_type="python",
        params={"source": source, "args": args or {}},
        inputs={},
        declared_outputs=declared or [],
        limits=limits or ResourceLimits(),
        api_url=api_url,
        job_token=token or "job-token-" + uuid.uuid4().hex,
    )


class Log:
    def __init__(self) -> None:
        self.data = bytearray()

    async def __call__(self, chunk: bytes) -> None:
        self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")
