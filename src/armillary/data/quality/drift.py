"""Distribution drift of a column against a reference: PSI and the two-sample KS statistic.

Written with Polars rather than taken from scipy: the engine is Polars-only (no numpy or
pandas on the task's path), and both statistics are a sort and a few binary searches.

- Numeric (and temporal, by their physical value) columns: the PSI over ``bins`` quantile bins
  of the reference, and the KS statistic ``max |F_current(x) - F_reference(x)|`` evaluated at
  every observed value (ties handled as ``scipy.stats.ks_2samp`` does).
- Other columns (strings, categories, booleans): the PSI over categories; no KS.

Nulls and NaNs are left out of both samples. Proportions of empty bins are floored at
``EPSILON`` so the PSI stays finite, the usual convention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import polars as pl

EPSILON = 1e-4


@dataclass(frozen=True, slots=True)
class Drift:
    psi: float
    ks: float | None
    current_count: int
    reference_count: int


class DriftError(ValueError):
    """The column cannot be compared (no values, or types that do not match)."""


def _numeric(series: pl.Series) -> bool:
    return series.dtype.is_numeric() or series.dtype.is_temporal()


def _clean_numeric(series: pl.Series) -> pl.Series:
    values = series.drop_nulls()
    if values.dtype.is_temporal():
        values = values.to_physical()
    values = values.cast(pl.Float64)
    if values.dtype.is_float():
        values = values.filter(values.is_not_nan())
    return values.sort()


def _psi(current: list[float], reference: list[float]) -> float:
    total = 0.0
    for p, q in zip(current, reference, strict=True):
        p, q = max(p, EPSILON), max(q, EPSILON)
        total += (p - q) * math.log(p / q)
    return total


def _bin_shares(sorted_values: pl.Series, edges: pl.Series) -> list[float]:
    """Shares of the values in the bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    n = sorted_values.len()
    below = sorted_values.search_sorted(edges, side="left").to_list()
    cuts = [0, *below, n]
    return [(cuts[i + 1] - cuts[i]) / n for i in range(len(cuts) - 1)]


def numeric_drift(current: pl.Series, reference: pl.Series, bins: int) -> Drift:
    cur, ref = _clean_numeric(current), _clean_numeric(reference)
    n, m = cur.len(), ref.len()
    if n == 0 or m == 0:
        raise DriftError("no non-null values to compare" if n == 0 else "reference has no values")
    if ref.n_unique() <= bins:
        # Few distinct values (codes, counts, flags): each value is its own bin, so a value
        # the reference never had is not hidden in the reference's top bin.
        psi = _psi(*_value_shares(cur, ref))
    else:
        # Interior edges at the reference's quantiles; equal edges (a heavy value) merge bins.
        positions = [min(m - 1, (k * m) // bins) for k in range(1, bins)]
        edges = ref.gather(positions).unique(maintain_order=True)
        psi = _psi(_bin_shares(cur, edges), _bin_shares(ref, edges))
    # KS: both empirical CDFs at every observed value, right-continuous.
    points = pl.concat([cur, ref])
    cdf_cur = cur.search_sorted(points, side="right").cast(pl.Float64) / n
    cdf_ref = ref.search_sorted(points, side="right").cast(pl.Float64) / m
    ks = (cdf_cur - cdf_ref).abs().max()
    return Drift(psi=psi, ks=float(ks or 0.0), current_count=n, reference_count=m)  # type: ignore[arg-type]


def categorical_drift(current: pl.Series, reference: pl.Series) -> Drift:
    cur = current.drop_nulls().cast(pl.String)
    ref = reference.drop_nulls().cast(pl.String)
    n, m = cur.len(), ref.len()
    if n == 0 or m == 0:
        raise DriftError("no non-null values to compare" if n == 0 else "reference has no values")
    return Drift(psi=_psi(*_value_shares(cur, ref)), ks=None, current_count=n, reference_count=m)


def _value_shares(cur: pl.Series, ref: pl.Series) -> tuple[list[float], list[float]]:
    """Shares of each distinct value in both samples (0 where a sample lacks it)."""
    counts = (
        cur.rename("value")
        .value_counts(name="cur")
        .join(ref.rename("value").value_counts(name="ref"), on="value", how="full", coalesce=True)
        .fill_null(0)
    )
    shares_cur = (counts.get_column("cur").cast(pl.Float64) / cur.len()).to_list()
    shares_ref = (counts.get_column("ref").cast(pl.Float64) / ref.len()).to_list()
    return shares_cur, shares_ref


def column_drift(current: pl.Series, reference: pl.Series, bins: int) -> Drift:
    """PSI (and KS for numeric columns) of ``current`` against ``reference``."""
    if _numeric(current) and _numeric(reference):
        return numeric_drift(current, reference, bins)
    if _numeric(current) != _numeric(reference):
        raise DriftError(f"column is {current.dtype} here but {reference.dtype} in the reference")
    return categorical_drift(current, reference)
