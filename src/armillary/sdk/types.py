"""Shapes of the API's answers, as the JSON the client returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, NotRequired, TypedDict

#: Called as bytes move: ``progress(bytes_done, total_bytes)``.
Progress = Callable[[int, int], None]


class Dataset(TypedDict):
    """A dataset of a project; ``latest_version`` is ``None`` until the first upload."""

    id: str
    name: str
    description: str
    tags: list[str]
    created_by: str
    created_at: str
    updated_at: str
    latest_version: int | None


class Column(TypedDict):
    """A column of a version's schema."""

    name: str
    dtype: str


class Version(TypedDict):
    """A version of a dataset: its bytes are immutable and addressed by ``sha256``."""

    id: str
    dataset: str
    number: int
    format: str
    size_bytes: int
    sha256: str
    original_filename: str | None
    row_count: int | None
    columns: list[Column]
    profile_status: str
    profile_error: str | None
    parent_version: int | None
    lineage: dict[str, Any]
    created_by: str
    created_at: str
    deleted: bool


class VersionDetail(Version):
    """A version with its per-column profile (``None`` while it is being computed)."""

    profile: list[dict[str, Any]] | None


class TaskProgress(TypedDict):
    """How far a running attempt has got, as its task last reported (a fold, a trial, a remote
    job's status)."""

    stage: str
    current: int | None
    total: int | None
    message: str
    metrics: dict[str, float]
    updated_at: str


class TaskAttempt(TypedDict):
    """One attempt at a task: which worker ran it, when, and how it ended (``outcome`` is
    ``None`` while it runs)."""

    number: int
    worker: str | None
    started_at: str
    finished_at: str | None
    outcome: str | None
    reason: str | None
    progress: NotRequired[TaskProgress | None]


class TaskRun(TypedDict):
    """One task of a job: its state, current attempt (0 before the first) and results.

    ``artifacts``, ``cached_from`` and ``attempts`` come from servers with an executor."""

    id: str
    name: str
    type: str
    status: str
    attempt: int
    max_attempts: int
    needs: list[str]
    queued_at: str | None
    started_at: str | None
    finished_at: str | None
    error: str | None
    outputs: dict[str, Any] | None
    artifacts: NotRequired[dict[str, str] | None]
    cached_from: NotRequired[str | None]
    attempts: NotRequired[list[TaskAttempt]]
    progress: NotRequired[TaskProgress | None]


class Job(TypedDict):
    """A run of a workflow version; ``status`` is ``queued``, ``running``, ``succeeded``,
    ``failed`` or ``cancelled``, ``trigger`` is ``api``, ``cli`` or ``schedule``."""

    id: str
    project_id: str
    workflow: str
    workflow_id: str
    version: int
    status: str
    trigger: str
    parameters: dict[str, Any]
    created_by: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    cancel_requested_at: str | None
    error: str | None


class JobDetail(Job):
    """A job with its task runs, in the workflow's order."""

    tasks: list[TaskRun]


class JobPage(TypedDict):
    """One page of a project's job history, newest first; ``total`` counts every match."""

    items: list[Job]
    total: int
    limit: int
    offset: int


class UploadResult(NamedTuple):
    """What an upload produced: the version, and whether it is new (``False`` when identical
    bytes were already stored as that version)."""

    version: Version
    created: bool


class Tokens(NamedTuple):
    """An access token, the refresh token that renews it, and when the access token expires
    (seconds since the epoch; ``None`` if unknown)."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
