"""Holds: recorded from the registry's events; consulted before a dataset or version is
deleted (409 naming the holders, unless a platform admin forces it)."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from armillary.contracts.registry import ModelVersionRegistered
from armillary.kit.authz import ProjectAccess
from armillary.kit.errors import Conflict, Forbidden

from ..datasets.models import Dataset, DatasetVersion
from . import repository as repo
from .models import DatasetHold
from .schemas import HoldOut

log = structlog.get_logger("armillary.data.holds")


class DatasetHeld(Conflict):
    title = "Dataset version held"


async def record_registration(
    session: AsyncSession, event: ModelVersionRegistered, event_id: uuid.UUID
) -> int:
    """Hold each dataset version the model version was trained or evaluated on; returns how
    many holds were added (none for one already recorded). Versions of another project, or
    unknown ones, are skipped with a warning: an event never reaches across projects."""
    added = 0
    # Sorted, so concurrent consumers lock datasets in one order (no deadlock).
    used = sorted({(u.dataset_id, u.version): u for u in event.datasets}.items())
    for (dataset_id, number), entry in used:
        dataset = await repo.lock_dataset(session, dataset_id)
        if dataset is None or dataset.project_id != event.project_id:
            log.warning("holds.unknown_dataset", dataset_id=str(dataset_id))
            continue
        version = await repo.version(session, dataset.id, number)
        if version is None:
            log.warning("holds.unknown_version", dataset_id=str(dataset_id), version=number)
            continue
        if version.sha256 != entry.sha256:
            # Still held: keeping too much is the safe side of a disagreement.
            log.warning("holds.sha256_mismatch", dataset_id=str(dataset_id), version=number)
        if await repo.exists(session, version.id, event.model_version_id):
            continue
        session.add(
            DatasetHold(
                project_id=event.project_id,
                dataset_id=dataset.id,
                version_id=version.id,
                model_id=event.model_id,
                model=event.model,
                model_version_id=event.model_version_id,
                model_version=event.version,
                event_id=event_id,
            )
        )
        added += 1
    await session.flush()
    return added


def hold_out(hold: DatasetHold) -> HoldOut:
    return HoldOut(
        model=hold.model, version=hold.model_version, model_version_id=hold.model_version_id
    )


async def holds_of(session: AsyncSession, version: DatasetVersion) -> list[HoldOut]:
    found = await repo.of_versions(session, [version.id])
    return [hold_out(h) for h in found.get(version.id, [])]


def check_force(access: ProjectAccess, force: bool) -> None:
    """Only a platform admin (never through a job token) may delete what is held."""
    if force and not access.principal.is_admin:
        raise Forbidden("Only a platform admin may force the deletion of held data")


def _names(holds: list[dict[str, Any]]) -> str:
    return ", ".join(f"{h['model']} v{h['version']}" for h in holds)


async def guard_version_delete(
    session: AsyncSession, dataset: Dataset, version: DatasetVersion, *, force: bool
) -> list[dict[str, Any]]:
    """The holds on ``version`` (for the audit entry of a forced delete); 409 naming them
    unless ``force`` (checked by :func:`check_force` first)."""
    holds = [h.model_dump(mode="json") for h in await holds_of(session, version)]
    if holds and not force:
        raise DatasetHeld(
            f"Version {version.number} of dataset {dataset.name!r} is held by model version(s) "
            f"{_names(holds)}; a platform admin may delete it with force=true",
            extra={"holds": holds},
        )
    return holds


async def guard_dataset_delete(
    session: AsyncSession, dataset: Dataset, *, force: bool
) -> list[dict[str, Any]]:
    """The holds on the dataset's live versions, each with its ``dataset_version``; 409
    naming them unless ``force``."""
    holds = [
        {**hold_out(hold).model_dump(mode="json"), "dataset_version": number}
        for hold, number in await repo.on_live_versions(session, dataset.id)
    ]
    if holds and not force:
        held = sorted({h["dataset_version"] for h in holds})
        raise DatasetHeld(
            f"Dataset {dataset.name!r} has version(s) {', '.join(map(str, held))} held by "
            f"model version(s) {_names(holds)}; a platform admin may delete it with force=true",
            extra={"holds": holds},
        )
    return holds
