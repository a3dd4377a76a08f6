"""Alerts end to end: channels over HTTP (secrets encrypted, masked, access), rules, events
turned into deliveries once per subject, delivery to real local receivers (Slack, PagerDuty,
signed webhook, SMTP with and without STARTTLS), retries with one message in the end, the
deadline check, and the embedded shape on SQLite."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import ssl
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword
from asgi_lifespan import LifespanManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI
from sqlalchemy import func, select, text
from tests.conftest import Api, auth, client_for, make_settings
from tests.ports import free_port

from armillary.app import create_app
from armillary.contracts.events import AuditEntry, QualityGateFailed, TaskRunStatusChanged
from armillary.kit.db import utcnow
from armillary.kit.events import OutboxEvent, publish
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.migrations.runner import upgrade
from armillary.workflows.alerts import senders
from armillary.workflows.alerts.consumers import check_deadlines
from armillary.workflows.alerts.delivery import deliver_due
from armillary.workflows.alerts.models import AlertDelivery
from armillary.workflows.jobs import transitions
from armillary.workflows.jobs.models import Job, TaskRun
from armillary.workflows.settings import WorkflowSettings

SPEC: dict[str, Any] = {
    "name": "nightly",
    "tasks": [{"name": "fit", "type": "noop"}, {"name": "check", "type": "noop"}],
}
WEBHOOK_SECRET = "whsec-" + "s" * 26
ALERT_SETTINGS = WorkflowSettings(alert_delivery_enabled=False, alert_allow_private_targets=True)


# --- local receivers -------------------------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request and answers the next status in
    ``statuses`` (200 once they run out)."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.requests: list[tuple[str, dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.requests.append((self.path, dict(self.headers.items()), body, code))
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def accepted(self, path: str | None = None) -> list[dict[str, Any]]:
        return [
            {"headers": h, "raw": b, "json": json.loads(b)}
            for p, h, b, code in self.requests
            if code < 300 and (path is None or p == path)
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    # The loop is off: tests run deliveries on demand with deliver_due(runtime, now).
    application = create_app(settings, configure_logs=False, workflow_settings=ALERT_SETTINGS)
    async with LifespanManager(application, startup_timeout=60):
        yield application


# --- helpers ---------------------------------------------------------------------------------


async def setup(api: Api) -> tuple[str, str, str]:
    """(admin token, editor token, project slug) with the ``nightly`` workflow applied."""
    admin = await api.admin_token()
    editor = await api.create_user(admin, "data_scientist")
    slug = (await api.create_project(editor["token"]))["slug"]
    applied = await api.client.post(
        f"/api/v1/projects/{slug}/workflows", json=SPEC, headers=auth(editor["token"])
    )
    assert applied.status_code == 201, applied.text
    return admin, editor["token"], slug


async def add_channel(api: Api, token: str, slug: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/projects/{slug}/alerts/channels", json=body, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def add_rule(api: Api, token: str, slug: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/v1/projects/{slug}/alerts/rules", json=body, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def start_job(api: Api, token: str, slug: str) -> uuid.UUID:
    response = await api.client.post(
        f"/api/v1/projects/{slug}/workflows/nightly/jobs", json={}, headers=auth(token)
    )
    assert response.status_code == 201, response.text
    return uuid.UUID(response.json()["id"])


async def fail_job(runtime: Runtime, job_id: uuid.UUID, reason: str = "task fit failed") -> None:
    async with runtime.db.unit_of_work() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        await transitions.apply(session, job, "failed", reason=reason)


async def deliveries(api: Api, token: str, slug: str, channel_id: str) -> list[dict[str, Any]]:
    response = await api.client.get(
        f"/api/v1/projects/{slug}/alerts/channels/{channel_id}/deliveries", headers=auth(token)
    )
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def delivery_count(runtime: Runtime) -> int:
    async with runtime.db.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AlertDelivery)) or 0)


def slack(url: str, name: str = "slack") -> dict[str, Any]:
    return {"name": name, "kind": "slack", "config": {"webhook_url": url}}


def webhook(url: str, name: str = "hook") -> dict[str, Any]:
    return {
        "name": name,
        "kind": "webhook",
        "config": {"url": url, "signing_secret": WEBHOOK_SECRET},
    }


def verify_signature(headers: dict[str, str], raw: bytes) -> None:
    timestamp = headers["X-Armillary-Timestamp"]
    expected = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256)
    assert headers["X-Armillary-Signature"] == f"sha256={expected.hexdigest()}"


# --- channels over HTTP ----------------------------------------------------------------------


async def test_channel_secrets_are_encrypted_masked_and_access_checked(
    api: Api, app: FastAPI
) -> None:
    admin, token, slug = await setup(api)
    base = f"/api/v1/projects/{slug}/alerts/channels"
    secret_url = "https://hooks.slack.example/services/T0001/B0001/verysecretpath9876"
    created = await add_channel(api, token, slug, slack(secret_url))
    assert created["kind"] == "slack"
    assert created["secrets"] == {"webhook_url": "…9876"}
    assert created["config"] == {}
    assert "verysecretpath" not in json.dumps(created)
    channel_id = created["id"]

    # Encrypted at rest: the raw column holds no part of the URL.
    runtime: Runtime = app.state.runtime
    async with runtime.db.sessionmaker() as session:
        raw = (
            await session.execute(
                text(
                    "SELECT secrets_ciphertext, secret_hints, config FROM "
                    "workflows_alert_channels WHERE id = :id"
                ),
                {"id": uuid.UUID(channel_id)},
            )
        ).one()
    assert raw[0].startswith("v1.")
    stored = json.dumps([raw[0], str(raw[1]), str(raw[2])])
    assert "verysecretpath" not in stored
    assert "hooks.slack.example" not in stored

    got = await api.client.get(f"{base}/{channel_id}", headers=auth(token))
    assert got.status_code == 200
    assert got.json()["secrets"] == {"webhook_url": "…9876"}
    assert "verysecretpath" not in got.text
    listed = await api.client.get(base, headers=auth(token))
    assert listed.json()["total"] == 1
    assert "verysecretpath" not in listed.text

    # A PATCH without the secret keeps it; with it, replaces it (the hint follows).
    renamed = await api.client.patch(
        f"{base}/{channel_id}", json={"name": "ops-slack", "enabled": False}, headers=auth(token)
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["name"] == "ops-slack"
    assert renamed.json()["enabled"] is False
    assert renamed.json()["secrets"] == {"webhook_url": "…9876"}
    new_url = secret_url.replace("9876", "5555")
    replaced = await api.client.patch(
        f"{base}/{channel_id}", json={"config": {"webhook_url": new_url}}, headers=auth(token)
    )
    assert replaced.json()["secrets"] == {"webhook_url": "…5555"}

    # Validation: 422 problem+json that does not echo the secret.
    bad = await api.client.post(
        base,
        json={
            "name": "x",
            "kind": "webhook",
            "config": {"url": "not a url", "signing_secret": "s"},
        },
        headers=auth(token),
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    bad_patch = await api.client.patch(
        f"{base}/{channel_id}",
        json={"config": {"webhook_url": "nope-secret-x"}},
        headers=auth(token),
    )
    assert bad_patch.status_code == 422
    assert "nope-secret-x" not in bad_patch.text
    unknown_kind = await api.client.post(
        base, json={"name": "x", "kind": "carrier-pigeon", "config": {}}, headers=auth(token)
    )
    assert unknown_kind.status_code == 422
    duplicate = await api.client.post(
        base, json=slack(secret_url, "ops-slack"), headers=auth(token)
    )
    assert duplicate.status_code == 409

    # Viewers read but cannot write; non-members see nothing.
    viewer = await api.create_user(admin, "user")
    outsider = await api.create_user(admin, "data_scientist")
    added = await api.client.put(
        f"/api/v1/projects/{slug}/members/{viewer['id']}",
        json={"role": "viewer"},
        headers=auth(token),
    )
    assert added.status_code in (200, 201), added.text
    v = auth(viewer["token"])
    assert (await api.client.post(base, json=slack(secret_url, "v"), headers=v)).status_code == 403
    assert (await api.client.get(base, headers=v)).status_code == 200
    assert (await api.client.delete(f"{base}/{channel_id}", headers=v)).status_code == 403
    rule = {"name": "r", "kind": "job_failed", "channel_ids": [channel_id]}
    rules_url = f"/api/v1/projects/{slug}/alerts/rules"
    assert (await api.client.post(rules_url, json=rule, headers=v)).status_code == 403
    o = auth(outsider["token"])
    for method, url in [("GET", base), ("GET", f"{base}/{channel_id}"), ("POST", base)]:
        response = await api.client.request(method, url, json=slack(secret_url, "o"), headers=o)
        assert response.status_code == 404, (method, url)
    # Another project's channel is not reachable through this one.
    other_slug = (await api.create_project(outsider["token"]))["slug"]
    cross = await api.client.get(
        f"/api/v1/projects/{other_slug}/alerts/channels/{channel_id}", headers=o
    )
    assert cross.status_code == 404

    # Rules: kind checks, channels of this project only.
    assert (await api.client.post(rules_url, json=rule, headers=auth(token))).status_code == 201
    foreign = {**rule, "channel_ids": [str(uuid.uuid4())]}
    assert (await api.client.post(rules_url, json=foreign, headers=auth(token))).status_code == 422
    no_deadline = {**rule, "kind": "job_deadline"}
    resp = await api.client.post(rules_url, json=no_deadline, headers=auth(token))
    assert resp.status_code == 422

    # Deleting the channel removes the rule left without channels; every change is audited.
    assert (await api.client.delete(f"{base}/{channel_id}", headers=auth(token))).status_code == 204
    assert (await api.client.get(rules_url, headers=auth(token))).json()["total"] == 0
    assert (await api.client.get(f"{base}/{channel_id}", headers=auth(token))).status_code == 404
    async with runtime.db.sessionmaker() as session:
        rows = await session.scalars(select(OutboxEvent).where(OutboxEvent.type == AuditEntry.TYPE))
        actions = [row.payload["action"] for row in rows]
        payloads = json.dumps([row.payload for row in rows])
    for action in [
        "alerts.channel_create",
        "alerts.channel_update",
        "alerts.channel_delete",
        "alerts.rule_create",
    ]:
        assert action in actions
    assert "verysecretpath" not in payloads


# --- events to deliveries --------------------------------------------------------------------


async def test_job_failed_reaches_every_channel_kind_once(
    api: Api, app: FastAPI, receiver: Receiver, smtp: tuple[Inbox, int]
) -> None:
    _admin, token, slug = await setup(api)
    inbox, smtp_port = smtp
    channels = [
        await add_channel(api, token, slug, slack(receiver.url("/slack"))),
        await add_channel(
            api,
            token,
            slug,
            {
                "name": "pd",
                "kind": "pagerduty",
                "config": {"routing_key": "R0UT1NGKEY", "pagerduty_url": receiver.url("/pd")},
            },
        ),
        await add_channel(api, token, slug, webhook(receiver.url("/hook"))),
        await add_channel(
            api,
            token,
            slug,
            {
                "name": "mail",
                "kind": "email",
                "config": {
                    "host": "127.0.0.1",
                    "port": smtp_port,
                    "from_address": "armillary@example.com",
                    "to": ["oncall@example.com", "ml@example.com"],
                    "starttls": False,
                },
            },
        ),
    ]
    ids = [c["id"] for c in channels]
    rule = await add_rule(
        api,
        token,
        slug,
        {"name": "nightly failed", "kind": "job_failed", "workflow": "nightly", "channel_ids": ids},
    )
    await add_rule(
        api,
        token,
        slug,
        {"name": "other", "kind": "job_failed", "workflow": "other", "channel_ids": ids},
    )
    runtime: Runtime = app.state.runtime
    job_id = await start_job(api, token, slug)
    await fail_job(runtime, job_id)

    # Queued in the consumer's transaction, one per channel of the matching rule only.
    assert await delivery_count(runtime) == 4
    pending = await deliveries(api, token, slug, ids[0])
    assert [(d["status"], d["attempts"], d["event"]) for d in pending] == [
        ("pending", 0, "job_failed")
    ]
    assert await deliver_due(runtime) == 4
    link = f"/api/v1/jobs/{job_id}"

    (slack_msg,) = receiver.accepted("/slack")
    assert "Job failed" in slack_msg["json"]["text"]
    assert isinstance(slack_msg["json"]["blocks"], list)
    assert str(job_id) in json.dumps(slack_msg["json"]["blocks"])

    (pd,) = receiver.accepted("/pd")
    body = pd["json"]
    assert body["routing_key"] == "R0UT1NGKEY"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"{rule['id']}:{ids[1]}:job_failed:{job_id}"
    payload = body["payload"]
    assert set(payload) >= {"summary", "source", "severity", "component", "group", "class"}
    assert payload["severity"] == "error"
    assert payload["component"] == "nightly"
    assert payload["group"] == slug
    assert payload["class"] == "job_failed"
    assert payload["custom_details"]["link"] == link
    assert payload["custom_details"]["job_id"] == str(job_id)

    (hook,) = receiver.accepted("/hook")
    verify_signature(hook["headers"], hook["raw"])
    assert hook["json"]["event"] == "job_failed"
    assert hook["json"]["rule"] == {"id": rule["id"], "name": "nightly failed"}
    assert hook["json"]["project"]["slug"] == slug
    assert hook["json"]["workflow"] == "nightly"
    assert hook["json"]["job"] == {"id": str(job_id), "link": link}
    assert hook["json"]["details"]["reason"] == "task fit failed"

    (envelope,) = inbox.envelopes
    assert envelope.mail_from == "armillary@example.com"
    assert envelope.rcpt_tos == ["oncall@example.com", "ml@example.com"]
    mail = message_from_bytes(envelope.original_content or b"")
    assert "Job failed" in mail["Subject"]
    assert slug in mail["Subject"]
    text_body = mail.get_payload(decode=True).decode()
    assert f"Job: {job_id}" in text_body
    assert "Workflow: nightly" in text_body
    assert f"Link: {link}" in text_body

    for channel_id in ids:
        (sent,) = await deliveries(api, token, slug, channel_id)
        assert (sent["status"], sent["attempts"], sent["last_error"]) == ("sent", 1, None)
        assert sent["rule_name"] == "nightly failed"
        assert sent["job_id"] == str(job_id)

    # The same event delivered again, and a new event about the same job: no second alert.
    async with runtime.db.sessionmaker() as session:
        row = await session.scalar(
            select(OutboxEvent).where(
                OutboxEvent.type == "workflows.job_status_changed",
                OutboxEvent.payload["to_status"].as_string() == "failed",
            )
        )
    assert row is not None
    await runtime.bus.deliver(row)
    async with runtime.db.unit_of_work() as session:
        publish(session, row.type, _Raw(row.payload))
    assert await delivery_count(runtime) == 4
    assert await deliver_due(runtime, utcnow() + timedelta(days=1)) == 0
    assert len(receiver.requests) == 3
    assert len(inbox.envelopes) == 1


class _Raw:
    """An already serialised event, published again under a new event id."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload

    def model_dump(self, mode: str = "json") -> dict[str, Any]:
        return self.payload


