"""Ground truth for logged predictions, scored against what was answered when it arrives."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.db import after_commit

from . import metrics
from .models import FeedbackRecord, PredictionRecord
from .ports import Deployment, deployment_label
from .schemas import FeedbackItem, FeedbackOut, FeedbackResult


@dataclass(frozen=True, slots=True)
class _Ref:
    text: str
    id: uuid.UUID
    row: int | None


def _parse(text: str) -> _Ref | None:
    head, _, row = text.partition(":")
    try:
        parsed = uuid.UUID(head)
    except ValueError:
        return None
    return _Ref(text, parsed, int(row) if row else None)


def same_label(predicted: Any, actual: Any) -> bool:
    """Labels compare as numbers when both are numbers (1 == 1.0), else as text ("1" == 1)."""
    numbers = (int, float)
    if (
        isinstance(predicted, numbers)
        and isinstance(actual, numbers)
        and not isinstance(predicted, bool)
        and not isinstance(actual, bool)
    ):
        return float(predicted) == float(actual)
    return str(predicted).lower() == str(actual).lower()


def _score(problem: str, predicted: Any, actual: Any) -> tuple[bool | None, float | None, str]:
    if problem == "classification":
        return same_label(predicted, actual), None, ""
    if isinstance(actual, bool) or not isinstance(actual, int | float) or not math.isfinite(actual):
        return None, None, "a regression's actual value must be a finite number"
    try:
        error = float(predicted) - float(actual)
    except (TypeError, ValueError):
        return None, None, "the logged prediction is not a number"
    return None, error * error, ""


async def record(
    session: AsyncSession,
    deployment: Deployment,
    items: Sequence[FeedbackItem],
    *,
    problem: str,
) -> FeedbackOut:
    """Score and store each item (idempotent per prediction and row: the latest actual wins);
    a shadow's copy of the same request is scored too. Unknown ids are reported per item."""
    refs = [(item, _parse(item.prediction_id)) for item in items]
    ids = {ref.id for _, ref in refs if ref is not None}
    found: dict[uuid.UUID, PredictionRecord] = {}
    shadows: dict[uuid.UUID, list[PredictionRecord]] = {}
    if ids:
        rows = await session.scalars(
            select(PredictionRecord).where(
                PredictionRecord.deployment_id == deployment.id,
                or_(PredictionRecord.id.in_(ids), PredictionRecord.parent_id.in_(ids)),
            )
        )
        for logged in rows:
            if logged.parent_id is None:
                found[logged.id] = logged
            else:
                shadows.setdefault(logged.parent_id, []).append(logged)

    results: list[FeedbackResult] = []
    values: dict[tuple[uuid.UUID, int], dict[str, Any]] = {}
    for item, ref in refs:
        prediction = found.get(ref.id) if ref is not None else None
        if ref is None or prediction is None:
            results.append(
                FeedbackResult(
                    prediction_id=item.prediction_id,
                    status="not_found",
                    detail="No prediction of this deployment has this id",
                )
            )
            continue
        row = ref.row if ref.row is not None else 0
        problem_text = _row_problem(prediction, ref.row, row)
        if problem_text:
            results.append(
                FeedbackResult(
                    prediction_id=item.prediction_id, status="invalid", detail=problem_text
                )
            )
            continue
        # The answered prediction first: an actual it cannot be scored against is refused;
        # the shadow's copy of the request is scored alongside when it can be.
        why = ""
        for target in [prediction, *shadows.get(prediction.id, [])]:
            if target.error or target.outputs is None or row >= len(target.outputs):
                continue
            correct, squared, why = _score(problem, target.outputs[row], item.actual)
            if why:
                break
            values[(target.id, row)] = {
                "prediction_id": target.id,
                "row": row,
                "deployment_id": deployment.id,
                "variant": target.variant,
                "model_version": target.model_version,
                "actual": item.actual,
                "correct": correct,
                "squared_error": squared,
            }
        if why and (prediction.id, row) not in values:
            results.append(
                FeedbackResult(prediction_id=item.prediction_id, status="invalid", detail=why)
            )
        else:
            results.append(FeedbackResult(prediction_id=item.prediction_id, status="recorded"))

    if values:
        await _upsert(session, list(values.values()))
        _count_after_commit(session, deployment, [value["variant"] for value in values.values()])
    recorded = sum(1 for r in results if r.status == "recorded")
    return FeedbackOut(recorded=recorded, rejected=len(results) - recorded, results=results)


def _count_after_commit(session: AsyncSession, deployment: Deployment, variants: list[str]) -> None:
    label = deployment_label(deployment)

    async def count() -> None:
        for variant in variants:
            metrics.FEEDBACK.labels(label, variant).inc()

    after_commit(session, count)


def _row_problem(prediction: PredictionRecord, named: int | None, row: int) -> str:
    if named is None and prediction.rows != 1:
        return (
            f"This prediction has {prediction.rows} rows: name one as "
            f"{prediction.id}:<row> (0-based)"
        )
    if row >= prediction.rows:
        return f"This prediction has rows 0 to {prediction.rows - 1}"
    if prediction.error:
        return "This prediction failed: there is no answer to compare with"
    if prediction.outputs is None or row >= len(prediction.outputs):
        return "The answer for this row was not kept (only the first rows of a request are)"
    return ""


async def _upsert(session: AsyncSession, values: list[dict[str, Any]]) -> None:
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(FeedbackRecord)
    statement = statement.on_conflict_do_update(
        index_elements=["prediction_id", "row"],
        set_={
            "actual": statement.excluded.actual,
            "correct": statement.excluded.correct,
            "squared_error": statement.excluded.squared_error,
        },
    )
    from armillary.kit.db import utcnow

    now = utcnow()
    await session.execute(statement, [{**value, "created_at": now} for value in values])
