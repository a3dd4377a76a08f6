"""Prometheus metrics of the workflow engine: jobs and tasks finished by status with their
durations (recorded where statuses change, once the change is committed), and the queue as
the scheduler sees it."""

from __future__ import annotations

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