async def test_failing_receiver_gets_one_message_after_retries(api: Api, app: FastAPI) -> None:
    _admin, token, slug = await setup(api)
    flaky = Receiver([500, 500, 200])
    broken = Receiver([500] * 10)
    try:
        flaky_channel = await add_channel(api, token, slug, webhook(flaky.url("/h"), "flaky"))
        broken_channel = await add_channel(api, token, slug, slack(broken.url("/s"), "broken"))
        await add_rule(
            api,
            token,
            slug,
            {
                "name": "failed",
                "kind": "job_failed",
                "channel_ids": [flaky_channel["id"], broken_channel["id"]],
            },
        )
        runtime: Runtime = app.state.runtime
        job_id = await start_job(api, token, slug)
        await fail_job(runtime, job_id)

        now = utcnow()
        assert await deliver_due(runtime, now) == 0
        (first,) = await deliveries(api, token, slug, flaky_channel["id"])
        assert (first["status"], first["attempts"]) == ("pending", 1)
        assert first["last_error"] == "the receiver answered HTTP 500"
        next_at = dt.datetime.fromisoformat(first["next_attempt_at"])
        assert next_at > now  # backed off
        assert await deliver_due(runtime, now) == 0  # not due yet: nothing sent
        assert len(flaky.requests) == 1

        for hours in (2, 4, 6, 8, 10, 12):
            await deliver_due(runtime, now + timedelta(hours=hours))

        (done,) = await deliveries(api, token, slug, flaky_channel["id"])
        assert (done["status"], done["attempts"], done["last_error"]) == ("sent", 3, None)
        assert [code for *_rest, code in flaky.requests] == [500, 500, 200]
        assert len(flaky.accepted()) == 1
        # Every attempt carried the same signed message.
        assert len({body for _p, _h, body, _c in flaky.requests}) == 1

        (gave_up,) = await deliveries(api, token, slug, broken_channel["id"])
        assert (gave_up["status"], gave_up["attempts"]) == ("failed", 5)
        assert gave_up["last_error"] == "the receiver answered HTTP 500"
        assert "127.0.0.1" not in gave_up["last_error"]
        assert len(broken.requests) == 5
        filtered = await api.client.get(
            f"/api/v1/projects/{slug}/alerts/channels/{broken_channel['id']}/deliveries"
            "?status=sent",
            headers=auth(token),
        )
        assert filtered.json()["total"] == 0
    finally:
        flaky.close()
        broken.close()


