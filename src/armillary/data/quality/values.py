"""Python values from Polars made JSON-safe for a report (no NaN, no dates, bounded strings)."""

from __future__ import annotations

import math
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from pydantic import JsonValue

MAX_TEXT = 200
MAX_ITEMS = 20


def jsonable(value: Any) -> JsonValue:
    """``value`` as JSON: non-finite floats and dates become strings, long text is cut."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 3] + "..."
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, bytes):
        return jsonable(value.hex())
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in list(value.items())[:MAX_ITEMS]}
    return jsonable(str(value))


def finite_or_none(value: Any) -> float | None:
    """A float statistic, or None when there is none (empty column) or it is not finite."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
