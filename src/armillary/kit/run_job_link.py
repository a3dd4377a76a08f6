"""The seal on a tracking run's job link (ADR 0041).

A version registered from a run inherits the lineage of the job that started the run: the
job's workflow and the dataset versions it ingested. Only the tracking service knows which
job that was (from the job token that created the run), and it asks the registry's public
``from-run`` route with the caller's token. Without a seal, a caller could call that route
itself and name another job of the project. The tracking service seals the link with a key
derived from the platform secret, which every service process has; the registry takes a
link only with a seal it can verify (under the current secret or a previous one)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from uuid import UUID

from armillary.kit.secretbox import derive_key

_PURPOSE = "tracking.run-job-link"


def _message(project_id: UUID, run_id: UUID, job_id: UUID, task: str) -> bytes:
    return "\n".join((str(project_id), str(run_id), str(job_id), task)).encode()


def seal(secret: str, project_id: UUID, run_id: UUID, job_id: UUID, task: str) -> str:
    """The hex HMAC-SHA256 that binds the run to the job and task, within the project."""
    key = derive_key(secret, _PURPOSE)
    return hmac.new(key, _message(project_id, run_id, job_id, task), hashlib.sha256).hexdigest()


def verified(
    secrets: Sequence[str], project_id: UUID, run_id: UUID, job_id: UUID, task: str, given: str
) -> bool:
    """Whether ``given`` is the seal of this link under one of ``secrets``."""
    return any(
        hmac.compare_digest(seal(secret, project_id, run_id, job_id, task), given)
        for secret in secrets
    )
