"""A job registers a version once per set of artifacts: a task that retries, or a task that
calls ``register`` twice, gets the version its first call created (F11), not a new number.

The key is the job, the task and the SHA-256 of every artifact (by name); a unique index on
(model, key) keeps it so even when two calls race.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import ModelVersion


class Artifact(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def sha256(self) -> str: ...


def registration_key(job_id: uuid.UUID, task: str, artifacts: Iterable[Artifact]) -> str:
    """What makes two registrations the same one."""
    digest = hashlib.sha256(f"{job_id}\n{task}\n".encode())
    for artifact in sorted(artifacts, key=lambda a: a.name):
        digest.update(f"{artifact.name}={artifact.sha256}\n".encode())
    return digest.hexdigest()


async def registered_before(
    session: AsyncSession, model_id: uuid.UUID, key: str
) -> ModelVersion | None:
    """The version this job already registered from these artifacts, if any."""
    found: ModelVersion | None = await session.scalar(
        select(ModelVersion).where(
            ModelVersion.model_id == model_id, ModelVersion.job_registration_key == key
        )
    )
    return found
