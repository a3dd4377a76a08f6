"""Which variant answers a request: by weight among the variants that are not shadows, sticky
by a routing key or random, plus the shadow (if any) that sees a copy."""

from __future__ import annotations

import hashlib
import random

from armillary.kit.errors import ServiceUnavailable

from .resolve import ResolvedDeployment, ResolvedVariant

_SCALE = float(2**64)


class NoServingVariant(ServiceUnavailable):
    title = "No serving variant"


def key_point(deployment_id: object, key: str) -> float:
    """A stable point in [0, 1) for ``key``: the same on every process and every run (unlike
    ``hash()``), and independent between deployments."""
    digest = hashlib.blake2b(
        f"{deployment_id}\x00{key}".encode(), digest_size=8, person=b"armillary-route"
    ).digest()
    return int.from_bytes(digest, "big") / _SCALE


def choose(
    resolved: ResolvedDeployment, key: str | None, rng: random.Random
) -> tuple[ResolvedVariant, ResolvedVariant | None]:
    """The variant that answers, and the shadow that sees a copy (None when there is none).
    Sticky routing maps a key to the same variant for as long as the weights stay; without a
    key, or with random routing, ``rng`` draws."""
    primaries = [v for v in resolved.variants if not v.shadow and v.weight > 0]
    if not primaries:
        raise NoServingVariant("The deployment has no variant that can answer")
    shadow = next((v for v in resolved.variants if v.shadow), None)
    if len(primaries) == 1:
        return primaries[0], shadow
    if key is not None and resolved.routing_mode == "sticky":
        point = key_point(resolved.id, key)
    else:
        point = rng.random()
    total = sum(v.weight for v in primaries)
    threshold = point * total
    cumulative = 0.0
    for variant in primaries:
        cumulative += variant.weight
        if threshold < cumulative:
            return variant, shadow
    return primaries[-1], shadow  # rounding at the very top of the range
