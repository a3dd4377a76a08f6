"""Two-phase signing-key rotation in one process (ADR 0023): a new key is published before it
signs, signs from its activation instant on, and the old one is refused once its grace ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth
from tests.security.test_tokens import ME, _kid, _published_kids, assert_401_problem
from typer.testing import CliRunner

from armillary.cli.main import app as cli
from armillary.identity.components import identity_of
from armillary.identity.keys.models import SigningKey
from armillary.kit.db import utcnow
from armillary.kit.settings import Settings

LEAD = 2
GRACE = 2


@pytest.fixture
def settings(settings_factory: Callable[..., Settings]) -> Settings:
    return settings_factory(signing_key_publish_lead_seconds=LEAD, signing_key_grace_seconds=GRACE)


async def until(check: Callable[[], Awaitable[bool]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_a_new_key_is_published_first_signs_at_activation_and_the_old_one_retires(
    app: FastAPI, api: Api
) -> None:
    runtime = app.state.runtime
    keyring = identity_of(runtime).keyring
    before = await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    old_kid = _kid(before["access_token"])

    async with runtime.db.unit_of_work() as session:
        rotation = await keyring.schedule(session)
    assert rotation.kid != old_kid
    assert rotation.activates_at > utcnow()

    # Pending: published at once, yet nothing signs with it.
    assert await _published_kids(api.client) == {old_kid, rotation.kid}
    pending = await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert utcnow() < rotation.activates_at, "the test machine was too slow to see the phase"
    assert _kid(pending["access_token"]) == old_kid

    # Activation: the cached key gives way at the instant, not when its TTL (30 s) is up.
    await asyncio.sleep(max(0.0, (rotation.activates_at - utcnow()).total_seconds()))
    after = await api.login(ADMIN_EMAIL, ADMIN_PASSWORD)
    assert _kid(after["access_token"]) == rotation.kid
    assert _kid(after["refresh_token"]) == rotation.kid
    # Grace: the old key still verifies.
    assert (await api.client.get(ME, headers=auth(before["access_token"]))).status_code == 200
    assert utcnow() < rotation.activates_at + timedelta(seconds=GRACE)

    # Grace over: the key schedule retires it, and the broadcast empties the JWKS cache.
    async def refused() -> bool:
        response = await api.client.get(ME, headers=auth(before["access_token"]))
        return response.status_code == 401

    await asyncio.sleep(max(0.0, (rotation.activates_at - utcnow()).total_seconds() + GRACE))
    await until(refused, timeout=1.0)
    assert_401_problem(await api.client.get(ME, headers=auth(before["access_token"])), "retired")
    assert (await api.client.get(ME, headers=auth(after["access_token"]))).status_code == 200
    assert await _published_kids(api.client) == {rotation.kid}
    async with runtime.db.unit_of_work() as session:
        old = await session.scalar(select(SigningKey).where(SigningKey.kid == old_kid))
        assert old is not None
        assert old.retired_at is not None


async def test_scheduled_rotation_is_two_phase_too(app: FastAPI, api: Api) -> None:
    runtime = app.state.runtime
    keyring = identity_of(runtime).keyring
    old_kid = _kid((await api.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"])
    keyring.rotation = timedelta(0)  # the current key is due
    try:
        async with runtime.db.unit_of_work() as session:
            await keyring.ensure(session)
    finally:
        keyring.rotation = timedelta(days=30)
    published = await _published_kids(api.client)
    assert old_kid in published
    assert len(published) == 2
    assert _kid((await api.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"]) == old_kid
    # A second check before activation schedules nothing more.
    async with runtime.db.unit_of_work() as session:
        await keyring.ensure(session)
    assert await _published_kids(api.client) == published


async def test_keys_rotate_prints_the_activation_and_now_warns(
    app: FastAPI, api: Api, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ARMILLARY_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ARMILLARY_SECRET_KEY", settings.resolved_secret_key())
    monkeypatch.setenv("ARMILLARY_HOME", str(tmp_path / "cli-home"))
    monkeypatch.setenv("ARMILLARY_SIGNING_KEY_PUBLISH_LEAD_SECONDS", "600")
    old_token = (await api.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"]
    old_kid = _kid(old_token)
    runner = CliRunner()

    planned = await asyncio.to_thread(runner.invoke, cli, ["keys", "rotate"])
    assert planned.exit_code == 0, planned.output
    assert "published now, signs from" in planned.output
    assert "gateways may refuse" not in planned.output
    assert _kid((await api.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"]) == old_kid

    urgent = await asyncio.to_thread(runner.invoke, cli, ["keys", "rotate", "--now"])
    assert urgent.exit_code == 0, urgent.output
    assert "gateways may refuse new tokens" in urgent.output
    new_kid = urgent.output.split("New signing key ")[1].split(":")[0]
    # The CLI's event reaches this process by the outbox relay (or its TTL): here, forget.
    identity_of(app.state.runtime).keyring.forget()
    assert _kid((await api.login(ADMIN_EMAIL, ADMIN_PASSWORD))["access_token"]) == new_kid
    # The key the first command planned never signs: an emergency key is not overtaken.
    planned_kid = planned.output.split("New signing key ")[1].split(":")[0]
    assert await _published_kids(api.client) == {old_kid, new_kid}
    async with app.state.runtime.db.unit_of_work() as session:
        superseded = await session.scalar(select(SigningKey).where(SigningKey.kid == planned_kid))
        assert superseded is not None
        assert superseded.retired_at is not None

    # The leaked key is retired by hand; the newest key cannot be.
    retired = await asyncio.to_thread(runner.invoke, cli, ["keys", "retire", old_kid])
    assert retired.exit_code == 0, retired.output
    assert await _published_kids(api.client) == {new_kid}
    # (its event went to the CLI's own process: this one's JWKS cache is emptied here)
    app.state.runtime.require_access().verifier.keys.invalidate()
    assert_401_problem(await api.client.get(ME, headers=auth(old_token)), "retired by hand")
    refused = await asyncio.to_thread(runner.invoke, cli, ["keys", "retire", new_kid])
    assert refused.exit_code == 1
    assert await _published_kids(api.client) == {new_kid}
