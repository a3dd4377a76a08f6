"""Routing: weights among the variants that are not shadows, sticky by a key's stable hash or
random, and the shadow beside."""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter

import pytest

from armillary.serving.deployments.resolve import ResolvedDeployment, ResolvedVariant
from armillary.serving.deployments.routing import NoServingVariant, choose, key_point

DEPLOYMENT_ID = uuid.UUID("6f1c7d52-3b7e-4f55-9f0e-2a1d5b8c9e01")
N = 10_000


def _variant(
    name: str, weight: float, *, shadow: bool = False, version: int = 1
) -> ResolvedVariant:
    return ResolvedVariant(
        name=name,
        model="churn",
        model_version=version,
        model_version_id=str(uuid.uuid5(uuid.NAMESPACE_OID, f"{name}{version}")),
        weight=weight,
        shadow=shadow,
        alias=None,
    )


def _deployment(*variants: ResolvedVariant, mode: str = "sticky") -> ResolvedDeployment:
    return ResolvedDeployment(
        id=DEPLOYMENT_ID,
        project_id=uuid.uuid4(),
        project_slug="demo",
        name="churn-api",
        config_version=1,
        routing_mode=mode,  # type: ignore[arg-type]
        variants=variants,
        policy={},
    )


NINETY_TEN = _deployment(_variant("champion", 90), _variant("challenger", 10))


def _within_binomial(count: int, n: int, p: float) -> None:
    # Four standard deviations: a correct router fails this about once in 16,000 seeds; the
    # seed is fixed, so the test is deterministic.
    sd = math.sqrt(n * p * (1 - p))
    assert abs(count - n * p) <= 4 * sd, (count, n * p, sd)


def test_random_routing_splits_by_weight() -> None:
    rng = random.Random(1234)
    counts = Counter(choose(NINETY_TEN, None, rng)[0].name for _ in range(N))
    _within_binomial(counts["challenger"], N, 0.1)
    assert counts["champion"] + counts["challenger"] == N


def test_sticky_keys_split_by_weight() -> None:
    rng = random.Random(0)
    counts = Counter(choose(NINETY_TEN, f"user-{i}", rng)[0].name for i in range(N))
    _within_binomial(counts["challenger"], N, 0.1)


def test_a_sticky_key_always_reaches_the_same_variant() -> None:
    keys = [f"customer-{i}" for i in range(500)]
    first = {k: choose(NINETY_TEN, k, random.Random(1))[0].name for k in keys}
    for seed in range(5):
        rng = random.Random(seed)
        assert {k: choose(NINETY_TEN, k, rng)[0].name for k in keys} == first
    # The same weights with other model versions behind them (an alias moved): same routes.
    moved = _deployment(_variant("champion", 90, version=7), _variant("challenger", 10))
    assert {k: choose(moved, k, random.Random(9))[0].name for k in keys} == first
    assert set(first.values()) == {"champion", "challenger"}


def test_the_key_point_is_stable_and_per_deployment() -> None:
    # Not Python's hash(): the same on every process and run.
    assert key_point(DEPLOYMENT_ID, "user-1") == pytest.approx(0.9120896978229668)
    other = uuid.UUID(int=DEPLOYMENT_ID.int + 1)
    points = [key_point(DEPLOYMENT_ID, f"k{i}") for i in range(50)]
    assert points != [key_point(other, f"k{i}") for i in range(50)]
    assert all(0 <= p < 1 for p in points)


def test_random_mode_ignores_the_key() -> None:
    random_mode = _deployment(_variant("champion", 50), _variant("challenger", 50), mode="random")
    rng = random.Random(3)
    assert {choose(random_mode, "same-key", rng)[0].name for _ in range(100)} == {
        "champion",
        "challenger",
    }


def test_zero_weights_and_shadows_never_answer() -> None:
    resolved = _deployment(
        _variant("champion", 1),
        _variant("parked", 0),
        _variant("mirror", 100, shadow=True),
    )
    rng = random.Random(5)
    for i in range(2_000):
        primary, shadow = choose(resolved, f"k{i}" if i % 2 else None, rng)
        assert primary.name == "champion"
        assert shadow is not None
        assert shadow.name == "mirror"
    assert choose(NINETY_TEN, None, rng)[1] is None


def test_all_weights_zero_is_no_variant() -> None:
    parked = _deployment(_variant("a", 0), _variant("s", 1, shadow=True))
    with pytest.raises(NoServingVariant):
        choose(parked, None, random.Random(0))
    assert NoServingVariant.status == 503
