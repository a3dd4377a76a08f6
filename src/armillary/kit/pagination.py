"""Limit/offset pagination shared by every list endpoint, and the bounds of every integer and
time a client puts in a query or a path."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Path, Query
from pydantic import AfterValidator, BaseModel

T = TypeVar("T")

#: The largest integer a query or path parameter accepts. Numbers are 32-bit columns, and a
#: value past what the database takes would fail there (a 500); past this it is a 422.
MAX_PARAM_INT = 2**31 - 1

#: A version number in a path (dataset, workflow, ... versions).
VersionNumber = Annotated[int, Path(ge=1, le=MAX_PARAM_INT, description="Version number")]
#: An attempt number in a query; the latest attempt when omitted.
AttemptNumber = Annotated[
    int | None,
    Query(ge=1, le=MAX_PARAM_INT, description="Attempt number; the latest if omitted"),
]


def _in_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time in UTC is outside years 1 to 9999") from None


#: A time in a query (``since``, ``until``, ``at``): an offset is applied here, so that
#: ``0001-01-01T00:00+23:59`` is a 422 rather than an overflow in the database driver (500).
Instant = Annotated[datetime, AfterValidator(_in_utc)]


class PageParams(BaseModel):
    limit: int
    offset: int


async def _page_params(
    limit: Annotated[int, Query(ge=1, le=200, description="Items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_PARAM_INT, description="Items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Paging = Annotated[PageParams, Depends(_page_params)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int
