"""The tracking service: experiments and runs per project, served through MLflow's REST API
(ADR 0037) so the MLflow client logs to Armillary unchanged.

``armillary.tracking`` is also the tracking SDK (``start_run``, ``log_metrics``, ...; see
:mod:`armillary.tracking.sdk`). Its names are loaded on first use, so a training script that
imports this package loads httpx only, none of the service's server code."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sdk import (
        Run,
        TrackingError,
        UnsafeModel,
        active_run,
        configure,
        end_run,
        flush,
        infer_signature,
        log_artifact,
        log_artifacts,
        log_metric,
        log_metrics,
        log_model,
        log_param,
        log_params,
        register_model,
        set_tag,
        set_tags,
        start_run,
    )

__all__ = [
    "Run",
    "TrackingError",
    "UnsafeModel",
    "active_run",
    "configure",
    "end_run",
    "flush",
    "infer_signature",
    "log_artifact",
    "log_artifacts",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "register_model",
    "set_tag",
    "set_tags",
    "start_run",
]
SDK_NAMES = frozenset(__all__)


def __getattr__(name: str) -> Any:
    if name in SDK_NAMES:
        return getattr(importlib.import_module(f"{__name__}.sdk"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
