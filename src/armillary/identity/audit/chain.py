"""Hashing and signing of the audit chain: pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

import orjson

GENESIS = "0" * 64


def canonical(fields: dict[str, Any]) -> bytes:
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def record_fields(
    *,
    seq: int,
    event_id: str,
    occurred_at: datetime,
    service: str,
    actor_id: str | None,
    actor_label: str | None,
    action: str,
    resource_type: str | None,
    resource_id: str | None,
    outcome: str,
    client_address: str | None,
    user_agent: str | None,
    request_id: str | None,
    details: dict[str, Any],
) -> dict[str, Any]:
    """The fields a record's hash covers, normalised so SQLite and PostgreSQL agree."""
    if occurred_at.tzinfo is None:
        occurred_at = occurred_at.replace(tzinfo=UTC)
    return {
        "seq": seq,
        "event_id": event_id,
        "occurred_at": occurred_at.astimezone(UTC).isoformat(),
        "service": service,
        "actor_id": actor_id,
        "actor_label": actor_label,
        "action": action,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "outcome": outcome,
        "client_address": client_address,
        "user_agent": user_agent,
        "request_id": request_id,
        "details": details,
    }


def link_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + canonical(fields)).hexdigest()


def checkpoint_signature(key: bytes, seq: int, head_hash: str) -> str:
    return hmac.new(key, f"armillary-audit:{seq}:{head_hash}".encode(), hashlib.sha256).hexdigest()


def signature_valid(key: bytes, seq: int, head_hash: str, signature: str) -> bool:
    return hmac.compare_digest(checkpoint_signature(key, seq, head_hash), signature)


def derive_key(secret: str) -> bytes:
    """A key for checkpoint signatures only, derived from the platform secret."""
    return hashlib.sha256(b"armillary-audit-checkpoint\x00" + secret.encode()).digest()
