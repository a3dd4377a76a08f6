"""Workflow engine settings (prefix ``ARMILLARY_WORKFLOWS_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkflowSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ARMILLARY_WORKFLOWS_", extra="ignore")

    # A worker renews its leases every heartbeat; a lease not renewed for lease_seconds means
    # the worker is lost, and the scheduler re-queues its tasks.
    lease_seconds: float = Field(default=30.0, gt=0)
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    # How long the scheduler and idle workers wait for a wake-up before looking anyway
    # (PostgreSQL wakes them with NOTIFY; SQLite has no notifications, so it polls this often).
    poll_seconds: float = Field(default=1.0, gt=0)
    sqlite_poll_seconds: float = Field(default=0.05, gt=0)
    # Attempts one worker process runs at once.
    worker_concurrency: int = Field(default=4, ge=1, le=256)
    # Limits of one task attempt unless the task says otherwise.
    task_memory_mb: int = Field(default=2048, ge=16)
    task_cpu_seconds: int | None = Field(default=None, ge=1)
    # Where workers give each attempt its private directory (default: ARMILLARY_HOME/work).
    work_dir: str | None = None
    # The API base URL tasks call with their job token (default: the platform's own address).
    task_api_url: str | None = None
    job_token_ttl_seconds: int = Field(default=3600, ge=60, le=86_400)
    # Finished jobs, their logs and artifacts are deleted after this many days (0: kept).
    retention_days: int = Field(default=90, ge=0)
    retention_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Log output is written to the object store in chunks at least this often while a task runs.
    log_flush_seconds: float = Field(default=1.0, gt=0)
    log_flush_bytes: int = Field(default=256 * 1024, ge=1024)
    # A worker or scheduler process of its own serves /metrics on this port (none if unset).
    metrics_port: int | None = Field(default=None, ge=1, le=65_535)
    # Output of one attempt beyond this is dropped (the log says so).
    log_max_bytes: int = Field(default=64 * 1024**2, ge=1024)
