"""MLflow's experiment endpoints (routes only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from armillary.kit.deps import ReadSession, Session

from ..access import Reader, Writer, mlflow_router
from ..components import Tracking, current_tracking
from ..wire import external_id
from . import repository, service
from .models import Experiment
from .schemas import (
    CreateExperiment,
    DeleteExperimentTag,
    ExperimentByName,
    ExperimentRef,
    SearchExperiments,
    SetExperimentTag,
    UpdateExperiment,
    experiment_json,
)

router = mlflow_router("tracking")
TrackingService = Annotated[Tracking, Depends(current_tracking)]


async def _one(session: ReadSession, experiment: Experiment) -> dict[str, Any]:
    tags = await repository.tags_of(session, [experiment.id])
    return {"experiment": experiment_json(experiment, tags[experiment.id])}


@router.post("/experiments/create", name="tracking.experiments.create")
async def create_experiment(
    body: CreateExperiment, access: Writer, session: Session
) -> dict[str, Any]:
    experiment = await service.create(session, access, body)
    return {"experiment_id": external_id(experiment.id)}


@router.get("/experiments/get", name="tracking.experiments.get")
async def get_experiment(
    query: Annotated[ExperimentRef, Query()], access: Reader, session: ReadSession
) -> dict[str, Any]:
    return await _one(session, await service.get(session, access, query.experiment_id))


@router.get("/experiments/get-by-name", name="tracking.experiments.get_by_name")
async def get_experiment_by_name(
    query: Annotated[ExperimentByName, Query()], access: Reader, session: ReadSession
) -> dict[str, Any]:
    return await _one(session, await service.get_by_name(session, access, query.experiment_name))


async def _search(
    body: SearchExperiments, access: Reader, session: ReadSession, tracking: Tracking
) -> dict[str, Any]:
    limits = (tracking.settings.default_search_results, tracking.settings.max_search_results)
    found, token = await service.search(session, access, body, limits=limits)
    tags = await repository.tags_of(session, [e.id for e in found])
    out: dict[str, Any] = {"experiments": [experiment_json(e, tags[e.id]) for e in found]}
    if token:
        out["next_page_token"] = token
    return out


@router.post("/experiments/search", name="tracking.experiments.search")
async def search_experiments(
    body: SearchExperiments, access: Reader, session: ReadSession, tracking: TrackingService
) -> dict[str, Any]:
    return await _search(body, access, session, tracking)


@router.get("/experiments/search", name="tracking.experiments.search_get")
async def search_experiments_get(
    query: Annotated[SearchExperiments, Query()],
    access: Reader,
    session: ReadSession,
    tracking: TrackingService,
) -> dict[str, Any]:
    return await _search(query, access, session, tracking)


@router.post("/experiments/update", name="tracking.experiments.update")
async def update_experiment(
    body: UpdateExperiment, access: Writer, session: Session
) -> dict[str, Any]:
    await service.rename(session, access, body.experiment_id, body.new_name)
    return {}


@router.post("/experiments/set-experiment-tag", name="tracking.experiments.set_tag")
async def set_experiment_tag(
    body: SetExperimentTag, access: Writer, session: Session
) -> dict[str, Any]:
    await service.set_tag(session, access, body.experiment_id, body.key, body.value)
    return {}


@router.post("/experiments/delete-experiment-tag", name="tracking.experiments.delete_tag")
async def delete_experiment_tag(
    body: DeleteExperimentTag, access: Writer, session: Session
) -> dict[str, Any]:
    await service.delete_tag(session, access, body.experiment_id, body.key)
    return {}


@router.post("/experiments/delete", name="tracking.experiments.delete")
async def delete_experiment(
    body: ExperimentRef, access: Writer, session: Session
) -> dict[str, Any]:
    await service.set_stage(session, access, body.experiment_id, "deleted")
    return {}


@router.post("/experiments/restore", name="tracking.experiments.restore")
async def restore_experiment(
    body: ExperimentRef, access: Writer, session: Session
) -> dict[str, Any]:
    await service.set_stage(session, access, body.experiment_id, "active")
    return {}
