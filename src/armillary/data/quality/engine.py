"""Runs data-quality checks on a Polars frame and writes the quality report.

All checks share one pass: every check's aggregate expressions go into a single
``frame.select``, which Polars evaluates in parallel over the columns; checks answered by
metadata (schema, row count, null counts) add none. Only for failed checks is the frame
read again, to sample the failing rows. If the shared pass raises (a type the check cannot
handle), each check is evaluated on its own so that only the offending one fails.
Drift checks compare against a reference frame and run after the shared pass.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from pydantic import JsonValue, TypeAdapter

from armillary.contracts.quality import (
    SAMPLE_CAP,
    Check,
    CheckResult,
    DriftCheck,
    QualityReport,
)

from .checks import Outcome, Plan, build_plan
from .drift import DriftError, column_drift
from .values import finite_or_none, jsonable

_CHECK: TypeAdapter[Check] = TypeAdapter(Check)
_ROW = "__armillary_row__"


def parse_check(check: Check | Mapping[str, Any]) -> Check:
    """A check model from a model or its JSON form."""
    if isinstance(check, Mapping):
        return _CHECK.validate_python(check)
    return check


def validate_frame(
    frame: pl.DataFrame,
    checks: Sequence[Check | Mapping[str, Any]],
    *,
    reference: pl.DataFrame | None = None,
    sample_size: int = 5,
) -> QualityReport:
    """Evaluates ``checks`` on ``frame`` and returns the report.

    ``reference`` is the frame ``drift`` checks compare against; ``sample_size`` (at most
    100) failing rows are kept per failed check.
    """
    started = time.perf_counter()
    parsed = [parse_check(c) for c in checks]
    sample_size = max(0, min(sample_size, SAMPLE_CAP))
    schema = frame.schema
    plans: dict[int, Plan] = {}
    for index, check in enumerate(parsed):
        if not isinstance(check, DriftCheck):
            plans[index] = build_plan(check, frame, schema, f"{index}.")
    values = _evaluate(frame, plans)

    results: list[CheckResult] = []
    for index, check in enumerate(parsed):
        if isinstance(check, DriftCheck):
            outcome, sample = _drift(check, frame, reference)
        else:
            plan = plans[index]
            found = values[index]
            outcome = found if isinstance(found, Outcome) else plan.finish(found)
            sample = [] if outcome.passed else _failing(frame, plan, outcome, sample_size)
        # Built without re-validation: every value here was made JSON-safe by this package
        # (a test validates whole reports), and validating 12 results costs as much as a
        # small frame's whole pass.
        results.append(
            CheckResult.model_construct(
                name=check.label,
                type=check.type,
                severity=check.severity,
                columns=check.column_names(),
                passed=outcome.passed,
                observed=outcome.observed,
                threshold=outcome.threshold,
                failing_count=outcome.failing_count,
                failing_sample=sample,
            )
        )
    failed = [r for r in results if not r.passed]
    errors = sum(1 for r in failed if r.severity == "error")
    return QualityReport.model_construct(
        rows=frame.height,
        columns=frame.width,
        checks=results,
        score=(len(results) - len(failed)) / len(results) if results else 1.0,
        passed=errors == 0,
        errors_failed=errors,
        warnings_failed=len(failed) - errors,
        duration_ms=(time.perf_counter() - started) * 1000,
    )


def _evaluate(frame: pl.DataFrame, plans: Mapping[int, Plan]) -> dict[int, Sequence[Any] | Outcome]:
    """Every plan's aggregate values, from one ``select`` when it succeeds."""
    aggs = [expr for plan in plans.values() for expr in plan.aggs]
    out: dict[int, Sequence[Any] | Outcome] = {}
    if not aggs:
        return {index: () for index in plans}
    try:
        row = frame.select(aggs).row(0)
    except Exception:  # one check's expression failed: find it, keep the others
        for index, plan in plans.items():
            out[index] = _evaluate_one(frame, plan)
        return out
    position = 0
    for index, plan in plans.items():
        width = len(plan.aggs)
        out[index] = row[position : position + width]
        position += width
    return out


def _evaluate_one(frame: pl.DataFrame, plan: Plan) -> Sequence[Any] | Outcome:
    if not plan.aggs:
        return ()
    try:
        return frame.select(plan.aggs).row(0)
    except Exception as exc:
        message = str(exc).strip().splitlines()
        return Outcome(
            False, {"error": f"{type(exc).__name__}: {message[0][:300] if message else ''}"}
        )


def _failing(
    frame: pl.DataFrame, plan: Plan, outcome: Outcome, sample_size: int
) -> list[dict[str, JsonValue]]:
    """Explains a failed check and samples its failing rows (best effort)."""
    try:
        if plan.explain is not None:
            plan.explain(frame, outcome)
        if sample_size == 0 or (plan.mask is None and plan.sampler is None):
            return []
        row = _ROW if _ROW not in frame.schema else _ROW + "_"
        indexed = frame.with_row_index(row)
        if plan.sampler is not None:
            rows = plan.sampler(indexed, sample_size)
        else:
            assert plan.mask is not None  # noqa: S101 - checked above
            rows = indexed.lazy().filter(plan.mask).head(sample_size).collect()
        rows = rows.select([row, *plan.sample_columns])
        return [
            {"row": r[row], "values": {k: jsonable(v) for k, v in r.items() if k != row}}
            for r in rows.iter_rows(named=True)
        ]
    except Exception:  # the sample is a courtesy: never let it fail the report
        return []


def _drift(
    check: DriftCheck, frame: pl.DataFrame, reference: pl.DataFrame | None
) -> tuple[Outcome, list[dict[str, JsonValue]]]:
    threshold: JsonValue = {"psi": check.psi_threshold, "ks": check.ks_threshold}
    if reference is None:
        return Outcome(False, {"error": "no reference data to compare against"}, threshold), []
    observed: dict[str, JsonValue] = {}
    drifted: list[dict[str, JsonValue]] = []
    for name in check.columns:
        if name not in frame.schema or name not in reference.schema:
            where = "the data" if name not in frame.schema else "the reference"
            observed[name] = {"error": f"column {name!r} not found in {where}"}
            drifted.append({"column": name, "error": observed[name]})
            continue
        try:
            stats = column_drift(frame.get_column(name), reference.get_column(name), check.bins)
        except (DriftError, pl.exceptions.PolarsError) as exc:
            observed[name] = {"error": str(exc)}
            drifted.append({"column": name, "error": str(exc)})
            continue
        entry: dict[str, JsonValue] = {
            "psi": finite_or_none(stats.psi),
            "ks": finite_or_none(stats.ks),
        }
        observed[name] = entry
        if stats.psi > check.psi_threshold or (
            stats.ks is not None and stats.ks > check.ks_threshold
        ):
            drifted.append({"column": name, **entry})
    outcome = Outcome(not drifted, observed, threshold, len(drifted))
    return outcome, drifted[:SAMPLE_CAP]