async def test_quality_gate_and_slow_task_alerts(
    api: Api, app: FastAPI, receiver: Receiver
) -> None:
    _admin, token, slug = await setup(api)
    channel = await add_channel(api, token, slug, webhook(receiver.url("/h")))
    await add_rule(
        api,
        token,
        slug,
        {"name": "gate", "kind": "quality_gate_failed", "channel_ids": [channel["id"]]},
    )
    await add_rule(
        api,
        token,
        slug,
        {
            "name": "slow fit",
            "kind": "task_duration_p95",
            "task": "fit",
            "factor": 2.0,
            "min_samples": 5,
            "channel_ids": [channel["id"]],
        },
    )
    runtime: Runtime = app.state.runtime
    jobs = [await start_job(api, token, slug) for _ in range(8)]
    base = utcnow() - timedelta(hours=3)
    durations = [10, 11, 9, 10, 12, 10, 100, 100]  # the 7th is slow; the 8th comes later
    async with runtime.db.unit_of_work() as session:
        runs: dict[uuid.UUID, TaskRun] = {}
        for i, (job_id, seconds) in enumerate(zip(jobs, durations, strict=True)):
            run = await session.scalar(
                select(TaskRun).where(TaskRun.job_id == job_id, TaskRun.name == "fit")
            )
            assert run is not None
            # History set up directly: these runs finished long ago.
            run.status = "succeeded"
            run.started_at = base + timedelta(minutes=10 * i)
            run.finished_at = run.started_at + timedelta(seconds=seconds)
            runs[job_id] = run
        job = await session.get(Job, jobs[0])
        assert job is not None
        project_id, workflow_id = job.project_id, job.workflow_id

    async def succeeded(job_id: uuid.UUID) -> None:
        run = runs[job_id]
        async with runtime.db.unit_of_work() as session:
            publish(
                session,
                TaskRunStatusChanged.TYPE,
                TaskRunStatusChanged(
                    task_run_id=run.id,
                    job_id=job_id,
                    name="fit",
                    from_status="running",
                    to_status="succeeded",
                    attempt=1,
                    occurred_at=utcnow(),
                ),
            )

    await succeeded(jobs[3])  # 4 earlier runs: fewer than min_samples
    await succeeded(jobs[5])  # ordinary duration
    assert await delivery_count(runtime) == 0
    await succeeded(jobs[6])  # 100 s against a p95 of 12 s over 6 runs
    assert await delivery_count(runtime) == 1
    await succeeded(jobs[6])  # the same run again: no second alert
    assert await delivery_count(runtime) == 1

    gate_run = runs[jobs[1]]
    async with runtime.db.unit_of_work() as session:
        publish(
            session,
            QualityGateFailed.TYPE,
            QualityGateFailed(
                job_id=jobs[1],
                project_id=project_id,
                workflow_id=workflow_id,
                task="check",
                task_run_id=gate_run.id,
                failed_checks=["null_ratio(age) <= 0.1"],
                score=0.4,
                occurred_at=utcnow(),
            ),
        )
    assert await delivery_count(runtime) == 2
    assert await deliver_due(runtime) == 2
    by_event = {m["json"]["event"]: m for m in receiver.accepted()}
    slow = by_event["task_duration_p95"]["json"]
    assert slow["task"]["name"] == "fit"
    assert slow["job"]["id"] == str(jobs[6])
    assert slow["details"]["p95_seconds"] == 12.0
    assert slow["details"]["samples"] == 6
    assert slow["details"]["duration_seconds"] == 100.0
    gate = by_event["quality_gate_failed"]["json"]
    assert gate["details"]["failed_checks"] == ["null_ratio(age) <= 0.1"]
    assert gate["task"] == {"name": "check", "run_id": str(gate_run.id)}
    for message in receiver.accepted():
        verify_signature(message["headers"], message["raw"])


