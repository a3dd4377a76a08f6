"""The prediction path on the serving service: its per-process component, and the calls into
the deployments directory, routing and predict access."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from armillary.contracts.registry import ModelVersionOnnxChanged
from armillary.kit import context, tracing
from armillary.kit.errors import NotFound
from armillary.kit.events import Delivery, EventBus
from armillary.kit.runtime import Runtime
from armillary.serving.access.predict_access import Caller, authorize_predict
from armillary.serving.analysis import Problem
from armillary.serving.components import Serving, serving_of
from armillary.serving.deployments.resolve import ResolvedDeployment, ResolvedVariant
from armillary.serving.deployments.routing import choose
from armillary.serving.runtime import BadInput

from . import analysis, drift, quality
from .budget import PredictBudget
from .log import PredictionLog
from .ports import Deployment, primary_variant
from .service import Batching, Predictor
from .settings import PredictSettings

SERVICE = "serving.predict"
ONNX_CONSUMER = "serving.models"
# Sticky routing keys longer than this are refused rather than hashed.
MAX_KEY_LENGTH = 256


@dataclass
class PredictComponent:
    serving: Serving
    predictor: Predictor
    settings: PredictSettings
    rollback: analysis.AutoRollback
    budget: PredictBudget
    rng: random.Random = field(default_factory=random.Random)

    @classmethod
    def create(cls, serving: Serving, settings: PredictSettings | None = None) -> PredictComponent:
        settings = settings or PredictSettings()
        own = serving.settings
        predictor = Predictor(
            serving.directory,
            PredictionLog(serving.runtime.db, settings, serving.store),
            Batching(
                max_batch_rows=own.max_batch_rows,
                max_wait_ms=own.max_batch_wait_ms,
                max_models=own.max_models,
                sample_rate=own.sample_rate,
            ),
            settings,
        )
        return cls(
            serving,
            predictor,
            settings,
            analysis.AutoRollback(settings.rollback_debounce_seconds),
            PredictBudget.for_runtime(serving.runtime),
        )

    @property
    def max_body_bytes(self) -> int:
        return self.serving.settings.max_request_bytes

    async def problem(self, deployment: Deployment) -> Problem:
        model = await self.predictor.model(primary_variant(deployment))
        return "regression" if model.signature.problem == "regression" else "classification"

    async def report(self, deployment: Deployment) -> dict[str, Any]:
        problem = await self.problem(deployment)
        async with self.serving.runtime.db.read_only() as session:
            report = await analysis.build(
                session,
                deployment,
                problem=problem,
                alpha=self.settings.analysis_alpha,
                max_latencies=self.settings.analysis_max_latencies,
            )
        report["auto_rollback"]["actions"] = self.rollback.actions.get(deployment.id, [])
        return report

    async def refresh_quality(self, deployment: Deployment) -> dict[str, float]:
        """Set the per-variant quality gauges from the latest feedback (sliding window)."""
        problem = await self.problem(deployment)
        async with self.serving.runtime.db.read_only() as session:
            return await quality.refresh(
                session, deployment, problem, self.settings.quality_window_rows
            )

    async def after_feedback(self, deployment: Deployment) -> None:
        """Refresh the quality gauges, and let the auto-rollback policy act on the new
        evidence (debounced)."""
        await self.refresh_quality(deployment)
        if not self.rollback.due(deployment):
            return
        report = await self.report(deployment)
        directory = self.serving.directory

        async def roll_back(found: Deployment, variant: str, reason: str) -> None:
            await directory.auto_rollback(found.id, variant, f"auto-rollback: {reason}")

        await self.rollback.apply(report, deployment, roll_back)

    async def stop(self, _runtime: Runtime) -> None:
        await self.predictor.stop()


def install(runtime: Runtime, settings: PredictSettings | None = None) -> PredictComponent:
    """Put the prediction path on ``runtime`` (after ``serving.app.install``): its log writer
    starts with the runtime and is flushed when the runtime stops."""
    component = PredictComponent.create(serving_of(runtime), settings)
    runtime.services[SERVICE] = component
    component.budget.delegate_paths()
    _follow_onnx_exports(runtime.bus, component)

    async def start(runtime: Runtime) -> None:
        component.predictor.log.start()
        runtime.tasks.append(
            asyncio.create_task(
                drift.run_periodically(
                    component.predictor.drift,
                    component.serving.directory.drift_reference,
                    component.settings.drift_interval_seconds,
                ),
                name="serving-drift",
            )
        )

    runtime.startup_hooks.append(start)
    runtime.shutdown_hooks.append(component.stop)
    return component


def _follow_onnx_exports(bus: EventBus, component: PredictComponent) -> None:
    """A version's ``model.onnx`` arrived (ADR 0018): the deployments serving it re-read it
    from the registry first, then its loaded skops model goes, so the next request loads
    ONNX."""

    async def changed(delivery: Delivery) -> None:
        if delivery.payload.get("status") != "ready":
            return
        event = ModelVersionOnnxChanged.model_validate(delivery.payload)
        version_id = str(event.model_version_id)
        await component.serving.directory.version_changed(version_id)
        component.predictor.version_changed(version_id)

    async def drop_all() -> None:
        # A missed export only delays ONNX: the loaded skops model still answers.
        component.serving.directory.clear()

    # Every serving process holds its own loaded models: broadcast (ADR 0020).
    bus.broadcast(ModelVersionOnnxChanged.TYPE, ONNX_CONSUMER, changed, drop_all=drop_all)


def predict_of(runtime: Runtime) -> PredictComponent:
    component = runtime.services.get(SERVICE)
    if component is None:
        # Not installed explicitly: built on first use, stopped with the runtime.
        component = PredictComponent.create(serving_of(runtime))
        runtime.services[SERVICE] = component
        runtime.shutdown_hooks.append(component.stop)
    assert isinstance(component, PredictComponent)  # noqa: S101 - set just above or by install
    component.predictor.log.start()
    return component


def current_predict(request: Request) -> PredictComponent:
    return predict_of(request.app.state.runtime)


async def find_deployment(request: Request, project: str, name: str) -> ResolvedDeployment:
    found = await current_predict(request).serving.directory.get(project, name)
    if found is None:
        raise NotFound("Deployment not found")
    return found


async def authorize(request: Request, deployment: ResolvedDeployment) -> Caller:
    """The caller, once allowed to predict on ``deployment``. Allowed calls are recorded in
    the prediction log, not the audit chain (thousands a second; a generic audit entry would
    cost a transaction each); refusals are still audited."""
    caller = await authorize_predict(request, deployment)
    ctx = context.current()
    if ctx is not None:
        ctx.audit_recorded = True
    return caller


async def admit(request: Request, deployment: ResolvedDeployment) -> Caller:
    """:func:`authorize`, then one request spent from the prediction budgets (429 when one
    is spent): prediction traffic is not under the edge's user limits."""
    caller = await authorize(request, deployment)
    await current_predict(request).budget.spend(caller, deployment.id)
    return caller


def routing_key(request: Request, body: Any) -> str | None:
    key = body.get("key") if isinstance(body, dict) else None
    if key is None:
        key = request.headers.get("x-routing-key")
    if key is None:
        return None
    if isinstance(key, int | float) and not isinstance(key, bool):
        key = str(key)
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise BadInput(f"the routing key must be a string of 1 to {MAX_KEY_LENGTH} characters")
    return key


def choose_variant(
    component: PredictComponent, deployment: ResolvedDeployment, key: str | None
) -> tuple[ResolvedVariant, ResolvedVariant | None]:
    with tracing.span("prediction route") as span:
        variant, shadow = choose(deployment, key, component.rng)
        if span is not None:
            span.set_attribute("armillary.variant", variant.name)
        return variant, shadow
