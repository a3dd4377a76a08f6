"""Experiment queries, always within one project."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import ColumnElement, Select, exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..conditions import compare
from ..filters import NUMERIC_COMPARATORS, STRING_COMPARATORS, Clause, OrderKey
from ..wire_errors import InvalidParameter
from .models import Experiment, ExperimentTag

_ATTRIBUTES = {
    "name": Experiment.name,
    "experiment_id": Experiment.id,
    "creation_time": Experiment.creation_time,
    "last_update_time": Experiment.last_update_time,
}


async def by_id(
    session: AsyncSession, project_id: uuid.UUID, experiment_id: uuid.UUID
) -> Experiment | None:
    found = await session.scalar(
        select(Experiment).where(
            Experiment.id == experiment_id, Experiment.project_id == project_id
        )
    )
    return found


async def by_name(session: AsyncSession, project_id: uuid.UUID, name: str) -> Experiment | None:
    found = await session.scalar(
        select(Experiment).where(Experiment.project_id == project_id, Experiment.name == name)
    )
    return found


async def tags_of(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ExperimentTag]]:
    grouped: dict[uuid.UUID, list[ExperimentTag]] = defaultdict(list)
    if ids:
        rows = await session.scalars(
            select(ExperimentTag).where(ExperimentTag.experiment_id.in_(ids))
        )
        for tag in rows:
            grouped[tag.experiment_id].append(tag)
    return grouped


def _condition(clause: Clause) -> ColumnElement[bool]:
    if clause.comparator not in STRING_COMPARATORS | NUMERIC_COMPARATORS:
        raise InvalidParameter(f"Experiments are not searched with {clause.comparator}")
    if clause.entity == "tag":
        matched = compare(ExperimentTag.value, clause.comparator, clause.value)
        return exists().where(
            ExperimentTag.experiment_id == Experiment.id, ExperimentTag.key == clause.key, matched
        )
    if clause.entity != "attribute" or clause.key not in _ATTRIBUTES:
        raise InvalidParameter(
            f"Experiments are searched by name, creation_time, last_update_time or tags, "
            f"not {clause.entity} {clause.key!r}"
        )
    return compare(_ATTRIBUTES[clause.key], clause.comparator, clause.value)


async def search(
    session: AsyncSession,
    project_id: uuid.UUID,
    *,
    stages: tuple[str, ...],
    clauses: list[Clause],
    order: list[OrderKey],
    offset: int,
    limit: int,
) -> list[Experiment]:
    query: Select[Experiment] = select(Experiment).where(
        Experiment.project_id == project_id, Experiment.lifecycle_stage.in_(stages)
    )
    for clause in clauses:
        query = query.where(_condition(clause))
    for key in order:
        if key.entity != "attribute" or key.key not in _ATTRIBUTES:
            raise InvalidParameter(f"Cannot order experiments by {key.key!r}")
        column = _ATTRIBUTES[key.key]
        query = query.order_by(column.asc() if key.ascending else column.desc())
    # MLflow's default order, and a tie-breaker so pages never overlap.
    query = query.order_by(Experiment.creation_time.desc(), Experiment.id)
    return list(await session.scalars(query.offset(offset).limit(limit)))
