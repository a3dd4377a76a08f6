"""The ordered transition rules: allowed and refused changes, side effects, events."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.events import JobStatusChanged, TaskRunStatusChanged
from armillary.kit.events import OutboxEvent
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, JobState, TaskRun, TaskState
from armillary.workflows.jobs.transitions import TransitionRejected

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
SRC = Path(__file__).resolve().parents[3] / "src"

LEASE = ("worker-1", NOW)


def job(status: JobState = JobState.QUEUED) -> Job:
    return Job(
        id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        workflow_id=uuid.uuid4(),
        status=status,
    )


def run(status: TaskState = TaskState.PENDING, **values: object) -> TaskRun:
    fields: dict[str, object] = {
        "id": uuid.uuid4(),
        "job_id": uuid.uuid4(),
        "name": "t",
        "status": status,
        "attempt": 0,
        "max_attempts": 3,
        "fencing_token": 0,
    }
    fields.update(values)
    return TaskRun(**fields)


@pytest.fixture
def session() -> AsyncSession:
    # Nothing is flushed: the outbox rows are inspected in the session's pending set.
    return AsyncSession()


def events(session: AsyncSession) -> list[OutboxEvent]:
    return [o for o in session.new if isinstance(o, OutboxEvent)]


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (JobState.QUEUED, JobState.RUNNING),
        (JobState.QUEUED, JobState.CANCELLED),
        (JobState.QUEUED, JobState.FAILED),
        (JobState.RUNNING, JobState.SUCCEEDED),
        (JobState.RUNNING, JobState.FAILED),
        (JobState.RUNNING, JobState.CANCELLED),
    ],
)
async def test_allowed_job_changes(session: AsyncSession, start: JobState, to: JobState) -> None:
    obj = job(start)
    await transitions.apply(session, obj, to, now=NOW)
    assert obj.status == to


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (JobState.QUEUED, JobState.SUCCEEDED),
        (JobState.RUNNING, JobState.QUEUED),
        (JobState.QUEUED, JobState.QUEUED),
        (JobState.SUCCEEDED, JobState.RUNNING),
        (JobState.FAILED, JobState.QUEUED),
        (JobState.CANCELLED, JobState.RUNNING),
        (JobState.CANCELLED, JobState.CANCELLED),
    ],
)
async def test_refused_job_changes(session: AsyncSession, start: JobState, to: JobState) -> None:
    obj = job(start)
    with pytest.raises(TransitionRejected) as info:
        await transitions.apply(session, obj, to, now=NOW)
    assert info.value.status == 409
    assert obj.status == start
    assert obj.started_at is None
    assert obj.finished_at is None
    assert events(session) == []


async def test_job_timestamps_and_events(session: AsyncSession) -> None:
    obj = job()
    await transitions.apply(session, obj, JobState.RUNNING, now=NOW)
    assert obj.started_at == NOW
    assert obj.finished_at is None
    later = NOW.replace(hour=4)
    await transitions.apply(session, obj, JobState.FAILED, reason="boom", now=later)
    assert obj.finished_at == later
    assert obj.error == "boom"
    written = events(session)
    assert [e.type for e in written] == [JobStatusChanged.TYPE] * 2
    payloads = sorted((e.payload for e in written), key=lambda p: p["occurred_at"])
    assert [(p["from_status"], p["to_status"]) for p in payloads] == [
        ("queued", "running"),
        ("running", "failed"),
    ]
    assert payloads[1]["job_id"] == str(obj.id)
    assert payloads[1]["reason"] == "boom"


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (TaskState.PENDING, TaskState.QUEUED),
        (TaskState.PENDING, TaskState.SKIPPED),
        (TaskState.PENDING, TaskState.UPSTREAM_FAILED),
        (TaskState.PENDING, TaskState.CANCELLED),
        (TaskState.QUEUED, TaskState.RUNNING),
        (TaskState.QUEUED, TaskState.CANCELLED),
        (TaskState.RUNNING, TaskState.CANCELLED),
        (TaskState.RETRYING, TaskState.CANCELLED),
        (TaskState.RETRYING, TaskState.FAILED),
    ],
)
async def test_allowed_task_changes(session: AsyncSession, start: TaskState, to: TaskState) -> None:
    obj = run(start, attempt=1)
    await transitions.apply(session, obj, to, now=NOW, lease=LEASE)
    assert obj.status == to
    assert events(session)[0].type == TaskRunStatusChanged.TYPE


@pytest.mark.parametrize(
    ("start", "to"),
    [
        (TaskState.PENDING, TaskState.RUNNING),
        (TaskState.QUEUED, TaskState.SUCCEEDED),
        (TaskState.RETRYING, TaskState.RUNNING),
        (TaskState.SUCCEEDED, TaskState.QUEUED),
        (TaskState.FAILED, TaskState.RETRYING),
        (TaskState.SKIPPED, TaskState.QUEUED),
        (TaskState.UPSTREAM_FAILED, TaskState.PENDING),
        (TaskState.CANCELLED, TaskState.RUNNING),
    ],
)
async def test_refused_task_changes(session: AsyncSession, start: TaskState, to: TaskState) -> None:
    obj = run(start, fencing_token=1)
    with pytest.raises(TransitionRejected):
        await transitions.apply(session, obj, to, fencing_token=1, now=NOW)
    assert obj.status == start
    assert obj.fencing_token == 1
    assert obj.attempt == 0
    assert events(session) == []


async def test_queue_start_and_finish(session: AsyncSession) -> None:
    obj = run()
    await transitions.apply(session, obj, TaskState.QUEUED, now=NOW)
    assert (obj.attempt, obj.fencing_token, obj.queued_at) == (1, 1, NOW)
    await transitions.apply(session, obj, TaskState.RUNNING, now=NOW, lease=LEASE)
    assert obj.started_at == NOW
    assert obj.finished_at is None
    obj.lease_owner = "worker-1"
    await transitions.apply(session, obj, TaskState.SUCCEEDED, fencing_token=1, now=NOW)
    assert obj.finished_at == NOW
    assert obj.lease_owner is None
    assert len(events(session)) == 3


async def test_retrying_to_queued_counts_an_attempt(session: AsyncSession) -> None:
    obj = run(TaskState.RUNNING, attempt=1, fencing_token=1, max_attempts=2)
    await transitions.apply(
        session, obj, TaskState.RETRYING, fencing_token=1, reason="flaky", now=NOW
    )
    assert obj.error == "flaky"
    assert obj.attempt == 1
    await transitions.apply(session, obj, TaskState.QUEUED, now=NOW)
    assert (obj.attempt, obj.fencing_token) == (2, 2)
    await transitions.apply(session, obj, TaskState.RUNNING, now=NOW, lease=LEASE)
    # Both attempts used: no further retry, the task fails.
    with pytest.raises(TransitionRejected, match="attempt"):
        await transitions.apply(session, obj, TaskState.RETRYING, fencing_token=2, now=NOW)
    await transitions.apply(session, obj, TaskState.FAILED, fencing_token=2, now=NOW)
    assert obj.attempt == 2


async def test_a_task_starts_only_under_a_lease(session: AsyncSession) -> None:
    obj = run(TaskState.QUEUED, attempt=1, fencing_token=1)
    with pytest.raises(TransitionRejected, match="lease"):
        await transitions.apply(session, obj, TaskState.RUNNING, now=NOW)
    await transitions.apply(session, obj, TaskState.RUNNING, now=NOW, lease=LEASE)
    assert (obj.lease_owner, obj.lease_expires_at) == LEASE


async def test_lost_attempts_have_their_own_budget(session: AsyncSession) -> None:
    obj = run(TaskState.RUNNING, attempt=1, fencing_token=1, max_attempts=1, lost_attempts=0)
    for _ in range(transitions.MAX_LOST_ATTEMPTS):
        await transitions.apply(session, obj, TaskState.QUEUED, reason="lease expired", now=NOW)
        await transitions.apply(session, obj, TaskState.RUNNING, now=NOW, lease=LEASE)
    assert obj.lost_attempts == transitions.MAX_LOST_ATTEMPTS
    # No retries were used by the lost workers: one real failure is still a failure, though.
    with pytest.raises(TransitionRejected, match="lost"):
        await transitions.apply(session, obj, TaskState.QUEUED, reason="lease expired", now=NOW)
    with pytest.raises(TransitionRejected, match="attempt"):
        await transitions.apply(
            session, obj, TaskState.RETRYING, fencing_token=obj.fencing_token, now=NOW
        )


async def test_a_pending_task_succeeds_only_from_the_cache(session: AsyncSession) -> None:
    obj = run()
    with pytest.raises(TransitionRejected, match="cache"):
        await transitions.apply(session, obj, TaskState.SUCCEEDED, now=NOW)
    obj.cached_from = uuid.uuid4()
    await transitions.apply(session, obj, TaskState.SUCCEEDED, reason="cache hit", now=NOW)
    assert obj.finished_at == NOW


async def test_lost_worker_requeue_moves_the_fence(session: AsyncSession) -> None:
    obj = run(TaskState.RUNNING, attempt=1, fencing_token=1, lease_owner="w1")
    await transitions.apply(session, obj, TaskState.QUEUED, reason="lease expired", now=NOW)
    assert obj.fencing_token == 2
    assert obj.attempt == 2
    assert obj.lease_owner is None
    await transitions.apply(session, obj, TaskState.RUNNING, now=NOW, lease=LEASE)
    # The killed attempt's late result carries the old token.
    with pytest.raises(TransitionRejected, match="Stale fencing token"):
        await transitions.apply(session, obj, TaskState.SUCCEEDED, fencing_token=1, now=NOW)
    assert obj.status == TaskState.RUNNING
    await transitions.apply(session, obj, TaskState.SUCCEEDED, fencing_token=2, now=NOW)
    assert obj.status == TaskState.SUCCEEDED


async def test_a_result_without_a_token_is_refused(session: AsyncSession) -> None:
    obj = run(TaskState.RUNNING, attempt=1, fencing_token=1)
    with pytest.raises(TransitionRejected, match="fencing token"):
        await transitions.apply(session, obj, TaskState.FAILED, now=NOW)


async def test_task_event_payload(session: AsyncSession) -> None:
    obj = run()
    await transitions.apply(session, obj, TaskState.QUEUED, reason="ready", now=NOW)
    (event,) = events(session)
    assert event.payload["task_run_id"] == str(obj.id)
    assert event.payload["from_status"] == "pending"
    assert event.payload["to_status"] == "queued"
    assert event.payload["attempt"] == 1
    assert event.payload["reason"] == "ready"


def test_no_status_assignment_outside_transitions() -> None:
    """Every status change goes through the rules: no other module writes ``.status``."""
    pattern = re.compile(r"\.status\s*=[^=]")
    allowed = {
        SRC / "armillary" / "workflows" / "jobs" / "transitions.py",
        # HTTP status codes on errors (the SDK's, the tracking SDK's, the console's), not a
        # job's or a task's state.
        SRC / "armillary" / "sdk" / "errors.py",
        SRC / "armillary" / "tracking" / "sdk_connection.py",
        SRC / "armillary" / "console" / "errors.py",
        # An MLflow run's status, which its client sets as MLflow's own server lets it
        # (ADR 0037): not a job's or a task's state.
        SRC / "armillary" / "tracking" / "runs" / "service.py",
    }
    offenders = [
        f"{path.relative_to(SRC)}:{number}"
        for path in SRC.rglob("*.py")
        if path not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


async def test_a_workers_cancel_is_fenced_like_a_result(session: AsyncSession) -> None:
    obj = run(TaskState.RUNNING, attempt=2, fencing_token=2)
    with pytest.raises(TransitionRejected, match="Stale fencing token"):
        await transitions.apply(session, obj, TaskState.CANCELLED, fencing_token=1, now=NOW)
    requeued = run(TaskState.QUEUED, attempt=2, fencing_token=2)
    with pytest.raises(TransitionRejected, match="attempt is over"):
        await transitions.apply(session, requeued, TaskState.CANCELLED, fencing_token=2, now=NOW)
    await transitions.apply(session, obj, TaskState.CANCELLED, fencing_token=2, now=NOW)
    assert obj.status == TaskState.CANCELLED
