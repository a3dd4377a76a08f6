"""The analysis of a deployment's variants from the prediction log and the feedback, and the
auto-rollback policy that acts on it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from uuid import UUID

from sqlalchemy import Integer, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.serving.analysis import Problem, VariantSample, build_report, should_roll_back

from . import metrics
from .models import FeedbackRecord, PredictionRecord
from .ports import Deployment, Variant, primary_variant


async def variant_sample(
    session: AsyncSession,
    deployment: Deployment,
    variant: Variant,
    *,
    problem: Problem,
    max_latencies: int,
) -> VariantSample:
    """What the log says of ``variant`` at its current model version."""
    of_variant = (
        PredictionRecord.deployment_id == deployment.id,
        PredictionRecord.variant == variant.name,
        PredictionRecord.model_version == variant.model_version,
    )
    requests, errors = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(cast(PredictionRecord.error, Integer)), 0))
            .select_from(PredictionRecord)
            .where(*of_variant)
        )
    ).one()
    latencies = list(
        await session.scalars(
            select(PredictionRecord.latency_ms)
            .where(*of_variant, PredictionRecord.error.is_(False))
            .order_by(PredictionRecord.created_at.desc())
            .limit(max_latencies)
        )
    )
    of_feedback = (
        FeedbackRecord.deployment_id == deployment.id,
        FeedbackRecord.variant == variant.name,
        FeedbackRecord.model_version == variant.model_version,
    )
    labelled, correct = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(cast(FeedbackRecord.correct, Integer)), 0))
            .select_from(FeedbackRecord)
            .where(*of_feedback)
        )
    ).one()
    squared: list[float] = []
    if problem == "regression":
        squared = [
            float(v or 0.0)
            for v in await session.scalars(
                select(FeedbackRecord.squared_error).where(
                    *of_feedback, FeedbackRecord.squared_error.is_not(None)
                )
            )
        ]
    return VariantSample(
        name=variant.name,
        model_version=variant.model_version,
        shadow=variant.shadow,
        requests=int(requests),
        errors=int(errors),
        latencies_ms=latencies,
        correct=int(correct) if problem == "classification" else None,
        labelled=int(labelled) if problem == "classification" else len(squared),
        squared_errors=squared,
    )


def rollback_policy(deployment: Deployment) -> Mapping[str, Any]:
    policy = (deployment.policy or {}).get("auto_rollback") or {}
    return policy if isinstance(policy, Mapping) else {}


def decisions(report: Mapping[str, Any], policy: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the auto-rollback policy says of each compared variant."""
    out = []
    for comparison in report.get("comparisons", []):
        # What the policy would decide, shown even while it is off.
        roll, reason = should_roll_back(comparison, {**policy, "enabled": True})
        out.append({"variant": comparison["variant"], "roll_back": roll, "reason": reason})
    return out


async def build(
    session: AsyncSession,
    deployment: Deployment,
    *,
    problem: Problem,
    alpha: float,
    max_latencies: int,
) -> dict[str, Any]:
    primary = primary_variant(deployment)
    samples = [
        await variant_sample(
            session, deployment, variant, problem=problem, max_latencies=max_latencies
        )
        for variant in deployment.variants
    ]
    report = build_report(samples, baseline=primary.name, alpha=alpha, problem=problem)
    policy = rollback_policy(deployment)
    report["deployment"] = deployment.name
    report["config_version"] = deployment.config_version
    report["auto_rollback"] = {
        "enabled": bool(policy.get("enabled")),
        "policy": dict(policy),
        "decisions": decisions(report, policy),
    }
    return report


RollBack = Callable[[Deployment, str, str], Awaitable[None]]


class AutoRollback:
    """Evaluates the policy at most once per ``debounce`` seconds per deployment, and keeps
    the last action taken per deployment for the analysis to show."""

    def __init__(self, debounce: float) -> None:
        self.debounce = debounce
        self._last: dict[UUID, float] = {}
        self.actions: dict[UUID, list[dict[str, Any]]] = {}

    def due(self, deployment: Deployment) -> bool:
        if not rollback_policy(deployment).get("enabled"):
            return False
        now = time.monotonic()
        last = self._last.get(deployment.id)
        if last is not None and now - last < self.debounce:
            return False
        self._last[deployment.id] = now
        return True

    async def apply(
        self, report: Mapping[str, Any], deployment: Deployment, roll_back: RollBack
    ) -> list[dict[str, Any]]:
        taken = []
        for decision in report["auto_rollback"]["decisions"]:
            if decision["roll_back"]:
                await roll_back(deployment, decision["variant"], decision["reason"])
                metrics.ROLLBACKS.inc()
                taken.append(decision)
        if taken:
            self.actions.setdefault(deployment.id, []).extend(taken)
        return taken
