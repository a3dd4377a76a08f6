"""Prediction traffic's own rate limits: a budget per caller and one per deployment.

Under the edge's user limits a prediction counted as a write, and every API-key caller behind
one address shared one bucket: a client's 301st prediction in a minute was refused. So the
edge leaves the prediction routes (predict, feedback, the v2 model routes) to this module,
which spends, once the caller is known, from a budget per API key (per account for a bearer
caller) and from one per deployment: ``ARMILLARY_RATE_LIMIT_PREDICT_PER_KEY`` and
``ARMILLARY_RATE_LIMIT_PREDICT_PER_DEPLOYMENT``, both unlimited unless set. The counters are the
edge limiter's (Redis, or memory in the embedded shape), never the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from limits import RateLimitItem, parse

from armillary.kit.errors import ServiceUnavailable, TooManyRequests
from armillary.kit.ratelimit import (
    STORE_RETRY_AFTER_SECONDS,
    RateLimiter,
    RateLimitStoreUnavailable,
)
from armillary.kit.runtime import Runtime
from armillary.serving.access.predict_access import Caller

#: The prediction routes (regular expressions matched from the start of the path).
PATHS = (
    r"/api/v1/projects/[^/]+/deployments/[^/]+/(?:predict|feedback)$",
    r"/v2/models/",
)


def _limit(value: str | None, variable: str) -> RateLimitItem | None:
    if value is None:
        return None
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{variable} must be a rate such as '6000/minute'") from None


@dataclass(frozen=True)
class PredictBudget:
    limiter: RateLimiter | None
    per_caller: RateLimitItem | None
    per_deployment: RateLimitItem | None

    @classmethod
    def for_runtime(cls, runtime: Runtime) -> PredictBudget:
        """The budgets the settings set, on the runtime's limiter; none when rate limits are
        off. A malformed budget fails here, at start-up, not on the first prediction."""
        settings = runtime.settings
        return cls(
            runtime.limiter if settings.rate_limit_enabled else None,
            _limit(settings.rate_limit_predict_per_key, "ARMILLARY_RATE_LIMIT_PREDICT_PER_KEY"),
            _limit(
                settings.rate_limit_predict_per_deployment,
                "ARMILLARY_RATE_LIMIT_PREDICT_PER_DEPLOYMENT",
            ),
        )

    def delegate_paths(self) -> None:
        """Take the prediction routes out of the edge's user limits."""
        if self.limiter is not None:
            for pattern in PATHS:
                self.limiter.delegate(pattern)

    async def spend(self, caller: Caller, deployment_id: UUID) -> None:
        """Count one request of ``caller`` on the deployment; 429 with ``Retry-After`` when a
        budget is spent. The caller's budget goes first, so that a caller refused for its own
        excess does not use up the deployment's budget that other callers share."""
        if self.limiter is None:
            return
        if self.per_caller is not None:
            whose = "this API key" if caller.kind == "api_key" else "this account"
            await self._spend(self.per_caller, whose, "predict-caller", caller.kind, caller.id)
        if self.per_deployment is not None:
            await self._spend(
                self.per_deployment, "this deployment", "predict-deployment", str(deployment_id)
            )

    async def _spend(self, item: RateLimitItem, whose: str, *bucket: str) -> None:
        assert self.limiter is not None  # noqa: S101 - checked by spend
        try:
            decision = await self.limiter.spend(item, *bucket)
        except RateLimitStoreUnavailable:
            raise ServiceUnavailable(
                "Rate limiting is temporarily unavailable; retry shortly.",
                headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            ) from None
        if decision.allowed:
            return
        raise TooManyRequests(
            f"The prediction rate limit of {whose} ({item.amount} per "
            f"{_window(item)}) is exceeded; retry after the indicated delay.",
            headers={
                "Retry-After": str(max(1, decision.reset_after)),
                "RateLimit-Limit": str(decision.limit),
                "RateLimit-Remaining": str(decision.remaining),
                "RateLimit-Reset": str(decision.reset_after),
            },
        )


def _window(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return unit if item.multiples == 1 else f"{item.multiples} {unit}s"
