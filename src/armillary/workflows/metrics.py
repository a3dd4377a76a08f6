"""Prometheus metrics of the workflow engine: jobs and tasks finished by status with their
durations (recorded where statuses change, once the change is committed), and the queue as
the scheduler sees it."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)

JOBS_FINISHED = Counter("armillary_jobs_finished_total", "Jobs that ended", ["status"])
JOB_DURATION = Histogram(
    "armillary_job_duration_seconds",
    "From a job's start to its end",
    ["status"],
    buckets=_DURATION_BUCKETS,
)
TASKS_FINISHED = Counter(
    "armillary_task_runs_finished_total", "Task runs that ended", ["type", "status"]
)
TASK_DURATION = Histogram(
    "armillary_task_run_duration_seconds",
    "From a task run's (last) start to its end",
    ["type", "status"],
    buckets=_DURATION_BUCKETS,
)
TASK_ATTEMPTS = Counter(
    "armillary_task_attempts_total", "Task attempts started by workers", ["type"]
)
QUEUE_DEPTH = Gauge("armillary_tasks_queued", "Task runs queued and waiting for a worker")
RUNNING = Gauge("armillary_tasks_running", "Task runs running under a worker's lease")
PIPELINE_ROWS = Counter(
    "armillary_pipeline_rows_total",
    "Rows data tasks read (in) and wrote (out)",
    ["type", "direction"],
)
QUALITY_CHECKS_FAILED = Counter(
    "armillary_quality_checks_failed_total", "Data quality checks that failed", ["severity"]
)
QUALITY_CHECKS = Counter("armillary_quality_checks_total", "Data quality checks run")


def record_pipeline(
    task_type: str,
    inputs: dict[str, dict[str, Any]],
    outputs: dict[str, Any] | None,
    report: dict[str, Any] | None,
) -> None:
    """Rows in and out of a data task, and its quality checks, from what it reported."""
    rows_in = sum(
        int(given["rows"]) for given in inputs.values() if isinstance(given.get("rows"), int)
    )
    if rows_in:
        PIPELINE_ROWS.labels(task_type, "in").inc(rows_in)
    if outputs and isinstance(outputs.get("rows"), int) and "table" in outputs:
        PIPELINE_ROWS.labels(task_type, "out").inc(outputs["rows"])
    for check in (report or {}).get("checks") or []:
        if not isinstance(check, dict):
            continue
        QUALITY_CHECKS.inc()
        if not check.get("passed"):
            QUALITY_CHECKS_FAILED.labels(str(check.get("severity") or "error")).inc()
