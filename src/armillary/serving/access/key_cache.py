"""Live API keys, cached, so a prediction does not probe the database for its key
(issue 18, item 3), and revoked at once all the same.

Entries live in the runtime's cache: Redis when one is configured (shared by every
process), else each process's memory. A revocation writes a *tombstone* under the key's
hash in the revoking request (after its commit), and again from the ``api_key_revoked``
event: broadcast to every process (each writes its own cache; one that may have missed
broadcasts drops its cached keys), and once more by a consumer that is retried until the
cache takes it (Redis away at the time). A reader that
missed fills the cache only if the name is free (``SET NX``), so a reader that read the key
as live just before the revocation cannot overwrite the tombstone with a live entry. Either
way, an entry lives at most :data:`TTL_SECONDS`, and a tombstone at least as long.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from armillary.kit.cache import Cache

TTL_SECONDS = 60
# Longer than a live entry, so no live entry written before it can outlive it.
TOMBSTONE_TTL_SECONDS = 2 * TTL_SECONDS
_REVOKED = {"revoked": True}


@dataclass(frozen=True, slots=True)
class LiveKey:
    id: uuid.UUID
    name: str
    key_hash: str
    last_used_at: datetime | None
    deployment_id: uuid.UUID


def _name(digest: str) -> str:
    return f"serving:api-key:{digest}"


async def lookup(cache: Cache, digest: str) -> LiveKey | Literal[False] | None:
    """The cached key; False when it is known revoked; None when the cache does not know."""
    entry: Any = await cache.get(_name(digest))
    if not isinstance(entry, dict):
        return None
    if entry.get("revoked"):
        return False
    used = entry.get("last_used_at")
    return LiveKey(
        id=uuid.UUID(entry["id"]),
        name=entry["name"],
        key_hash=entry["key_hash"],
        last_used_at=datetime.fromisoformat(used) if used else None,
        deployment_id=uuid.UUID(entry["deployment_id"]),
    )


async def remember(cache: Cache, digest: str, key: LiveKey) -> None:
    entry = {
        "id": str(key.id),
        "name": key.name,
        "key_hash": key.key_hash,
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "deployment_id": str(key.deployment_id),
    }
    await cache.add(_name(digest), entry, TTL_SECONDS)


async def forget_all(cache: Cache) -> None:
    """Drop every cached key (this process may have missed revocations): the next lookups
    read the database."""
    await cache.delete_pattern(_name("*"))


class TombstoneNotWritten(Exception):
    """The cache did not take the tombstone (Redis away): the event is retried."""


async def revoked(cache: Cache, digest: str) -> None:
    """Mark the key revoked. Raises :class:`TombstoneNotWritten` when the cache did not take
    it (the cache's ``set`` only logs an unreachable Redis), so the event is retried."""
    name = _name(digest)
    await cache.set(name, _REVOKED, TOMBSTONE_TTL_SECONDS)
    if await cache.get(name) != _REVOKED:
        raise TombstoneNotWritten
