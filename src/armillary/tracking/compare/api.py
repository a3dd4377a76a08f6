"""Armillary's API over runs (not MLflow's): list and compare an experiment's runs, sorted and
filtered by metric or param, a run with its job link, a metric's history, and the
parallel-coordinates export the console and ``armillary runs`` draw from."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from armillary.kit.deps import ReadSession
from armillary.kit.pagination import Paging

from ..access import Reader
from ..wire import MAX_KEY_LENGTH, external_id, number
from ..wire_errors import InvalidParameter
from . import service

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["tracking"])

ExperimentRef = Annotated[
    str, Path(max_length=500, description="Experiment id (`0`: the default one) or name")
]
RunRef = Annotated[str, Path(max_length=64, description="Run id (32 hex digits)")]
Filter = Annotated[
    str | None,
    Query(
        max_length=4000,
        description="MLflow's search grammar, e.g. `metrics.acc > 0.9 and params.model = 'rf'`",
    ),
]
OrderBy = Annotated[
    list[str],
    Query(max_length=20, description="`metrics.acc DESC`, `params.lr`, `start_time` ... "),
]
View = Annotated[
    str | None, Query(max_length=16, description="ACTIVE_ONLY (default), DELETED_ONLY or ALL")
]
Keys = Annotated[list[str], Query(max_length=100)]
MAX_EXPORT_RUNS = 5000


@router.get("/experiments/{experiment}/runs", name="tracking.compare.runs", responses={404: {}})
async def list_runs(
    experiment: ExperimentRef,
    access: Reader,
    session: ReadSession,
    paging: Paging,
    filter: Filter = None,
    order_by: OrderBy = [],  # noqa: B006 - FastAPI copies query defaults
    view: View = None,
) -> dict[str, Any]:
    """The experiment's runs, newest first unless ``order_by`` says otherwise."""
    found, runs, data, more = await service.runs_of(
        session,
        access,
        experiment,
        filter_text=filter,
        order_by=order_by,
        view=view,
        offset=paging.offset,
        limit=paging.limit,
    )
    return {
        "experiment": {"id": external_id(found.id), "name": found.name},
        "items": [service.run_view(r, data[r.id]) for r in runs],
        "limit": paging.limit,
        "offset": paging.offset,
        "next_offset": paging.offset + paging.limit if more else None,
    }


@router.get(
    "/experiments/{experiment}/runs/export", name="tracking.compare.export", responses={404: {}}
)
async def export_runs(
    experiment: ExperimentRef,
    access: Reader,
    session: ReadSession,
    params: Keys = [],  # noqa: B006
    metrics: Keys = [],  # noqa: B006
    filter: Filter = None,
    order_by: OrderBy = [],  # noqa: B006
    view: View = None,
    limit: Annotated[int, Query(ge=1, le=MAX_EXPORT_RUNS)] = 1000,
) -> dict[str, Any]:
    """Parallel coordinates: ``columns`` and a row per run (``params``/``metrics`` choose the
    columns; none chosen: every key the runs have)."""
    for key in (*params, *metrics):
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidParameter(f"A key is 1 to {MAX_KEY_LENGTH} characters")
    found, runs, data, more = await service.runs_of(
        session,
        access,
        experiment,
        filter_text=filter,
        order_by=order_by,
        view=view,
        offset=0,
        limit=limit,
    )
    table = service.export_table(runs, data, params, metrics)
    return {
        "experiment": {"id": external_id(found.id), "name": found.name},
        **table,
        "truncated": more,
    }


@router.get("/runs/{run}", name="tracking.compare.run", responses={404: {}})
async def get_run(run: RunRef, access: Reader, session: ReadSession) -> dict[str, Any]:
    """A run: its attributes, the job and task that made it, params, metrics and tags."""
    return await service.run_detail(session, access, run)


@router.get(
    "/runs/{run}/metrics/{key}/history", name="tracking.compare.history", responses={404: {}}
)
async def metric_history(
    run: RunRef,
    key: Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH)],
    access: Reader,
    session: ReadSession,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="`next_after` of the last page")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
) -> dict[str, Any]:
    """The metric's points in the order logged: ``step``, ``value``, ``timestamp`` (ms)."""
    points, cursor = await service.metric_history(
        session, access, run, key, after=after, limit=limit
    )
    return {
        "key": key,
        "points": [
            {"step": p.step, "value": number(p.value, p.is_nan), "timestamp": p.timestamp}
            for p in points
        ],
        "next_after": cursor,
    }
