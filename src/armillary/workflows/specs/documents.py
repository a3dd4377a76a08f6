"""Reading a spec document (YAML or JSON) into plain data, with limits on its size."""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml

MAX_DOCUMENT_BYTES = 1024 * 1024
# YAML aliases can make a small document expand into a huge one: bound the expanded size.
MAX_NODES = 200_000
MAX_DEPTH = 64

DocumentFormat = Literal["yaml", "json"]


class DocumentError(ValueError):
    """The document cannot be read (syntax, encoding, size)."""


def parse_document(content: bytes | str, fmt: DocumentFormat) -> Any:
    """The plain data of a YAML (``yaml.safe_load``: no object construction) or JSON document."""
    if len(content) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"the document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        text = content.decode("utf-8") if isinstance(content, bytes) else content
    except UnicodeDecodeError as exc:
        raise DocumentError("the document is not UTF-8 text") from exc
    try:
        data = yaml.safe_load(text) if fmt == "yaml" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError, RecursionError) as exc:
        kind = "YAML" if fmt == "yaml" else "JSON"
        raise DocumentError(f"not valid {kind}: {_one_line(str(exc))}") from exc
    _check_size(data)
    return data


def format_for_filename(name: str) -> DocumentFormat:
    return "json" if name.lower().endswith(".json") else "yaml"


def _check_size(data: Any) -> None:
    budget = MAX_NODES
    pending: list[tuple[Any, int]] = [(data, 0)]
    while pending:
        value, depth = pending.pop()
        budget -= 1
        if budget < 0 or depth > MAX_DEPTH:
            raise DocumentError("the document is too large or too deeply nested")
        if isinstance(value, dict):
            pending.extend((item, depth + 1) for item in value.values())
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def _one_line(text: str) -> str:
    return " ".join(text.split())
