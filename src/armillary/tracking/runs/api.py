"""MLflow's run, logging and metric-history endpoints (routes only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query

from armillary.kit.deps import ReadSession, Session

from ..access import Reader, Writer, mlflow_router
from ..components import Tracking, current_tracking
from . import recording, repository, service
from .models import Run
from .schemas import (
    CreateRun,
    DeleteTag,
    LogBatch,
    LogMetric,
    LogParam,
    MetricHistory,
    RunRef,
    SearchRuns,
    SetTag,
    UpdateRun,
    metric_json,
    run_info_json,
    run_json,
)

router = mlflow_router("tracking")
TrackingService = Annotated[Tracking, Depends(current_tracking)]


async def _runs(session: ReadSession, runs: list[Run]) -> list[dict[str, Any]]:
    data = await repository.data_of(session, [r.id for r in runs])
    return [run_json(r, data[r.id].metrics, data[r.id].params, data[r.id].tags) for r in runs]


@router.post("/runs/create", name="tracking.runs.create")
async def create_run(body: CreateRun, access: Writer, session: Session) -> dict[str, Any]:
    run = await service.create(session, access, body)
    return {"run": (await _runs(session, [run]))[0]}


@router.get("/runs/get", name="tracking.runs.get")
async def get_run(
    query: Annotated[RunRef, Query()], access: Reader, session: ReadSession
) -> dict[str, Any]:
    run = await service.get(session, access, query.ref)
    return {"run": (await _runs(session, [run]))[0]}


@router.post("/runs/update", name="tracking.runs.update")
async def update_run(body: UpdateRun, access: Writer, session: Session) -> dict[str, Any]:
    return {"run_info": run_info_json(await service.update(session, access, body))}


@router.post("/runs/delete", name="tracking.runs.delete")
async def delete_run(body: RunRef, access: Writer, session: Session) -> dict[str, Any]:
    await service.set_stage(session, access, body.ref, "deleted")
    return {}


@router.post("/runs/restore", name="tracking.runs.restore")
async def restore_run(body: RunRef, access: Writer, session: Session) -> dict[str, Any]:
    await service.set_stage(session, access, body.ref, "active")
    return {}


@router.post("/runs/search", name="tracking.runs.search")
async def search_runs(
    body: SearchRuns, access: Reader, session: ReadSession, tracking: TrackingService
) -> dict[str, Any]:
    limits = (tracking.settings.default_search_results, tracking.settings.max_search_results)
    found, token = await service.search(session, access, body, limits=limits)
    out: dict[str, Any] = {"runs": await _runs(session, found)}
    if token:
        out["next_page_token"] = token
    return out


@router.post("/runs/log-batch", name="tracking.runs.log_batch")
async def log_batch(body: LogBatch, access: Writer, session: Session) -> dict[str, Any]:
    await recording.log_batch(session, access, body)
    return {}


@router.post("/runs/log-metric", name="tracking.runs.log_metric")
async def log_metric(body: LogMetric, access: Writer, session: Session) -> dict[str, Any]:
    await recording.log_metric(session, access, body.ref, body)
    return {}


@router.post("/runs/log-parameter", name="tracking.runs.log_param")
async def log_param(body: LogParam, access: Writer, session: Session) -> dict[str, Any]:
    await recording.log_param(session, access, body.ref, body.key, body.value)
    return {}


@router.post("/runs/set-tag", name="tracking.runs.set_tag")
async def set_tag(body: SetTag, access: Writer, session: Session) -> dict[str, Any]:
    await recording.set_tag(session, access, body.ref, body.key, body.value)
    return {}


@router.post("/runs/delete-tag", name="tracking.runs.delete_tag")
async def delete_tag(body: DeleteTag, access: Writer, session: Session) -> dict[str, Any]:
    await recording.delete_tag(session, access, body.ref, body.key)
    return {}


@router.get("/metrics/get-history", name="tracking.metrics.history")
async def metric_history(
    query: Annotated[MetricHistory, Query()],
    access: Reader,
    session: ReadSession,
    tracking: TrackingService,
) -> dict[str, Any]:
    points, token = await recording.history(
        session, access, query, limit=tracking.settings.max_history_results
    )
    out: dict[str, Any] = {"metrics": [metric_json(p) for p in points]}
    if token:
        out["next_page_token"] = token
    return out
