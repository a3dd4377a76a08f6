"""The ``validate`` task type: data-quality checks, their parameters and the quality report.

A check is one of a closed set of types (a discriminated union on ``type``); each has a
``severity``: a failed ``error`` check fails the quality gate (the task fails closed), a failed
``warn`` check is reported only. The report is what the task returns, posts to the dataset
version it validated, and carries in :class:`QualityGateFailed` when the gate is closed.

Regular expressions and SQL predicates are checked here by Polars, which evaluates them
(Rust ``regex`` syntax, Polars' SQL dialect); Polars is imported only when a spec has one.
"""

from __future__ import annotations

import functools
import math
from abc import abstractmethod
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, field_validator, model_validator

from .task_base import TaskTypeContract

Severity = Literal["error", "warn"]
SAMPLE_CAP = 100
_COLUMN = Annotated[str, Field(min_length=1, max_length=256)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Check(_Model):
    severity: Severity = Field(
        default="error",
        description="`error` fails the gate when the check fails; `warn` only reports",
    )
    name: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Name in the report (default: derived, e.g. `not_null(age)`)",
    )

    @abstractmethod
    def default_name(self) -> str:
        """The check's name when the spec gives none, e.g. ``not_null(age)``."""

    @property
    def label(self) -> str:
        """The check's name in the report."""
        return self.name or self.default_name()

    def column_names(self) -> list[str]:
        """The columns the check reads (empty for table-level checks)."""
        column: str | None = getattr(self, "column", None)
        return [column] if column else []


class _MultiColumn(_Check):
    columns: list[_COLUMN]

    @model_validator(mode="before")
    @classmethod
    def _column_alias(cls, data: Any) -> Any:
        """Accept ``column: x`` for ``columns: [x]``."""
        if isinstance(data, dict) and "column" in data and "columns" not in data:
            data = dict(data)
            data["columns"] = [data.pop("column")]
        return data

    def column_names(self) -> list[str]:
        return list(self.columns)


class SchemaCheck(_Check):
    type: Literal["schema"] = "schema"
    columns: dict[_COLUMN, str] = Field(
        min_length=1,
        description=(
            "Column name -> dtype: a Polars type name (Int64, Float64, String, Boolean, Date, "
            "Datetime, ...) or a family: Integer, Float, Numeric, Temporal"
        ),
    )
    exact: bool = Field(default=False, description="No columns beyond those listed")

    def default_name(self) -> str:
        return "schema"

    def column_names(self) -> list[str]:
        return list(self.columns)


class NotNullCheck(_Check):
    type: Literal["not_null"] = "not_null"
    column: _COLUMN

    def default_name(self) -> str:
        return f"not_null({self.column})"


class UniqueCheck(_MultiColumn):
    type: Literal["unique"] = "unique"
    columns: list[_COLUMN] = Field(
        min_length=1, max_length=32, description="Key columns (rows with a null key are skipped)"
    )

    def default_name(self) -> str:
        return f"unique({', '.join(self.columns)})"


class InRangeCheck(_Check):
    type: Literal["in_range"] = "in_range"
    column: _COLUMN
    min: float | None = None
    max: float | None = None
    inclusive: bool = Field(default=True, description="Bounds themselves are in range")

    @model_validator(mode="after")
    def _bounds(self) -> InRangeCheck:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("bounds must be finite numbers")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is greater than `max`")
        return self

    def default_name(self) -> str:
        return f"in_range({self.column})"


class InSetCheck(_Check):
    type: Literal["in_set"] = "in_set"
    column: _COLUMN
    values: list[str | int | float | bool] = Field(min_length=1, max_length=10_000)

    def default_name(self) -> str:
        return f"in_set({self.column})"


