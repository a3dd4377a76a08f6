"""Each check type as a plan: aggregate expressions for the one shared pass, and how to judge.

A :class:`Plan` contributes zero or more aggregate Polars expressions to the single
``frame.select`` the engine runs for all checks, and turns their values into an
:class:`Outcome`. Checks answered by metadata (schema, row count, null counts, which Arrow
keeps per chunk) contribute no expression. ``mask`` is ``True`` on the rows that fail; the
engine evaluates it only for failed checks, to sample failing rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import polars as pl
from pydantic import JsonValue

from armillary.contracts.quality import (
    FreshnessCheck,
    InRangeCheck,
    InSetCheck,
    MaxNullRatioCheck,
    NotNullCheck,
    RegexCheck,
    RowCountCheck,
    SchemaCheck,
    SqlCheck,
    UniqueCheck,
)

from .values import finite_or_none, jsonable

RowCheck = (
    SchemaCheck
    | NotNullCheck
    | UniqueCheck
    | InRangeCheck
    | InSetCheck
    | RegexCheck
    | RowCountCheck
    | FreshnessCheck
    | MaxNullRatioCheck
    | SqlCheck
)
UNEXPECTED_VALUES = 10


@dataclass(slots=True)
class Outcome:
    passed: bool
    observed: JsonValue = None
    threshold: JsonValue = None
    failing_count: int = 0


@dataclass(slots=True)
class Plan:
    aggs: Sequence[pl.Expr]
    finish: Callable[[Sequence[Any]], Outcome]
    mask: pl.Expr | None = None
    sample_columns: list[str] = field(default_factory=list)
    # Extra work only when the check failed (e.g. which unexpected values were seen).
    explain: Callable[[pl.DataFrame, Outcome], None] | None = None
    # Failing rows chosen otherwise than by ``mask`` (e.g. the newest rows for freshness).
    sampler: Callable[[pl.DataFrame, int], pl.DataFrame] | None = None


class CheckError(Exception):
    """The check cannot run on this frame (missing column, wrong type): it fails."""


def error_plan(message: str) -> Plan:
    return Plan((), lambda _values: Outcome(False, {"error": message}))


# Expressions are built by cached functions of the checks' parameters: building a Polars
# expression costs microseconds per operator, which adds up on small frames. Aggregates are
# aliased ``{prefix}{k}`` so that all plans' aggregates go into one select.
_cache = functools.lru_cache(maxsize=1024)


@_cache
def _is_null(column: str) -> pl.Expr:
    return pl.col(column).is_null()


@_cache
def _unique_one(prefix: str, column: str) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    col = pl.col(column)
    return (col.n_unique().alias(f"{prefix}0"),), col.is_duplicated() & col.is_not_null()


@_cache
def _unique_many(
    prefix: str, columns: tuple[str, ...], with_nulls: bool
) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    key = pl.struct(columns)
    if not with_nulls:
        return (key.n_unique().alias(f"{prefix}0"), pl.len().alias(f"{prefix}1")), (
            key.is_duplicated()
        )
    complete = pl.all_horizontal([pl.col(n).is_not_null() for n in columns])
    aggs = (
        key.filter(complete).n_unique().alias(f"{prefix}0"),
        complete.sum().alias(f"{prefix}1"),
    )
    return aggs, key.is_duplicated() & complete


@_cache
def _in_range(
    prefix: str, column: str, low: float | None, high: float | None, inclusive: bool
) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    col = pl.col(column)
    conditions = []
    if low is not None:
        conditions.append(col >= low if inclusive else col > low)
    if high is not None:
        conditions.append(col <= high if inclusive else col < high)
    inside = conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]
    fails = ~inside
    aggs = (
        fails.sum().alias(f"{prefix}0"),
        col.min().alias(f"{prefix}1"),
        col.max().alias(f"{prefix}2"),
    )
    return aggs, fails


@_cache
def _in_set(
    prefix: str, column: str, values: tuple[str | int | float | bool, ...], dtype: pl.DataType
) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    # The allowed values in the column's type (a value that does not convert matches nothing)
    try:
        allowed = pl.Series(values, dtype=dtype, strict=False)
        fails = ~pl.col(column).is_in(allowed.implode())
    except Exception:  # the values do not convert: compare as text
        text = pl.Series([str(v) for v in values], dtype=pl.String)
        fails = ~pl.col(column).cast(pl.String).is_in(text.implode())
    return (fails.sum().alias(f"{prefix}0"),), fails


@_cache
def _regex(
    prefix: str, column: str, pattern: str, cast: bool
) -> tuple[tuple[pl.Expr, ...], pl.Expr]:
    col = pl.col(column).cast(pl.String) if cast else pl.col(column)
    fails = ~col.str.contains(rf"\A(?:{pattern})\z")
    return (fails.sum().alias(f"{prefix}0"),), fails


@_cache
def _newest(prefix: str, column: str) -> tuple[pl.Expr, ...]:
    return (pl.col(column).max().alias(f"{prefix}0"),)


@_cache
def _sql(prefix: str, predicate: str) -> tuple[tuple[pl.Expr, ...], pl.Expr, tuple[str, ...]]:
    expr = pl.sql_expr(predicate)
    fails = ~expr
    return (fails.sum().alias(f"{prefix}0"),), fails, tuple(expr.meta.root_names())


def _column(frame: pl.DataFrame, schema: pl.Schema, name: str) -> pl.Series:
    if name not in schema:
        raise CheckError(f"column {name!r} not found")
    return frame.get_column(name)


def _dtype(schema: pl.Schema, name: str) -> pl.DataType:
    dtype = schema.get(name)
    if dtype is None:
        raise CheckError(f"column {name!r} not found")
    return dtype


def _fixed(outcome: Outcome) -> Callable[[Sequence[Any]], Outcome]:
    return lambda _values: outcome


def _count(value: Any) -> int:
    return int(value or 0)


# --- schema and metadata-only checks -------------------------------------------------------

_FAMILIES: dict[str, Callable[[pl.DataType], bool]] = {
    "integer": lambda d: d.is_integer(),
    "float": lambda d: d.is_float(),
    "numeric": lambda d: d.is_numeric(),
    "temporal": lambda d: d.is_temporal(),
}
_ALIASES = {"utf8": "string", "str": "string", "bool": "boolean", "int": "integer"}


def dtype_matches(actual: pl.DataType, expected: str) -> bool:
    """``expected`` is a Polars type name (``Datetime`` matches any unit and zone), a full
    type (``Datetime(time_unit='us', time_zone='UTC')``) or a family (``Integer``, ...)."""
    wanted = expected.strip().lower()
    wanted = _ALIASES.get(wanted, wanted)
    family = _FAMILIES.get(wanted)
    if family is not None:
        return family(actual)
    if actual.base_type().__name__.lower() == wanted:
        return True
    return str(actual).lower().replace(" ", "") == wanted.replace(" ", "")


def plan_schema(check: SchemaCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    missing = [name for name in check.columns if name not in schema]
    mismatched = {
        name: str(schema[name])
        for name, expected in check.columns.items()
        if name in schema and not dtype_matches(schema[name], expected)
    }
    extra = [name for name in schema if name not in check.columns] if check.exact else []
    problems = len(missing) + len(mismatched) + len(extra)
    observed: dict[str, Any] = {"missing": missing, "mismatched": mismatched}
    if check.exact:
        observed["extra"] = extra
    threshold: dict[str, Any] = {"columns": dict(check.columns), "exact": check.exact}
    return Plan((), _fixed(Outcome(problems == 0, observed, threshold, problems)))


def plan_row_count(
    check: RowCountCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str
) -> Plan:
    rows = frame.height
    short = max(0, check.min - rows) if check.min is not None else 0
    over = max(0, rows - check.max) if check.max is not None else 0
    threshold: JsonValue = {"min": check.min, "max": check.max}
    return Plan((), _fixed(Outcome(short == 0 and over == 0, rows, threshold, short + over)))


def plan_not_null(check: NotNullCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    nulls = _column(frame, schema, check.column).null_count()
    return Plan(
        (),
        _fixed(Outcome(nulls == 0, nulls, 0, nulls)),
        mask=_is_null(check.column),
        sample_columns=[check.column],
    )


def plan_max_null_ratio(
    check: MaxNullRatioCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str
) -> Plan:
    nulls = _column(frame, schema, check.column).null_count()
    ratio = nulls / frame.height if frame.height else 0.0
    passed = ratio <= check.max_ratio
    return Plan(
        (),
        _fixed(Outcome(passed, ratio, check.max_ratio, 0 if passed else nulls)),
        mask=_is_null(check.column),
        sample_columns=[check.column],
    )


# --- checks evaluated in the shared pass ---------------------------------------------------


def plan_unique(check: UniqueCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    names = check.columns
    series = [_column(frame, schema, name) for name in names]
    rows = frame.height
    if len(names) == 1:
        nulls = series[0].null_count()
        aggs, mask = _unique_one(prefix, names[0])

        def finish_one(values: Sequence[Any]) -> Outcome:
            distinct = _count(values[0]) - (1 if nulls else 0)
            duplicates = rows - nulls - distinct
            return Outcome(duplicates == 0, duplicates, 0, duplicates)

        return Plan(aggs, finish_one, mask=mask, sample_columns=list(names))
    with_nulls = any(s.null_count() for s in series)
    aggs, mask = _unique_many(prefix, tuple(names), with_nulls)

    def finish_many(values: Sequence[Any]) -> Outcome:
        duplicates = _count(values[1]) - _count(values[0])
        return Outcome(duplicates == 0, duplicates, 0, duplicates)

    return Plan(aggs, finish_many, mask=mask, sample_columns=list(names))


def plan_in_range(check: InRangeCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    dtype = _dtype(schema, check.column)
    if not dtype.is_numeric():
        raise CheckError(f"in_range needs a numeric column; {check.column!r} is {dtype}")
    aggs, fails = _in_range(prefix, check.column, check.min, check.max, check.inclusive)
    threshold: JsonValue = {"min": check.min, "max": check.max, "inclusive": check.inclusive}

    def finish(values: Sequence[Any]) -> Outcome:
        failing = _count(values[0])
        observed: JsonValue = {"min": jsonable(values[1]), "max": jsonable(values[2])}
        return Outcome(failing == 0, observed, threshold, failing)

    return Plan(aggs, finish, mask=fails, sample_columns=[check.column])


def plan_in_set(check: InSetCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    dtype = _dtype(schema, check.column)
    aggs, fails = _in_set(prefix, check.column, tuple(check.values), dtype)
    threshold = jsonable(check.values)

    def finish(values: Sequence[Any]) -> Outcome:
        failing = _count(values[0])
        return Outcome(failing == 0, {"unexpected_values": []}, threshold, failing)

    def explain(frame: pl.DataFrame, outcome: Outcome) -> None:
        seen = (
            frame.lazy()
            .filter(fails)
            .group_by(check.column)
            .len()
            .sort(["len", check.column], descending=[True, False])
            .head(UNEXPECTED_VALUES)
            .collect()
        )
        outcome.observed = {"unexpected_values": jsonable(seen.get_column(check.column).to_list())}

    return Plan(aggs, finish, mask=fails, sample_columns=[check.column], explain=explain)


def plan_regex(check: RegexCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    dtype = _dtype(schema, check.column)
    categorical = isinstance(dtype, pl.Categorical | pl.Enum)
    if not categorical and dtype != pl.String:
        raise CheckError(f"regex needs a text column; {check.column!r} is {dtype}")
    aggs, fails = _regex(prefix, check.column, check.pattern, categorical)

    def finish(values: Sequence[Any]) -> Outcome:
        failing = _count(values[0])
        return Outcome(failing == 0, failing, check.pattern, failing)

    return Plan(aggs, finish, mask=fails, sample_columns=[check.column])


def _instant(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise CheckError(f"not a date or datetime: {type(value).__name__}")


def plan_freshness(
    check: FreshnessCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str
) -> Plan:
    series = _column(frame, schema, check.column)
    if not isinstance(series.dtype, pl.Date | pl.Datetime):
        raise CheckError(
            f"freshness needs a Date or Datetime column; {check.column!r} is {series.dtype}"
        )
    now = _instant(datetime.fromisoformat(check.now)) if check.now else datetime.now(UTC)
    assert now is not None  # noqa: S101 - a datetime was given
    non_null = frame.height - series.null_count()

    def finish(values: Sequence[Any]) -> Outcome:
        newest = _instant(values[0])
        if newest is None:
            return Outcome(
                False, {"newest": None, "age_seconds": None}, check.max_age_seconds, frame.height
            )
        age = (now - newest).total_seconds()
        passed = age <= check.max_age_seconds
        observed: JsonValue = {"newest": newest.isoformat(), "age_seconds": finite_or_none(age)}
        return Outcome(passed, observed, check.max_age_seconds, 0 if passed else non_null)

    def newest_rows(frame: pl.DataFrame, n: int) -> pl.DataFrame:
        return frame.top_k(n, by=check.column)

    aggs = _newest(prefix, check.column)
    return Plan(aggs, finish, sample_columns=[check.column], sampler=newest_rows)


def plan_sql(check: SqlCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    aggs, fails, names = _sql(prefix, check.predicate)
    for name in names:
        _dtype(schema, name)

    def finish(values: Sequence[Any]) -> Outcome:
        failing = _count(values[0])
        return Outcome(failing == 0, failing, check.predicate, failing)

    return Plan(aggs, finish, mask=fails, sample_columns=sorted(set(names)))


_BUILDERS: dict[str, Callable[[Any, pl.DataFrame, pl.Schema, str], Plan]] = {
    "schema": plan_schema,
    "row_count": plan_row_count,
    "not_null": plan_not_null,
    "max_null_ratio": plan_max_null_ratio,
    "unique": plan_unique,
    "in_range": plan_in_range,
    "in_set": plan_in_set,
    "regex": plan_regex,
    "freshness": plan_freshness,
    "sql": plan_sql,
}


def build_plan(check: RowCheck, frame: pl.DataFrame, schema: pl.Schema, prefix: str) -> Plan:
    """The check's plan, or a failing one that says why it cannot run on ``frame``
    (whose ``schema`` the caller gives: Polars builds it anew on every access). Its
    aggregates are named ``{prefix}0``, ``{prefix}1``..."""
    try:
        return _BUILDERS[check.type](check, frame, schema, prefix)
    except CheckError as exc:
        return error_plan(str(exc))
    except Exception as exc:
        return error_plan(f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
