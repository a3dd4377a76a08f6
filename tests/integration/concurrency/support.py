"""What every concurrency test checks at the end: the store and the rows agree."""

from __future__ import annotations

from datetime import timedelta

from tests.integration.registry.support import Platform

from armillary.app import storage_reference_sources
from armillary.kit.db import utcnow
from armillary.kit.storage.doctor import Findings, examine, gather_references


async def findings(platform: Platform) -> Findings:
    """The doctor's view with no grace period: every object is judged."""
    runtime = platform.app.state.runtime
    async with runtime.db.read_only() as session:
        references = await gather_references(session, storage_reference_sources())
    return await examine(
        platform.registry.store, references, now=utcnow() + timedelta(seconds=1), grace=timedelta(0)
    )


async def assert_rows_and_objects_agree(platform: Platform, *, under: str) -> None:
    """No committed row points at a missing object, and every object ``under`` a path part
    (``/models/``, ``/datasets/``, ``/code/``) belongs to a committed row."""
    found = await findings(platform)
    assert found.missing == []
    assert [o.key for o in found.orphans if under in o.key] == []
