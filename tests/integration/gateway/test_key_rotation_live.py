"""Two-phase key rotation end to end (ADR 0023): two copies of the platform on one database,
events over a private RabbitMQ node, Envoy in front (JWKS cache_duration 2 s, publish lead
3 s). A rotation on copy A: during the pending phase both copies' tokens pass the gateway;
within 1 s of activation both sign with the new kid; no fresh token is refused at the gateway
at any point (polled every 100 ms); after the grace period the old kid is refused by the
services at once and by the gateway within cache_duration."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for
from tests.faults.private_rabbitmq import PrivateRabbit, private_rabbitmq
from tests.integration.gateway.support import gateway_for, upstream_requests
from tests.security.test_tokens import ME, _kid

from armillary.app import create_app
from armillary.identity.components import identity_of
from armillary.kit.db import utcnow
from armillary.kit.settings import Settings

CACHE = 2  # the gateway's JWKS cache_duration
LEAD = 3  # must exceed it
GRACE = 3


@pytest.fixture(scope="module")
def rabbit() -> Iterator[PrivateRabbit]:
    server = private_rabbitmq()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
async def copies(
    rabbit: PrivateRabbit, settings_factory: Callable[..., Settings]
) -> AsyncIterator[list[tuple[FastAPI, httpx.AsyncClient]]]:
    # The JWKS cache TTL stays at 30 s: only the broadcast can make these deadlines.
    settings = settings_factory(
        event_transport="rabbitmq",
        rabbitmq_url=rabbit.url,
        redis_url=None,
        signing_key_publish_lead_seconds=LEAD,
        signing_key_grace_seconds=GRACE,
        jwks_cache_ttl_seconds=30,
        rate_limit_auth="100000/minute",
    )
    made = []
    async with contextlib.AsyncExitStack() as stack:
        for _copy in ("a", "b"):
            app = create_app(settings, configure_logs=False)
            await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
            await app.state.runtime.bus.transport.connected.wait()
            made.append((app, await stack.enter_async_context(client_for(app))))
        yield made


@dataclass
class Issued:
    copy: str
    started: datetime
    ended: datetime
    kid: str
    status: int  # at the gateway


async def login(client: httpx.AsyncClient) -> str:
    return str((await Api(client).login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"])


async def test_rotation_reaches_every_copy_and_the_gateway_refuses_nothing_fresh(
    copies: list[tuple[FastAPI, httpx.AsyncClient]], tmp_path: Path
) -> None:
    (app_a, http_a), (_app_b, http_b) = copies
    clients = {"a": http_a, "b": http_b}
    async with (
        gateway_for(app_a, tmp_path, gateway_jwks_cache_seconds=str(CACHE)) as edge,
        httpx.AsyncClient(base_url=edge.url, timeout=10) as gateway,
    ):
        old = {copy: await login(client) for copy, client in clients.items()}
        old_kid = _kid(old["a"])
        assert _kid(old["b"]) == old_kid
        for token in old.values():
            assert (await gateway.get(ME, headers=auth(token))).status_code == 200

        issued: list[Issued] = []
        old_refused_at_gateway: list[int] = []
        stop = asyncio.Event()
        retires_at: datetime | None = None

        async def poll() -> None:
            """Every 100 ms: a fresh token from each copy, and the old ones until their
            grace ends, through the gateway."""
            while not stop.is_set():
                for copy, client in clients.items():
                    started = utcnow()
                    token = await login(client)
                    response = await gateway.get(ME, headers=auth(token))
                    issued.append(
                        Issued(copy, started, utcnow(), _kid(token), response.status_code)
                    )
                    if retires_at is None or utcnow() < retires_at - timedelta(seconds=0.3):
                        response = await gateway.get(ME, headers=auth(old[copy]))
                        if response.status_code != 200:
                            old_refused_at_gateway.append(response.status_code)
                await asyncio.sleep(0.1)

        poller = asyncio.create_task(poll())
        try:
            await asyncio.sleep(0.5)
            rotated_at = utcnow()
            async with app_a.state.runtime.db.unit_of_work() as session:
                rotation = await identity_of(app_a.state.runtime).keyring.schedule(session)
            activates_at = rotation.activates_at
            retires_at = activates_at + timedelta(seconds=GRACE)

            # Grace over: each copy's services refuse the old kid at once (the broadcast).
            await asyncio.sleep(max(0.0, (retires_at - utcnow()).total_seconds()))
            for copy, client in clients.items():
                deadline = time.monotonic() + 1.0
                while (await client.get(ME, headers=auth(old[copy]))).status_code != 401:
                    assert time.monotonic() < deadline, f"copy {copy} still accepts the old kid"
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # fresh tokens keep passing after the retirement too
        finally:
            stop.set()
            await poller

        # The gateway refuses the old kid itself (the request reaches no service) within
        # cache_duration of the retirement.
        deadline = time.monotonic() + CACHE + 1.0 - (utcnow() - retires_at).total_seconds()
        while True:
            before = upstream_requests()
            response = await gateway.get(ME, headers=auth(old["a"]))
            if response.status_code == 401 and upstream_requests() == before:
                break
            assert time.monotonic() < deadline, "the gateway still accepts the retired kid"
            await asyncio.sleep(0.1)

    new_kid = rotation.kid
    refused = [entry for entry in issued if entry.status != 200]
    assert not refused, refused
    assert not old_refused_at_gateway, old_refused_at_gateway
    for copy in clients:
        mine = [entry for entry in issued if entry.copy == copy]
        pending = [e for e in mine if rotated_at <= e.started and e.ended < activates_at]
        assert pending, f"copy {copy} issued nothing in the pending phase"
        assert {entry.kid for entry in pending} == {old_kid}
        late = [e for e in mine if e.started >= activates_at + timedelta(seconds=1)]
        assert late, f"copy {copy} issued nothing after activation"
        assert {entry.kid for entry in late} == {new_kid}, copy