async def test_job_deadline_alerts_once_per_job(api: Api, app: FastAPI, receiver: Receiver) -> None:
    _admin, token, slug = await setup(api)
    channel = await add_channel(api, token, slug, slack(receiver.url("/s")))
    await add_rule(
        api,
        token,
        slug,
        {
            "name": "by 30 min",
            "kind": "job_deadline",
            "workflow": "nightly",
            "max_minutes": 30,
            "channel_ids": [channel["id"]],
        },
    )
    runtime: Runtime = app.state.runtime
    late = await start_job(api, token, slug)
    cancelled = await start_job(api, token, slug)
    cancel = await api.client.post(f"/api/v1/jobs/{cancelled}/cancel", headers=auth(token))
    assert cancel.status_code in (200, 202), cancel.text
    now = utcnow()
    async with runtime.db.unit_of_work() as session:
        assert await check_deadlines(session, now + timedelta(minutes=29)) == 0
    for _ in range(2):  # a second check (or a second process) alerts no more
        async with runtime.db.unit_of_work() as session:
            await check_deadlines(session, now + timedelta(minutes=31))
    (delivery,) = await deliveries(api, token, slug, channel["id"])
    assert delivery["event"] == "job_deadline"
    assert delivery["job_id"] == str(late)
    assert "30 minutes" in delivery["summary"]
    # Jobs older than the look-back window are left alone.
    async with runtime.db.unit_of_work() as session:
        assert await check_deadlines(session, now + timedelta(days=3)) == 0
    assert await deliver_due(runtime, now + timedelta(minutes=31)) == 1
    (message,) = receiver.accepted()
    assert "Job past its deadline" in message["json"]["text"]


