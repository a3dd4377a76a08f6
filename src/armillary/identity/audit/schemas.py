from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict


class AuditRecordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    seq: int
    occurred_at: datetime
    service: str
    actor_id: UUID | None
    actor_label: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
    client_address: str | None
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    records_checked: int
    last_seq: int
    checkpoint_seq: int | None
    problems: list[str]
