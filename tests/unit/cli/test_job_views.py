"""Off a terminal a followed job prints plain lines: state changes and, at most every
PROGRESS_LINE_SECONDS, a running task's progress; never a control sequence."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from armillary.cli import job_views
from armillary.cli.job_views import ChangeLines


def _run(name: str, status: str, progress: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "type": "train",
        "status": status,
        "attempt": 1 if status != "pending" else 0,
        "max_attempts": 1,
        "started_at": "2026-01-01T00:00:00+00:00" if status != "pending" else None,
        "finished_at": "2026-01-01T00:00:05+00:00" if status == "succeeded" else None,
        "error": None,
        "outputs": None,
        "progress": progress,
    }


def _job(status: str, *tasks: dict[str, Any]) -> Any:
    return {"id": "j", "status": status, "tasks": list(tasks)}


def _fold(current: int, accuracy: float) -> dict[str, Any]:
    return {"stage": "fold", "current": current, "total": 5, "metrics": {"accuracy": accuracy}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_carry_state_changes_and_throttled_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(job_views, "PROGRESS_LINE_SECONDS", 10.0)
    screen = io.StringIO()
    console = Console(file=screen, width=80)
    assert not console.is_terminal
    clock = Clock()
    lines = ChangeLines(_job("queued", _run("train", "pending")), console, clock)

    lines(_job("running", _run("train", "running", _fold(1, 0.8))))
    clock.now = 3.0  # sooner than the interval: this report is not printed
    lines(_job("running", _run("train", "running", _fold(2, 0.85))))
    clock.now = 12.0
    lines(_job("running", _run("train", "running", _fold(3, 0.9))))
    clock.now = 30.0  # unchanged progress: nothing new to say
    lines(_job("running", _run("train", "running", _fold(3, 0.9))))
    lines(_job("succeeded", _run("train", "succeeded")))

    printed = screen.getvalue()
    assert printed.splitlines() == [
        "job running",
        "task train: running (attempt 1/1)",
        "task train: fold 1/5 (20%) · accuracy=0.8",
        "task train: fold 3/5 (60%) · accuracy=0.9",
        "task train: succeeded (attempt 1/1) in 5.0s",
    ]
    assert "\x1b" not in printed
