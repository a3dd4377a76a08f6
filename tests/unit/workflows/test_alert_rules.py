"""Alert rule evaluation: the p95 of recent durations, the factor and minimum samples, the
filters, de-duplication keys, backoff, and the payloads each channel kind receives."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from armillary.workflows.alerts import rules, senders
from armillary.workflows.alerts.delivery import backoff_seconds
from armillary.workflows.alerts.models import AlertRule, RuleKind
from armillary.workflows.alerts.schemas import EmailConfig, RuleIn

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def rule(kind: RuleKind = RuleKind.TASK_DURATION_P95, **kw: Any) -> AlertRule:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "project_id": uuid.uuid4(),
        "project_slug": "proj",
        "name": "r",
        "kind": kind,
        "workflow": None,
        "task": None,
        "factor": 2.0,
        "min_samples": 5,
        "max_minutes": None,
        "channel_ids": [],
    }
    values.update(kw)
    return AlertRule(**values)


def test_p95_is_nearest_rank() -> None:
    assert rules.p95([5.0]) == 5.0
    assert rules.p95(list(map(float, range(1, 21)))) == 19.0  # ceil(0.95 * 20) = 19th
    assert rules.p95([float(x) for x in range(100, 0, -1)]) == 95.0
    assert rules.p95([1.0, 1.0, 1.0, 1.0, 100.0]) == 100.0
    with pytest.raises(ValueError, match="no values"):
        rules.p95([])


def test_too_slow_needs_enough_samples_and_the_factor() -> None:
    history = [10.0] * 19 + [12.0]  # p95 = 10
    assert rules.duration_threshold(history, factor=2.0, min_samples=5) == 20.0
    assert rules.too_slow(20.5, history, factor=2.0, min_samples=5)
    assert not rules.too_slow(20.0, history, factor=2.0, min_samples=5)
    assert not rules.too_slow(15.0, history, factor=2.0, min_samples=5)
    assert rules.too_slow(15.5, history, factor=1.5, min_samples=5)
    # Fewer earlier runs than min_samples: no opinion yet.
    assert rules.duration_threshold(history[:4], factor=2.0, min_samples=5) is None
    assert not rules.too_slow(1000.0, history[:4], factor=2.0, min_samples=5)
    assert rules.too_slow(1000.0, history[:5], factor=2.0, min_samples=5)


def test_filters() -> None:
    assert rules.applies(rule(), workflow="w", task="t")
    assert rules.applies(rule(workflow="w"), workflow="w", task="t")
    assert not rules.applies(rule(workflow="w"), workflow="other", task="t")
    assert rules.applies(rule(task="t"), workflow="w", task="t")
    assert not rules.applies(rule(task="t"), workflow="w", task="u")


def test_dedup_key_names_rule_channel_event_and_subject() -> None:
    r, c, s = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    key = rules.dedup_key(r, c, "job_failed", s)
    assert key == f"{r}:{c}:job_failed:{s}"
    assert key == rules.dedup_key(r, c, "job_failed", s)
    assert key != rules.dedup_key(r, uuid.uuid4(), "job_failed", s)
    assert len(key) <= 255


def test_backoff_grows_is_capped_and_jittered() -> None:
    for attempt, full in [(1, 10.0), (2, 20.0), (3, 40.0), (10, 300.0)]:
        values = {backoff_seconds(attempt, base=10.0, cap=300.0) for _ in range(50)}
        assert all(full / 2 <= v <= full for v in values)
        assert len(values) > 1


def test_rule_schema_defaults_and_kind_checks() -> None:
    channel = [uuid.uuid4()]
    p95_rule = RuleIn(name="slow", kind=RuleKind.TASK_DURATION_P95, channel_ids=channel)
    assert (p95_rule.factor, p95_rule.min_samples) == (2.0, 5)
    with pytest.raises(ValidationError, match="max_minutes"):
        RuleIn(name="d", kind=RuleKind.JOB_DEADLINE, channel_ids=channel)
    with pytest.raises(ValidationError, match="task_duration_p95"):
        RuleIn(name="f", kind=RuleKind.JOB_FAILED, channel_ids=channel, factor=3.0)
    with pytest.raises(ValidationError, match="job_deadline"):
        RuleIn(name="f", kind=RuleKind.JOB_FAILED, channel_ids=channel, max_minutes=3)
    with pytest.raises(ValidationError, match="repeated"):
        RuleIn(name="f", kind=RuleKind.JOB_FAILED, channel_ids=channel * 2)
    with pytest.raises(ValidationError):
        RuleIn(name="f", kind=RuleKind.JOB_FAILED, channel_ids=[])
    with pytest.raises(ValidationError):
        EmailConfig(host="h", from_address="a@example.com", to=["b@example.com"], use_tls=True)


def _alert() -> senders.Alert:
    r = rule(RuleKind.JOB_FAILED, workflow="train")
    job = uuid.uuid4()
    return rules.job_failed(
        r, "k:1", job_id=job, workflow="train", reason="task fit failed", occurred_at=NOW
    )


def test_alert_text_names_project_workflow_job_and_link() -> None:
    alert = _alert()
    text = alert.text()
    assert "Project: proj" in text
    assert "Workflow: train" in text
    assert f"Job: {alert.job_id}" in text
    assert f"Link: /api/v1/jobs/{alert.job_id}" in text
    assert senders.Alert.from_payload(alert.to_payload()) == alert


def test_payload_shapes() -> None:
    alert = _alert()
    slack = senders.slack_body(alert)
    assert "Job failed" in slack["text"]
    assert slack["blocks"][0]["type"] == "header"
    pd = senders.pagerduty_body("rk", alert)
    assert pd["routing_key"] == "rk"
    assert pd["event_action"] == "trigger"
    assert pd["dedup_key"] == "k:1"
    assert pd["payload"]["severity"] == "error"
    assert pd["payload"]["class"] == "job_failed"
    assert pd["payload"]["custom_details"]["link"] == f"/api/v1/jobs/{alert.job_id}"
    assert senders.pagerduty_body("rk", alert, "critical")["payload"]["severity"] == "critical"
    hook = senders.webhook_body(alert)
    assert hook["event"] == "job_failed"
    assert hook["job"] == {"id": alert.job_id, "link": f"/api/v1/jobs/{alert.job_id}"}
    assert hook["project"]["slug"] == "proj"
    assert senders.sign("s", "1", b"{}").startswith("sha256=")


def test_errors_never_carry_channel_secrets() -> None:
    secrets = {"url": "https://hooks.example/secret-path", "signing_secret": "x" * 20}
    message = "failed at https://hooks.example/secret-path with " + "x" * 20
    scrubbed = senders.scrub(message, secrets)
    assert "secret-path" not in scrubbed
    assert "x" * 20 not in scrubbed


async def public(_host: str, _port: int) -> list[str]:
    return ["93.184.216.34"]


async def test_private_targets_are_refused_unless_allowed() -> None:
    with pytest.raises(senders.SendError, match="private or local"):
        await senders.pin("http://127.0.0.1:9/hook", False, public)
    with pytest.raises(senders.SendError, match="http or https"):
        await senders.pin("ftp://example.com/x", True, public)
    allowed = await senders.pin("http://127.0.0.1:9/hook", True, public)
    assert allowed.url.host == "127.0.0.1"


async def test_starttls_is_requested_when_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []

    async def fake_send(message: Any, **kwargs: Any) -> None:
        calls.append(kwargs)

    async def connected(address: Any, port: int, _timeout: float) -> socket.socket:
        assert (str(address), port) == ("93.184.216.34", 587)  # the checked address
        return socket.socket()

    monkeypatch.setattr(senders.aiosmtplib, "send", fake_send)
    monkeypatch.setattr(senders, "_connect", connected)
    config = {
        "host": "smtp.example",
        "port": 587,
        "from_address": "a@example.com",
        "to": ["b@example.com"],
        "username": "u",
        "starttls": True,
        "use_tls": False,
    }
    await senders.send_email(config, "pw", _alert(), timeout=5, resolver=public)
    await senders.send_email(
        {**config, "starttls": False}, None, _alert(), timeout=5, resolver=public
    )
    assert calls[0]["start_tls"] is True
    assert calls[0]["hostname"] == "smtp.example"  # TLS checks the configured name
    assert calls[0]["username"] == "u"
    assert calls[0]["password"] == "pw"
    assert calls[1]["start_tls"] is False
