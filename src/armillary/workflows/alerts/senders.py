"""One sender per channel kind: Slack incoming webhooks, PagerDuty Events API v2, signed
generic webhooks and email over SMTP. A sender raises :class:`SendError` with a message fit
for the delivery history (never a URL, a key or a password) unless the receiver accepted.

Every receiver is checked against the platform's address policy (:mod:`armillary.kit.egress`,
as ``ingest`` is): its host is resolved once, refused when any address is private, local or a
metadata service, and the connection goes to the checked address (no second lookup for DNS
rebinding to exploit). An SMTP server that cannot be reached fails with one message whatever
the reason, so a channel cannot be used to tell open ports from closed ones.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import socket
import ssl
import time
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson

from armillary.kit.egress import (
    AsyncResolver,
    IPAddress,
    RefusedDestination,
    UnresolvableHost,
    ip_literal,
    resolve_checked,
    system_resolver,
)

from .models import ChannelKind

SEVERITIES = {
    "job_failed": "error",
    "quality_gate_failed": "error",
    "task_duration_p95": "warning",
    "job_deadline": "warning",
    "test": "info",
    "alertmanager_firing": "error",
    "alertmanager_resolved": "info",
}


class SendError(Exception):
    """The receiver did not accept the message; ``str()`` is safe to store and show."""


# Refused, timed out, closed or not speaking SMTP: the same words, so that the delivery
# history of a channel aimed at some host cannot map its ports.
SMTP_UNREACHABLE = "could not deliver: no SMTP server answered at the configured address"


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
    resolver: AsyncResolver = system_resolver,
) -> None:
    """Deliver ``alert`` through ``target``; returns once the receiver accepted it.
    ``allow_private`` admits private and local receivers (development and tests only)."""
    try:
        if target.kind is ChannelKind.EMAIL:
            await send_email(
                target.config,
                target.secrets.get("password"),
                alert,
                timeout=timeout,
                allow_private=allow_private,
                resolver=resolver,
            )
            return
        if target.kind is ChannelKind.SLACK:
            url = target.secrets["webhook_url"]
            body, headers = orjson.dumps(slack_body(alert)), dict[str, str]()
        elif target.kind is ChannelKind.PAGERDUTY:
            url = str(target.config["pagerduty_url"])
            routing_key = target.secrets["routing_key"]
            severity = target.config.get("severity")
            body, headers = orjson.dumps(pagerduty_body(routing_key, alert, severity)), {}
        else:
            url = target.secrets["url"]
            body, headers = webhook_request(target.secrets["signing_secret"], alert)
        pinned = await pin(url, allow_private, resolver)
        await _post(http, pinned, body, headers)
    except SendError as exc:
        raise SendError(scrub(str(exc), target.secrets)) from None


def scrub(message: str, secrets: dict[str, Any]) -> str:
    """``message`` without any of the channel's secret values in it."""
    for value in secrets.values():
        if isinstance(value, str) and len(value) >= 4:
            message = message.replace(value, "[REDACTED]")
    return message[:500]


@dataclass(frozen=True)
class PinnedRequest:
    """Where to send: the URL with its host replaced by the checked address, plus what keeps
    the original name for the receiver (``Host``) and for TLS (SNI and certificate check)."""

    url: httpx.URL
    headers: dict[str, str]
    extensions: dict[str, Any]


async def pin(url: str, allow_private: bool, resolver: AsyncResolver) -> PinnedRequest:
    """Resolve the receiver's host once, check every address, and aim at the checked one."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise SendError("the receiver URL must be http or https") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise SendError("the receiver URL must be http or https")
    host = parsed.raw_host.decode("ascii")  # IDNA-encoded; IPv6 without brackets
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    address = await _checked(host, port, allow_private, resolver, "receiver")
    extensions: dict[str, Any] = {}
    if parsed.scheme == "https" and ip_literal(host) is None:
        extensions["sni_hostname"] = host
    return PinnedRequest(
        parsed.copy_with(host=str(address)),
        # Connection: close, so a pooled connection opened for one name never carries a
        # request for another name served at the same address.
        {"Host": parsed.netloc.decode("ascii"), "Connection": "close"},
        extensions,
    )


async def _checked(
    host: str, port: int, allow_private: bool, resolver: AsyncResolver, what: str
) -> IPAddress:
    try:
        return await resolve_checked(host, port, allow_private=allow_private, resolver=resolver)
    except RefusedDestination:
        raise SendError(f"the {what}'s address is private or local (not allowed)") from None
    except UnresolvableHost:
        raise SendError(f"the {what}'s host name does not resolve") from None


async def _post(
    http: httpx.AsyncClient, pinned: PinnedRequest, body: bytes, headers: dict[str, str]
) -> None:
    request = http.build_request(
        "POST",
        pinned.url,
        content=body,
        headers={"Content-Type": "application/json", **headers, **pinned.headers},
        extensions=pinned.extensions,
    )
    try:
        response = await http.send(request)
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
        # Alertmanager's resolved notice closes the incident its firing one opened.
        "event_action": "resolve" if alert.event == "alertmanager_resolved" else "trigger",
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


def webhook_request(secret: str, alert: Alert) -> tuple[bytes, dict[str, str]]:
    """The signed webhook's body and headers."""
    body = orjson.dumps(webhook_body(alert))
    timestamp = str(int(time.time()))
    headers = {
        "X-Armillary-Timestamp": timestamp,
        "X-Armillary-Signature": sign(secret, timestamp, body),
        "X-Armillary-Event": alert.event,
    }
    return body, headers


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
    allow_private: bool = False,
    resolver: AsyncResolver = system_resolver,
) -> None:
    """Send through the channel's SMTP server: STARTTLS when configured (or implicit TLS),
    then login when a username is set. ``tls_context`` defaults to system trust. The server
    is checked like any receiver (``allow_private`` admits private and local ones) and the
    connection goes to the checked address; TLS still verifies the configured name."""
    message = email_message(config, alert)
    host, port = str(config["host"]), int(config["port"])
    address = await _checked(host, port, allow_private, resolver, "SMTP server")
    # From here aiosmtplib owns the socket: its transport closes it, on failure too.
    sock = await _connect(address, port, timeout)
    try:
        await aiosmtplib.send(
            message,
            hostname=host,
            sock=sock,
            username=config.get("username"),
            password=password,
            start_tls=bool(config.get("starttls")),
            use_tls=bool(config.get("use_tls")),
            tls_context=tls_context,
            timeout=timeout,
        )
    except aiosmtplib.SMTPResponseException as exc:
        if exc.code < 0:  # no reply code: not an answer from an SMTP server
            raise SendError(SMTP_UNREACHABLE) from None
        raise SendError(f"the SMTP server refused: {exc.code} {exc.message[:200]}") from None
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        raise SendError(SMTP_UNREACHABLE) from None


async def _connect(address: IPAddress, port: int, timeout: float) -> socket.socket:  # noqa: ASYNC109
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(
            asyncio.get_running_loop().sock_connect(sock, (str(address), port)), timeout
        )
    except (OSError, TimeoutError):
        sock.close()
        raise SendError(SMTP_UNREACHABLE) from None
    return sock
