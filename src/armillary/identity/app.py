"""Wires the identity service into a runtime, and its standalone app (distributed shape)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI

from armillary.contracts.events import (
    AuditEntry,
    JobStatusChanged,
    SigningKeysChanged,
    TaskRunStatusChanged,
)
from armillary.kit.events import Delivery
from armillary.kit.runtime import Runtime
from armillary.kit.service_status import service_status_router

from .audit.api import router as audit_router
from .auth import job_token_revocations as revocations
from .auth.api import router as auth_router
from .auth.internal_api import internal_router
from .bootstrap import ensure_first_admin, ensure_signing_key
from .components import SERVICE, Identity
from .keys.schedule import KeySchedule
from .projects.api import router as projects_router
from .tokens.api import router as tokens_router
from .users.api import router as users_router

# The public routes, served to clients by every composition.
ROUTERS: list[APIRouter] = [
    auth_router,
    tokens_router,
    users_router,
    projects_router,
    audit_router,
    service_status_router("identity"),
]
# Matched before the walk over every router's routes (kit.first_routes, ADR 0045): the
# project page is the authenticated read every client makes most.
HOT_ROUTES = ("projects.get",)
# Routes only other services call (e.g. minting job tokens): the internal app alone serves them.
INTERNAL_ROUTERS: list[APIRouter] = [internal_router]


def install(runtime: Runtime) -> Identity:
    """Register the service's components, event consumers and start-up steps."""
    identity = Identity.create(runtime)
    runtime.services[SERVICE] = identity
    runtime.bus.subscribe(
        AuditEntry.TYPE, "identity.audit_chain", identity.audit_log.append, serial=True
    )

    schedule = KeySchedule(runtime.db, identity.keyring)

    async def keys_changed(_delivery: Delivery) -> None:
        identity.keyring.forget()
        schedule.poke()  # a rotation elsewhere sets retirement instants to wake for

    async def forget_key() -> None:
        identity.keyring.forget()
        schedule.poke()

    # Every process keeps its own copy of the active key: broadcast (ADR 0020).
    runtime.bus.broadcast(
        SigningKeysChanged.TYPE, "identity.keyring", keys_changed, drop_all=forget_key
    )
    runtime.bus.subscribe(
        JobStatusChanged.TYPE,
        "identity.job_tokens",
        revocations.job_status_changed,
        when=revocations.wants_job_event,
    )
    runtime.bus.subscribe(
        TaskRunStatusChanged.TYPE,
        "identity.job_tokens",
        revocations.task_run_status_changed,
        when=revocations.wants_task_event,
    )

    async def startup(rt: Runtime) -> None:
        await ensure_signing_key(identity)
        await ensure_first_admin(identity)
        rt.tasks.append(asyncio.create_task(schedule.run(), name="identity.key_schedule"))

    async def shutdown(_rt: Runtime) -> None:
        schedule.stop()

    runtime.startup_hooks.append(startup)
    runtime.shutdown_hooks.append(shutdown)
    return identity


def create_internal_app(runtime: Runtime) -> FastAPI:
    """The identity routes, internal ones included, on a runtime someone else starts (the
    embedded composition), for other services' :class:`~.client.IdentityClient`. Never
    exposed to clients."""
    from armillary.kit.app_factory import build_app

    return build_app(
        runtime,
        title="Armillary identity (internal)",
        routers=[*ROUTERS, *INTERNAL_ROUTERS],
        hot_routes=HOT_ROUTES,
        edge=False,
        manage_runtime=False,
    )
