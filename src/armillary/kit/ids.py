"""Identifiers in URLs: a path segment may be a name or an id."""

from __future__ import annotations

import uuid


def parse_uuid(value: str) -> uuid.UUID | None:
    """The UUID ``value`` spells, or None when it is not one (e.g. a slug or a name)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
