"""PSI and the training reference (ADR 0032) against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from armillary.contracts.drift import CategoricalReference, NumericReference
from armillary.kit.drift import (
    EPSILON,
    build_reference,
    categorical_reference,
    feature_psi,
    numeric_reference,
    psi,
)


def test_psi_of_two_distributions() -> None:
    # (0.25 - 0.5) ln(0.25 / 0.5) + (0.75 - 0.5) ln(0.75 / 0.5)
    #   = 0.25 x 0.693147 + 0.25 x 0.405465 = 0.274653
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.274653, abs=1e-6)
    assert psi([0.1] * 10, [0.1] * 10) == 0
    # An empty bin counts as EPSILON, not as a division by zero.
    assert psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(
        0.5 * math.log(2) + (EPSILON - 0.5) * math.log(EPSILON / 0.5)
    )


def test_numeric_reference_has_ten_quantile_bins_and_psi_follows() -> None:
    reference = numeric_reference(range(1, 101))
    # numpy's linear quantiles of 1..100: 10.9, 20.8, ..., 90.1; ten values per bin.
    assert reference.edges == pytest.approx([10.9 + 9.9 * i for i in range(9)])
    assert reference.fractions == pytest.approx([0.1] * 10)
    assert feature_psi(reference, list(range(1, 101))) == pytest.approx(0.0)
    # Half the new values in the first bin, half in the last, none in between:
    # 2 x (0.5 - 0.1) ln(5) + 8 x (1e-4 - 0.1) ln(1e-4 / 0.1) = 1.287550 + 5.520684
    shifted = [*range(1, 11)] * 5 + [*range(91, 101)] * 5
    assert feature_psi(reference, shifted) == pytest.approx(6.808234, abs=1e-5)
    # Nulls and text are not numbers: left out.
    assert feature_psi(reference, [None, "x", float("nan")]) is None


def test_categorical_reference_keeps_the_top_twenty_and_the_rest() -> None:
    reference = categorical_reference(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    assert reference.fractions == {"a": 0.5, "b": 0.3, "c": 0.2}
    assert reference.other == pytest.approx(0.0)
    # a 0.2, b 0.3, c 0 and an unseen d (other) 0.5:
    # -0.3 ln 0.4 + (1e-4 - 0.2) ln(1e-4 / 0.2) + (0.5 - 1e-4) ln(0.5 / 1e-4)
    #   = 0.274887 + 1.519420 + 4.257745
    actual = ["a"] * 20 + ["b"] * 30 + ["d"] * 50
    assert feature_psi(reference, actual) == pytest.approx(6.052052, abs=1e-5)
    many = categorical_reference([f"v{i}" for i in range(30) for _ in range(i + 1)])
    assert len(many.fractions) == 20
    assert many.other == pytest.approx(sum(range(1, 11)) / sum(range(1, 31)))


def test_build_reference_by_column_kind() -> None:
    x = np.array([[float(i), "red" if i % 2 else "blue"] for i in range(20)], dtype=object)
    reference = build_reference(x, ["size", "colour"], categorical=[1])
    assert reference.rows == 20
    assert isinstance(reference.features["size"], NumericReference)
    assert isinstance(reference.features["colour"], CategoricalReference)
    assert reference.features["colour"].fractions == {"red": 0.5, "blue": 0.5}
