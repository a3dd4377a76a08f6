"""Alert channel secrets by reference: kept in AWS Secrets Manager (the real boto3 client
against a local moto server) or a file, read at send time, never stored or answered, a
rotation picked up after the cache's TTL (or at once when the receiver refuses the old value),
and only from the places the operator allows."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select, text
from tests.conftest import Api, auth
from tests.integration.workflows.test_alerts import Receiver, add_channel, setup
from tests.moto_server import SecretsClock

from armillary.app import create_app
from armillary.contracts.events import AuditEntry
from armillary.kit.events import OutboxEvent
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.workflows.settings import WorkflowSettings

FIRST, SECOND = "whsec-first-" + "1" * 20, "whsec-second-" + "2" * 20


@pytest.fixture
def secret_files(tmp_path: Path) -> Path:
    root = tmp_path / "alert-secrets"
    root.mkdir()
    return root


@pytest.fixture
async def app(settings: Settings, secret_files: Path) -> AsyncIterator[FastAPI]:
    workflow_settings = WorkflowSettings(
        alert_delivery_enabled=False,
        alert_allow_private_targets=True,
        alert_secret_ref_prefixes=[
            "aws-secretsmanager:armillary/alerts/{project}/",
            f"file:{secret_files}/{{project}}/",
        ],
    )
    application = create_app(settings, configure_logs=False, workflow_settings=workflow_settings)
    async with LifespanManager(application, startup_timeout=60):
        yield application


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def signed_with(secret: str, request: dict[str, Any]) -> bool:
    headers, raw = request["headers"], request["raw"]
    mac = hmac.new(
        secret.encode(), f"{headers['X-Armillary-Timestamp']}.".encode() + raw, hashlib.sha256
    )
    return bool(headers["X-Armillary-Signature"] == f"sha256={mac.hexdigest()}")


async def send_test(api: Api, token: str, slug: str, channel_id: str) -> dict[str, Any]:
    answer = await api.client.post(
        f"/api/v1/projects/{slug}/alerts/channels/{channel_id}/test", headers=auth(token)
    )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def hook_channel(url: str, signing_secret: Any, name: str = "hook") -> dict[str, Any]:
    return {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "signing_secret": signing_secret},
    }


async def test_referenced_secrets_are_read_at_send_time_and_rotations_picked_up(
    api: Api,
    app: FastAPI,
    receiver: Receiver,
    secretsmanager: Any,
    secrets_clock: SecretsClock,
    secret_files: Path,
) -> None:
    _admin, token, slug = await setup(api)
    name = f"armillary/alerts/{slug}/hook"
    arn = secretsmanager.create_secret(
        Name=name, SecretString=json.dumps({"signing_secret": FIRST})
    )["ARN"]
    reference = f"aws-secretsmanager:{arn}#signing_secret"  # by ARN: allowed by its name
    created = await add_channel(
        api, token, slug, hook_channel(receiver.url("/hook"), {"secret_ref": reference})
    )
    assert created["secrets"]["signing_secret"] == {"secret_ref": reference}
    assert created["secrets"]["url"].startswith("…")

    sent = await send_test(api, token, slug, created["id"])
    assert (sent["status"], sent["last_error"]) == ("sent", None)
    (first,) = receiver.accepted("/hook")
    assert signed_with(FIRST, first)

    # Rotated in Secrets Manager: the cached value is used until the TTL (300 s) has passed.
    secretsmanager.put_secret_value(
        SecretId=name, SecretString=json.dumps({"signing_secret": SECOND})
    )
    await send_test(api, token, slug, created["id"])
    secrets_clock.advance(301)
    await send_test(api, token, slug, created["id"])
    _, cached, rotated = receiver.accepted("/hook")
    assert signed_with(FIRST, cached)
    assert signed_with(SECOND, rotated)

    # A Slack URL in a file (a Kubernetes secret volume), a PagerDuty key by secret name.
    (secret_files / slug).mkdir()
    (secret_files / slug / "slack-url").write_text(receiver.url("/slack-from-file") + "\n")
    slack = await add_channel(
        api,
        token,
        slug,
        {
            "name": "slack",
            "kind": "slack",
            "config": {"webhook_url": {"secret_ref": f"file:{secret_files}/{slug}/slack-url"}},
        },
    )
    assert (await send_test(api, token, slug, slack["id"]))["status"] == "sent"
    assert len(receiver.accepted("/slack-from-file")) == 1
    secretsmanager.create_secret(Name=f"armillary/alerts/{slug}/pd", SecretString="R0UT1NG-REF")
    pagerduty = await add_channel(
        api,
        token,
        slug,
        {
            "name": "pd",
            "kind": "pagerduty",
            "config": {
                "routing_key": {"secret_ref": f"aws-secretsmanager:armillary/alerts/{slug}/pd"},
                "pagerduty_url": receiver.url("/pd"),
            },
        },
    )
    assert (await send_test(api, token, slug, pagerduty["id"]))["status"] == "sent"
    (pd,) = receiver.accepted("/pd")
    assert pd["json"]["routing_key"] == "R0UT1NG-REF"

    # The values never reach the database, the answers or the audit log.
    runtime: Runtime = app.state.runtime
    async with runtime.db.sessionmaker() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT secrets_ciphertext, secret_hints, config FROM workflows_alert_channels"
                )
            )
        ).all()
        audit = await session.scalars(
            select(OutboxEvent).where(OutboxEvent.type == AuditEntry.TYPE)
        )
        entries = [row.payload for row in audit]
    listed = await api.client.get(f"/api/v1/projects/{slug}/alerts/channels", headers=auth(token))
    everything = (
        json.dumps([[str(v) for v in row] for row in rows]) + listed.text + json.dumps(entries)
    )
    for value in (FIRST, SECOND, "R0UT1NG-REF", "/slack-from-file"):
        assert value not in everything
    # Where each secret is, is audited.
    (create,) = [
        e
        for e in entries
        if e["action"] == "alerts.channel_create" and e["resource_id"] == created["id"]
    ]
    assert create["details"]["referenced"] == [
        {"setting": "signing_secret", "reference": reference}
    ]


async def test_a_refused_send_reads_a_rotated_reference_again_at_once(
    api: Api, app: FastAPI, receiver: Receiver, secretsmanager: Any, secrets_clock: SecretsClock
) -> None:
    # The cache's clock stands still: only the refusal can make the secret be read again.
    _admin, token, slug = await setup(api)
    name = f"armillary/alerts/{slug}/signing"
    secretsmanager.create_secret(Name=name, SecretString=FIRST)
    reference = {"secret_ref": f"aws-secretsmanager:{name}"}
    channel = await add_channel(api, token, slug, hook_channel(receiver.url("/hook"), reference))
    assert (await send_test(api, token, slug, channel["id"]))["status"] == "sent"

    # The receiver now expects the rotated secret and refuses the old signature once.
    secretsmanager.put_secret_value(SecretId=name, SecretString=SECOND)
    receiver.statuses = [401]
    sent = await send_test(api, token, slug, channel["id"])
    assert (sent["status"], sent["attempts"]) == ("sent", 1)
    refused, accepted = receiver.requests[1:]
    assert refused[3] == 401
    assert accepted[3] == 200
    assert signed_with(FIRST, {"headers": refused[1], "raw": refused[2]})
    assert signed_with(SECOND, {"headers": accepted[1], "raw": accepted[2]})

    # Unchanged secret, refused again: one request, no retry, the refusal recorded.
    receiver.statuses = [401]
    failed = await send_test(api, token, slug, channel["id"])
    assert (failed["status"], failed["last_error"]) == ("failed", "the receiver answered HTTP 401")
    assert len(receiver.requests) == 4


async def test_references_are_checked_when_written_and_when_read(
    api: Api, app: FastAPI, receiver: Receiver, secretsmanager: Any, secret_files: Path
) -> None:
    _admin, token, slug = await setup(api)
    base = f"/api/v1/projects/{slug}/alerts/channels"
    url = receiver.url("/hook")

    async def refused(signing_secret: Any) -> dict[str, Any]:
        answer = await api.client.post(
            base,
            json=hook_channel(url, signing_secret, f"c-{uuid.uuid4().hex[:6]}"),
            headers=auth(token),
        )
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        return dict(answer.json())

    # Not a reference at all: the accepted forms are named.
    for bad in (
        "vault:kv/alerts",
        f"file:{secret_files}/{slug}/../x",
        "aws-secretsmanager:",
        "file:rel",
    ):
        problem = await refused({"secret_ref": bad})
        assert "aws-secretsmanager:NAME_OR_ARN[#key] or file:/absolute/path" in json.dumps(problem)
    await refused({"secret_ref": "aws-secretsmanager:x", "extra": 1})
    # A reference outside this project's places: the platform's own, another project's.
    for outside in (
        "aws-secretsmanager:armillary/database#password",
        "aws-secretsmanager:armillary/alerts/other-project/hook",
        "file:/etc/armillary/secret.key",
        f"file:{secret_files}/other-project/hook",
    ):
        problem = await refused({"secret_ref": outside})
        assert problem["allowed_prefixes"] == [
            f"aws-secretsmanager:armillary/alerts/{slug}/",
            f"file:{secret_files}/{slug}/",
        ]
    # The same check on a change.
    (secret_files / slug).mkdir()
    (secret_files / slug / "hook").write_text(FIRST)
    channel = await add_channel(
        api, token, slug, hook_channel(url, {"secret_ref": f"file:{secret_files}/{slug}/hook"})
    )
    patched = await api.client.patch(
        f"{base}/{channel['id']}",
        json={"config": {"signing_secret": {"secret_ref": "aws-secretsmanager:armillary/db"}}},
        headers=auth(token),
    )
    assert patched.status_code == 422
    # Back to an inline secret, and to a reference again.
    inline = await api.client.patch(
        f"{base}/{channel['id']}", json={"config": {"signing_secret": SECOND}}, headers=auth(token)
    )
    assert inline.json()["secrets"]["signing_secret"] == "…" + SECOND[-4:]
    again = await api.client.patch(
        f"{base}/{channel['id']}",
        json={"config": {"signing_secret": {"secret_ref": f"file:{secret_files}/{slug}/hook"}}},
        headers=auth(token),
    )
    assert again.json()["secrets"]["signing_secret"] == {
        "secret_ref": f"file:{secret_files}/{slug}/hook"
    }
    assert (await send_test(api, token, slug, channel["id"]))["status"] == "sent"
    assert signed_with(FIRST, receiver.accepted("/hook")[0])

    # A link in the allowed directory that leads out of it is refused at send time.
    outside = secret_files / "elsewhere"
    outside.write_text("the-platform-secret-" + "x" * 20)
    (secret_files / slug / "hook").unlink()
    (secret_files / slug / "hook").symlink_to(outside)
    failed = await send_test(api, token, slug, channel["id"])
    assert failed["status"] == "failed"
    assert failed["last_error"] == "the signing_secret secret reference is not allowed (any longer)"
    # A missing secret: named, never a value.
    (secret_files / slug / "hook").unlink()
    failed = await send_test(api, token, slug, channel["id"])
    assert failed["status"] == "failed"
    assert "signing_secret" in failed["last_error"]
    assert "cannot be read" in failed["last_error"]
    assert len(receiver.accepted("/hook")) == 1
