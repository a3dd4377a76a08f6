"""The profiler child started ahead of its file answers like one started with its arguments,
times out from when it is given them, and is never left running."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from armillary.data.profiling.runner import InvalidDatasetFile, ProfilerProcess, run_profiler
from armillary.kit.errors import ServiceUnavailable


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.csv"
    path.write_text("id,score\n1,0.5\n2,1.5\n3,\n")
    return path


async def test_a_started_child_answers_like_a_fresh_one(csv_file: Path) -> None:
    started = await ProfilerProcess.start(threads=1)
    # The file may be completed after the child started: it reads nothing before its turn.
    await asyncio.sleep(0.1)
    ahead = await run_profiler(
        csv_file, "csv", "profile", time_limit=120, threads=1, started=started
    )
    fresh = await run_profiler(csv_file, "csv", "profile", time_limit=120, threads=1)
    assert ahead == fresh
    assert ahead["row_count"] == 3
    assert [c["name"] for c in ahead["schema"]] == ["id", "score"]
    with pytest.raises(RuntimeError):
        await started.run(csv_file, "csv", "check", time_limit=120)


async def test_a_started_child_refuses_a_bad_file(tmp_path: Path) -> None:
    bad = tmp_path / "data.jsonl"
    bad.write_bytes(b'{"a": 1}\n{"a":')
    started = await ProfilerProcess.start(threads=1)
    with pytest.raises(InvalidDatasetFile):
        await started.run(bad, "jsonl", "check", time_limit=120)


async def test_discard_ends_an_unused_child() -> None:
    started = await ProfilerProcess.start(threads=1)
    process = started._process
    await started.discard()
    assert process.returncode is not None
    with pytest.raises(ServiceUnavailable):
        # Its stdin is gone: it can no longer be used.
        await started.run(Path("/nonexistent.csv"), "csv", "check", time_limit=120)


async def test_the_time_limit_ends_the_child(csv_file: Path) -> None:
    started = await ProfilerProcess.start(threads=1)
    process = started._process
    with pytest.raises(ServiceUnavailable):
        await started.run(csv_file, "csv", "profile", time_limit=0.000_001)
    assert process.returncode is not None
