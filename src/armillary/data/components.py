"""The data service's long-lived parts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from armillary.kit.runtime import Runtime
from armillary.kit.storage import ObjectStore, StorageSettings, open_object_store

from .ingest.signer import ExternalObjectSigner
from .settings import DataSettings

SERVICE = "data"


@dataclass
class Data:
    settings: DataSettings
    storage_settings: StorageSettings
    store: ObjectStore
    runtime: Runtime
    ingest_signer: ExternalObjectSigner
    background: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        runtime: Runtime,
        *,
        settings: DataSettings | None = None,
        storage_settings: StorageSettings | None = None,
    ) -> Data:
        storage_settings = storage_settings or StorageSettings()
        store = open_object_store(
            storage_settings,
            home=runtime.settings.home,
            signing_secret=runtime.settings.resolved_secret_key(),
        )
        settings = settings or DataSettings()
        signer = ExternalObjectSigner(
            storage_settings,
            frozenset(settings.ingest_allowed_buckets),
            settings.ingest_presign_ttl_seconds,
        )
        return cls(settings, storage_settings, store, runtime, signer)

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background job; kept referenced until done, cancelled at shutdown."""
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def stop(self) -> None:
        for task in list(self.background):
            task.cancel()
        for task in list(self.background):
            # Shutting down: a cancelled or failed job was already logged.
            with contextlib.suppress(BaseException):
                await task


def data_of(runtime: Runtime) -> Data:
    component = runtime.services[SERVICE]
    assert isinstance(component, Data)  # noqa: S101 - wired by data.app.install
    return component


def current_data(request: Request) -> Data:
    return data_of(request.app.state.runtime)
