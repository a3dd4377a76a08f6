"""Without bubblewrap, user code is refused unless the operator chose the insecure
development mode, which is logged loudly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from tests.security.sandbox.conftest import python

from armillary.workflows.execution import isolation
from armillary.workflows.execution.local import LocalExecutor
from armillary.workflows.execution.protocol import AttemptSpec, Outcome, ResourceLimits


def noop() -> AttemptSpec:
    return AttemptSpec(
        attempt_id=str(uuid.uuid4()),
        job_id="job",
        project_id="project",
        task="t",
        task_type="noop",
        params={"values": {"a": 1}},
        inputs={},
        declared_outputs=["a"],
        limits=ResourceLimits(),
        api_url="http://127.0.0.1:9",
        job_token="job-token-" + uuid.uuid4().hex,
    )


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(isolation, "find_bwrap", lambda: None)


async def test_python_tasks_are_refused_without_bubblewrap(no_bwrap: None, tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "work", prestarted=0)
    with capture_logs() as logs:
        await executor.start()
    try:
        refused = await executor.run(python("def main():\n    return {'x': 1}\n"))
        assert refused.outcome == Outcome.CRASHED
        assert refused.error is not None
        assert "bubblewrap is not installed" in refused.error
        assert [e["event"] for e in logs] == ["sandbox.bubblewrap_missing"]
        built_in = await executor.run(noop())  # platform code still runs
        assert (built_in.outcome, built_in.outputs) == (Outcome.SUCCEEDED, {"a": 1})
    finally:
        await executor.close()


async def test_the_insecure_mode_runs_python_and_says_so(no_bwrap: None, tmp_path: Path) -> None:
    executor = LocalExecutor(tmp_path / "work", prestarted=0, insecure_no_sandbox=True)
    with capture_logs() as logs:
        await executor.start()
    try:
        assert any(e["event"] == "sandbox.INSECURE_MODE" for e in logs)
        result = await executor.run(python("def main():\n    return {'x': 1}\n"))
        assert (result.outcome, result.outputs) == (Outcome.SUCCEEDED, {"x": 1}), result.error
    finally:
        await executor.close()
