"""What every concurrency test checks at the end: the store and the rows agree."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from tests.integration.registry.support import Platform

from armillary.app import storage_reference_sources
from armillary.kit.db import utcnow
from armillary.kit.storage.doctor import Findings, examine, gather_references
from armillary.registry.components import registry_of


async def findings(platform: Platform | FastAPI) -> Findings:
    """The doctor's view with no grace period: every object is judged."""
    app = platform.app if isinstance(platform, Platform) else platform
    runtime = app.state.runtime
    async with runtime.db.read_only() as session:
        references = await gather_references(session, storage_reference_sources())
    return await examine(
        registry_of(runtime).store,
        references,
        now=utcnow() + timedelta(seconds=1),
        grace=timedelta(0),
    )


async def assert_rows_and_objects_agree(platform: Platform | FastAPI, *, under: str) -> None:
    """No committed row points at a missing object, and every object ``under`` a path part
    (``/models/``, ``/datasets/``, ``/code/``, ``/jobs/``) belongs to a committed row."""
    found = await findings(platform)
    assert found.missing == []
    assert [o.key for o in found.orphans if under in o.key] == []
