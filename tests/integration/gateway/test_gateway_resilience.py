"""Circuit breaking, retries and timeouts at the gateway, against a scripted upstream that
serves its own JWKS (every service cluster points at it; each cluster breaks on its own)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from prometheus_client.parser import text_string_to_metric_families
from tests.integration.gateway.support import Gateway, gateway_for
from tests.integration.workflows.engine import serve
from tests.ports import free_port
from tests.security.test_tokens import ed25519_token

from armillary.gateway.settings import SERVICES

pytestmark = pytest.mark.asyncio

KID = "gateway-test-key-1"
ISSUER = "armillary"
AUDIENCE = "armillary-api"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Upstream:
    """An ASGI app: JWKS, and per path a scripted status (and delay); it counts each hit."""

    def __init__(self) -> None:
        self.key = Ed25519PrivateKey.generate()
        self.hits: Counter[str] = Counter()
        self.status: dict[str, int] = {}
        self.delay: dict[str, float] = {}
        self.headers: dict[str, dict[str, str]] = {}
        # Paths answered as a follow: a first chunk, then more only once the test says so.
        self.follow: dict[str, asyncio.Event] = {}
        self.state = _State()

    def token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": str(uuid.uuid4()),
            "iat": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "role": "admin",
        }
        return ed25519_token(self.key, {"alg": "EdDSA", "typ": "at+jwt", "kid": KID}, claims)

    def _jwks(self) -> bytes:
        raw = self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw), "kid": KID, "alg": "EdDSA"}
        return json.dumps({"keys": [jwk]}).encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path in self.follow:
            await self._follow(path, send)
            return
        if path.endswith("/jwks"):
            status, body = 200, self._jwks()
        else:
            self.hits[path] += 1
            self.headers[path] = {k.decode(): v.decode() for k, v in scope["headers"]}
            await asyncio.sleep(self.delay.get(path, 0))
            status, body = self.status.get(path, 200), b"{}"
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _follow(self, path: str, send: Any) -> None:
        self.hits[path] += 1
        headers = [(b"content-type", b"text/plain")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"first line\n", "more_body": True})
        await self.follow[path].wait()
        # Longer than the route timeout of ordinary routes: a follow has only an idle limit.
        await asyncio.sleep(1.5)
        await send({"type": "http.response.body", "body": b"last line\n"})


class _State:
    class runtime:
        class settings:
            jwt_issuer = ISSUER
            jwt_audience = AUDIENCE


@pytest.fixture
async def scripted(tmp_path: Path) -> AsyncIterator[tuple[Upstream, Gateway]]:
    upstream = Upstream()
    async with gateway_for(
        upstream,  # type: ignore[arg-type]
        tmp_path,
        gateway_ejection_seconds="1",
        gateway_route_timeout_seconds="1",
    ) as gateway:
        yield upstream, gateway


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_idempotent_requests_are_retried_and_others_are_not(
    scripted: tuple[Upstream, Gateway],
) -> None:
    upstream, gateway = scripted
    headers = {"Authorization": f"Bearer {upstream.token()}"}
    path = "/api/v1/projects/p1/datasets"
    upstream.status[path] = 503
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        got = await client.get(path, headers=headers)
        assert got.status_code == 503
        assert upstream.hits[path] == 3  # the request and two retries
        upstream.hits.clear()
        posted = await client.post(path, json={"name": "x"}, headers=headers)
        assert posted.status_code == 503
        assert upstream.hits[path] == 1


async def test_a_failing_service_is_ejected_answered_fast_and_probed_back(
    scripted: tuple[Upstream, Gateway],
) -> None:
    upstream, gateway = scripted
    headers = {"Authorization": f"Bearer {upstream.token()}"}
    path = "/api/v1/projects/p1/models"
    upstream.status[path] = 500
    failures = gateway.settings.gateway_consecutive_5xx
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        for _ in range(failures):
            response = await client.post(path, json={}, headers=headers)
            assert response.status_code == 500
        assert upstream.hits[path] == failures
        # Ejected: the gateway answers by itself, with Retry-After, and the service rests.
        fast = await client.post(path, json={}, headers=headers)
        _problem(fast, 503)
        assert fast.headers["retry-after"]
        assert upstream.hits[path] == failures
        # Another service's cluster is not affected.
        other = await client.get("/api/v1/projects/p1/deployments", headers=headers)
        assert other.status_code == 200
        # After the ejection time the host is probed back, and answers again.
        upstream.status[path] = 200
        deadline = time.monotonic() + 15
        while (await client.post(path, json={}, headers=headers)).status_code != 200:
            assert time.monotonic() < deadline, "the service was never probed back"
            await asyncio.sleep(0.2)
        stats = await client.get(f"{gateway.stats_url}/stats/prometheus")
        ejections = "envoy_cluster_outlier_detection_ejections_enforced_total"
        assert f'{ejections}{{envoy_cluster_name="registry"}} 1' in stats.text


async def test_a_slow_service_is_a_504_problem(scripted: tuple[Upstream, Gateway]) -> None:
    upstream, gateway = scripted
    headers = {"Authorization": f"Bearer {upstream.token()}"}
    path = "/api/v1/projects/p1/jobs"
    upstream.delay[path] = 3
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.get(path, headers=headers)
    body = _problem(response, 504)
    assert body["title"] == "Gateway timeout"


async def test_clients_cannot_steer_the_gateway_with_envoy_headers(
    scripted: tuple[Upstream, Gateway],
) -> None:
    """Every client is external: its x-envoy-* headers (timeouts, retries) are ignored, and
    the gateway appends the address it saw to X-Forwarded-For."""
    upstream, gateway = scripted
    path = "/api/v1/projects/p1/code"
    upstream.delay[path] = 0.3
    steering = {
        "Authorization": f"Bearer {upstream.token()}",
        "x-envoy-upstream-rq-timeout-ms": "1",
        "x-envoy-retry-on": "5xx",
        "x-envoy-max-retries": "5",
        "X-Forwarded-For": "203.0.113.9",
    }
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
        response = await client.get(path, headers=steering)
    assert response.status_code == 200, response.text
    seen = upstream.headers[path]
    assert not {name for name in seen if name.startswith("x-envoy-") and "internal" in name}
    assert "x-envoy-retry-on" not in seen
    # The gateway appends the hop it saw (for a loopback peer Envoy writes the host's own
    # address); services read the header from the right, trusting only the gateway.
    hops = [hop.strip() for hop in seen["x-forwarded-for"].split(",")]
    assert len(hops) == 2
    assert hops[0] == "203.0.113.9"
    assert seen["x-envoy-external-address"] == "127.0.0.1"


async def test_a_log_follow_streams_through_without_buffering(
    scripted: tuple[Upstream, Gateway],
) -> None:
    """The first line reaches the client while the service is still writing (a buffering
    proxy would hold it until the end, and this test would time out)."""
    upstream, gateway = scripted
    path = f"/api/v1/jobs/{uuid.uuid4()}/tasks/train/logs"
    upstream.follow[path] = asyncio.Event()
    headers = {"Authorization": f"Bearer {upstream.token()}"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as client,
        client.stream("GET", path, params={"follow": "true"}, headers=headers) as response,
    ):
        assert response.status_code == 200
        chunks = response.aiter_bytes()
        first = await asyncio.wait_for(anext(chunks), timeout=10)
        assert first == b"first line\n"
        upstream.follow[path].set()
        rest = b"".join([chunk async for chunk in chunks])
    assert rest == b"last line\n"


async def test_the_gateway_command_validates_and_runs_envoy(tmp_path: Path) -> None:
    """`armillary gateway` as operators run it: configured by the environment only."""
    upstream = Upstream()
    async with contextlib.asynccontextmanager(serve)(upstream, free_port()) as url:  # type: ignore[arg-type]
        port, stats = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ARMILLARY_")}
        env.update(
            {f"ARMILLARY_{service.upper()}_URL": url for service in SERVICES},
            ARMILLARY_HOME=str(tmp_path),
            ARMILLARY_PORT=str(port),
            ARMILLARY_GATEWAY_ADMIN_PORT=str(free_port()),
            ARMILLARY_GATEWAY_STATS_PORT=str(stats),
        )
        log = (tmp_path / "gateway.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "armillary.cli", "gateway"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            async with httpx.AsyncClient(timeout=5) as client:
                while True:
                    assert process.poll() is None, (tmp_path / "gateway.log").read_text()
                    with contextlib.suppress(httpx.TransportError):
                        ready = await client.get(f"http://127.0.0.1:{stats}/ready")
                        if ready.status_code == 200:
                            break
                    assert time.monotonic() < deadline, (tmp_path / "gateway.log").read_text()
                    await asyncio.sleep(0.2)
                headers = {"Authorization": f"Bearer {upstream.token()}"}
                routed = await client.get(
                    f"http://127.0.0.1:{port}/api/v1/projects/p1/datasets", headers=headers
                )
                assert routed.status_code == 200
                assert upstream.hits["/api/v1/projects/p1/datasets"] == 1
        finally:
            process.terminate()
            process.wait(15)
            log.close()
        assert (tmp_path / "gateway" / "envoy.yaml").is_file()


async def test_connection_and_pending_limits_shed_load_with_503s(tmp_path: Path) -> None:
    upstream = Upstream()
    path = "/api/v1/projects/p1/workflows"
    upstream.delay[path] = 1
    async with gateway_for(
        upstream,  # type: ignore[arg-type]
        tmp_path,
        gateway_max_connections="1",
        gateway_max_pending_requests="1",
        gateway_max_requests="1",
    ) as gateway:
        headers = {"Authorization": f"Bearer {upstream.token()}"}
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as client:
            responses = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(6)))
            stats = await client.get(f"{gateway.stats_url}/stats/prometheus")
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses
    shed = [r for r in responses if r.status_code == 503]
    assert shed, statuses
    for response in shed:
        _problem(response, 503)
        assert response.headers["retry-after"]
    assert upstream.hits[path] < len(responses)
    # Every 503 is the circuit breaker's: the pending queue's (max_pending_requests) or,
    # when Envoy had already given a request its one upstream slot, the active requests'
    # (max_requests). Which of the two trips depends on timing, so their sum is counted.
    breaker_sheds = sum(
        _counter(stats.text, f"envoy_cluster_upstream_rq_{kind}_overflow", cluster="workflows")
        for kind in ("pending", "active")
    )
    assert breaker_sheds == len(shed), stats.text


def _counter(text: str, name: str, *, cluster: str) -> float:
    """One cluster's value of a counter in Envoy's Prometheus text (the parser names a
    counter's sample with ``_total``, which Envoy leaves off)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if family.name == name and sample.labels.get("envoy_cluster_name") == cluster:
                return sample.value
    raise AssertionError(f"{name} for {cluster} is not in the stats")