async def test_test_message_now_and_its_history(
    api: Api, smtp: tuple[Inbox, int], receiver: Receiver
) -> None:
    _admin, token, slug = await setup(api)
    inbox, port = smtp
    mail = await add_channel(
        api,
        token,
        slug,
        {
            "name": "mail",
            "kind": "email",
            "config": {
                "host": "127.0.0.1",
                "port": port,
                "from_address": "armillary@example.com",
                "to": ["oncall@example.com"],
                "starttls": False,
            },
        },
    )
    base = f"/api/v1/projects/{slug}/alerts/channels"
    sent = await api.client.post(f"{base}/{mail['id']}/test", headers=auth(token))
    assert sent.status_code == 200, sent.text
    assert (sent.json()["status"], sent.json()["attempts"], sent.json()["event"]) == (
        "sent",
        1,
        "test",
    )
    (envelope,) = inbox.envelopes
    assert envelope.rcpt_tos == ["oncall@example.com"]
    assert "Test message" in message_from_bytes(envelope.original_content or b"")["Subject"]

    refusing = Receiver([503])
    try:
        hook = await add_channel(api, token, slug, webhook(refusing.url("/x")))
        failed = await api.client.post(f"{base}/{hook['id']}/test", headers=auth(token))
        assert failed.json()["status"] == "failed"
        assert failed.json()["last_error"] == "the receiver answered HTTP 503"
        (history,) = await deliveries(api, token, slug, hook["id"])
        assert history["status"] == "failed"
    finally:
        refusing.close()
    assert len(await deliveries(api, token, slug, mail["id"])) == 1


