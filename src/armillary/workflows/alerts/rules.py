"""When a rule fires, and what its alert says. Pure functions: the consumers feed them."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from .models import AlertRule
from .senders import Alert


def p95(values: Sequence[float]) -> float:
    """The 95th percentile by nearest rank (the smallest value with at least 95% of the values
    at or below it): with few samples it is an observed value, never an extrapolation."""
    if not values:
        raise ValueError("p95 of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(0.95 * len(ordered)))
    return ordered[rank - 1]


def duration_threshold(
    history: Sequence[float], *, factor: float, min_samples: int
) -> float | None:
    """The duration above which a run is alerted on: p95 of ``history`` x ``factor``; None
    while there are fewer than ``min_samples`` earlier runs to compare with."""
    if len(history) < max(1, min_samples):
        return None
    return p95(history) * factor


def too_slow(duration: float, history: Sequence[float], *, factor: float, min_samples: int) -> bool:
    threshold = duration_threshold(history, factor=factor, min_samples=min_samples)
    return threshold is not None and duration > threshold


def applies(rule: AlertRule, *, workflow: str | None, task: str | None = None) -> bool:
    """The rule's filters let this workflow (and task) through."""
    if rule.workflow is not None and rule.workflow != workflow:
        return False
    return rule.task is None or rule.task == task


def dedup_key(rule_id: uuid.UUID, channel_id: uuid.UUID, event: str, subject: uuid.UUID) -> str:
    """One delivery per rule, channel, kind of event and job or task run."""
    return f"{rule_id}:{channel_id}:{event}:{subject}"


def _base(rule: AlertRule, key: str, occurred_at: datetime) -> dict[str, Any]:
    return {
        "event": rule.kind,
        "project_id": str(rule.project_id),
        "project": rule.project_slug,
        "dedup_key": key,
        "occurred_at": occurred_at.isoformat(),
        "rule_id": str(rule.id),
        "rule": rule.name,
    }


def job_failed(
    rule: AlertRule,
    key: str,
    *,
    job_id: uuid.UUID,
    workflow: str,
    reason: str | None,
    occurred_at: datetime,
) -> Alert:
    summary = f"Job {job_id} of workflow {workflow!r} failed"
    return Alert(
        title="Job failed",
        summary=f"{summary}: {reason[:300]}" if reason else summary,
        workflow=workflow,
        job_id=str(job_id),
        details={"reason": reason[:1000]} if reason else {},
        **_base(rule, key, occurred_at),
    )


def quality_gate_failed(
    rule: AlertRule,
    key: str,
    *,
    job_id: uuid.UUID,
    workflow: str,
    task: str,
    task_run_id: uuid.UUID,
    failed_checks: Sequence[str],
    score: float | None,
    occurred_at: datetime,
) -> Alert:
    checks = ", ".join(failed_checks[:20])
    details: dict[str, object] = {"failed_checks": list(failed_checks[:50])}
    if score is not None:
        details["score"] = score
    return Alert(
        title="Quality gate failed",
        summary=(
            f"Task {task!r} of job {job_id} (workflow {workflow!r}) stopped the job: "
            f"failed checks {checks}"
        ),
        workflow=workflow,
        job_id=str(job_id),
        task=task,
        task_run_id=str(task_run_id),
        details=details,
        **_base(rule, key, occurred_at),
    )


def task_too_slow(
    rule: AlertRule,
    key: str,
    *,
    job_id: uuid.UUID,
    workflow: str,
    task: str,
    task_run_id: uuid.UUID,
    seconds: float,
    p95_seconds: float,
    samples: int,
    occurred_at: datetime,
) -> Alert:
    factor = rule.factor or 0.0
    return Alert(
        title="Task slower than usual",
        summary=(
            f"Task {task!r} of job {job_id} (workflow {workflow!r}) took {seconds:.1f}s, "
            f"over {factor:g} x its p95 of {p95_seconds:.1f}s over the last {samples} runs"
        ),
        workflow=workflow,
        job_id=str(job_id),
        task=task,
        task_run_id=str(task_run_id),
        details={
            "duration_seconds": round(seconds, 3),
            "p95_seconds": round(p95_seconds, 3),
            "factor": factor,
            "samples": samples,
        },
        **_base(rule, key, occurred_at),
    )


def job_overdue(
    rule: AlertRule,
    key: str,
    *,
    job_id: uuid.UUID,
    workflow: str,
    status: str,
    created_at: datetime,
    occurred_at: datetime,
) -> Alert:
    return Alert(
        title="Job past its deadline",
        summary=(
            f"Job {job_id} of workflow {workflow!r} has not succeeded {rule.max_minutes} "
            f"minutes after it was created (status: {status})"
        ),
        workflow=workflow,
        job_id=str(job_id),
        details={
            "status": status,
            "created_at": created_at.isoformat(),
            "max_minutes": rule.max_minutes,
        },
        **_base(rule, key, occurred_at),
    )
