"""Envoy in front of the embedded platform: what the edge refuses never reaches a service."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from tests.conftest import Api, auth
from tests.integration.gateway.support import Gateway, gateway_for, upstream_requests
from tests.ports import free_port
from tests.security.test_tokens import ed25519_token, forge_for

pytestmark = pytest.mark.asyncio

ME = "/api/v1/auth/me"


def assert_problem(response: httpx.Response, status: int, title: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status
    assert body["title"] == title
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["request_id"]
    return body


async def refused_at_edge(
    gateway: httpx.AsyncClient, method: str, path: str, status: int, title: str, **kwargs: Any
) -> dict[str, Any]:
    """The gateway answers ``status`` itself: the platform's request counter does not move."""
    before = upstream_requests()
    response = await gateway.request(method, path, **kwargs)
    body = assert_problem(response, status, title)
    assert upstream_requests() == before, f"{path} reached the service"
    return body


async def passed_through(
    gateway: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    before = upstream_requests()
    response = await gateway.request(method, path, **kwargs)
    # (in-process service-to-service calls may add to the count)
    assert upstream_requests() > before, f"{path}: {response.status_code} {response.text}"
    return response


@pytest.fixture
async def edge(app: FastAPI, tmp_path: Path) -> Any:
    async with gateway_for(app, tmp_path) as gateway:
        yield gateway


def client(gateway: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.url, timeout=30)


async def test_bad_tokens_get_401_from_the_gateway_and_never_reach_a_service(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    admin = await api.admin_token()
    forge = await forge_for(app, api.client, admin)
    now = int(time.time())
    refresh = (await api.login("admin@example.com", "admin-password-for-tests"))["refresh_token"]
    bad = {
        "forged (another key, the real kid)": ed25519_token(
            Ed25519PrivateKey.generate(), forge.header(), forge.claims(role="admin")
        ),
        "expired": forge.real(exp=now - 120, iat=now - 1000, role="admin"),
        "wrong audience": forge.real(aud="someone-else", role="admin"),
        "wrong issuer": forge.real(iss="someone-else", role="admin"),
        "refresh token": refresh,
        "garbage": "not.a.token",
    }
    async with client(edge) as gateway:
        ok = await passed_through(gateway, "GET", ME, headers=auth(admin))
        assert ok.status_code == 200, ok.text
        for case, token in bad.items():
            body = await refused_at_edge(
                gateway, "GET", ME, 401, "Not authenticated", headers=auth(token)
            )
            assert body["instance"] == ME, case
        await refused_at_edge(gateway, "GET", ME, 401, "Not authenticated")
        # The refresh token still does its own job on the public refresh route.
        refreshed = await passed_through(
            gateway, "POST", "/api/v1/auth/refresh", json={"refresh_token": refresh}
        )
        assert refreshed.status_code == 200, refreshed.text


async def test_roles_and_job_tokens_are_refused_at_the_edge(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    forge = await forge_for(app, api.client, admin)
    job_token = forge.real(scope="job", job=str(uuid.uuid4()), prj=str(uuid.uuid4()), act=[])
    async with client(edge) as gateway:
        for path in ("/api/v1/users", "/api/v1/audit"):
            await refused_at_edge(
                gateway, "GET", path, 403, "Forbidden", headers=auth(scientist["token"])
            )
            allowed = await passed_through(gateway, "GET", path, headers=auth(admin))
            assert allowed.status_code == 200, allowed.text
        # A job token: not on the account's routes, only on those its task calls.
        await refused_at_edge(gateway, "GET", ME, 403, "Forbidden", headers=auth(job_token))
        await passed_through(
            gateway, "GET", f"/api/v1/jobs/{uuid.uuid4()}", headers=auth(job_token)
        )
        # The scientist's own routes pass; project checks stay in the services.
        mine = await passed_through(gateway, "GET", ME, headers=auth(scientist["token"]))
        assert mine.json()["role"] == "data_scientist"


async def test_unknown_and_internal_routes_are_404_problems(api: Api, edge: Gateway) -> None:
    admin = await api.admin_token()
    async with client(edge) as gateway:
        for path in (
            "/internal/v1/identity/principal",
            "/internal",
            "/api/v1/../../internal/x",
            "/no/such/route",
            "/api/v2/users",
        ):
            await refused_at_edge(gateway, "GET", path, 404, "Not found", headers=auth(admin))


async def test_request_ids_are_passed_on_or_generated(api: Api, edge: Gateway) -> None:
    admin = await api.admin_token()
    async with client(edge) as gateway:
        given = "req-" + uuid.uuid4().hex
        response = await gateway.get(ME, headers={**auth(admin), "X-Request-Id": given})
        assert response.status_code == 200
        assert response.headers["x-request-id"] == given
        generated = await gateway.get(ME, headers=auth(admin))
        assert generated.headers["x-request-id"]
        assert generated.headers["x-request-id"] != given
        refused = await gateway.get(ME, headers={"X-Request-Id": given})
        assert refused.json()["request_id"] == given


async def test_traceparent_is_generated_or_passed_on(app: FastAPI, tmp_path: Path) -> None:
    seen: list[str | None] = []

    async def echo(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = dict(scope["headers"])
        seen.append(headers.get(b"traceparent", b"").decode() or None)
        status = 200 if scope["path"].endswith("/jwks") else 204
        body = b'{"keys": []}' if status == 200 else b""
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": body})

    echo.state = app.state  # type: ignore[attr-defined]
    # Tracing on (ADR 0031: only then has Envoy a tracer), sampling nothing new.
    tracing_on = {"gateway_otlp_url": "http://127.0.0.1:9", "gateway_trace_sampling_percent": "0"}
    async with (
        gateway_for(echo, tmp_path, **tracing_on) as edge,  # type: ignore[arg-type]
        client(edge) as gateway,
    ):
        seen.clear()
        await gateway.get("/api/v1/auth/jwks")
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        await gateway.get(
            "/api/v1/auth/jwks", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        )
    generated, passed = seen[-2:]
    assert generated is not None
    assert len(generated.split("-")) == 4
    assert passed is not None
    assert passed.split("-")[1] == trace_id


async def test_an_upload_and_its_download_stream_through(api: Api, edge: Gateway) -> None:
    admin = await api.admin_token()
    scientist = await api.create_user(admin, "data_scientist")
    project = await api.create_project(scientist["token"])
    headers = auth(scientist["token"])
    datasets = f"/api/v1/projects/{project['slug']}/datasets"
    # Larger than the listener's 1 MiB buffer limit: a buffering proxy would refuse it.
    rows = "".join(f"{i},{i * 2},{'x' * 40}\n" for i in range(60_000))
    content = ("a,b,c\n" + rows).encode()
    assert len(content) > 2 * (1 << 20)
    async with client(edge) as gateway:
        created = await gateway.post(datasets, json={"name": "big"}, headers=headers)
        assert created.status_code == 201, created.text
        uploaded = await gateway.post(
            f"{datasets}/big/versions",
            files={"file": ("big.csv", content, "text/csv")},
            headers=headers,
        )
        assert uploaded.status_code == 201, uploaded.text
        number = uploaded.json()["number"]
        async with gateway.stream(
            "GET", f"{datasets}/big/versions/{number}/content", headers=headers
        ) as download:
            assert download.status_code == 200
            received = b"".join([chunk async for chunk in download.aiter_bytes()])
        assert received == content


async def test_a_service_that_is_down_is_a_503_problem_with_retry_after(
    app: FastAPI, api: Api, tmp_path: Path
) -> None:
    admin = await api.admin_token()
    dead = f"http://127.0.0.1:{free_port()}"
    async with gateway_for(app, tmp_path, registry_url=dead) as edge, client(edge) as gateway:
        for _ in range(3):
            response = await gateway.get("/api/v1/projects/nope/models", headers=auth(admin))
            assert_problem(response, 503, "Service unavailable")
            assert response.headers["retry-after"] == str(edge.settings.gateway_retry_after_seconds)
        # The other services are still routed.
        assert (await gateway.get(ME, headers=auth(admin))).status_code == 200
        stats = await httpx.AsyncClient().get(f"{edge.stats_url}/stats/prometheus")
        assert stats.status_code == 200
        assert 'envoy_cluster_upstream_cx_connect_fail{envoy_cluster_name="registry"}' in stats.text
        assert "envoy_cluster_outlier_detection_ejections_active" in stats.text
        # The stats listener serves the Prometheus page and nothing else of the admin API.
        other = await httpx.AsyncClient().post(f"{edge.stats_url}/quitquitquit")
        assert other.status_code == 404


async def test_personal_access_tokens_pass_the_edge_like_access_tokens(
    app: FastAPI, api: Api, edge: Gateway
) -> None:
    """A ``pat+jwt`` token is checked against the same JWKS: signed by identity it passes to
    its project's routes; signed by another key, or opaque, it is a 401 at the edge; on the
    account's and admins' routes a 403 at the edge."""
    admin = await api.admin_token()
    project = await api.create_project(admin)
    response = await api.client.post(
        "/api/v1/auth/tokens", json={"name": "ci", "project": project["slug"]}, headers=auth(admin)
    )
    assert response.status_code == 201, response.text
    pat = response.json()["token"]
    header = jwt.get_unverified_header(pat)
    claims = jwt.decode(pat, options={"verify_signature": False})
    forged = ed25519_token(Ed25519PrivateKey.generate(), header, claims)
    async with client(edge) as gateway:
        ok = await passed_through(
            gateway, "GET", f"/api/v1/projects/{project['slug']}", headers=auth(pat)
        )
        assert ok.status_code == 200, ok.text
        search = await passed_through(
            gateway,
            "POST",
            f"/mlflow/{project['slug']}/api/2.0/mlflow/experiments/search",
            json={"max_results": 1},
            headers=auth(pat),
        )
        assert search.status_code == 200, search.text
        for token in (forged, "an-opaque-personal-token"):
            await refused_at_edge(
                gateway, "GET", "/api/v1/projects", 401, "Not authenticated", headers=auth(token)
            )
        # An admin's token is no admin, and the account's routes refuse it.
        for path in ("/api/v1/users", ME, "/api/v1/auth/tokens"):
            await refused_at_edge(gateway, "GET", path, 403, "Forbidden", headers=auth(pat))
