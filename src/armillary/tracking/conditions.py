"""A parsed clause's comparator as SQL, shared by the experiment and run searches."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func

from .wire_errors import InvalidParameter


def compare(column: Any, comparator: str, value: Any) -> ColumnElement[bool]:
    """``column <comparator> value``. LIKE is the database's own: case-sensitive on
    PostgreSQL (as MLflow's), blind to ASCII case on SQLite; ILIKE ignores case on both."""
    match comparator:
        case "=":
            return column == value  # type: ignore[no-any-return]
        case "!=":
            return column != value  # type: ignore[no-any-return]
        case "<":
            return column < value  # type: ignore[no-any-return]
        case "<=":
            return column <= value  # type: ignore[no-any-return]
        case ">":
            return column > value  # type: ignore[no-any-return]
        case ">=":
            return column >= value  # type: ignore[no-any-return]
        case "LIKE":
            return column.like(value)  # type: ignore[no-any-return]
        case "ILIKE":
            return func.lower(column).like(func.lower(value))
        case "IN":
            return column.in_(value)  # type: ignore[no-any-return]
        case "NOT IN":
            return column.not_in(value)  # type: ignore[no-any-return]
    raise InvalidParameter(f"Unknown comparator {comparator}")
