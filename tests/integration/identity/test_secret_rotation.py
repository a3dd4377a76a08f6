"""`armillary secrets rotate` on a populated install: signing keys, alert channel secrets and
the audit checkpoints move from the old platform secret to the new one, resumably, and the
old secret can then leave ARMILLARY_PREVIOUS_SECRET_KEYS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for

from armillary.app import create_app, create_runtime
from armillary.cli import admin
from armillary.identity.components import identity_of
from armillary.identity.keys.service import SigningKeyLocked
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.workflows.alerts.delivery import alerts_of
from armillary.workflows.alerts.models import AlertChannel
from armillary.workflows.alerts.service import unseal

OLD = "old-platform-secret-" + "o" * 32
NEW = "new-platform-secret-" + "n" * 32
SLACK_URL = "https://hooks.slack.example/services/T0001/B0001/rotationsecret4321"


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, Api]]:
    application = create_app(settings, configure_logs=False)
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        yield application, Api(c)


async def channel_secrets(application: FastAPI, channel_id: str) -> dict[str, Any]:
    runtime: Runtime = application.state.runtime
    async with runtime.db.sessionmaker() as session:
        channel = await session.get(AlertChannel, uuid.UUID(channel_id))
        assert channel is not None
        return unseal(alerts_of(runtime).box, channel)


async def audit_ok(api: Api, token: str) -> None:
    report = (await api.client.get("/api/v1/audit/verify", headers=auth(token))).json()
    assert report["ok"], report


async def populate(settings: Settings) -> str:
    """Users, a project, an alert channel and audit records under the old secret."""
    async with running(settings) as (_, api):
        admin_token = await api.admin_token()
        editor = await api.create_user(admin_token, "data_scientist")
        slug = (await api.create_project(editor["token"]))["slug"]
        created = await api.client.post(
            f"/api/v1/projects/{slug}/alerts/channels",
            json={"name": "ops", "kind": "slack", "config": {"webhook_url": SLACK_URL}},
            headers=auth(editor["token"]),
        )
        assert created.status_code == 201, created.text
        await audit_ok(api, admin_token)
        return str(created.json()["id"])


def cli_rotate(settings: Settings) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
    env.update(
        ARMILLARY_DATABASE_URL=str(settings.database_url),
        ARMILLARY_HOME=str(settings.home),
        ARMILLARY_SECRET_KEY=NEW,
        ARMILLARY_PREVIOUS_SECRET_KEYS=json.dumps([OLD]),
    )
    argv = ["secrets", "rotate", "--output", "json"]
    return subprocess.run(
        [sys.executable, "-c", "from armillary.cli.main import app; app()", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_rotation_moves_every_secret_to_the_new_key_and_is_resumable(
    settings_factory: Callable[..., Settings],
) -> None:
    channel_id = await populate(settings_factory(secret_key=OLD))
    during = settings_factory(secret_key=NEW, previous_secret_keys=[OLD])
    after = settings_factory(secret_key=NEW)

    # Without the old secret nothing it protects opens: this is what rotation is for.
    assert not (await admin.verify_audit(after)).ok
    runtime = create_runtime(after)
    try:
        async with runtime.db.sessionmaker() as session:
            with pytest.raises(SigningKeyLocked):
                await identity_of(runtime).keyring.active(session)
    finally:
        await runtime.stop()

    # With it listed as previous, everything opens before the rotation has run, and a run
    # cut short after the signing keys is resumed by running it again.
    assert (await admin.verify_audit(during)).ok
    runtime = create_runtime(during)
    try:
        async with runtime.db.unit_of_work() as session:
            assert await identity_of(runtime).keyring.reencrypt(session) == 1
    finally:
        await runtime.stop()

    first = await admin.rotate_secrets(during)
    assert first == {"signing_keys": 0, "alert_channels": 1, "audit_checkpoints": 2}
    # Run again through the command line: nothing is left to do.
    again = cli_rotate(during)
    assert again.returncode == 0, again.stderr
    zeros = {"signing_keys": 0, "alert_channels": 0, "audit_checkpoints": 0}
    assert json.loads(again.stdout) == zeros

    # The old secret is gone from the configuration: tokens are signed, the channel's
    # secrets open, and the audit chain and both checkpoints verify.
    assert (await admin.verify_audit(after)).ok
    async with running(after) as (application, api):
        token = await api.token(ADMIN_EMAIL, ADMIN_PASSWORD)
        assert (await api.client.get("/api/v1/auth/me", headers=auth(token))).is_success
        await audit_ok(api, token)
        assert (await channel_secrets(application, channel_id)) == {"webhook_url": SLACK_URL}
