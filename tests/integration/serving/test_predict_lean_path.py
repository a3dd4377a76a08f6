"""Predict matched before the router walk (kit.first_routes, ADR 0045) keeps every guarantee
of the route it copies: API keys (a revoked one refused at once), problem+json for 413 and
415, the request id, the security headers, the RED metrics under the route's template and
the audit entry of a refusal. The OpenAPI document lists the operation once."""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from prometheus_client import REGISTRY
from sqlalchemy import text
from tests.conftest import auth
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    MAX_BODY,
    PredictScene,
    features,
    instances,
    predict_platform_fixture,
    predict_settings_fixture,
    pscene_fixture,
    serving_overrides_fixture,
)
from tests.integration.serving.support import assert_problem

ROUTE = "/api/v1/projects/{project}/deployments/{deployment}/predict"
ONE = [{"name": "champion", "alias": "champion", "weight": 1}]


def _requests(status: int) -> float:
    labels = {"service": "serving", "method": "POST", "route": ROUTE, "status": str(status)}
    return REGISTRY.get_sample_value("armillary_http_requests_total", labels) or 0.0


def _assert_request_id(response: Any, sent: str | None = None) -> None:
    echoed = response.headers["x-request-id"]
    assert echoed == sent if sent else echoed
    assert response.headers["x-content-type-options"] == "nosniff"
    if response.headers["content-type"].startswith("application/problem+json"):
        assert response.json()["request_id"] == echoed


async def test_predict_is_matched_first_and_documented_once(pscene: PredictScene) -> None:
    app = pscene.platform.app
    first = app.router.routes[:2]
    assert {r.name for r in first if isinstance(r, APIRoute)} == {
        "deployments.predict",
        "v2.infer",
    }
    assert all(not r.include_in_schema for r in first if isinstance(r, APIRoute))
    operation = app.openapi()["paths"][ROUTE]
    assert list(operation) == ["post"]
    assert operation["post"]["responses"].keys() >= {"401", "413", "415"}


async def test_the_lean_path_keeps_every_guarantee(pscene: PredictScene) -> None:
    await pscene.deploy(ONE)
    scene = pscene.scene
    post = pscene.client.post
    body = {"instances": instances(features(1, 3))}
    key = await scene.new_key("churn-api")
    headers = {"X-API-Key": key["key"]}
    ok_before, refused_before = _requests(200), _requests(401)

    ok = await post(pscene.url(), json=body, headers={**headers, "X-Request-Id": "lean-1"})
    assert ok.status_code == 200, ok.text
    _assert_request_id(ok, "lean-1")

    wrong_type = await post(
        pscene.url(), content=b"a,b", headers={**headers, "content-type": "text/csv"}
    )
    _assert_request_id(wrong_type)
    assert_problem(wrong_type, 415)
    too_big = await post(
        pscene.url(),
        content=b"{" + b" " * (MAX_BODY + 1) + b"}",
        headers={**headers, "content-type": "application/json"},
    )
    _assert_request_id(too_big)
    assert_problem(too_big, 413)

    revoked = await pscene.client.delete(
        f"{scene.base}/churn-api/keys/{key['id']}", headers=auth(scene.token)
    )
    assert revoked.status_code == 204, revoked.text
    refused = await post(pscene.url(), json=body, headers=headers)
    assert_problem(refused, 401)
    _assert_request_id(refused)
    assert_problem(await post(pscene.url(), json=body), 401)

    # Counted under the route's template and the serving service, as before.
    assert _requests(200) == ok_before + 1
    assert _requests(401) == refused_before + 2
    # A refusal leaves its audit entry (the fallback's, named after the route).
    async with pscene.platform.app.state.runtime.db.read_only() as session:
        payloads = (
            await session.scalars(
                text("SELECT payload FROM outbox_events WHERE type = 'audit.entry'")
            )
        ).all()
    denied = [
        p for p in payloads if p["action"] == "deployments.predict" and p["outcome"] == "denied"
    ]
    assert len(denied) == 2, payloads
    assert all(p["details"]["status"] == 401 for p in denied)
