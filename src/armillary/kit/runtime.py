"""The resources one process shares between its services, built once and passed down."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from armillary.kit.cache import Cache, MemoryCache, create_cache
from armillary.kit.database_unavailable import unavailable_reason
from armillary.kit.db import SERVICE_SCHEMAS, Database
from armillary.kit.events import EventBus
from armillary.kit.secretbox import derive_key
from armillary.kit.security_events import SecurityEventSampler
from armillary.kit.settings import Settings

if TYPE_CHECKING:
    from armillary.kit.authz import AccessControl
    from armillary.kit.ratelimit import RateLimiter

Hook = Callable[["Runtime"], Awaitable[None]]

log = structlog.get_logger("armillary.runtime")


@dataclass
class Runtime:
    settings: Settings
    db: Database
    bus: EventBus
    cache: Cache
    access: AccessControl | None = None
    limiter: RateLimiter | None = None
    # Service-owned components (keyed by service name), so kit needs no knowledge of them.
    services: dict[str, object] = field(default_factory=dict)
    startup_hooks: list[Hook] = field(default_factory=list)
    shutdown_hooks: list[Hook] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    # Which refused tokens and hidden-project reads reach the audit log (kit.security_events).
    security_events: SecurityEventSampler = field(default_factory=SecurityEventSampler)
    # What this process is: a service's name, "api" (the one-process shape), worker, scheduler.
    role: str = "api"

    @classmethod
    def create(
        cls, settings: Settings, *, role: str = "api", schemas: Sequence[str] = SERVICE_SCHEMAS
    ) -> Runtime:
        """``schemas``: the services whose tables this process reads and writes."""
        db = Database.from_settings(settings, role=role, schemas=schemas)
        bus = EventBus(db)
        bus.attach()
        if settings.event_transport == "rabbitmq":
            # Imported here: aio-pika stays out of processes (and CLI commands) that never use it.
            from armillary.kit.broker import BrokerConfig, RabbitTransport

            bus.transport = RabbitTransport(bus, BrokerConfig.from_settings(settings))
        return cls(settings=settings, db=db, bus=bus, cache=_cache(settings), role=role)

    def require_access(self) -> AccessControl:
        if self.access is None:
            raise RuntimeError("access control is not wired: the composition root must set it")
        return self.access

    async def start(self, *, relay_interval: float = 2.0) -> None:
        if self.settings.profile == "production":
            # Names only: a secret manager or a file should hold these in production.
            plain = self.settings.plain_environment_secrets()
            if plain:
                log.warning("secrets_from_environment", settings=plain)
        if self.bus.transport is not None:
            # Consumers are all subscribed by now (services install before the start).
            await self.bus.transport.start()
        for hook in self.startup_hooks:
            await self._when_database_answers(hook)
        self.tasks.append(asyncio.create_task(self.bus.run_relay(relay_interval)))
        # Everything imported and built at start-up lives for the whole process: move it out
        # of the collector's sight, so collections during requests scan only request garbage.
        gc.collect()
        gc.freeze()

    async def _when_database_answers(self, hook: Hook) -> None:
        """Run a start-up hook, again with back-off while the database is away: a process
        may start before its database is up, or while it restarts, and must then wait for it
        rather than exit. (The hooks that touch the database are idempotent.)"""
        delay = 0.2
        while True:
            try:
                await hook(self)
                return
            except Exception as exc:
                if unavailable_reason(exc) is None:
                    raise
                log.warning("startup_waiting_for_database", retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks.clear()
        for hook in reversed(self.shutdown_hooks):
            await hook(self)
        if self.bus.transport is not None:
            await self.bus.transport.stop()
        await self.cache.close()
        await self.db.dispose()


def _cache(settings: Settings) -> Cache:
    if not settings.redis_url:
        return MemoryCache()
    # Derived from the platform secret, which Redis never sees: see kit.cache.
    key = derive_key(settings.resolved_secret_key(), "cache")
    return create_cache(settings.redis_url, key, ca_file=settings.ca_file("redis"))
