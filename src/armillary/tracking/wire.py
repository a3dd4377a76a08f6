"""What travels on MLflow's REST API: ids, times, page tokens, numbers as protobuf's JSON
mapping writes them (MLflow's client parses responses with ``ParseDict``)."""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
import uuid
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .wire_errors import InvalidParameter

T = TypeVar("T")

# MLflow's limits (mlflow/utils/validation.py).
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 500
# Largest page of a search (MLflow's own bound), and of a metric's history.
MAX_SEARCH_RESULTS = 50_000
MAX_HISTORY_RESULTS = 250_000
INT64_MAX = 2**63 - 1
# ViewType by name, or by its protobuf number (1-3).
ViewType = Annotated[int, Field(ge=1, le=3)] | str | None


class WireModel(BaseModel):
    # Not extra="forbid" (STYLE): MLflow's clients add fields between versions (model_id,
    # dataset_digest on metrics, ...), and the client we serve must keep working.
    model_config = ConfigDict(extra="ignore")


class KeyValue(WireModel):
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    value: str = Field(default="", max_length=MAX_TAG_VALUE_LENGTH)


class ParamIn(WireModel):
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    value: str = Field(default="", max_length=MAX_PARAM_VALUE_LENGTH)


class MetricIn(WireModel):
    key: str = Field(min_length=1, max_length=MAX_KEY_LENGTH)
    # Protobuf's JSON mapping sends NaN and the infinities as "NaN", "Infinity", "-Infinity".
    value: float
    timestamp: int = Field(ge=-INT64_MAX, le=INT64_MAX)
    step: int = Field(default=0, ge=-INT64_MAX, le=INT64_MAX)
    # MLflow 3 links a point to a logged model (``log_model`` re-logs the run's points at the
    # model's step with it): such a point already logged is not appended again.
    model_id: str | None = Field(default=None, max_length=400)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def external_id(value: uuid.UUID) -> str:
    """MLflow's string ids: 32 hex digits, as MLflow's own run ids look."""
    return value.hex


def parse_id(value: str | None) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def number(value: float | None, is_nan: bool = False) -> float | str:
    """A double as protobuf's JSON mapping writes it (JSON has no NaN or Infinity)."""
    if is_nan or value is None or math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def encode_token(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()


def decode_token(token: str | None, field: str) -> int | None:
    """The integer ``field`` of a page token we issued; INVALID_PARAMETER_VALUE otherwise."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode()))[field]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidParameter("Invalid page token") from exc
    if not isinstance(value, int) or value < 0:
        raise InvalidParameter("Invalid page token")
    return value


def offset_page(found: Sequence[T], offset: int, limit: int) -> tuple[list[T], str | None]:
    """The first ``limit`` of rows fetched as ``limit + 1`` from ``offset``, and the token of
    the next page when the extra row shows there is one."""
    token = encode_token({"offset": offset + limit}) if len(found) > limit else None
    return list(found[:limit]), token


def page_size(requested: int | None, default: int, limit: int) -> int:
    if requested is None or requested == 0:
        return default
    if requested < 0 or requested > limit:
        raise InvalidParameter(f"max_results must be between 1 and {limit}")
    return requested


def view_filter(view: str | int | None) -> tuple[str, ...]:
    """Lifecycle stages a ``ViewType`` selects (by name or by its protobuf number)."""
    stages = {
        "ACTIVE_ONLY": ("active",),
        "1": ("active",),
        "DELETED_ONLY": ("deleted",),
        "2": ("deleted",),
        "ALL": ("active", "deleted"),
        "3": ("active", "deleted"),
    }
    key = "ACTIVE_ONLY" if view in (None, "", 0) else str(view).upper()
    if key not in stages:
        raise InvalidParameter(f"Unknown view type {view!r}")
    return stages[key]
