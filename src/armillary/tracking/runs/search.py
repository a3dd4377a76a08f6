"""SearchRuns: MLflow's filter and order_by (the subset in ``filters``) as one SQL query,
so filtering, ordering and paging all happen in the database."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..conditions import compare
from ..filters import (
    NUMERIC_COMPARATORS,
    SET_COMPARATORS,
    STRING_COMPARATORS,
    Clause,
    OrderKey,
)
from ..wire import parse_id
from ..wire_errors import InvalidParameter
from .models import LatestMetric, Run, RunParam, RunTag

_NUMERIC_ATTRIBUTES: dict[str, Any] = {"start_time": Run.start_time, "end_time": Run.end_time}
_STRING_ATTRIBUTES: dict[str, Any] = {
    "status": Run.status,
    "run_name": Run.name,
    "user_id": Run.user_id,
    "artifact_uri": Run.artifact_uri,
    "lifecycle_stage": Run.lifecycle_stage,
}


def _check(clause: Clause, allowed: frozenset[str], kind: type) -> None:
    if clause.comparator not in allowed:
        raise InvalidParameter(
            f"{clause.entity} {clause.key!r} takes {', '.join(sorted(allowed))}, "
            f"not {clause.comparator}"
        )
    values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
    if not all(isinstance(v, kind) for v in values):
        expected = "a number" if kind is float else "a quoted string"
        raise InvalidParameter(f"{clause.entity} {clause.key!r} is compared with {expected}")


def condition(clause: Clause) -> ColumnElement[bool]:
    """One clause as a SQL condition on ``Run``."""
    if clause.entity == "metric":
        _check(clause, NUMERIC_COMPARATORS, float)
        return exists().where(
            LatestMetric.run_id == Run.id,
            LatestMetric.key == clause.key,
            compare(LatestMetric.value, clause.comparator, clause.value),
        )
    if clause.entity in ("param", "tag"):
        _check(clause, STRING_COMPARATORS | SET_COMPARATORS, str)
        table: Any = RunParam if clause.entity == "param" else RunTag
        return exists().where(
            table.run_id == Run.id,
            table.key == clause.key,
            compare(table.value, clause.comparator, clause.value),
        )
    if clause.key in _NUMERIC_ATTRIBUTES:
        _check(clause, NUMERIC_COMPARATORS, float)
        return compare(_NUMERIC_ATTRIBUTES[clause.key], clause.comparator, clause.value)
    if clause.key in _STRING_ATTRIBUTES:
        _check(clause, STRING_COMPARATORS | SET_COMPARATORS, str)
        return compare(_STRING_ATTRIBUTES[clause.key], clause.comparator, clause.value)
    if clause.key in ("run_id", "run_uuid"):
        _check(clause, frozenset({"=", "!=", "IN", "NOT IN"}), str)
        values = clause.value if isinstance(clause.value, tuple) else (clause.value,)
        ids = [i for i in (parse_id(str(v)) for v in values) if i is not None]
        many = clause.comparator in SET_COMPARATORS
        comparator = clause.comparator if many else ("IN" if clause.comparator == "=" else "NOT IN")
        return compare(Run.id, comparator, ids)
    raise InvalidParameter(f"Unknown run attribute {clause.key!r}")


def _order_column(key: OrderKey) -> Any:
    if key.entity == "metric":
        return (
            select(LatestMetric.value)
            .where(LatestMetric.run_id == Run.id, LatestMetric.key == key.key)
            .scalar_subquery()
        )
    if key.entity in ("param", "tag"):
        table: Any = RunParam if key.entity == "param" else RunTag
        return (
            select(table.value)
            .where(table.run_id == Run.id, table.key == key.key)
            .scalar_subquery()
        )
    column = {**_NUMERIC_ATTRIBUTES, **_STRING_ATTRIBUTES}.get(key.key)
    if column is None:
        raise InvalidParameter(f"Cannot order runs by attribute {key.key!r}")
    return column


async def search(
    session: AsyncSession,
    project_id: uuid.UUID,
    experiment_ids: list[uuid.UUID],
    *,
    stages: tuple[str, ...],
    clauses: list[Clause],
    order: list[OrderKey],
    offset: int,
    limit: int,
) -> list[Run]:
    query: Select[Run] = select(Run).where(
        Run.project_id == project_id,
        Run.experiment_id.in_(experiment_ids),
        Run.lifecycle_stage.in_(stages),
    )
    for clause in clauses:
        query = query.where(condition(clause))
    for key in order:
        column = _order_column(key)
        # Runs without the metric, param or tag come last either way, as in MLflow.
        query = query.order_by((column.asc() if key.ascending else column.desc()).nulls_last())
    query = query.order_by(Run.start_time.desc(), Run.id)
    return list(await session.scalars(query.offset(offset).limit(limit)))
