"""Drift arithmetic (ADR 0032): the training reference of a feature (quantile bins or top
categories, :mod:`armillary.contracts.drift`) and the population stability index of newer
values against it.

PSI = sum over bins of (actual - expected) * ln(actual / expected), each share floored at
:data:`EPSILON` so that an empty bin counts as very rare instead of dividing by zero. The
usual reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a large one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from armillary.contracts.drift import (
    BINS,
    TOP_CATEGORIES,
    CategoricalReference,
    DriftReference,
    FeatureReference,
    NumericReference,
)
from armillary.kit.lazy_import import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")


EPSILON = 1e-4


def _finite(values: Iterable[Any]) -> np.ndarray[Any, Any]:
    numbers = []
    for value in values:
        if value is None or isinstance(value, bool | str):
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            numbers.append(number)
    return np.asarray(numbers, dtype=float)


def numeric_reference(values: Iterable[Any]) -> NumericReference:
    """10 quantile bins of the finite values (fewer when values repeat)."""
    numbers = _finite(values)
    if numbers.size == 0:
        return NumericReference(edges=[], fractions=[1.0])
    quantiles = np.quantile(numbers, [i / BINS for i in range(1, BINS)])
    edges = [float(e) for e in np.unique(quantiles)]
    return NumericReference(edges=edges, fractions=numeric_shares(edges, numbers))


def numeric_shares(edges: Sequence[float], values: Iterable[Any]) -> list[float]:
    """The share of the finite values in each bin (edges[i-1] < v <= edges[i])."""
    numbers = values if isinstance(values, np.ndarray) else _finite(values)
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=float), numbers, side="left"),
        minlength=len(edges) + 1,
    )
    total = int(counts.sum())
    return [float(c) / total if total else 0.0 for c in counts]


def _label(value: Any) -> str | None:
    return None if value is None else str(value)[:256]


def categorical_reference(values: Iterable[Any]) -> CategoricalReference:
    """The shares of the 20 most frequent values; the rest together as ``other``."""
    counts = Counter(label for label in map(_label, values) if label is not None)
    total = sum(counts.values())
    if not total:
        return CategoricalReference(fractions={}, other=0.0)
    top = dict(counts.most_common(TOP_CATEGORIES))
    fractions = {k: v / total for k, v in top.items()}
    return CategoricalReference(fractions=fractions, other=max(0.0, 1.0 - sum(fractions.values())))


def build_reference(
    x: np.ndarray[Any, Any], names: Sequence[str], categorical: Iterable[int]
) -> DriftReference:
    """The reference of each column of ``x`` (in ``names`` order; ``categorical`` indexes)."""
    kinds = set(categorical)
    features: dict[str, FeatureReference] = {}
    for index, name in enumerate(names):
        column = x[:, index]
        features[name] = (
            categorical_reference(column) if index in kinds else numeric_reference(column)
        )
    return DriftReference(rows=int(x.shape[0]), features=features)


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two distributions over the same bins."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


def feature_psi(reference: FeatureReference, values: Sequence[Any]) -> float | None:
    """PSI of ``values`` against a feature's reference; None without any usable value."""
    if isinstance(reference, NumericReference):
        numbers = _finite(values)
        if numbers.size == 0:
            return None
        return psi(reference.fractions, numeric_shares(reference.edges, numbers))
    labels = [label for label in map(_label, values) if label is not None]
    if not labels:
        return None
    counts = Counter(labels)
    known = list(reference.fractions)
    actual = [counts.get(k, 0) / len(labels) for k in known]
    other = 1.0 - sum(actual)
    return psi([*reference.fractions.values(), reference.other], [*actual, max(0.0, other)])
