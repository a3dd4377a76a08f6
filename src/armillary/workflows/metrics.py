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
TASK_ATTEMPTS_IN_PROCESS = Counter(
    "armillary_task_attempts_in_process_total",
    "Task attempts run in the worker's process, without a sandbox (ADR 0047)",
    ["type"],
)
QUEUE_DEPTH = Gauge("armillary_tasks_queued", "Task runs queued and waiting for a worker")
RUNNING = Gauge("armillary_tasks_running", "Task runs running under a worker's lease")
QUEUE_AGE = Gauge(
    "armillary_task_queue_age_seconds",
    "How long the oldest queued task run has waited for a worker (0 when none waits)",
)
# The scheduler's view: a worker is known by the leases it renews (heartbeats).
WORKER_HEARTBEAT_AGE = Gauge(
    "armillary_worker_heartbeat_age_seconds",
    "Time since a worker last renewed its leases, by worker (those holding a task run)",
    ["worker"],
)
WORKERS_LIVE = Gauge("armillary_workers_live", "Workers holding a lease that has not expired")
LEASES_LOST = Counter(
    "armillary_task_lease_lost_total",
    "Task runs whose lease expired (their worker missed its heartbeats)",
    ["type"],
)
PIPELINE_ROWS = Counter(
    "armillary_pipeline_rows_total",
    "Rows data tasks read (in) and wrote (out)",
    ["type", "direction"],
)
QUALITY_CHECKS_FAILED = Counter(
    "armillary_quality_checks_failed_total", "Data quality checks that failed", ["severity"]
)
QUALITY_CHECKS = Counter("armillary_quality_checks_total", "Data quality checks run", ["dataset"])
QUALITY_GATE_FAILURES = Counter(
    "armillary_quality_gate_failures_total",
    "Quality gates (validate tasks) that failed an error check, by dataset validated",
    ["dataset"],
)


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
    dataset = _dataset(inputs)
    for check in (report or {}).get("checks") or []:
        if not isinstance(check, dict):
            continue
        QUALITY_CHECKS.labels(dataset).inc()
        if not check.get("passed"):
            QUALITY_CHECKS_FAILED.labels(str(check.get("severity") or "error")).inc()
    if report and report.get("passed") is False:
        QUALITY_GATE_FAILURES.labels(dataset).inc()


def _dataset(inputs: dict[str, dict[str, Any]]) -> str:
    """The name of the dataset the task's input table was read from ("" when none says)."""
    for given in inputs.values():
        found = given.get("dataset") if isinstance(given, dict) else None
        if isinstance(found, dict) and isinstance(found.get("name"), str):
            return str(found["name"])[:128]
    return ""
