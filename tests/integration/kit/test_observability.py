"""Errors, logs, metrics, health and request ids, through the real app."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter
from prometheus_client import generate_latest
from tests.conftest import ADMIN_EMAIL, ADMIN_PASSWORD, Api, auth, client_for

from armillary.app import create_app
from armillary.kit.app_factory import build_app
from armillary.kit.logging import configure_logging
from armillary.kit.settings import Settings


async def test_unhandled_error_is_problem_json_without_internals(settings: Settings) -> None:
    app = create_app(settings, configure_logs=False)
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise RuntimeError("SELECT secret FROM /etc/passwd")

    broken = build_app(app.state.runtime, title="t", routers=[router], manage_runtime=True)
    async with LifespanManager(broken), client_for(broken) as client:
        response = await client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.text
    assert "SELECT" not in body
    assert "/etc/passwd" not in body
    assert "Traceback" not in body
    assert response.json()["request_id"] == response.headers["x-request-id"]


async def test_validation_error_names_field_but_does_not_echo_input(api: Api) -> None:
    token = await api.admin_token()
    response = await api.client.post(
        "/api/v1/users",
        json={
            "email": "x@example.com",
            "name": "X",
            "role": "root",
            "password": "p4ssw0rd-secret!",
        },
        headers=auth(token),
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["title"] == "Unprocessable content"
    assert ["body", "role"] in [e["loc"] for e in problem["errors"]]
    assert "p4ssw0rd-secret!" not in response.text


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.put("/healthz")
    assert wrong.status_code == 405
    assert wrong.json()["status"] == 405


async def test_request_id_is_accepted_and_returned(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    bad = await client.get("/healthz", headers={"X-Request-ID": "bad id\n<script>"})
    assert bad.headers["x-request-id"] != "bad id\n<script>"
    assert len(bad.headers["x-request-id"]) == 32


async def test_metrics_count_requests_by_route_template(api: Api) -> None:
    token = await api.admin_token()
    for _ in range(3):
        await api.client.get(
            "/api/v1/users/00000000-0000-0000-0000-000000000000", headers=auth(token)
        )
    # What the metrics listener serves (kit.metrics.serve_metrics): not on the public port.
    text = generate_latest().decode()
    line = next(
        line
        for line in text.splitlines()
        if line.startswith("armillary_http_requests_total{")
        and 'route="/api/v1/users/{user_id}"' in line
        # The route's owner, even with every service in this one process.
        and 'service="identity"' in line
        and 'status="404"' in line
    )
    assert float(line.rsplit(" ", 1)[1]) >= 3
    assert "armillary_http_request_duration_seconds_bucket{" in text
    assert "00000000-0000-0000-0000-000000000000" not in text


async def test_readyz_checks_the_database_and_reports_redis(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(rabbitmq_url="amqp://guest:guest@127.0.0.1:1/")
    app = create_app(settings, configure_logs=False)
    async with LifespanManager(app), client_for(app) as client:
        response = await client.get("/readyz")
    # RabbitMQ is configured but unreachable: this process does not use it, so no matter.
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


async def test_readyz_stays_ready_without_redis_and_says_so(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(redis_url="redis://127.0.0.1:1/0")
    app = create_app(settings, configure_logs=False)
    async with LifespanManager(app), client_for(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["degraded"] == ["redis"]


async def test_logs_are_json_with_request_and_user_ids_and_no_secrets(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    try:
        app = create_app(settings, configure_logs=False)
        async with LifespanManager(app), client_for(app) as client:
            login = await client.post(
                "/api/v1/auth/token", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
            )
            token = login.json()["access_token"]
            await client.get("/api/v1/auth/me", headers={**auth(token), "X-Request-ID": "req-42"})
            logging.getLogger("armillary.test").info(
                "leak attempt", extra={"password": ADMIN_PASSWORD}
            )
    finally:
        logging.getLogger().handlers.clear()
    captured = capsys.readouterr().err
    lines: list[dict[str, Any]] = [
        json.loads(line) for line in captured.splitlines() if line.startswith("{")
    ]
    me = next(line for line in lines if line.get("route") == "/api/v1/auth/me")
    assert me["request_id"] == "req-42"
    assert me["user_id"]
    assert me["status"] == 200
    assert ADMIN_PASSWORD not in captured
    assert token not in captured
