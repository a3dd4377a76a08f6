"""What the prediction path needs from the rest of the serving service, as protocols: the
deployments directory, the routing choice and predict access are CORE's, the models RUNTIME's.
Unit tests pass small fakes of these; the wiring passes the real ones."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID


class Variant(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def model_version(self) -> int: ...
    @property
    def model_version_id(self) -> str: ...
    @property
    def weight(self) -> float: ...
    @property
    def shadow(self) -> bool: ...


class Deployment(Protocol):
    @property
    def id(self) -> UUID: ...
    @property
    def project_id(self) -> UUID: ...
    @property
    def project_slug(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def config_version(self) -> int: ...
    @property
    def variants(self) -> Sequence[Variant]: ...
    @property
    def policy(self) -> Mapping[str, Any]: ...


def primary_variant(deployment: Deployment) -> Variant:
    """The non-shadow variant with the largest weight (the first of equals): the baseline of
    the analysis and the signature of the deployment."""
    candidates = [v for v in deployment.variants if not v.shadow]
    return max(candidates, key=lambda v: v.weight)


def shadow_variant(deployment: Deployment) -> Variant | None:
    return next((v for v in deployment.variants if v.shadow), None)


def deployment_label(deployment: Deployment) -> str:
    """The metrics label and the v2 model name: ``{project}.{deployment}``."""
    return f"{deployment.project_slug}.{deployment.name}"


def key_hash(key: str | None) -> str | None:
    return None if key is None else hashlib.sha256(key.encode()).hexdigest()


class ModelFile(Protocol):
    @property
    def format(self) -> str: ...
    @property
    def signature(self) -> dict[str, Any]: ...
    @property
    def path(self) -> Path: ...


class ModelFiles(Protocol):
    async def model_file(self, variant: Any) -> ModelFile: ...
    def has_onnx(self, model_version_id: str) -> bool: ...