class RegexCheck(_Check):
    type: Literal["regex"] = "regex"
    column: _COLUMN
    pattern: str = Field(
        min_length=1, max_length=2_000, description="Must match the whole value (Rust regex)"
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        import polars as pl

        try:
            pl.select(pl.lit("").str.contains(pattern))
        except Exception as exc:
            raise ValueError(f"invalid regular expression: {_first_line(exc)}") from None
        return pattern

    def default_name(self) -> str:
        return f"regex({self.column})"


class RowCountCheck(_Check):
    type: Literal["row_count"] = "row_count"
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountCheck:
        if self.min is None and self.max is None:
            raise ValueError("give `min`, `max` or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("`min` is greater than `max`")
        return self

    def default_name(self) -> str:
        return "row_count"


class FreshnessCheck(_Check):
    type: Literal["freshness"] = "freshness"
    column: _COLUMN
    max_age_seconds: float = Field(gt=0, description="Newest value at most this old")
    now: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="ISO 8601 instant to measure age from (default: now; for tests)"
    )

    @field_validator("now")
    @classmethod
    def _iso(cls, now: str | None) -> str | None:
        from datetime import datetime

        if now is not None:
            try:
                datetime.fromisoformat(now)
            except ValueError:
                raise ValueError("`now` must be an ISO 8601 date-time") from None
        return now

    def default_name(self) -> str:
        return f"freshness({self.column})"


class MaxNullRatioCheck(_Check):
    type: Literal["max_null_ratio"] = "max_null_ratio"
    column: _COLUMN
    max_ratio: float = Field(ge=0, le=1)

    def default_name(self) -> str:
        return f"max_null_ratio({self.column})"


class SqlCheck(_Check):
    type: Literal["sql"] = "sql"
    predicate: str = Field(
        min_length=1,
        max_length=10_000,
        description=(
            "SQL boolean expression over the row's columns; rows where it is false fail "
            "(NULL passes, as in a CHECK constraint). Polars SQL dialect, no subqueries, no I/O."
        ),
    )

    @field_validator("predicate")
    @classmethod
    def _parses(cls, predicate: str) -> str:
        import polars as pl

        try:
            pl.sql_expr(predicate)
        except Exception as exc:
            raise ValueError(f"invalid SQL predicate: {_first_line(exc)}") from None
        return predicate

    def default_name(self) -> str:
        text = " ".join(self.predicate.split())
        return f"sql({text if len(text) <= 60 else text[:57] + '...'})"

    def column_names(self) -> list[str]:
        return list(_sql_columns(self.predicate))


class DriftCheck(_MultiColumn):
    type: Literal["drift"] = "drift"
    columns: list[_COLUMN] = Field(min_length=1, max_length=256)
    psi_threshold: float = Field(default=0.2, gt=0, description="Population stability index")
    ks_threshold: float = Field(
        default=0.1, gt=0, le=1, description="Kolmogorov-Smirnov statistic (numeric columns)"
    )
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins of the reference")

    def default_name(self) -> str:
        return f"drift({', '.join(self.columns)})"


Check = Annotated[
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
    | DriftCheck,
    Field(discriminator="type"),
]


class DatasetRef(_Model):
    dataset: str = Field(min_length=1, max_length=128)
    version: Annotated[int, Field(ge=1)] | Literal["latest"] = "latest"


class ValidateParams(_Model):
    input: str = Field(
        min_length=1, max_length=128, description="The upstream task whose `table` to validate"
    )
    checks: list[Check] = Field(min_length=1, max_length=500)
    reference: DatasetRef | None = Field(
        default=None, description="Dataset version the `drift` checks compare against"
    )
    sample_size: int = Field(
        default=5, ge=0, le=SAMPLE_CAP, description="Failing rows kept per check"
    )

    @model_validator(mode="after")
    def _consistent(self) -> ValidateParams:
        if self.reference is None and any(isinstance(c, DriftCheck) for c in self.checks):
            raise ValueError("`drift` checks need a `reference` dataset version")
        seen: set[str] = set()
        for check in self.checks:
            if check.label in seen:
                raise ValueError(f"two checks are named {check.label!r}: give one a `name`")
            seen.add(check.label)
        return self


class CheckResult(_Model):
    name: str
    type: str
    severity: Severity
    columns: list[str] = Field(default_factory=list)
    passed: bool
    observed: JsonValue = None
    threshold: JsonValue = None
    failing_count: int = 0
    failing_sample: list[dict[str, JsonValue]] = Field(default_factory=list)


class QualityReport(_Model):
    rows: int
    columns: int
    checks: list[CheckResult]
    score: float = Field(ge=0, le=1, description="Share of checks passed")
    passed: bool = Field(description="No `error` check failed")
    errors_failed: int
    warnings_failed: int
    duration_ms: float


class ValidateOutputs(_Model):
    report: dict[str, Any] = Field(description="The quality report")
    passed: bool
    score: float
    table: dict[str, Any] = Field(description="The validated table, passed through")
    rows: int


class QualityGateFailed(Exception):
    """An ``error`` check failed: the task fails closed. ``report`` is the report as JSON."""

    def __init__(self, report: dict[str, Any]) -> None:
        self.report = report
        failed = [
            c.get("name", "?")
            for c in report.get("checks", [])
            if not c.get("passed") and c.get("severity") == "error"
        ]
        super().__init__(
            f"quality gate failed: {len(failed)} error check(s) failed: " + ", ".join(failed)
        )


@functools.lru_cache(maxsize=256)
def _sql_columns(predicate: str) -> tuple[str, ...]:
    import polars as pl

    try:
        return tuple(sorted(set(pl.sql_expr(predicate).meta.root_names())))
    except Exception:
        return ()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


VALIDATE = TaskTypeContract(
    name="validate",
    description=(
        "Checks the table of the upstream task `input` (schema, nulls, uniqueness, ranges, "
        "sets, patterns, row count, freshness, null ratio, SQL predicates, drift against a "
        "reference dataset version). A failed `error` check fails the task with its report, "
        "so nothing downstream runs (fail closed); `warn` checks are only recorded."
    ),
    params=ValidateParams,
    outputs=ValidateOutputs,
    input_params=("input",),
)
