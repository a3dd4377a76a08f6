"""Prediction traffic and rate limits: not counted against the user limits (a client's 301st
prediction used to be refused), but under its own budgets per API key (per account for bearer
callers) and per deployment when they are set; the management API keeps the user limits."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from asgi_lifespan import LifespanManager
from tests.conftest import auth, client_for
from tests.integration.serving.predict_support import (  # noqa: F401 - fixtures
    PredictScene,
    asgi_post,
    features,
    instances,
    predict_many,
    predict_settings_fixture,
    serving_settings,
    wire,
)
from tests.integration.serving.support import Platform, Scene, assert_problem

from armillary.kit.settings import Settings
from armillary.kit.storage import StorageSettings
from armillary.serving.predict.settings import PredictSettings

DEFAULT_WRITE = Settings.model_fields["rate_limit_write"].default
DEFAULT_READ = Settings.model_fields["rate_limit_read"].default
ONE = [{"name": "champion", "alias": "champion", "weight": 1}]


@pytest.fixture(name="limits")
def limits_fixture() -> dict[str, Any]:
    """Settings the test overrides (by parametrizing ``limits``)."""
    return {}


@pytest.fixture(name="limited")
async def limited_fixture(
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    predict_settings: PredictSettings,
    limits: dict[str, Any],
) -> AsyncIterator[PredictScene]:
    """The platform with the edge's rate limits on (the default user limits unless the test
    says otherwise) and model ``churn`` v1 under alias ``champion``."""
    cache = tmp_path / "serving-cache"
    values: dict[str, Any] = {
        # Counters in memory: other test sessions flush the shared Redis, which would reset
        # them mid-test.
        "redis_url": None,
        # Exact counts: a sliding window counter lets one more through just after a window
        # boundary, which a test that happens to straddle one would see.
        "rate_limit_strategy": "moving-window",
        "rate_limit_write": DEFAULT_WRITE,
        "rate_limit_read": DEFAULT_READ,
        **limits,
    }
    app = wire(
        settings_factory(**values),
        StorageSettings(backend="local"),
        cache,
        serving_settings(cache),
        predict_settings,
    )
    async with contextlib.AsyncExitStack() as stack:
        await stack.enter_async_context(LifespanManager(app, startup_timeout=60))
        client = await stack.enter_async_context(client_for(app))
        scene = PredictScene(await Scene.create(Platform(app, client)))
        assert await scene.upload("good") == 1
        await scene.scene.set_alias("champion", 1)
        yield scene


def _body(seed: int = 3) -> dict[str, Any]:
    return {"instances": instances(features(2, seed))}


def _v2(rows: int = 2) -> dict[str, Any]:
    data = features(rows, 4)
    return {
        "inputs": [
            {"name": "input", "shape": [rows, 4], "datatype": "FP64", "data": data.ravel().tolist()}
        ]
    }


async def test_more_than_the_user_write_limit_of_predictions_all_succeed(
    limited: PredictScene,
) -> None:
    await limited.deploy(ONE)
    key = await limited.key()
    bearer = auth(limited.scene.token)
    app = limited.platform.app
    body = orjson.dumps(_body())
    over = int(DEFAULT_WRITE.split("/")[0]) + 20  # past the user write limit

    async def send(i: int) -> int:
        status, answer = await asgi_post(app, limited.url(), body, key if i % 2 else bearer)
        assert status == 200, answer
        return status

    assert await predict_many(send, 2 * over, concurrency=16) == [200] * (2 * over)
    # One client address and one key, over the v2 route as well.
    v2 = f"/v2/models/{limited.scene.slug}.churn-api/infer"
    v2_body = orjson.dumps(_v2())

    async def infer(_: int) -> int:
        status, answer = await asgi_post(app, v2, v2_body, key)
        assert status == 200, answer
        return status

    assert await predict_many(infer, over, concurrency=16) == [200] * over


def _refused(response: httpx.Response, whose: str) -> None:
    body = assert_problem(response, 429)
    assert whose in body["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["RateLimit-Remaining"] == "0"


@pytest.mark.parametrize(
    "limits",
    [{"rate_limit_predict_per_key": "3/hour", "rate_limit_predict_per_deployment": "5/hour"}],
)
async def test_spent_budgets_refuse_with_retry_after_and_spare_other_keys_and_deployments(
    limited: PredictScene,
) -> None:
    await limited.deploy(ONE, name="churn-a")
    await limited.deploy(ONE, name="churn-b")
    first, second = await limited.key("churn-a"), await limited.key("churn-a")
    other = await limited.key("churn-b")
    post = limited.client.post
    a, b = limited.url("churn-a"), limited.url("churn-b")
    v2_a = f"/v2/models/{limited.scene.slug}.churn-a/infer"

    # The first key's budget: predict and v2 infer both count.
    for url, body in [(a, _body()), (v2_a, _v2()), (a, _body())]:
        response = await post(url, json=body, headers=first)
        assert response.status_code == 200, response.text
    _refused(await post(a, json=_body(), headers=first), "this API key")
    _refused(await post(v2_a, json=_v2(), headers=first), "this API key")

    # Another key of the same deployment has its own budget, until the deployment's is spent
    # (the first key's refused requests did not use it up).
    for _ in range(2):
        response = await post(a, json=_body(), headers=second)
        assert response.status_code == 200, response.text
    _refused(await post(a, json=_body(), headers=second), "this deployment")

    # Another deployment, with a key or a bearer token, is unaffected.
    for headers in (other, auth(limited.scene.token)):
        response = await post(b, json=_body(), headers=headers)
        assert response.status_code == 200, response.text
    # A bearer caller's budget is its account's, whichever deployment it calls.
    for _ in range(2):
        assert (await post(b, json=_body(), headers=auth(limited.scene.token))).status_code == 200
    _refused(await post(b, json=_body(), headers=auth(limited.scene.token)), "this account")


@pytest.mark.parametrize("limits", [{"rate_limit_write": "12/hour"}])
async def test_management_writes_keep_the_user_limit(limited: PredictScene) -> None:
    await limited.deploy(ONE)
    key = await limited.key()
    bearer = auth(limited.scene.token)
    # Far more predictions than the user write limit, with the user's own token too.
    for i in range(30):
        response = await limited.client.post(
            limited.url(), json=_body(i), headers=bearer if i % 2 else key
        )
        assert response.status_code == 200, response.text
    # So the user's write budget is still there for management writes, until it is spent.
    keys = f"{limited.scene.base}/churn-api/keys"
    statuses = []
    for i in range(12):
        response = await limited.client.post(keys, json={"name": f"k{i}"}, headers=bearer)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
            break
    assert statuses[0] == 201
    assert statuses[-1] == 429, statuses
    # Predictions go on while the user's management writes are refused.
    response = await limited.client.post(limited.url(), json=_body(), headers=bearer)
    assert response.status_code == 200, response.text


async def test_a_bearer_prediction_verifies_its_token_once(
    limited: PredictScene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The edge limiter verified the token for the route before; on the prediction routes it
    no longer looks, and the route must not verify the token twice instead."""
    await limited.deploy(ONE)
    verifier = limited.platform.app.state.runtime.access.verifier
    verify = verifier.verify
    calls: list[str] = []

    async def counted(token: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(token)
        return await verify(token, *args, **kwargs)

    monkeypatch.setattr(verifier, "verify", counted)
    bearer = auth(limited.scene.token)
    response = await limited.client.post(limited.url(), json=_body(), headers=bearer)
    assert response.status_code == 200, response.text
    assert len(calls) == 1
    v2 = f"/v2/models/{limited.scene.slug}.churn-api/infer"
    response = await limited.client.post(v2, json=_v2(), headers=bearer)
    assert response.status_code == 200, response.text
    assert len(calls) == 2