async def test_the_running_loop_delivers_after_commit(
    settings: Settings, receiver: Receiver
) -> None:
    """As installed: the loop wakes when a consumer's deliveries commit."""
    looping = WorkflowSettings(alert_allow_private_targets=True, alert_poll_seconds=30)
    application = create_app(settings, configure_logs=False, workflow_settings=looping)
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        api = Api(c)
        _admin, token, slug = await setup(api)
        channel = await add_channel(api, token, slug, webhook(receiver.url("/h")))
        await add_rule(
            api, token, slug, {"name": "f", "kind": "job_failed", "channel_ids": [channel["id"]]}
        )
        runtime: Runtime = application.state.runtime
        await fail_job(runtime, await start_job(api, token, slug))
        for _ in range(100):
            if receiver.accepted():
                break
            await asyncio.sleep(0.05)
        (message,) = receiver.accepted()
        assert message["json"]["event"] == "job_failed"
        (sent,) = await deliveries(api, token, slug, channel["id"])
        assert sent["status"] == "sent"


# --- SMTP with STARTTLS and login ------------------------------------------------------------


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_email_with_starttls_and_login(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"smtp-pass-123")

    inbox = Inbox()
    port = free_port()
    # The server refuses mail before STARTTLS and login before TLS: arrival proves both.
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=server_tls,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        config = {
            "host": "127.0.0.1",
            "port": port,
            "from_address": "armillary@example.com",
            "to": ["oncall@example.com"],
            "username": "alerts",
            "starttls": True,
            "use_tls": False,
        }
        alert = senders.Alert(
            event="job_failed",
            title="Job failed",
            summary="Job 1 failed",
            project_id=str(uuid.uuid4()),
            project="proj",
            dedup_key="k",
            occurred_at=utcnow().isoformat(),
            job_id="1",
        )
        client_tls = ssl.create_default_context(cafile=str(cert))
        local = {"allow_private": True}  # the test's server is on 127.0.0.1
        await senders.send_email(
            config, "smtp-pass-123", alert, timeout=10, tls_context=client_tls, **local
        )
        assert logins == [(b"alerts", b"smtp-pass-123")]
        (envelope,) = inbox.envelopes
        assert envelope.rcpt_tos == ["oncall@example.com"]

        with pytest.raises(senders.SendError, match="SMTP"):
            await senders.send_email(
                {**config, "starttls": False}, "smtp-pass-123", alert, timeout=10, **local
            )
        with pytest.raises(senders.SendError) as refused:
            await senders.send_email(
                config, "wrong-password", alert, timeout=10, tls_context=client_tls, **local
            )
        assert "wrong-password" not in str(refused.value)
        assert len(inbox.envelopes) == 1
    finally:
        controller.stop()


