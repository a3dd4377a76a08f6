"""One sender per channel kind: Slack incoming webhooks, PagerDuty Events API v2, signed
generic webhooks and email over SMTP. A sender raises :class:`SendError` with a message fit
for the delivery history (never a URL, a key or a password) unless the receiver accepted."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import ssl
import time
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiosmtplib
import httpx
import orjson

from .models import ChannelKind

SEVERITIES = {
    "job_failed": "error",
    "quality_gate_failed": "error",
    "task_duration_p95": "warning",
    "job_deadline": "warning",
    "test": "info",
}


class SendError(Exception):
    """The receiver did not accept the message; ``str()`` is safe to store and show."""


@dataclass(frozen=True)
class Alert:
    """What a delivery says, whatever the channel. Stored as the delivery's payload."""

    event: str
    title: str
    summary: str
    project_id: str
    project: str
    dedup_key: str
    occurred_at: str
    rule_id: str | None = None
    rule: str | None = None
    workflow: str | None = None
    job_id: str | None = None
    task: str | None = None
    task_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def link(self) -> str | None:
        return f"/api/v1/jobs/{self.job_id}" if self.job_id else None

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Alert:
        return cls(**payload)

    def text(self) -> str:
        """Plain text: what happened, then where."""
        lines = [self.summary, "", f"Project: {self.project}"]
        if self.workflow:
            lines.append(f"Workflow: {self.workflow}")
        if self.job_id:
            lines.append(f"Job: {self.job_id}")
        if self.task:
            lines.append(f"Task: {self.task}")
        if self.rule:
            lines.append(f"Rule: {self.rule}")
        for key, value in self.details.items():
            lines.append(f"{key}: {value}")
        if self.link:
            lines.append(f"Link: {self.link}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Target:
    """A channel ready to send: its kind, plain settings and decrypted secrets."""

    kind: ChannelKind
    config: dict[str, Any]
    secrets: dict[str, Any]


async def send(
    target: Target,
    alert: Alert,
    *,
    http: httpx.AsyncClient,
    timeout: float,  # noqa: ASYNC109 - passed on to the SMTP client
    allow_private: bool = False,
) -> None:
    """Deliver ``alert`` through ``target``; returns once the receiver accepted it."""
    try:
        if target.kind is ChannelKind.EMAIL:
            await send_email(target.config, target.secrets.get("password"), alert, timeout=timeout)
        elif target.kind is ChannelKind.SLACK:
            url = target.secrets["webhook_url"]
            await check_target(url, allow_private)
            await send_slack(http, url, alert)
        elif target.kind is ChannelKind.PAGERDUTY:
            url = str(target.config["pagerduty_url"])
            await check_target(url, allow_private)
            await send_pagerduty(
                http, url, target.secrets["routing_key"], alert, target.config.get("severity")
            )
        else:
            url = target.secrets["url"]
            await check_target(url, allow_private)
            await send_webhook(http, url, target.secrets["signing_secret"], alert)
    except SendError as exc:
        raise SendError(scrub(str(exc), target.secrets)) from None


def scrub(message: str, secrets: dict[str, Any]) -> str:
    """``message`` without any of the channel's secret values in it."""
    for value in secrets.values():
        if isinstance(value, str) and len(value) >= 4:
            message = message.replace(value, "[REDACTED]")
    return message[:500]


async def check_target(url: str, allow_private: bool) -> None:
    """Refuse URLs that point into the platform's own network (SSRF) unless allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SendError("the receiver URL must be http or https")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, parts.port or 443)
    except OSError:
        raise SendError("the receiver's host name does not resolve") from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise SendError("the receiver's address is private or local (not allowed)")


async def _post(
    http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str] | None = None
) -> None:
    try:
        response = await http.post(
            url, content=body, headers={"Content-Type": "application/json", **(headers or {})}
        )
    except httpx.TimeoutException:
        raise SendError("the receiver did not answer in time") from None
    except httpx.HTTPError as exc:
        # httpx's messages may quote the URL, which can be the secret: the class only.
        raise SendError(f"could not reach the receiver ({type(exc).__name__})") from None
    if not 200 <= response.status_code < 300:
        raise SendError(f"the receiver answered HTTP {response.status_code}")


def slack_body(alert: Alert) -> dict[str, Any]:
    facts = [f"*Project:* {alert.project}"]
    if alert.workflow:
        facts.append(f"*Workflow:* {alert.workflow}")
    if alert.job_id:
        facts.append(f"*Job:* `{alert.job_id}` ({alert.link})")
    if alert.task:
        facts.append(f"*Task:* {alert.task}")
    return {
        "text": f"{alert.title}: {alert.summary}",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": alert.title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": alert.summary[:3000]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(facts)[:3000]}},
        ],
    }


async def send_slack(http: httpx.AsyncClient, url: str, alert: Alert) -> None:
    await _post(http, url, orjson.dumps(slack_body(alert)))


def pagerduty_body(routing_key: str, alert: Alert, severity: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {
        "project": alert.project,
        "workflow": alert.workflow,
        "job_id": alert.job_id,
        "task": alert.task,
        "rule": alert.rule,
        "link": alert.link,
        **alert.details,
    }
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": {
            "summary": alert.summary[:1024],
            "source": f"armillary/{alert.project}",
            "severity": severity or SEVERITIES.get(alert.event, "error"),
            "timestamp": alert.occurred_at,
            "component": alert.workflow or "armillary",
            "group": alert.project,
            "class": alert.event,
            "custom_details": {k: v for k, v in details.items() if v is not None},
        },
    }


async def send_pagerduty(
    http: httpx.AsyncClient,
    url: str,
    routing_key: str,
    alert: Alert,
    severity: str | None = None,
) -> None:
    await _post(http, url, orjson.dumps(pagerduty_body(routing_key, alert, severity)))


def webhook_body(alert: Alert) -> dict[str, Any]:
    return {
        "event": alert.event,
        "title": alert.title,
        "summary": alert.summary,
        "occurred_at": alert.occurred_at,
        "dedup_key": alert.dedup_key,
        "rule": {"id": alert.rule_id, "name": alert.rule} if alert.rule_id else None,
        "project": {"id": alert.project_id, "slug": alert.project},
        "workflow": alert.workflow,
        "job": {"id": alert.job_id, "link": alert.link} if alert.job_id else None,
        "task": {"name": alert.task, "run_id": alert.task_run_id} if alert.task else None,
        "details": alert.details,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256 over ``"{timestamp}.{body}"``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


async def send_webhook(http: httpx.AsyncClient, url: str, secret: str, alert: Alert) -> None:
    body = orjson.dumps(webhook_body(alert))
    timestamp = str(int(time.time()))
    headers = {
        "X-Armillary-Timestamp": timestamp,
        "X-Armillary-Signature": sign(secret, timestamp, body),
        "X-Armillary-Event": alert.event,
    }
    await _post(http, url, body, headers)


def email_message(config: dict[str, Any], alert: Alert) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = f"[Armillary] {alert.title}: {alert.project}"[:250]
    message["From"] = config["from_address"]
    message["To"] = ", ".join(config["to"])
    message.set_content(alert.text())
    return message


async def send_email(
    config: dict[str, Any],
    password: str | None,
    alert: Alert,
    *,
    timeout: float,  # noqa: ASYNC109 - aiosmtplib's own per-operation timeout
    tls_context: ssl.SSLContext | None = None,
) -> None:
    """Send through the channel's SMTP server: STARTTLS when configured (or implicit TLS),
    then login when a username is set. ``tls_context`` defaults to system trust."""
    message = email_message(config, alert)
    try:
        await aiosmtplib.send(
            message,
            hostname=config["host"],
            port=int(config["port"]),
            username=config.get("username"),
            password=password,
            start_tls=bool(config.get("starttls")),
            use_tls=bool(config.get("use_tls")),
            tls_context=tls_context,
            timeout=timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        raise SendError(f"the SMTP server refused: {exc.code} {exc.message[:200]}") from None
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise SendError(f"SMTP failed ({type(exc).__name__})") from None
