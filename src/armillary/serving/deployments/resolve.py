"""Deployments as predict uses them: resolved to model versions, cached in memory, replaced
(never mutated) when an event says they changed, so a request in flight keeps the object it
got while the next one sees the new configuration."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import structlog

from armillary.contracts.registry import MODEL_FILE_ONNX, MODEL_FILE_SKOPS
from armillary.kit.db import Database
from armillary.kit.storage import ObjectStore

from . import repository as repo
from . import service
from .artifacts import ArtifactCache, ModelFile, ModelUnavailable
from .models import Deployment, DeploymentConfig
from .service import ModelResolver

log = structlog.get_logger("armillary.serving.directory")


@dataclass(frozen=True, slots=True)
class ResolvedVariant:
    name: str
    model: str
    model_version: int
    model_version_id: str
    weight: float
    shadow: bool
    alias: str | None


@dataclass(frozen=True, slots=True)
class ResolvedDeployment:
    id: uuid.UUID
    project_id: uuid.UUID
    project_slug: str
    name: str
    config_version: int
    routing_mode: Literal["sticky", "random"]
    variants: tuple[ResolvedVariant, ...]
    policy: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Entry:
    resolved: ResolvedDeployment
    loaded_at: float
    # (model, alias) pairs the configuration follows, resolved or not.
    follows: frozenset[tuple[str, str]]


class DeploymentDirectory:
    """Resolved deployments of this process, by ``(project, deployment)`` (slug or id, name
    or id). Entries are replaced whole on ``serving.deployment_changed`` and
    ``registry.alias_moved``, and re-read after ``ttl`` seconds whatever happens (events reach
    one process of a distributed deployment)."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        cache_root: Path,
        ttl: float,
        resolver: Callable[[], ModelResolver],
    ) -> None:
        self._db = db
        self._resolver = resolver
        self._ttl = ttl
        self._files = ArtifactCache(store, cache_root)
        self._entries: dict[uuid.UUID, _Entry] = {}
        self._refs: dict[tuple[str, str], uuid.UUID] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[ResolvedDeployment | None]] = {}
        # What the registry said about each model version (artifact keys among it).
        self._versions: dict[str, dict[str, Any]] = {}
        # Bumped by every invalidation: a load that began before one does not cache its result.
        self._epoch = 0

    async def get(self, project: str, deployment: str) -> ResolvedDeployment | None:
        """The deployment as it serves now, or None when there is no such live deployment."""
        ref = (project, deployment)
        deployment_id = self._refs.get(ref)
        entry = self._entries.get(deployment_id) if deployment_id is not None else None
        if entry is not None:
            if time.monotonic() - entry.loaded_at >= self._ttl:
                # Stale: answer with it while a fresh copy loads (no request waits for it).
                self._start(ref)
            return entry.resolved
        return await asyncio.shield(self._start(ref))

    def _start(self, ref: tuple[str, str]) -> asyncio.Future[ResolvedDeployment | None]:
        """The load of ``ref`` in progress, started if none is: one load per deployment
        however many requests miss at once."""
        loading = self._loading.get(ref)
        if loading is not None:
            return loading
        loading = asyncio.ensure_future(self._load(ref))
        self._loading[ref] = loading

        def done(future: asyncio.Future[ResolvedDeployment | None]) -> None:
            if self._loading.get(ref) is future:
                del self._loading[ref]
            if not future.cancelled() and future.exception() is not None:
                log.warning("serving.directory_load_failed", error=str(future.exception()))

        loading.add_done_callback(done)
        return loading

    async def _load(self, ref: tuple[str, str]) -> ResolvedDeployment | None:
        epoch = self._epoch
        async with self._db.read_only() as session:
            found = await repo.live_with_config(session, *ref)
        if found is None:
            gone = self._refs.pop(ref, None)
            if gone is not None:
                self._entries.pop(gone, None)
            return None
        deployment, config = found
        resolved = await self._resolve(deployment, config)
        if self._epoch == epoch:
            follows = frozenset(
                (v["model"], v["alias"]) for v in config.variants if v.get("alias") is not None
            )
            self._entries[deployment.id] = _Entry(resolved, time.monotonic(), follows)
            self._refs[ref] = deployment.id
        return resolved

    async def _resolve(
        self, deployment: Deployment, config: DeploymentConfig
    ) -> ResolvedDeployment:
        resolver = self._resolver()
        answers = await asyncio.gather(
            *(
                resolver.resolve(
                    deployment.project_id, v["model"], version=v["version"], alias=v["alias"]
                )
                for v in config.variants
            )
        )
        variants: list[ResolvedVariant] = []
        for spec, answer in zip(config.variants, answers, strict=True):
            if answer is None:
                # Its version or alias is gone since it was configured: it cannot answer.
                log.warning(
                    "serving.variant_unresolved",
                    deployment_id=str(deployment.id),
                    variant=spec["name"],
                )
                continue
            version_id = str(answer["model_version_id"])
            self._versions[version_id] = answer
            variants.append(
                ResolvedVariant(
                    name=spec["name"],
                    model=spec["model"],
                    model_version=int(answer["version"]),
                    model_version_id=version_id,
                    weight=float(spec["weight"]),
                    shadow=bool(spec["shadow"]),
                    alias=spec.get("alias"),
                )
            )
        return ResolvedDeployment(
            id=deployment.id,
            project_id=deployment.project_id,
            project_slug=deployment.project_slug,
            name=deployment.name,
            config_version=deployment.config_version,
            routing_mode=config.routing.get("mode", "sticky"),
            variants=tuple(variants),
            policy=dict(config.policy),
        )

    def invalidate(self, deployment_id: uuid.UUID) -> None:
        """Drop a deployment; the next request reads it again."""
        self._epoch += 1
        self._entries.pop(deployment_id, None)

    def clear(self) -> None:
        """Drop every deployment and version answer (this process may have missed changes)."""
        self._epoch += 1
        self._entries.clear()
        self._versions.clear()

    async def alias_moved(self, project_id: uuid.UUID, model: str, alias: str) -> int:
        """Re-resolve the cached deployments that follow ``alias`` of ``model``; returns how
        many. Each is swapped for its new object in one assignment."""
        self._epoch += 1
        following = [
            entry.resolved
            for entry in list(self._entries.values())
            if entry.resolved.project_id == project_id and (model, alias) in entry.follows
        ]
        for resolved in following:
            try:
                await self._load((str(project_id), str(resolved.id)))
            except Exception:
                # The next request loads it again.
                log.exception("serving.re_resolve_failed", deployment_id=str(resolved.id))
                self._entries.pop(resolved.id, None)
        return len(following)

    async def version_changed(self, model_version_id: str) -> int:
        """Re-resolve the cached deployments that serve ``model_version_id`` (its model files
        changed: its ONNX export arrived); returns how many."""
        self._epoch += 1
        self._versions.pop(model_version_id, None)
        serving = [
            entry.resolved
            for entry in list(self._entries.values())
            if any(v.model_version_id == model_version_id for v in entry.resolved.variants)
        ]
        for resolved in serving:
            try:
                await self._load((str(resolved.project_id), str(resolved.id)))
            except Exception:
                log.exception("serving.re_resolve_failed", deployment_id=str(resolved.id))
                self._entries.pop(resolved.id, None)
        return len(serving)

    def drift_reference(self, model_version_id: str) -> dict[str, Any] | None:
        """The training reference the registry stored with the version (ADR 0032)."""
        answer = self._versions.get(model_version_id)
        return None if answer is None else answer.get("drift_reference")

    def has_onnx(self, model_version_id: str) -> bool:
        """Whether the registry's latest answer for the version lists ``model.onnx``."""
        answer = self._versions.get(model_version_id)
        return answer is not None and MODEL_FILE_ONNX in answer["artifacts"]

    async def model_file(self, variant: ResolvedVariant) -> ModelFile:
        """The variant's model file on local disk: ``model.onnx`` when the version has one,
        else ``model.skops``; downloaded once and verified against its SHA-256."""
        answer = self._versions.get(variant.model_version_id)
        if answer is None:
            raise ModelUnavailable("The model version of this variant is not resolved")
        artifacts: dict[str, dict[str, Any]] = answer["artifacts"]
        for name, fmt in ((MODEL_FILE_ONNX, "onnx"), (MODEL_FILE_SKOPS, "skops")):
            info = artifacts.get(name)
            if info is None:
                continue
            path = await self._files.fetch(
                variant.model_version_id,
                name,
                key=info["key"],
                sha256=info["sha256"],
                size_bytes=int(info["size_bytes"]),
            )
            return ModelFile("onnx" if fmt == "onnx" else "skops", answer["signature"], path)
        raise ModelUnavailable("The model version has no model file")

    async def auto_rollback(self, deployment_id: uuid.UUID, variant_name: str, reason: str) -> int:
        """Take ``variant_name`` out of the deployment (the platform's own change, audited, as a
        new configuration of kind ``auto_rollback``); returns the new configuration version."""
        async with self._db.unit_of_work() as session:
            version = await service.auto_rollback(session, deployment_id, variant_name, reason)
        self.invalidate(deployment_id)
        return version
