"""Runs: create (in an experiment, nested through ``mlflow.parentRunId``), get, update
(status, end time, name), search, delete and restore."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess

from ..components import SERVICE
from ..experiments import repository as experiments_repo
from ..experiments import service as experiments
from ..filters import parse_filter, parse_order_by
from ..wire import decode_token, external_id, now_ms, offset_page, page_size, parse_id, view_filter
from ..wire_errors import DoesNotExist, InvalidParameter
from . import repository as repo
from . import search as run_search
from .models import Run
from .schemas import RUN_STATUSES, CreateRun, SearchRuns, UpdateRun

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
USER_TAG = "mlflow.user"
# Set by the server from a job token's claims; no client may set or change them.
JOB_TAG = "armillary.job_id"
TASK_TAG = "armillary.task"
SERVER_TAGS = frozenset({PARENT_TAG, JOB_TAG, TASK_TAG})


async def get(session: AsyncSession, access: ProjectAccess, ref: str) -> Run:
    """Run ``ref`` of the caller's project; another project's is not found."""
    run_id = parse_id(ref)
    found = None if run_id is None else await repo.by_id(session, access.project_id, run_id)
    if found is None:
        raise DoesNotExist(f"Run with id={ref} not found")
    return found


async def get_active(session: AsyncSession, access: ProjectAccess, ref: str) -> Run:
    """A run that may still be logged to (MLflow refuses a deleted one)."""
    run = await get(session, access, ref)
    if run.lifecycle_stage != "active":
        raise InvalidParameter(
            f"The run {ref} must be in the 'active' state. Current state is {run.lifecycle_stage}."
        )
    return run


async def create(session: AsyncSession, access: ProjectAccess, data: CreateRun) -> Run:
    experiment = await experiments.get(session, access, data.experiment_id, for_write=True)
    if experiment.lifecycle_stage != "active":
        raise InvalidParameter(f"The experiment {data.experiment_id} must be in the 'active' state")
    tags = {t.key: t.value for t in data.tags}
    claimed = sorted(tags.keys() & {JOB_TAG, TASK_TAG})
    if claimed:
        raise InvalidParameter(f"Tag {claimed[0]} is set by the server, from a job's token")
    name = data.run_name or tags.get(RUN_NAME_TAG) or ""
    if data.run_name and tags.get(RUN_NAME_TAG, data.run_name) != data.run_name:
        raise InvalidParameter("run_name and the mlflow.runName tag disagree")
    parent_id = await _parent(session, access, tags.get(PARENT_TAG))
    run_id = uuid.uuid4()
    run = Run(
        id=run_id,
        experiment_id=experiment.id,
        project_id=access.project_id,
        name=name or external_id(run_id)[:8],
        user_id=data.user_id or access.principal.email,
        created_by=access.principal.user_id,
        status="RUNNING",
        start_time=data.start_time or now_ms(),
        lifecycle_stage="active",
        parent_run_id=parent_id,
        artifact_uri=f"{experiment.artifact_location}/{external_id(run_id)}/artifacts",
        job_id=access.principal.job_id,
        task=access.principal.job_task,
    )
    session.add(run)
    await session.flush()
    tags[RUN_NAME_TAG] = run.name
    tags.setdefault(USER_TAG, run.user_id)
    tags.update(job_tags(run))
    await repo.set_tags(session, run.id, tags)
    audit.record(
        session,
        action="runs.create",
        resource_type="run",
        resource_id=run.id,
        details={"project": access.project_slug, "experiment": external_id(experiment.id)},
        service=SERVICE,
    )
    return run


def job_tags(run: Run) -> dict[str, str]:
    """The tags that show which job and task created ``run`` (none for a user's run)."""
    tags = {}
    if run.job_id is not None:
        tags[JOB_TAG] = str(run.job_id)
    if run.task is not None:
        tags[TASK_TAG] = run.task
    return tags


async def _parent(
    session: AsyncSession, access: ProjectAccess, ref: str | None
) -> uuid.UUID | None:
    if not ref:
        return None
    parent = await get(session, access, ref)
    return parent.id


async def update(session: AsyncSession, access: ProjectAccess, data: UpdateRun) -> Run:
    run = await get_active(session, access, data.ref)
    if data.status is not None:
        if data.status not in RUN_STATUSES:
            raise InvalidParameter(f"Unknown run status {data.status!r}")
        run.status = data.status
    if data.end_time is not None:
        run.end_time = data.end_time
    if data.run_name:
        run.name = data.run_name
        await repo.set_tags(session, run.id, {RUN_NAME_TAG: data.run_name})
    await session.flush()
    return run


async def set_stage(session: AsyncSession, access: ProjectAccess, ref: str, stage: str) -> None:
    """Delete (``deleted``) or restore (``active``) a run; its data stays either way."""
    run = await get(session, access, ref)
    run.lifecycle_stage = stage
    run.deleted_time = now_ms() if stage == "deleted" else None
    audit.record(
        session,
        action="runs.delete" if stage == "deleted" else "runs.restore",
        resource_type="run",
        resource_id=run.id,
        details={"project": access.project_slug},
        service=SERVICE,
    )


async def search(
    session: AsyncSession, access: ProjectAccess, query: SearchRuns, *, limits: tuple[int, int]
) -> tuple[list[Run], str | None]:
    default, most = limits
    limit = page_size(query.max_results, default, most)
    offset = decode_token(query.page_token, "offset") or 0
    # Another project's experiment ids match nothing, like ids that do not exist.
    experiment_ids = [i for i in (parse_id(e) for e in query.experiment_ids) if i is not None]
    if "0" in query.experiment_ids:
        default_experiment = await experiments_repo.by_name(
            session, access.project_id, experiments.DEFAULT_EXPERIMENT_NAME
        )
        if default_experiment is not None:
            experiment_ids.append(default_experiment.id)
    found = await run_search.search(
        session,
        access.project_id,
        experiment_ids,
        stages=view_filter(query.run_view_type),
        clauses=parse_filter(query.filter),
        order=parse_order_by(query.order_by),
        offset=offset,
        limit=limit + 1,
    )
    return offset_page(found, offset, limit)
