"""Which run's files a request may touch: the run must be the project's (another project's
run is not found), a proxied path must name the run's own experiment, and writes go to
active runs only."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.authz import ProjectAccess
from armillary.kit.storage.keys import run_artifact_key, run_artifacts_prefix

from ..runs import service as runs
from ..runs.models import Run
from ..wire import external_id
from ..wire_errors import DoesNotExist
from .paths import ProxiedPath


@dataclass(frozen=True)
class RunFiles:
    """A run's place in the object store."""

    project_id: uuid.UUID
    run_id: uuid.UUID
    artifact_uri: str

    @property
    def prefix(self) -> str:
        return run_artifacts_prefix(self.project_id, self.run_id)

    def key(self, path: str) -> str:
        """The key of ``path`` (checked by ``paths.relative_path``); ``""`` is the prefix."""
        return run_artifact_key(self.project_id, self.run_id, path) if path else self.prefix


def _files(run: Run) -> RunFiles:
    return RunFiles(run.project_id, run.id, run.artifact_uri)


async def of_run(
    session: AsyncSession, access: ProjectAccess, run_ref: str, *, for_write: bool = False
) -> RunFiles:
    run = await (runs.get_active if for_write else runs.get)(session, access, run_ref)
    return _files(run)


async def of_proxied(
    session: AsyncSession, access: ProjectAccess, where: ProxiedPath, *, for_write: bool = False
) -> RunFiles:
    run = await (runs.get_active if for_write else runs.get)(session, access, where.run_ref)
    if external_id(run.experiment_id) != where.experiment_ref:
        raise DoesNotExist(f"Run with id={where.run_ref} not found")
    return _files(run)
