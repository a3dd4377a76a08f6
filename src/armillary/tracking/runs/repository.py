"""Run queries and the writes that must stay right under concurrent writers (upserts)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from .models import LatestMetric, MetricPoint, Run, RunParam, RunTag


@dataclass
class RunData:
    metrics: list[LatestMetric] = field(default_factory=list)
    params: list[RunParam] = field(default_factory=list)
    tags: list[RunTag] = field(default_factory=list)


async def by_id(session: AsyncSession, project_id: uuid.UUID, run_id: uuid.UUID) -> Run | None:
    found = await session.scalar(select(Run).where(Run.id == run_id, Run.project_id == project_id))
    return found


async def data_of(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RunData]:
    grouped: dict[uuid.UUID, RunData] = defaultdict(RunData)
    if not ids:
        return grouped
    for metric in await session.scalars(select(LatestMetric).where(LatestMetric.run_id.in_(ids))):
        grouped[metric.run_id].metrics.append(metric)
    for param in await session.scalars(select(RunParam).where(RunParam.run_id.in_(ids))):
        grouped[param.run_id].params.append(param)
    for tag in await session.scalars(select(RunTag).where(RunTag.run_id.in_(ids))):
        grouped[tag.run_id].tags.append(tag)
    return grouped


def _by_key(run_id: uuid.UUID, values: dict[str, str]) -> list[dict[str, Any]]:
    """Rows in key order: concurrent upserts of overlapping keys then lock rows in the same
    order, and cannot deadlock each other."""
    return [{"run_id": run_id, "key": k, "value": values[k]} for k in sorted(values)]


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def points_of(
    session: AsyncSession, run_id: uuid.UUID, keys: list[str]
) -> set[tuple[Any, ...]]:
    """Each point of metrics ``keys`` of the run, as (key, value, is_nan, timestamp, step)."""
    rows = await session.execute(
        select(
            MetricPoint.key,
            MetricPoint.value,
            MetricPoint.is_nan,
            MetricPoint.timestamp,
            MetricPoint.step,
        ).where(MetricPoint.run_id == run_id, MetricPoint.key.in_(keys))
    )
    return {tuple(row) for row in rows}


async def add_params(session: AsyncSession, run_id: uuid.UUID, params: dict[str, str]) -> None:
    """Insert the params a run does not have yet; existing keys are left as they are (the
    caller then checks they agree: a param is immutable)."""
    if not params:
        return
    statement = _insert(session, RunParam).values(_by_key(run_id, params)).on_conflict_do_nothing()
    await session.execute(statement)


async def params_of(
    session: AsyncSession, run_id: uuid.UUID, keys: Sequence[str]
) -> dict[str, str]:
    rows = await session.execute(
        select(RunParam.key, RunParam.value).where(
            RunParam.run_id == run_id, RunParam.key.in_(keys)
        )
    )
    return {key: value for key, value in rows}


async def set_tags(session: AsyncSession, run_id: uuid.UUID, tags: dict[str, str]) -> None:
    if not tags:
        return
    statement = _insert(session, RunTag).values(_by_key(run_id, tags))
    statement = statement.on_conflict_do_update(
        index_elements=["run_id", "key"], set_={"value": statement.excluded.value}
    )
    await session.execute(statement)


async def add_points(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Append metric points (in the order given: their ``seq`` keeps it), then move each
    metric's latest value forward (in key order, see :func:`_by_key`).

    Both are executemany calls of one cached single-row statement: a multi-row ``VALUES``
    of a 1,000-point batch was compiled afresh on every call, which took most of the time
    of a ``log-batch`` request."""
    if not rows:
        return
    await session.execute(_insert(session, MetricPoint.__table__), rows)
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        current = latest.get(row["key"])
        if current is None or _later(row, current):
            latest[row["key"]] = row
    await session.execute(_latest_upsert(session), [latest[k] for k in sorted(latest)])


def _latest_upsert(session: AsyncSession) -> Any:
    table = LatestMetric.__table__
    statement = _insert(session, table)
    new, old = statement.excluded, table.c
    # MLflow's rule: the point with the greatest (step, timestamp, value) is the latest. The
    # comparison runs in the upsert itself, so concurrent writers cannot move it backwards.
    later = (new.step > old.step) | (
        (new.step == old.step)
        & (
            (new.timestamp > old.timestamp)
            | ((new.timestamp == old.timestamp) & (new.value >= old.value))
        )
    )
    return statement.on_conflict_do_update(
        index_elements=["run_id", "key"],
        set_={
            "value": new.value,
            "is_nan": new.is_nan,
            "timestamp": new.timestamp,
            "step": new.step,
        },
        where=later,
    )


def _later(row: dict[str, Any], than: dict[str, Any]) -> bool:
    def rank(r: dict[str, Any]) -> tuple[int, int, float]:
        return (r["step"], r["timestamp"], -1e308 if r["value"] is None else r["value"])

    return rank(row) >= rank(than)


async def history(
    session: AsyncSession, run_id: uuid.UUID, key: str, *, after: int, limit: int
) -> list[MetricPoint]:
    rows = await session.scalars(
        select(MetricPoint)
        .where(MetricPoint.run_id == run_id, MetricPoint.key == key, MetricPoint.seq > after)
        .order_by(MetricPoint.seq)
        .limit(limit)
    )
    return list(rows)
