"""Removes secrets from anything that is logged or audited."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|authorization|api[_-]?key|cookie|credential|private|signature",
    re.IGNORECASE,
)
# Credentials of the platform that end up inside free text: JWTs (access, refresh and job
# tokens), serving API keys (``amk_`` + 43 URL-safe characters) and bearer credentials.
_SECRET_VALUE = re.compile(
    r"(eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*)"
    r"|(amk_[A-Za-z0-9_-]{20,})"
    r"|((?i:bearer)\s+[A-Za-z0-9._~+/=-]{8,})"
)
_SECRET_BYTES = re.compile(_SECRET_VALUE.pattern.encode())


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return redact_mapping(value)
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with secret-looking keys masked and token-looking values cut out."""
    return {
        key: REDACTED if is_secret_key(str(key)) else redact_value(value)
        for key, value in data.items()
    }


def redact_tokens(value: Any) -> Any:
    """A copy of ``value`` (JSON-like) with token-shaped substrings of every string masked.
    Keys are kept as they are: for what user code returns (task outputs, errors), where a key
    named ``tokens`` is data, not a secret."""
    if isinstance(value, str):
        return _SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, Mapping):
        return {key: redact_tokens(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_tokens(item) for item in value]
    return value


def redact_token_bytes(data: bytes) -> bytes:
    """``data`` (a task's raw output) with token-shaped runs masked."""
    return _SECRET_BYTES.sub(REDACTED.encode(), data)
