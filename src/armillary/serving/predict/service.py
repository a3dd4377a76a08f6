"""The prediction path: route, load (once per process), micro-batch, answer, log, shadow.

A request holds the resolved deployment it started with: a configuration or alias change
picked up meanwhile applies to the next request, and the one in flight finishes with the
models it already has.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog

from armillary.contracts.training import Signature
from armillary.kit import tracing
from armillary.kit.errors import DomainError
from armillary.kit.lazy_import import lazy
from armillary.serving.runtime import (
    BadInput,
    LoadedModel,
    MicroBatcher,
    ModelCache,
    Prediction,
    decode_records,
    load_model,
)

from . import metrics
from .drift import DriftWindows
from .log import LogRow, PredictionLog
from .ports import Deployment, ModelFiles, Variant, deployment_label, key_hash
from .sampling import Sample, sampled
from .settings import PredictSettings

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")

log = structlog.get_logger("armillary.serving.predict")

#: The request's rows for a model signature (decoded once per distinct signature).
RowsFor = Callable[[Signature], "np.ndarray[Any, Any]"]


class PredictionFailed(DomainError):
    status = 500
    title = "Prediction failed"


@dataclass(frozen=True, slots=True)
class Batching:
    max_batch_rows: int
    max_wait_ms: float
    max_models: int
    sample_rate: float


@dataclass(frozen=True, slots=True)
class Answer:
    prediction_id: uuid.UUID
    variant: Variant
    prediction: Prediction
    runtime: str  # "onnx" or "skops": which model file answered

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"predictions": self.prediction.outputs}
        if self.prediction.probabilities is not None:
            body["probabilities"] = self.prediction.probabilities
        body.update(
            variant=self.variant.name,
            model=self.variant.model,
            model_version=self.variant.model_version,
            runtime=self.runtime,
            prediction_id=str(self.prediction_id),
        )
        return body


class Predictor:
    """One per process: the model cache, a micro-batcher per loaded model, the log writer."""

    def __init__(
        self,
        files: ModelFiles,
        log_writer: PredictionLog,
        batching: Batching,
        settings: PredictSettings,
    ) -> None:
        self.files = files
        self.log = log_writer
        self.batching = batching
        self.settings = settings
        self.cache = ModelCache(max_models=batching.max_models)
        self.drift = DriftWindows(settings.drift_window_rows, settings.drift_min_rows)
        self._batchers: OrderedDict[str, MicroBatcher] = OrderedDict()
        self._shadows: set[asyncio.Task[None]] = set()

    # -- models ------------------------------------------------------------------------------

    async def model(self, variant: Variant) -> LoadedModel:
        async def load() -> LoadedModel:
            with tracing.span("model load", attributes=_variant(variant)):
                file = await self.files.model_file(variant)
                return await asyncio.to_thread(
                    load_model, variant.model_version_id, file.path, file.format, file.signature
                )

        model = await self.cache.get(variant.model_version_id, load)
        if model.format == "skops" and self.files.has_onnx(variant.model_version_id):
            # Its ONNX export arrived since it was loaded (ADR 0018): a process that did not
            # consume the event switches once its directory has re-read the version.
            self.cache.evict(variant.model_version_id)
            model = await self.cache.get(variant.model_version_id, load)
        return model

    def version_changed(self, model_version_id: str) -> None:
        """Forget the loaded model of a version whose model files changed."""
        self.cache.evict(model_version_id)

    def _batcher(self, model: LoadedModel) -> MicroBatcher:
        batcher = self._batchers.get(model.key)
        # A model evicted and loaded again is a new object: its batcher must follow it.
        if batcher is None or batcher.model is not model:
            batcher = MicroBatcher(
                model,
                max_batch_rows=self.batching.max_batch_rows,
                max_wait_ms=self.batching.max_wait_ms,
                on_batch=metrics.BATCH_ROWS.observe,
                # Run at once when the model is idle; requests arriving meanwhile batch up.
                flush_when_idle=True,
                inline_max_rows=(
                    self.settings.inline_onnx_max_rows if model.format == "onnx" else 0
                ),
                inline_max_ms=self.settings.inline_onnx_max_ms,
            )
            self._batchers[model.key] = batcher
            while len(self._batchers) > 2 * self.batching.max_models:
                self._batchers.popitem(last=False)
        else:
            self._batchers.move_to_end(model.key)
        return batcher

    async def run(self, model: LoadedModel, rows: np.ndarray[Any, Any]) -> Prediction:
        with tracing.span("model inference", attributes={"armillary.model_format": model.format}):
            return await self._batcher(model).predict(rows)

    # -- requests ----------------------------------------------------------------------------

    async def predict(
        self,
        deployment: Deployment,
        variant: Variant,
        rows_for: RowsFor,
        *,
        key: str | None,
        request_body: Any,
        shadow: Variant | None,
    ) -> Answer:
        """Answer with ``variant``; log it; copy the rows to the shadow afterwards."""
        started = time.perf_counter()
        label = deployment_label(deployment)
        prediction_id = uuid.uuid4()
        rows: np.ndarray[Any, Any] | None = None
        try:
            model = await self.model(variant)
            # A refused body is the client's error, not the model's: no error row for it.
            try:
                rows = rows_for(model.signature)
            except BadInput:
                metrics.REQUESTS.labels(label, variant.name, "bad_input").inc()
                raise
            prediction = await self.run(model, rows)
        except BadInput:
            raise
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self._record(deployment, variant, prediction_id, None, key, rows, None, elapsed)
            metrics.REQUESTS.labels(label, variant.name, "error").inc()
            if isinstance(exc, DomainError):
                raise
            log.exception("prediction_failed", deployment=label, variant=variant.name)
            raise PredictionFailed(
                f"Variant {variant.name} (model {variant.model} version "
                f"{variant.model_version}) failed to predict"
            ) from None
        elapsed = time.perf_counter() - started
        self._record(deployment, variant, prediction_id, None, key, rows, prediction, elapsed)
        metrics.REQUESTS.labels(label, variant.name, "ok").inc()
        metrics.LATENCY.labels(label, variant.name).observe(elapsed)
        answer = Answer(prediction_id, variant, prediction, model.format)
        if sampled(self._sample_rate(deployment)):
            self._keep_for_drift(label, variant, model, rows)
            now = datetime.now(UTC)
            self.log.sample(
                Sample(
                    deployment.project_id,
                    deployment.id,
                    now,
                    {
                        "at": now.isoformat(),
                        "prediction_id": str(prediction_id),
                        "config_version": deployment.config_version,
                        "request": request_body,
                        "response": answer.body(),
                    },
                )
            )
        if shadow is not None:
            self._start_shadow(deployment, shadow, prediction_id, key, rows_for)
        return answer

    def _keep_for_drift(self, label: str, variant: Variant, model: LoadedModel, rows: Any) -> None:
        """A sampled request's rows join the variant's drift window (ADR 0032)."""
        signature = getattr(model, "signature", None)
        if rows is None or signature is None:
            return
        inputs = [spec.name for spec in signature.inputs]
        self.drift.add(label, variant.name, variant.model_version_id, inputs, rows)

    def _sample_rate(self, deployment: Deployment) -> float:
        override = deployment.policy.get("sample_rate") if deployment.policy else None
        if isinstance(override, int | float) and not isinstance(override, bool):
            return float(override)
        return self.batching.sample_rate

    def _record(
        self,
        deployment: Deployment,
        variant: Variant,
        prediction_id: uuid.UUID,
        parent_id: uuid.UUID | None,
        key: str | None,
        rows: np.ndarray[Any, Any] | None,
        prediction: Prediction | None,
        elapsed: float,
    ) -> None:
        outputs = None
        if prediction is not None:
            outputs = _plain(prediction.outputs[: self.settings.log_max_outputs])
        self.log.record(
            LogRow(
                id=prediction_id,
                deployment_id=deployment.id,
                config_version=deployment.config_version,
                variant=variant.name,
                model_version=variant.model_version,
                shadow=variant.shadow,
                parent_id=parent_id,
                key_hash=key_hash(key),
                rows=0 if rows is None else len(rows),
                outputs=outputs,
                error=prediction is None,
                latency_ms=elapsed * 1000,
                created_at=datetime.now(UTC),
            )
        )

    # -- shadow ------------------------------------------------------------------------------

    def _start_shadow(
        self,
        deployment: Deployment,
        shadow: Variant,
        parent_id: uuid.UUID,
        key: str | None,
        rows_for: RowsFor,
    ) -> None:
        label = deployment_label(deployment)
        if len(self._shadows) >= self.settings.max_shadow_in_flight:
            metrics.SHADOW_REQUESTS.labels(label, "skipped").inc()
            return
        task = asyncio.create_task(self._shadow(deployment, shadow, parent_id, key, rows_for))
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def _shadow(
        self,
        deployment: Deployment,
        shadow: Variant,
        parent_id: uuid.UUID,
        key: str | None,
        rows_for: RowsFor,
    ) -> None:
        label = deployment_label(deployment)
        started = time.perf_counter()
        rows: np.ndarray[Any, Any] | None = None
        prediction: Prediction | None = None
        try:
            model = await self.model(shadow)
            rows = rows_for(model.signature)
            prediction = await self.run(model, rows)
        except Exception:  # a shadow's failure never reaches the client
            log.warning("shadow_prediction_failed", deployment=label, variant=shadow.name)
        elapsed = time.perf_counter() - started
        self._record(deployment, shadow, uuid.uuid4(), parent_id, key, rows, prediction, elapsed)
        metrics.SHADOW_REQUESTS.labels(label, "ok" if prediction else "error").inc()
        if prediction is not None:
            metrics.LATENCY.labels(label, shadow.name).observe(elapsed)

    async def drain_shadows(self) -> None:
        """Wait for the shadow copies in flight (shutdown, tests)."""
        while self._shadows:
            await asyncio.gather(*list(self._shadows), return_exceptions=True)

    async def stop(self) -> None:
        await self.drain_shadows()
        await self.log.stop()


def _variant(variant: Variant) -> dict[str, str]:
    return {
        "armillary.variant": variant.name,
        "armillary.model_version_id": str(variant.model_version_id),
    }


def _plain(values: list[Any]) -> list[Any]:
    """JSON-ready outputs: NumPy scalars become Python numbers and strings."""
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def decoder(
    body: Any, decode: Callable[[Any, Signature], np.ndarray[Any, Any]] = decode_records
) -> RowsFor:
    """Rows of ``body`` per distinct signature: variants that share one decode once."""
    decoded: list[tuple[Signature, np.ndarray[Any, Any]]] = []

    def rows_for(signature: Signature) -> np.ndarray[Any, Any]:
        for known, rows in decoded:
            if known == signature:
                return rows
        rows = decode(body, signature)
        decoded.append((signature, rows))
        return rows

    return rows_for