# --- the embedded shape ----------------------------------------------------------------------


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    settings = make_settings(tmp_path / "home", database_url=None, redis_url=None)
    upgrade(settings)
    return settings


@pytest.mark.sqlite
async def test_alerts_on_sqlite(sqlite_settings: Settings, receiver: Receiver) -> None:
    settings = sqlite_settings
    application = create_app(settings, configure_logs=False, workflow_settings=ALERT_SETTINGS)
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        api = Api(c)
        _admin, token, slug = await setup(api)
        channel = await add_channel(api, token, slug, webhook(receiver.url("/h")))
        await add_rule(
            api, token, slug, {"name": "f", "kind": "job_failed", "channel_ids": [channel["id"]]}
        )
        runtime: Runtime = application.state.runtime
        job_id = await start_job(api, token, slug)
        await fail_job(runtime, job_id)
        async with runtime.db.unit_of_work() as session:
            await check_deadlines(session, utcnow())
            publish(
                session,
                "workflows.job_status_changed",
                _Raw(
                    {
                        "job_id": str(job_id),
                        "project_id": str(uuid.uuid4()),
                        "workflow_id": str(uuid.uuid4()),
                        "from_status": "running",
                        "to_status": "failed",
                        "occurred_at": utcnow().isoformat(),
                    }
                ),
            )
        assert await delivery_count(runtime) == 1
        assert await deliver_due(runtime) == 1
        (message,) = receiver.accepted()
        verify_signature(message["headers"], message["raw"])
        assert message["json"]["job"]["id"] == str(job_id)
