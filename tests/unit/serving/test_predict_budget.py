"""The prediction budgets on the edge limiter's store: which paths the edge leaves to them,
refusals with Retry-After, separate buckets per caller and per deployment, what a store outage
means, and settings checked at start-up."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any, cast

import pytest
from limits import parse
from limits.aio.storage import RedisStorage
from tests.conftest import REDIS_URL

from armillary.kit.errors import ServiceUnavailable, TooManyRequests
from armillary.kit.ratelimit import RateLimiter
from armillary.kit.runtime import Runtime
from armillary.kit.settings import Settings
from armillary.serving.access.predict_access import Caller
from armillary.serving.predict.budget import PredictBudget

# Nothing listens there: every call to the store fails with a connection error.
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


def _settings(**overrides: Any) -> Settings:
    # Exact counts (a sliding window counter lets one more through just after a boundary).
    return Settings(**{"redis_url": None, "rate_limit_strategy": "moving-window", **overrides})


@pytest.fixture
async def limiters() -> AsyncIterator[list[RateLimiter]]:
    made: list[RateLimiter] = []
    yield made
    for limiter in made:
        if isinstance(limiter.storage, RedisStorage):
            await limiter.storage.bridge.storage.aclose()


def _limiter(made: list[RateLimiter], **overrides: Any) -> RateLimiter:
    limiter = RateLimiter.from_settings(_settings(**overrides))
    made.append(limiter)
    return limiter


def _caller() -> Caller:
    return Caller("api_key", str(uuid.uuid4()), "app")


def test_the_edge_leaves_only_the_prediction_routes_to_the_budgets(
    limiters: list[RateLimiter],
) -> None:
    limiter = _limiter(limiters)
    PredictBudget(limiter, None, None).delegate_paths()
    for path in (
        "/api/v1/projects/p/deployments/d/predict",
        "/api/v1/projects/p/deployments/d/feedback",
        "/v2/models/p.d/infer",
        "/v2/models/p.d",
        "/v2/models/p.d/ready",
    ):
        assert limiter.delegated(path), path
    for path in (
        "/api/v1/projects/p/deployments",
        "/api/v1/projects/p/deployments/d",
        "/api/v1/projects/p/deployments/d/keys",
        "/api/v1/projects/p/deployments/d/analysis",
        "/api/v1/projects/p/deployments/d/predict/extra",
        "/api/v1/projects/p/models/predict",
        "/api/v1/auth/token",
    ):
        assert not limiter.delegated(path), path


async def _spend_until_refused(
    budget: PredictBudget, callers: Callable[[], Caller], deployment: uuid.UUID
) -> tuple[int, TooManyRequests]:
    """Requests allowed before the first refusal, and the refusal (bounded, so that a store
    flushed by another test session mid-way delays the refusal instead of hanging the test)."""
    for allowed in range(50):
        try:
            await budget.spend(callers(), deployment)
        except TooManyRequests as refused:
            return allowed, refused
    raise AssertionError("the budget never refused")


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_each_caller_and_each_deployment_has_its_own_bucket(
    limiters: list[RateLimiter], backend: str
) -> None:
    limiter = _limiter(limiters, redis_url=REDIS_URL if backend == "redis" else None)
    per_caller = PredictBudget(limiter, parse("2/hour"), None)
    first, deployment = _caller(), uuid.uuid4()
    allowed, refused = await _spend_until_refused(per_caller, lambda: first, deployment)
    assert allowed >= 2 if backend == "redis" else allowed == 2
    assert "this API key" in refused.detail
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    # Another key, or the same key's id as an account's, is another bucket.
    await per_caller.spend(_caller(), deployment)
    await per_caller.spend(Caller("user", first.id, "someone"), deployment)

    per_deployment = PredictBudget(limiter, None, parse("3/hour"))
    allowed, refused = await _spend_until_refused(per_deployment, _caller, uuid.uuid4())
    assert allowed >= 3 if backend == "redis" else allowed == 3
    assert "this deployment" in refused.detail
    await per_deployment.spend(_caller(), uuid.uuid4())


async def test_a_caller_refused_for_its_own_excess_does_not_spend_the_deployment_budget(
    limiters: list[RateLimiter],
) -> None:
    budget = PredictBudget(_limiter(limiters), parse("1/hour"), parse("3/hour"))
    noisy, deployment = _caller(), uuid.uuid4()
    await budget.spend(noisy, deployment)
    for _ in range(5):
        with pytest.raises(TooManyRequests) as refused:
            await budget.spend(noisy, deployment)
        assert "this API key" in refused.value.detail
    await budget.spend(_caller(), deployment)
    await budget.spend(_caller(), deployment)
    with pytest.raises(TooManyRequests, match="this deployment"):
        await budget.spend(_caller(), deployment)


async def test_no_budget_and_rate_limits_off_count_nothing(limiters: list[RateLimiter]) -> None:
    caller, deployment = _caller(), uuid.uuid4()
    for budget in (
        PredictBudget(_limiter(limiters), None, None),
        PredictBudget(None, parse("1/hour"), parse("1/hour")),
    ):
        for _ in range(5):
            await budget.spend(caller, deployment)


async def test_a_store_outage_follows_the_failure_setting(limiters: list[RateLimiter]) -> None:
    closed = _limiter(limiters, redis_url=DEAD_REDIS_URL, rate_limit_on_store_failure="deny")
    with pytest.raises(ServiceUnavailable) as unavailable:
        await PredictBudget(closed, parse("5/hour"), None).spend(_caller(), uuid.uuid4())
    assert unavailable.value.headers["Retry-After"] == "5"
    opened = _limiter(limiters, redis_url=DEAD_REDIS_URL, rate_limit_on_store_failure="allow")
    await PredictBudget(opened, parse("5/hour"), None).spend(_caller(), uuid.uuid4())


def _runtime(settings: Settings, limiter: RateLimiter | None) -> Runtime:
    return cast(Runtime, SimpleNamespace(settings=settings, limiter=limiter))


def test_budgets_come_from_the_settings_and_a_malformed_one_fails_at_start_up(
    limiters: list[RateLimiter],
) -> None:
    limiter = _limiter(limiters)
    off = PredictBudget.for_runtime(_runtime(_settings(), limiter))
    assert (off.per_caller, off.per_deployment) == (None, None)
    empty = _settings(rate_limit_predict_per_key="", rate_limit_predict_per_deployment=" ")
    assert empty.rate_limit_predict_per_key is None
    assert empty.rate_limit_predict_per_deployment is None

    on = _settings(
        rate_limit_predict_per_key="100/minute", rate_limit_predict_per_deployment="1000/minute"
    )
    budget = PredictBudget.for_runtime(_runtime(on, limiter))
    assert budget.limiter is limiter
    assert budget.per_caller == parse("100/minute")
    assert budget.per_deployment == parse("1000/minute")
    disabled = on.model_copy(update={"rate_limit_enabled": False})
    assert PredictBudget.for_runtime(_runtime(disabled, limiter)).limiter is None

    bad = _settings(rate_limit_predict_per_key="lots")
    with pytest.raises(ValueError, match="ARMILLARY_RATE_LIMIT_PREDICT_PER_KEY"):
        PredictBudget.for_runtime(_runtime(bad, limiter))
