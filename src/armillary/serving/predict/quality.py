"""Per-variant serving quality from feedback, over a sliding window: the variant's latest
``quality_window_rows`` scored rows. Accuracy for classifiers, mean absolute error for
regressors (the square root of each stored squared error is that row's absolute error)."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from . import metrics
from .models import FeedbackRecord
from .ports import Deployment, deployment_label


def quality_metric(problem: str) -> str:
    return "accuracy" if problem == "classification" else "mae"


async def window_quality(
    session: AsyncSession, deployment: Deployment, variant: str, problem: str, window: int
) -> float | None:
    """The variant's quality over its latest ``window`` feedback rows (None without any)."""
    column = FeedbackRecord.correct if problem == "classification" else FeedbackRecord.squared_error
    rows = (
        await session.scalars(
            select(column)
            .where(FeedbackRecord.deployment_id == deployment.id, FeedbackRecord.variant == variant)
            .order_by(FeedbackRecord.created_at.desc())
            .limit(window)
        )
    ).all()
    scored = [value for value in rows if value is not None]
    if not scored:
        return None
    if problem == "classification":
        return sum(1.0 for right in scored if right) / len(scored)
    return sum(math.sqrt(max(0.0, float(e))) for e in scored) / len(scored)


async def refresh(
    session: AsyncSession, deployment: Deployment, problem: str, window: int
) -> dict[str, float]:
    """Set the quality gauge of every variant of ``deployment`` that has feedback."""
    variants = (
        await session.scalars(
            select(FeedbackRecord.variant)
            .where(FeedbackRecord.deployment_id == deployment.id)
            .distinct()
        )
    ).all()
    label, metric = deployment_label(deployment), quality_metric(problem)
    found: dict[str, float] = {}
    for variant in variants:
        value = await window_quality(session, deployment, variant, problem, window)
        if value is not None:
            metrics.VARIANT_QUALITY.labels(label, variant, metric).set(value)
            found[variant] = value
    return found
