"""The subset of MLflow's search grammar we accept (``filter`` and ``order_by`` of
SearchRuns and SearchExperiments), parsed into clauses. docs/tracking.md lists it:

    clause [AND clause]...
    clause   := identifier comparator value
    identifier := [entity.]key      entity: metrics|metric|params|param|parameters|tags|tag|
                                            attributes|attribute|attr|run (default: attribute)
                  key: bare words joined by dots, "double quoted" or `backquoted`
    comparator := = | != | < | <= | > | >= | LIKE | ILIKE | IN | NOT IN
    value    := 'string' | "string" | number | ('string', ...)   (IN / NOT IN)

No OR and no parentheses: MLflow has neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .wire_errors import InvalidParameter

_ENTITIES = {
    "metrics": "metric",
    "metric": "metric",
    "params": "param",
    "param": "param",
    "parameters": "param",
    "tags": "tag",
    "tag": "tag",
    "attributes": "attribute",
    "attribute": "attribute",
    "attr": "attribute",
    "run": "attribute",
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<backquoted>`[^`]*`)
      | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<comparator><=|>=|!=|=|<|>)
      | (?P<punct>[(),.])
      | (?P<word>[A-Za-z_][A-Za-z0-9_\-:/]*)
    )""",
    re.VERBOSE,
)
STRING_COMPARATORS = frozenset({"=", "!=", "LIKE", "ILIKE"})
NUMERIC_COMPARATORS = frozenset({"=", "!=", "<", "<=", ">", ">="})
SET_COMPARATORS = frozenset({"IN", "NOT IN"})


@dataclass(frozen=True)
class Clause:
    entity: str  # metric | param | tag | attribute
    key: str
    comparator: str
    value: str | float | tuple[str, ...]


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise InvalidParameter(f"Cannot parse search filter near {text[position:][:30]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", r"\1", body) if token[0] in "'\"" else body


class _Reader:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise InvalidParameter("Search filter ends too early")
        self.at += 1
        return token

    def word(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].upper() in words:
            self.at += 1
            return True
        return False


def _identifier(reader: _Reader) -> tuple[str, str]:
    kind, first = reader.take()
    if kind not in ("word", "string", "backquoted"):
        raise InvalidParameter(f"Expected an identifier, found {first!r}")
    token = reader.peek()
    if kind == "word" and token == ("punct", "."):
        reader.take()
        entity = _ENTITIES.get(first.lower())
        if entity is None:
            raise InvalidParameter(f"Unknown entity {first!r} in search filter")
        key_kind, key = reader.take()
        if key_kind not in ("word", "string", "backquoted"):
            raise InvalidParameter(f"Expected a key after {first!r}.")
        if key_kind != "word":
            return entity, _unquote(key)
        # A bare key may have dots of its own, as MLflow's do: tags.mlflow.parentRunId.
        parts = [key]
        while reader.peek() == ("punct", "."):
            reader.take()
            kind, part = reader.take()
            if kind != "word":
                raise InvalidParameter(f"Unexpected {part!r} in the key {'.'.join(parts)!r}")
            parts.append(part)
        return entity, ".".join(parts)
    return "attribute", first if kind == "word" else _unquote(first)


def _comparator(reader: _Reader) -> str:
    if reader.word("NOT"):
        if not reader.word("IN"):
            raise InvalidParameter("Expected IN after NOT")
        return "NOT IN"
    for word in ("LIKE", "ILIKE", "IN"):
        if reader.word(word):
            return word
    kind, value = reader.take()
    if kind != "comparator":
        raise InvalidParameter(f"Expected a comparator, found {value!r}")
    return value


def _value(reader: _Reader, comparator: str) -> str | float | tuple[str, ...]:
    if comparator in SET_COMPARATORS:
        if reader.take() != ("punct", "("):
            raise InvalidParameter(f"{comparator} takes a parenthesized list of strings")
        items: list[str] = []
        while True:
            kind, value = reader.take()
            if kind != "string":
                raise InvalidParameter(f"{comparator} takes a list of quoted strings")
            items.append(_unquote(value))
            separator = reader.take()
            if separator == ("punct", ")"):
                return tuple(items)
            if separator != ("punct", ","):
                raise InvalidParameter(f"Expected ',' or ')' in the {comparator} list")
    kind, value = reader.take()
    if kind == "string":
        return _unquote(value)
    if kind == "number":
        return float(value)
    raise InvalidParameter(f"Expected a quoted string or a number, found {value!r}")


def parse_filter(text: str | None) -> list[Clause]:
    if text is None or not text.strip():
        return []
    reader = _Reader(_tokens(text))
    clauses: list[Clause] = []
    while True:
        entity, key = _identifier(reader)
        comparator = _comparator(reader)
        clauses.append(Clause(entity, key, comparator, _value(reader, comparator)))
        if reader.peek() is None:
            return clauses
        if not reader.word("AND"):
            raise InvalidParameter("Search filter clauses are joined with AND (there is no OR)")


def parse_order_by(items: list[str] | None) -> list[OrderKey]:
    """``[entity.]key [ASC|DESC]`` per item."""
    keys: list[OrderKey] = []
    for item in items or []:
        reader = _Reader(_tokens(item))
        entity, key = _identifier(reader)
        ascending = True
        if reader.word("DESC"):
            ascending = False
        else:
            reader.word("ASC")
        if reader.peek() is not None:
            raise InvalidParameter(f"Cannot parse order_by {item!r}")
        keys.append(OrderKey(entity, key, ascending))
    return keys
