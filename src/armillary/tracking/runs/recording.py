"""What a run logs: params (immutable once logged), tags, metric points with their full
history. Concurrent writers to one run are safe: params and tags are upserts, points are
appends, and the latest value moves forward inside one statement."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit import audit
from armillary.kit.authz import ProjectAccess

from ..components import SERVICE
from ..wire import MetricIn, decode_token, encode_token, page_size
from ..wire_errors import DoesNotExist, InvalidParameter
from . import repository as repo
from . import service as runs
from .models import MetricPoint, Run, RunTag
from .schemas import LogBatch, MetricHistory


async def log_batch(session: AsyncSession, access: ProjectAccess, batch: LogBatch) -> None:
    run = await runs.get_active(session, access, batch.ref)
    await _log_params(session, run, {p.key: p.value for p in batch.params}, len(batch.params))
    await _set_tags(session, run, {t.key: t.value for t in batch.tags})
    await repo.add_points(session, await _new_points(session, run, batch.metrics))
    counts = {"metrics": len(batch.metrics), "params": len(batch.params), "tags": len(batch.tags)}
    _audit(session, access, run, "runs.log_batch", counts)


def _audit(
    session: AsyncSession, access: ProjectAccess, run: Run, action: str, details: dict[str, Any]
) -> None:
    """The write's audit entry, in the write's own transaction. Without it the audit
    middleware's fallback would write the entry in a second transaction of its own, which
    cost a metric-logging call about as much as the logging itself."""
    audit.record(
        session,
        action=action,
        resource_type="run",
        resource_id=run.id,
        details={"project": access.project_slug, **details},
        service=SERVICE,
    )


async def _new_points(session: AsyncSession, run: Run, metrics: list[MetricIn]) -> list[Any]:
    """The batch's points, less those linked to a logged model that the run already has (as
    MLflow's server keeps one row per point and links it)."""
    points = [_point(run, m) for m in metrics]
    linked = {m.key for m in metrics if m.model_id}
    if not linked:
        return points
    held = await repo.points_of(session, run.id, sorted(linked))
    return [
        point
        for point, metric in zip(points, metrics, strict=True)
        if not metric.model_id or _identity(point) not in held
    ]


def _identity(point: dict[str, Any]) -> tuple[Any, ...]:
    return (point["key"], point["value"], point["is_nan"], point["timestamp"], point["step"])


def _point(run: Run, metric: MetricIn) -> dict[str, Any]:
    nan = math.isnan(metric.value)
    return {
        "run_id": run.id,
        "key": metric.key,
        "value": None if nan else metric.value,
        "is_nan": nan,
        "timestamp": metric.timestamp,
        "step": metric.step,
    }


async def _log_params(session: AsyncSession, run: Run, params: dict[str, str], sent: int) -> None:
    if not params:
        return
    if len(params) != sent:
        raise InvalidParameter("A batch may not log the same param twice")
    await repo.add_params(session, run.id, params)
    # Whoever wrote first won; a different value afterwards is MLflow's error.
    stored = await repo.params_of(session, run.id, list(params))
    changed = sorted(k for k, v in params.items() if stored.get(k) != v)
    if changed:
        details = ", ".join(
            f"key={k!r}, old value={stored.get(k)!r}, new value={params[k]!r}" for k in changed
        )
        raise InvalidParameter(
            f"Changing param values is not allowed. Params were already logged for run "
            f"{run.id.hex}: {details}"
        )


async def _set_tags(session: AsyncSession, run: Run, tags: dict[str, str]) -> None:
    protected = sorted(runs.SERVER_TAGS & tags.keys())
    if protected:
        raise InvalidParameter(f"Tag {protected[0]} is set when the run is created")
    if "mlflow.runName" in tags:
        run.name = tags["mlflow.runName"]
    await repo.set_tags(session, run.id, tags)


async def log_param(
    session: AsyncSession, access: ProjectAccess, ref: str, key: str, value: str
) -> None:
    run = await runs.get_active(session, access, ref)
    await _log_params(session, run, {key: value}, 1)
    _audit(session, access, run, "runs.log_param", {"key": key})


async def set_tag(
    session: AsyncSession, access: ProjectAccess, ref: str, key: str, value: str
) -> None:
    run = await runs.get_active(session, access, ref)
    await _set_tags(session, run, {key: value})
    _audit(session, access, run, "runs.set_tag", {"key": key})


async def log_metric(
    session: AsyncSession, access: ProjectAccess, ref: str, metric: MetricIn
) -> None:
    run = await runs.get_active(session, access, ref)
    await repo.add_points(session, [_point(run, metric)])
    _audit(session, access, run, "runs.log_metric", {"key": metric.key, "step": metric.step})


async def delete_tag(session: AsyncSession, access: ProjectAccess, ref: str, key: str) -> None:
    run = await runs.get_active(session, access, ref)
    if key in runs.SERVER_TAGS:
        raise InvalidParameter(f"Tag {key} is set when the run is created")
    deleted = await session.execute(
        delete(RunTag).where(RunTag.run_id == run.id, RunTag.key == key)
    )
    if not getattr(deleted, "rowcount", 0):
        raise DoesNotExist(f"No tag with name: {key} in run with id {ref}")
    _audit(session, access, run, "runs.delete_tag", {"key": key})


async def history(
    session: AsyncSession, access: ProjectAccess, query: MetricHistory, *, limit: int
) -> tuple[list[MetricPoint], str | None]:
    run = await runs.get(session, access, query.ref)
    size = page_size(query.max_results, limit, limit)
    after = decode_token(query.page_token, "after") or 0
    points = await repo.history(session, run.id, query.metric_key, after=after, limit=size + 1)
    token = encode_token({"after": points[size - 1].seq}) if len(points) > size else None
    return points[:size], token
