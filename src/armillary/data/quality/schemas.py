from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel


class QualityReportOut(BaseModel):
    id: UUID
    dataset: str
    version: int
    job_id: UUID | None
    task: str | None
    passed: bool
    score: float
    # The report as submitted (``contracts.data.QualityReportIn``, extra fields included).
    report: dict[str, Any]
    created_by: UUID
    created_at: datetime
