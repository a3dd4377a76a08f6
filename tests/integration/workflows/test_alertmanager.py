"""Alertmanager → the platform's alert channels (workflows.alerts.alertmanager): a webhook
notification as Alertmanager sends it, posted with the shared bearer secret, reaches a
project's signed webhook channel (signature checked as a receiver would) and its PagerDuty
channel (resolved closes the incident it opened); a resend queues nothing twice; a wrong or
missing secret, an unknown channel or a malformed payload is a problem+json error; without
the secret configured every call is refused."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from tests.conftest import Api, auth, client_for
from tests.integration.workflows.test_alerts import (
    ALERT_SETTINGS,
    Receiver,
    add_channel,
    deliveries,
    setup,
    verify_signature,
    webhook,
)

from armillary.app import create_app
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.workflows.alerts.delivery import deliver_due
from armillary.workflows.settings import WorkflowSettings

SECRET = "am-" + "k" * 40
SETTINGS = WorkflowSettings(
    alert_delivery_enabled=False,
    alert_allow_private_targets=True,
    alertmanager_token=SECRET,  # type: ignore[arg-type]
)
URL = "/api/v1/alerts/alertmanager"


def notification(status: str = "firing", **alert: Any) -> dict[str, Any]:
    """A notification as Alertmanager 0.25 posts it (webhook payload version 4)."""
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ArmillaryQueueAgeHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "armillary",
        "groupLabels": {"alertname": "ArmillaryQueueAgeHigh"},
        "commonLabels": {"alertname": "ArmillaryQueueAgeHigh", "severity": "page"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": "ArmillaryQueueAgeHigh", "severity": "page"},
                "annotations": {
                    "summary": "Task runs wait more than 10 minutes for a worker",
                    "runbook_url": "docs/operations.md#armillaryqueueagehigh",
                },
                "startsAt": "2026-12-07T06:00:00Z",
                "endsAt": "2026-12-07T06:30:00Z"
                if status == "resolved"
                else "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph?g0.expr=x",
                "fingerprint": "c0ffee0123456789",
                **alert,
            }
        ],
    }


def bearer(secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings, configure_logs=False, workflow_settings=SETTINGS)
    async with LifespanManager(application, startup_timeout=60):
        yield application


async def test_a_notification_reaches_the_signed_webhook_and_pagerduty(
    api: Api, app: FastAPI, receiver: Receiver
) -> None:
    _admin, token, slug = await setup(api)
    hook = await add_channel(api, token, slug, webhook(receiver.url("/hook")))
    pagerduty = {
        "name": "pd",
        "kind": "pagerduty",
        "config": {"routing_key": "R0UT1NGKEY", "pagerduty_url": receiver.url("/pd")},
    }
    await add_channel(api, token, slug, pagerduty)
    runtime: Runtime = app.state.runtime

    answer = await api.client.post(
        URL, params={"project": slug}, json=notification(), headers=bearer()
    )
    assert answer.status_code == 202, answer.text
    assert answer.json() == {"alerts": 1, "channels": ["hook", "pd"], "queued": 2}
    # Alertmanager resends a group (repeat_interval, retries): nothing is queued twice.
    again = await api.client.post(
        URL, params={"project": slug}, json=notification(), headers=bearer()
    )
    assert again.json()["queued"] == 0
    assert await deliver_due(runtime) == 2

    (message,) = receiver.accepted("/hook")
    verify_signature(message["headers"], message["raw"])
    assert message["headers"]["X-Armillary-Event"] == "alertmanager_firing"
    body = message["json"]
    assert body["event"] == "alertmanager_firing"
    assert body["title"] == "[FIRING] ArmillaryQueueAgeHigh"
    assert body["summary"] == "Task runs wait more than 10 minutes for a worker"
    assert body["project"]["slug"] == slug
    assert body["details"]["labels"]["severity"] == "page"
    assert body["details"]["annotations"]["runbook_url"].endswith("#armillaryqueueagehigh")
    assert body["details"]["generator_url"].startswith("http://prometheus:9090/")
    (incident,) = receiver.accepted("/pd")
    assert incident["json"]["event_action"] == "trigger"

    # The resolved notice closes the same PagerDuty incident.
    resolved = await api.client.post(
        URL, params={"project": slug, "channel": "pd"}, json=notification("resolved"),
        headers=bearer(),
    )  # fmt: skip
    assert resolved.json() == {"alerts": 1, "channels": ["pd"], "queued": 1}
    assert await deliver_due(runtime) == 1
    trigger, resolve = receiver.accepted("/pd")
    assert resolve["json"]["event_action"] == "resolve"
    assert resolve["json"]["dedup_key"] == trigger["json"]["dedup_key"]
    history = await deliveries(api, token, slug, hook["id"])
    assert [d["event"] for d in history] == ["alertmanager_firing"]
    assert history[0]["status"] == "sent"


async def test_the_secret_is_required_and_errors_are_problems(
    api: Api, app: FastAPI, receiver: Receiver
) -> None:
    _admin, token, slug = await setup(api)
    await add_channel(api, token, slug, webhook(receiver.url("/hook")))
    for headers in ({}, bearer("am-" + "x" * 40), auth(token)):
        refused = await api.client.post(
            URL, params={"project": slug}, json=notification(), headers=headers
        )
        assert refused.status_code == 401, refused.text
        assert refused.headers["content-type"].startswith("application/problem+json")
    unknown = await api.client.post(
        URL, params={"project": slug, "channel": "nope"}, json=notification(), headers=bearer()
    )
    assert unknown.status_code == 422
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert "nope" in unknown.json()["detail"]
    no_project = await api.client.post(
        URL, params={"project": "no-such-project"}, json=notification(), headers=bearer()
    )
    assert no_project.status_code == 404
    malformed = await api.client.post(
        URL, params={"project": slug}, json={"version": "4", "alerts": "x"}, headers=bearer()
    )
    assert malformed.status_code == 422
    assert malformed.headers["content-type"].startswith("application/problem+json")
    assert receiver.requests == []


async def test_the_route_is_off_without_a_secret(settings: Settings) -> None:
    application = create_app(settings, configure_logs=False, workflow_settings=ALERT_SETTINGS)
    async with LifespanManager(application, startup_timeout=60), client_for(application) as c:
        answer = await c.post(URL, params={"project": "p"}, json=notification(), headers=bearer())
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "not enabled" in answer.json()["detail"]
