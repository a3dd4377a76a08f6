"""Experiments: create, find (by id, by name, the project's Default), search, rename, tag,
delete and restore. Deleting an experiment deletes its runs, as MLflow does."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess

from ..components import SERVICE
from ..filters import parse_filter, parse_order_by
from ..runs.models import Run
from ..wire import decode_token, external_id, now_ms, offset_page, page_size, parse_id, view_filter
from ..wire_errors import AlreadyExists, DoesNotExist, InvalidParameter
from . import repository as repo
from .models import Experiment, ExperimentTag
from .schemas import CreateExperiment, SearchExperiments

# MLflow's client runs in experiment "0" when none is set: each project's "Default".
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"


def artifact_location(experiment_id: uuid.UUID) -> str:
    """The experiment's root in the artifact proxy's namespace, as `mlflow server
    --serve-artifacts` writes it; MLflow's client resolves it against the tracking URI (which
    names the project), and the proxy keeps the files under the project's prefix."""
    return f"mlflow-artifacts:/{external_id(experiment_id)}"


async def create(
    session: AsyncSession, access: ProjectAccess, data: CreateExperiment
) -> Experiment:
    if data.artifact_location:
        # Artifacts go to the project's prefix of the object store, never where a client says.
        raise InvalidParameter("artifact_location is chosen by the server")
    return await _create(session, access, data.name.strip(), {t.key: t.value for t in data.tags})


async def _create(
    session: AsyncSession, access: ProjectAccess, name: str, tags: dict[str, str]
) -> Experiment:
    if not name:
        raise InvalidParameter("Experiment name must not be empty")
    existing = await repo.by_name(session, access.project_id, name)
    if existing is not None:
        state = " (deleted)" if existing.lifecycle_stage == "deleted" else ""
        raise AlreadyExists(f"Experiment '{name}' already exists{state}")
    experiment_id = uuid.uuid4()
    now = now_ms()
    experiment = Experiment(
        id=experiment_id,
        project_id=access.project_id,
        name=name,
        artifact_location=artifact_location(experiment_id),
        lifecycle_stage="active",
        created_by=access.principal.user_id,
        creation_time=now,
        last_update_time=now,
    )
    session.add(experiment)
    await session.flush()
    session.add_all(
        ExperimentTag(experiment_id=experiment_id, key=k, value=v) for k, v in tags.items()
    )
    audit.record(
        session,
        action="experiments.create",
        resource_type="experiment",
        resource_id=experiment_id,
        details={"project": access.project_slug, "name": name},
        service=SERVICE,
    )
    return experiment


async def get(
    session: AsyncSession, access: ProjectAccess, ref: str, *, for_write: bool = False
) -> Experiment:
    """Experiment ``ref`` of the caller's project; another project's is not found."""
    if ref == DEFAULT_EXPERIMENT_ID:
        default = await repo.by_name(session, access.project_id, DEFAULT_EXPERIMENT_NAME)
        if default is not None:
            return default
        if for_write:
            return await _create(session, access, DEFAULT_EXPERIMENT_NAME, {})
    experiment_id = parse_id(ref)
    found = None
    if experiment_id is not None:
        found = await repo.by_id(session, access.project_id, experiment_id)
    if found is None:
        raise DoesNotExist(f"No experiment with id={ref}")
    return found


async def get_by_name(session: AsyncSession, access: ProjectAccess, name: str) -> Experiment:
    found = await repo.by_name(session, access.project_id, name)
    if found is None:
        raise DoesNotExist(f"Could not find experiment with name '{name}'")
    return found


async def search(
    session: AsyncSession,
    access: ProjectAccess,
    query: SearchExperiments,
    *,
    limits: tuple[int, int],
) -> tuple[list[Experiment], str | None]:
    default, most = limits
    limit = page_size(query.max_results, default, most)
    offset = decode_token(query.page_token, "offset") or 0
    found = await repo.search(
        session,
        access.project_id,
        stages=view_filter(query.view_type),
        clauses=parse_filter(query.filter),
        order=parse_order_by(query.order_by),
        offset=offset,
        limit=limit + 1,
    )
    return offset_page(found, offset, limit)


async def rename(session: AsyncSession, access: ProjectAccess, ref: str, new_name: str) -> None:
    experiment = await get(session, access, ref)
    name = new_name.strip()
    if name != experiment.name and await repo.by_name(session, access.project_id, name):
        raise AlreadyExists(f"Experiment '{name}' already exists")
    old = experiment.name
    experiment.name = name
    experiment.last_update_time = now_ms()
    audit.record(
        session,
        action="experiments.update",
        resource_type="experiment",
        resource_id=experiment.id,
        details={"project": access.project_slug, "name": name, "previous_name": old},
        service=SERVICE,
    )


async def set_tag(
    session: AsyncSession, access: ProjectAccess, ref: str, key: str, value: str
) -> None:
    experiment = await get(session, access, ref)
    if experiment.lifecycle_stage != "active":
        raise InvalidParameter("The experiment must be in the 'active' state")
    await session.merge(ExperimentTag(experiment_id=experiment.id, key=key, value=value))
    experiment.last_update_time = now_ms()


async def delete_tag(session: AsyncSession, access: ProjectAccess, ref: str, key: str) -> None:
    experiment = await get(session, access, ref)
    if experiment.lifecycle_stage != "active":
        raise InvalidParameter("The experiment must be in the 'active' state")
    deleted = await session.execute(
        delete(ExperimentTag).where(
            ExperimentTag.experiment_id == experiment.id, ExperimentTag.key == key
        )
    )
    if not getattr(deleted, "rowcount", 0):
        raise DoesNotExist(f"No tag with name: {key} in experiment {ref}")
    experiment.last_update_time = now_ms()


async def set_stage(session: AsyncSession, access: ProjectAccess, ref: str, stage: str) -> None:
    """Delete (``deleted``) or restore (``active``) an experiment and its runs."""
    experiment = await get(session, access, ref)
    if stage == "deleted" and experiment.name == DEFAULT_EXPERIMENT_NAME:
        raise InvalidParameter("The Default experiment cannot be deleted")
    now = now_ms()
    experiment.lifecycle_stage = stage
    experiment.last_update_time = now
    await session.execute(
        update(Run)
        .where(Run.experiment_id == experiment.id)
        .values(lifecycle_stage=stage, deleted_time=now if stage == "deleted" else None)
    )
    audit.record(
        session,
        action="experiments.delete" if stage == "deleted" else "experiments.restore",
        resource_type="experiment",
        resource_id=experiment.id,
        details={"project": access.project_slug, "name": experiment.name},
        service=SERVICE,
    )
