"""Workflow engine settings (prefix ``ARMILLARY_WORKFLOWS_``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from armillary.kit.secret_sources import SecretRef


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
    # Libraries every sandbox imports before its attempt arrives (ADR 0011).
    executor_preload: list[str] = Field(default_factory=lambda: ["numpy", "polars"])
    # Sandboxes kept started and warm, each waiting for exactly one attempt.
    executor_prestarted: int = Field(default=2, ge=0, le=64)
    # Development only: run attempts without bubblewrap (python tasks are refused without it
    # unless this is set). Logged loudly at start.
    executor_insecure_no_sandbox: bool = False
    # A root worker gives each sandbox a uid of its own from this range.
    executor_uid_first: int = Field(default=200_000, ge=1000)
    executor_uid_count: int = Field(default=50_000, ge=1)
    # Processes one attempt may have at once (cgroup pids.max).
    executor_pids_max: int = Field(default=512, ge=16)
    # A cgroup v2 directory delegated to the worker, with memory and pids enabled for its
    # children; without it the v1 hierarchies are used where present, else rlimits only.
    executor_cgroup_root: str | None = None
    # Where workers give each attempt its private directory (default: ARMILLARY_HOME/work;
    # it must be the worker's own, 0700, and no symbolic link).
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
    # Alerts (workflows.alerts): the delivery loop runs in every process that installs the
    # service unless disabled; deliveries are claimed one loop at a time.
    alert_delivery_enabled: bool = True
    alert_poll_seconds: float = Field(default=5.0, gt=0)
    alert_deadline_check_seconds: float = Field(default=30.0, gt=0)
    alert_max_attempts: int = Field(default=5, ge=1, le=50)
    alert_backoff_seconds: float = Field(default=10.0, gt=0)
    alert_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    alert_send_timeout_seconds: float = Field(default=10.0, gt=0)
    # task_duration_p95 compares a run with this many earlier succeeded runs.
    alert_duration_history: int = Field(default=20, ge=2, le=1000)
    # job_deadline looks at jobs created at most this long before their deadline.
    alert_deadline_lookback_hours: float = Field(default=24.0, gt=0)
    # The bearer secret Prometheus' Alertmanager sends to POST /api/v1/alerts/alertmanager
    # (alerts.alertmanager); unset, that receiver is off.
    alertmanager_token: SecretStr | None = Field(default=None, min_length=32)
    # Webhook-style channels may target loopback/private addresses (off: no SSRF by alert).
    alert_allow_private_targets: bool = False
    # Where channel secrets given by reference may live (comma-separated), each the start of
    # a reference: `aws-secretsmanager:armillary/alerts/{project}/` (names, or ARNs whose name
    # starts so) or `file:/run/secrets/alerts/{project}/` (a directory); `{project}` is the
    # channel's project. Empty: no references. Never a prefix holding the platform's own
    # secrets: whoever edits a channel chooses where its secret is sent.
    alert_secret_ref_prefixes: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("alert_secret_ref_prefixes", mode="before")
    @classmethod
    def _split_prefixes(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("alert_secret_ref_prefixes")
    @classmethod
    def _prefixes_are_references(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            ref = SecretRef.parse("ARMILLARY_WORKFLOWS_ALERT_SECRET_REF_PREFIXES", prefix)
            if "#" in ref.location:
                raise ValueError(f"{prefix!r}: a prefix names secrets, not a key in one")
            if ref.kind == "file" and not prefix.endswith("/"):
                raise ValueError(f"{prefix!r}: a file prefix is a directory, ending with /")
        return prefixes
