"""Comparing an experiment's runs in Armillary's own API (not MLflow's): a sorted, filtered
table of runs with their params, latest metrics and job links, one metric's history, and a
parallel-coordinates export (a row per run, a column per chosen param or metric)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess

from ..experiments import service as experiments
from ..experiments.models import Experiment
from ..filters import parse_filter, parse_order_by
from ..runs import repository as runs_repo
from ..runs import search as run_search
from ..runs import service as runs
from ..runs.models import MetricPoint, Run
from ..runs.repository import RunData
from ..wire import external_id, number, parse_id, view_filter
from ..wire_errors import DoesNotExist


async def experiment(session: AsyncSession, access: ProjectAccess, ref: str) -> Experiment:
    """An experiment of the project by id (``0``: the default one) or by name."""
    if ref == experiments.DEFAULT_EXPERIMENT_ID or parse_id(ref) is not None:
        try:
            return await experiments.get(session, access, ref)
        except DoesNotExist:
            pass  # a name that happens to look like an id
    return await experiments.get_by_name(session, access, ref)


async def runs_of(
    session: AsyncSession,
    access: ProjectAccess,
    experiment_ref: str,
    *,
    filter_text: str | None,
    order_by: Sequence[str],
    view: str | None,
    offset: int,
    limit: int,
) -> tuple[Experiment, list[Run], dict[Any, RunData], bool]:
    """A page of the experiment's runs, filtered and sorted with the MLflow search grammar
    (``metrics.acc > 0.9``, ``params.lr DESC``); and whether more follow."""
    found_experiment = await experiment(session, access, experiment_ref)
    found = await run_search.search(
        session,
        access.project_id,
        [found_experiment.id],
        stages=view_filter(view),
        clauses=parse_filter(filter_text),
        order=parse_order_by(list(order_by)),
        offset=offset,
        limit=limit + 1,
    )
    page = found[:limit]
    data = await runs_repo.data_of(session, [r.id for r in page])
    return found_experiment, page, data, len(found) > limit


def run_view(run: Run, data: RunData) -> dict[str, Any]:
    """A run as Armillary's API shows it: attributes, the job and task that made it (the
    link its lineage follows), params, latest metrics and tags."""
    return {
        "id": external_id(run.id),
        "name": run.name,
        "experiment_id": external_id(run.experiment_id),
        "status": run.status,
        "lifecycle_stage": run.lifecycle_stage,
        "start_time": run.start_time,
        "end_time": run.end_time,
        "user_id": run.user_id,
        "parent_run_id": external_id(run.parent_run_id) if run.parent_run_id else None,
        "job_id": str(run.job_id) if run.job_id else None,
        "task": run.task,
        "artifact_uri": run.artifact_uri,
        "params": {p.key: p.value for p in sorted(data.params, key=lambda p: p.key)},
        "metrics": {
            m.key: number(m.value, m.is_nan) for m in sorted(data.metrics, key=lambda m: m.key)
        },
        "tags": {t.key: t.value for t in sorted(data.tags, key=lambda t: t.key)},
    }


async def run_detail(session: AsyncSession, access: ProjectAccess, ref: str) -> dict[str, Any]:
    run = await runs.get(session, access, ref)
    data = await runs_repo.data_of(session, [run.id])
    return run_view(run, data[run.id])


async def metric_history(
    session: AsyncSession, access: ProjectAccess, ref: str, key: str, *, after: int, limit: int
) -> tuple[list[MetricPoint], int | None]:
    """Points of metric ``key`` in the order logged, from after ``seq`` ``after``; and the
    cursor of the next page, if any."""
    run = await runs.get(session, access, ref)
    points = await runs_repo.history(session, run.id, key, after=after, limit=limit + 1)
    cursor = points[limit - 1].seq if len(points) > limit else None
    return points[:limit], cursor


def export_table(
    runs_found: Sequence[Run],
    data: dict[Any, RunData],
    params: Sequence[str],
    metrics: Sequence[str],
) -> dict[str, Any]:
    """Parallel coordinates: ``columns`` (``run_id``, ``run_name``, then ``params.<key>`` and
    ``metrics.<key>``) and one row per run; a value the run lacks is null. With no params or
    metrics chosen, every key any of the runs has, in name order."""
    if not params:
        params = sorted({p.key for r in runs_found for p in data[r.id].params})
    if not metrics:
        metrics = sorted({m.key for r in runs_found for m in data[r.id].metrics})
    columns = ["run_id", "run_name", *(f"params.{k}" for k in params)]
    columns += [f"metrics.{k}" for k in metrics]
    rows = []
    for run in runs_found:
        run_params = {p.key: p.value for p in data[run.id].params}
        run_metrics = {m.key: number(m.value, m.is_nan) for m in data[run.id].metrics}
        row: list[Any] = [external_id(run.id), run.name]
        row += [run_params.get(k) for k in params]
        row += [run_metrics.get(k) for k in metrics]
        rows.append(row)
    return {"columns": columns, "rows": rows}
