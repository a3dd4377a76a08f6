"""F7 and F13: alert channels as a way into the platform's network. An email channel aimed at
127.0.0.1 (or a name resolving there) is refused like a webhook or an ingest URL; its errors
do not tell an open port from a closed one; and a webhook's host is resolved once, the request
going to the address that was checked (a rebinding DNS answer cannot redirect it)."""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from armillary.kit.db import utcnow
from armillary.workflows.alerts import senders
from armillary.workflows.alerts.models import ChannelKind

PUBLIC = "93.184.216.34"


def alert() -> senders.Alert:
    return senders.Alert(
        event="job_failed",
        title="Job failed",
        summary="Job 1 failed",
        project_id=str(uuid.uuid4()),
        project="proj",
        dedup_key="k",
        occurred_at=utcnow().isoformat(),
        job_id="1",
    )


def email_config(host: str, port: int) -> dict[str, Any]:
    return {
        "host": host,
        "port": port,
        "from_address": "alerts@example.com",
        "to": ["oncall@example.com"],
        "starttls": False,
        "use_tls": False,
    }


class Listener:
    """A TCP port on 127.0.0.1 that records connections; ``mode`` says what it does then."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.connections = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = int(self.sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.mode == "garbage":
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            if self.mode != "silent":
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listeners() -> Iterator[dict[str, Listener]]:
    made = {mode: Listener(mode) for mode in ("garbage", "hangup", "silent")}
    yield made
    for listener in made.values():
        listener.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def resolving_to(*addresses: str) -> Any:
    async def resolve(_host: str, _port: int) -> list[str]:
        return list(addresses)

    return resolve


async def test_an_email_channel_to_an_internal_host_is_refused(
    listeners: dict[str, Listener],
) -> None:
    port = listeners["garbage"].port
    target = senders.Target(ChannelKind.EMAIL, email_config("127.0.0.1", port), {})
    async with httpx.AsyncClient() as http:
        with pytest.raises(senders.SendError, match="private or local"):
            await senders.send(target, alert(), http=http, timeout=2)
        # A name that resolves inside: loopback, a private network, the metadata service.
        for inside in ("127.0.0.1", "10.0.0.5", "169.254.169.254", "::ffff:127.0.0.1"):
            named = senders.Target(ChannelKind.EMAIL, email_config("mail.example", port), {})
            with pytest.raises(senders.SendError, match="private or local"):
                await senders.send(
                    named, alert(), http=http, timeout=2, resolver=resolving_to(inside)
                )
    assert listeners["garbage"].connections == 0  # nothing was even connected to


async def test_email_errors_do_not_tell_open_ports_from_closed(
    listeners: dict[str, Listener],
) -> None:
    """Even where an operator admits private hosts, a channel is no port scanner."""
    ports = {
        "closed": closed_port(),
        "open, not SMTP": listeners["garbage"].port,
        "open, hangs up": listeners["hangup"].port,
        "open, silent": listeners["silent"].port,
    }
    errors = {}
    for name, port in ports.items():
        with pytest.raises(senders.SendError) as failed:
            await senders.send_email(
                email_config("127.0.0.1", port), None, alert(), timeout=1, allow_private=True
            )
        errors[name] = str(failed.value)
    assert set(errors.values()) == {senders.SMTP_UNREACHABLE}, errors


async def test_a_webhook_goes_to_the_address_that_was_checked() -> None:
    """A rebinding name: public when checked, 127.0.0.1 when asked again."""
    answers = [[PUBLIC], ["127.0.0.1"]]
    asked: list[str] = []

    async def rebinding(host: str, _port: int) -> list[str]:
        asked.append(host)
        return answers[min(len(asked), 2) - 1]

    sent: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    target = senders.Target(
        ChannelKind.WEBHOOK,
        {},
        {"url": "https://hooks.example:8443/in?x=1", "signing_secret": "s" * 32},
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        await senders.send(target, alert(), http=http, timeout=2, resolver=rebinding)
    assert asked == ["hooks.example"]  # resolved once
    (request,) = sent
    assert request.url.host == PUBLIC
    assert request.url.port == 8443
    assert request.url.path == "/in"
    assert request.headers["host"] == "hooks.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.example"  # TLS checks the name
    assert "x-armillary-signature" in request.headers


async def test_a_name_with_any_internal_address_is_refused() -> None:
    sent: list[httpx.Request] = []
    target = senders.Target(ChannelKind.SLACK, {}, {"webhook_url": "https://hooks.example/x"})
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200))
    ) as http:
        with pytest.raises(senders.SendError, match="private or local"):
            await senders.send(
                target,
                alert(),
                http=http,
                timeout=2,
                resolver=resolving_to(PUBLIC, "127.0.0.1"),
            )
    assert sent == []
