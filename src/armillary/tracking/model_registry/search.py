"""MLflow's ``registered-models/search`` and ``model-versions/search`` over the registry's
lists: the registry lists every model (or a model's versions), and MLflow's filter, order and
pages are applied here, in MLflow's grammar (``tracking.filters``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from armillary.kit.authz import ProjectAccess

from ..components import Tracking
from ..filters import Clause, OrderKey, parse_filter, parse_order_by
from ..wire import decode_token, offset_page, page_size
from ..wire_errors import InvalidParameter
from . import registry_calls as calls
from .shapes import SearchQuery, registered_model_json, version_json

# MLflow's server limits for each search's page.
MODELS_DEFAULT, MODELS_MAX = 100, 1000
VERSIONS_DEFAULT, VERSIONS_MAX = 10_000, 200_000
_STRING = frozenset({"=", "!=", "LIKE", "ILIKE"})
_IDS = frozenset({"=", "!=", "IN", "NOT IN"})
_NUMBER = frozenset({"=", "!=", "<", "<=", ">", ">="})


def _like(pattern: str, value: str, *, ignore_case: bool) -> bool:
    """SQL's LIKE: ``%`` any run of characters, ``_`` one character."""
    parts = ("." * (c == "_") + ".*" * (c == "%") or re.escape(c) for c in pattern)
    flags = re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL
    return re.fullmatch("".join(parts), value, flags) is not None


def _compare(clause: Clause, value: Any) -> bool:
    if value is None:
        # A model without the tag is not equal to any value: MLflow 3's client excludes
        # prompts from every search with ``tags.`mlflow.prompt.is_prompt` != 'true'``.
        return clause.comparator in ("!=", "NOT IN")
    op, wanted = clause.comparator, clause.value
    if op in ("IN", "NOT IN"):
        assert isinstance(wanted, tuple)  # noqa: S101 - the parser gives sets as tuples
        return (str(value) in wanted) == (op == "IN")
    if op in ("LIKE", "ILIKE"):
        return _like(str(wanted), str(value), ignore_case=op == "ILIKE")
    if isinstance(wanted, float):
        number = float(value)
        return {
            "=": number == wanted,
            "!=": number != wanted,
            "<": number < wanted,
            "<=": number <= wanted,
            ">": number > wanted,
            ">=": number >= wanted,
        }[op]
    return (str(value) == wanted) == (op == "=")


def _checked(clauses: list[Clause], allowed: dict[str, frozenset[str]]) -> list[Clause]:
    for clause in clauses:
        name = "tags" if clause.entity == "tag" else clause.key
        ops = allowed.get(name) if clause.entity in ("attribute", "tag") else None
        if ops is None:
            raise InvalidParameter(
                f"Cannot search by {clause.key!r}: use {', '.join(sorted(allowed))}"
            )
        if clause.comparator not in ops:
            raise InvalidParameter(f"{clause.key} cannot be compared with {clause.comparator}")
        if name == "version_number" and not isinstance(clause.value, float):
            raise InvalidParameter("version_number is compared with a number")
    return clauses


def _field(record: dict[str, Any], clause: Clause) -> Any:
    if clause.entity == "tag":
        tags = {t["key"]: t["value"] for t in record.get("tags", [])}
        return tags.get(clause.key)
    if clause.key == "version_number":
        return int(record["version"])
    return record.get(clause.key)


def _sort_key(field: str) -> Callable[[dict[str, Any]], Any]:
    if field == "version":
        return lambda record: int(record["version"])
    return lambda record: record[field]


def _ordered(
    records: list[dict[str, Any]], keys: list[OrderKey], allowed: dict[str, str]
) -> list[dict[str, Any]]:
    for key in reversed(keys):
        field = allowed.get(key.key) if key.entity == "attribute" else None
        if field is None:
            raise InvalidParameter(f"Cannot order by {key.key!r}: use {', '.join(allowed)}")
        records = sorted(records, key=_sort_key(field), reverse=not key.ascending)
    return records


def _page(
    records: list[dict[str, Any]], query: SearchQuery, default: int, limit: int
) -> tuple[list[dict[str, Any]], str | None]:
    size = page_size(query.max_results, default, limit)
    offset = decode_token(query.page_token, "offset") or 0
    return offset_page(records[offset : offset + size + 1], offset, size)


_MODEL_FILTERS = {"name": _STRING, "tags": _STRING}
_MODEL_ORDER = {
    "name": "name",
    "creation_timestamp": "creation_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
}


async def _models(tracking: Tracking, access: ProjectAccess) -> list[dict[str, Any]]:
    return await calls.all_pages(tracking, access, "", {})


async def registered_models(
    tracking: Tracking, access: ProjectAccess, query: SearchQuery
) -> tuple[list[dict[str, Any]], str | None]:
    clauses = _checked(parse_filter(query.filter), _MODEL_FILTERS)
    order = parse_order_by(query.order_by) or [OrderKey("attribute", "name", True)]
    found = [registered_model_json(m) for m in await _models(tracking, access)]
    found = [m for m in found if all(_compare(c, _field(m, c)) for c in clauses)]
    return _page(_ordered(found, order, _MODEL_ORDER), query, MODELS_DEFAULT, MODELS_MAX)


_VERSION_FILTERS = {
    "name": _STRING,
    "run_id": _IDS,
    "source": _STRING,
    "version_number": _NUMBER,
    "tags": _STRING,
}
_VERSION_ORDER = {
    "name": "name",
    "version_number": "version",
    "creation_timestamp": "creation_timestamp",
    "last_updated_timestamp": "last_updated_timestamp",
}


async def model_versions(
    tracking: Tracking, access: ProjectAccess, query: SearchQuery
) -> tuple[list[dict[str, Any]], str | None]:
    clauses = _checked(parse_filter(query.filter), _VERSION_FILTERS)
    names = [c for c in clauses if c.entity == "attribute" and c.key == "name"]
    exact = [str(c.value) for c in names if c.comparator == "="]
    if exact:
        models = [await calls.model(tracking, access, exact[0])]
    else:
        models = await _models(tracking, access)
    found: list[dict[str, Any]] = []
    for model in models:
        if not all(_compare(c, model.get("name")) for c in names):
            continue
        name = str(model["name"])
        records = await calls.all_pages(
            tracking,
            access,
            calls.model_path(name, "/versions"),
            {},
            not_found=calls.model_not_found(name),
        )
        aliases = model.get("aliases") or {}
        found.extend(version_json(r, aliases) for r in records)
    found = [v for v in found if all(_compare(c, _field(v, c)) for c in clauses)]
    order = parse_order_by(query.order_by) or [
        OrderKey("attribute", "name", True),
        OrderKey("attribute", "version_number", False),
    ]
    return _page(_ordered(found, order, _VERSION_ORDER), query, VERSIONS_DEFAULT, VERSIONS_MAX)
