"""F14: anonymous `/metrics` on the public port named every project's deployments; metrics are
now served on a listener of their own (127.0.0.1 by default). F18: `nosniff` on every response,
and signed-link downloads are attachments."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
from fastapi import FastAPI
from tests.conftest import Api, auth, make_settings
from tests.ports import free_port

from armillary.kit.db import utcnow
from armillary.kit.metrics import serve_metrics
from armillary.kit.storage import LocalObjectStore, job_artifact_key


async def test_the_public_port_serves_no_metrics(api: Api) -> None:
    admin = await api.admin_token()
    await api.client.get("/api/v1/users", headers=auth(admin))  # something to count
    for headers in ({}, auth(admin)):
        response = await api.client.get("/metrics", headers=headers)
        assert response.status_code == 404
        assert "armillary_http_requests_total" not in response.text


async def test_the_metrics_listener_serves_them_on_its_own_port(api: Api) -> None:
    await api.client.get("/healthz")
    port = free_port()
    assert serve_metrics("127.0.0.1", port)
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert (
        'armillary_http_requests_total{method="GET",route="/healthz",service="platform"'
        in response.text
    )
    # A taken port is reported, not fatal.
    assert serve_metrics("127.0.0.1", port) is None


def test_the_listener_is_private_by_default(tmp_path: object) -> None:
    settings = make_settings(tmp_path / "home")  # type: ignore[operator]
    assert settings.metrics_host == "127.0.0.1"
    assert settings.metrics_port == 9464


async def test_every_response_says_nosniff(api: Api, app: FastAPI) -> None:
    c = api.client
    admin = await api.admin_token()
    responses = [
        await c.get("/healthz"),
        await c.get("/api/v1/users", headers=auth(admin)),  # 200 JSON
        await c.get("/api/v1/users"),  # 401 problem
        await c.get("/no/such/route"),  # 404
        await c.post("/api/v1/auth/token", data={"username": "x", "password": "y"}),
    ]
    for response in responses:
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url


async def test_a_signed_link_download_is_an_attachment(api: Api, app: FastAPI) -> None:
    store = app.state.runtime.services["data"].store
    assert isinstance(store, LocalObjectStore)
    key = job_artifact_key(uuid.uuid4(), uuid.uuid4(), "train", "page.html")
    await store.put_bytes(key, b"<html><script>alert(1)</script></html>")
    token = store.sign_download(key, utcnow() + timedelta(minutes=5))
    response = await api.client.get(f"/api/v1/downloads/{token}")
    assert response.status_code == 200
    assert response.headers["content-disposition"] == 'attachment; filename="page.html"'
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["x-content-type-options"] == "nosniff"
