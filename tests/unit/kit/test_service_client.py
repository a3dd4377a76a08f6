"""Service-to-service calls: timeouts, retries only for idempotent methods, a circuit breaker
per upstream that fails fast and probes back (httpx.MockTransport as the upstream)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from prometheus_client import REGISTRY

from armillary.kit.errors import ServiceUnavailable
from armillary.kit.service_client import CircuitBreaker, ServiceClient


class Upstream:
    """Answers with the queued outcomes in order (a status, or an exception to raise)."""

    def __init__(self, *outcomes: int | Exception) -> None:
        self.outcomes = list(outcomes)
        self.calls: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request.method)
        outcome = self.outcomes.pop(0) if self.outcomes else 200
        if isinstance(outcome, Exception):
            raise outcome
        return httpx.Response(outcome, json={"ok": outcome == 200})


def _client(upstream: Upstream, breaker: CircuitBreaker | None = None) -> ServiceClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(upstream), base_url="http://up")
    breaker = breaker or CircuitBreaker()
    return ServiceClient("registry", http, retries=2, backoff_seconds=0.001, breaker=breaker)


async def test_an_idempotent_call_is_retried_through_a_blip() -> None:
    upstream = Upstream(httpx.ConnectError("refused"), 503)
    response = await _client(upstream).send("GET", "/x")
    assert response.status_code == 200
    assert upstream.calls == ["GET", "GET", "GET"]


async def test_a_post_is_never_retried() -> None:
    upstream = Upstream(httpx.ConnectError("refused"))
    with pytest.raises(ServiceUnavailable, match="registry service is unreachable"):
        await _client(upstream).send("POST", "/x", json={})
    assert upstream.calls == ["POST"]
    answered = Upstream(503)
    assert (await _client(answered).send("POST", "/x")).status_code == 503
    assert answered.calls == ["POST"]


async def test_retries_give_up_with_service_unavailable() -> None:
    upstream = Upstream(*[httpx.ConnectError("refused")] * 3)
    with pytest.raises(ServiceUnavailable):
        await _client(upstream).send("GET", "/x")
    assert len(upstream.calls) == 3


async def test_the_circuit_opens_fails_fast_and_probes_back() -> None:
    breaker = CircuitBreaker(threshold=3, reset_seconds=0.05)
    upstream = Upstream(*[httpx.ConnectError("refused")] * 3)
    client = _client(upstream, breaker)
    with pytest.raises(ServiceUnavailable):
        await client.send("GET", "/x")  # three failures: the circuit opens
    assert breaker.state == "open"
    calls = len(upstream.calls)
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        await client.send("GET", "/x")
    assert len(upstream.calls) == calls  # failed fast: the upstream was not called
    await asyncio.sleep(0.06)
    assert (await client.send("GET", "/x")).status_code == 200  # the probe goes through
    assert breaker.state == "closed"


async def test_the_open_circuit_shows_in_the_metrics() -> None:
    breaker = CircuitBreaker(threshold=1, reset_seconds=0.05, service="metrics-probe")
    client = _client(Upstream(httpx.ConnectError("a")), breaker)

    def gauge() -> float | None:
        return REGISTRY.get_sample_value(
            "armillary_service_circuit_open", {"service": "metrics-probe"}
        )

    with pytest.raises(ServiceUnavailable):
        await client.send("POST", "/x")
    assert gauge() == 1.0
    await asyncio.sleep(0.06)
    await client.send("GET", "/x")
    assert gauge() == 0.0


async def test_a_failed_probe_opens_the_circuit_again() -> None:
    breaker = CircuitBreaker(threshold=1, reset_seconds=0.05)
    client = _client(Upstream(httpx.ConnectError("a"), httpx.ConnectError("b")), breaker)
    with pytest.raises(ServiceUnavailable):
        await client.send("POST", "/x")
    await asyncio.sleep(0.06)
    with pytest.raises(ServiceUnavailable):
        await client.send("POST", "/x")  # the probe fails
    assert breaker.state == "open"


async def test_client_errors_do_not_count_against_the_upstream() -> None:
    breaker = CircuitBreaker(threshold=2)
    client = _client(Upstream(404, 401, 404, 422), breaker)
    for _ in range(4):
        await client.send("GET", "/x")
    assert breaker.state == "closed"


def test_calls_in_process_have_no_breaker_and_no_retries() -> None:
    client = ServiceClient.in_process("identity", object())
    assert (client.breaker, client.retries) == (None, 0)
    remote = ServiceClient.over_http("identity", "http://127.0.0.1:1")
    assert remote.breaker is not None
    assert remote.retries > 0


async def test_a_hung_upstream_costs_one_timeout_retries_included() -> None:
    """A server that accepts and never answers: the idempotent call is retried, but all its
    tries share the one timeout (three full timeouts would overrun the bound below)."""

    async def never_answer(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = ServiceClient.over_http("registry", f"http://127.0.0.1:{port}", timeout=1.0)
    try:
        with pytest.raises(ServiceUnavailable):
            await asyncio.wait_for(client.send("GET", "/slow"), timeout=2.5)
    finally:
        await client.aclose()
        server.close()


async def test_a_client_over_http_exports_its_breaker_closed_from_the_start() -> None:
    """Every process that calls another service shows the breaker, before any failure."""
    client = ServiceClient.over_http("breaker-at-rest", "http://127.0.0.1:9")
    try:
        assert (
            REGISTRY.get_sample_value(
                "armillary_service_circuit_open", {"service": "breaker-at-rest"}
            )
            == 0.0
        )
    finally:
        await client.aclose()
