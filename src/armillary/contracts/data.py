"""What other services send to and get from the data service."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DatasetColumn(BaseModel):
    """One column of a dataset version's schema (dtype as Polars names it, e.g. ``Int64``)."""

    name: str
    dtype: str


class QualityReportIn(BaseModel):
    """A data quality report on one dataset version, as a task (or a person) submits it.

    Deliberately permissive: the fields the data service needs are checked, anything else
    the producing task adds is kept as it was sent (``extra="allow"``)."""

    model_config = ConfigDict(extra="allow")

    passed: bool
    score: float = Field(allow_inf_nan=False)
    rows: int | None = Field(default=None, ge=0)
    checks: list[dict[str, Any]]
