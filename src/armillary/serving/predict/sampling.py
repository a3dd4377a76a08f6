"""Sampled requests and responses, kept as JSONL objects for later drift analysis.

Keys are built here from ids only (DESIGN §8), validated the way ``kit.storage.keys`` does:
``projects/{project_id}/deployments/{deployment_id}/samples/{YYYY-MM-DD}/{batch_id}.jsonl``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID, uuid4

import orjson

from armillary.kit.storage import InvalidObjectKey, validate_key


def sample_key(project_id: UUID, deployment_id: UUID, day: date, batch_id: UUID) -> str:
    """The object key of one batch of samples of a deployment on a day (UTC)."""
    for value, what in ((project_id, "project_id"), (deployment_id, "deployment_id")):
        if not isinstance(value, UUID):
            raise InvalidObjectKey(f"{what} must be a UUID")
    if not isinstance(batch_id, UUID):
        raise InvalidObjectKey("batch_id must be a UUID")
    # datetime is a date subclass; a day is only ever a date.
    if not isinstance(day, date) or isinstance(day, datetime):
        raise InvalidObjectKey("day must be a date")
    return validate_key(
        f"projects/{project_id}/deployments/{deployment_id}/samples/"
        f"{day.isoformat()}/{batch_id}.jsonl"
    )


def sampled(rate: float, rng: random.Random | None = None) -> bool:
    """Whether this request is one of the ``rate`` share that is sampled."""
    if rate <= 0:
        return False
    if rate >= 1:
        return True
    return (rng or random).random() < rate


@dataclass
class Sample:
    project_id: UUID
    deployment_id: UUID
    at: datetime
    record: dict[str, Any]


@dataclass
class SampleBatches:
    """Samples grouped into one JSONL object per deployment and day."""

    groups: dict[tuple[UUID, UUID, date], list[bytes]] = field(default_factory=dict)

    def add(self, sample: Sample) -> None:
        line = orjson.dumps(sample.record, option=orjson.OPT_SERIALIZE_NUMPY)
        key = (sample.project_id, sample.deployment_id, sample.at.date())
        self.groups.setdefault(key, []).append(line)

    def objects(self) -> list[tuple[str, bytes, int]]:
        """(key, JSONL bytes, number of samples) of every group."""
        return [
            (sample_key(project, deployment, day, uuid4()), b"\n".join(lines) + b"\n", len(lines))
            for (project, deployment, day), lines in self.groups.items()
        ]
