"""What a task tells its log: one plain line per event, and how long each stage took.

Whatever a task prints is its attempt's log (the worker stores it; ``GET
/api/v1/jobs/{job}/tasks/{task}/logs`` reads it). These lines go to stdout, flushed at once, so
that a followed log shows each event as it happens. They carry shapes, names, counts, scores
and times: never parameter values that could be secrets, never a URL's query.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

_REDACTED = "[redacted]"
_LIST_LIMIT = 20


class TaskLog:
    """Writes ``[<name>] <message>`` lines; ``hide`` are strings (a token) never written."""

    def __init__(self, name: str, *, hide: Iterable[str] = ()) -> None:
        self._name = name
        self._hide = [value for value in hide if value]

    def __call__(self, message: str) -> None:
        # One event, one line: a multi-line message (an exception's) is joined.
        line = " ".join(f"[{self._name}] {message}".split("\n"))
        for value in self._hide:
            line = line.replace(value, _REDACTED)
        print(line, file=sys.stdout, flush=True)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times the block and writes ``stage <name>: <seconds> s`` (or ``failed after``)."""
        started = time.perf_counter()
        try:
            yield
        except BaseException:
            self(f"stage {name} failed after {time.perf_counter() - started:.2f} s")
            raise
        self(f"stage {name}: {time.perf_counter() - started:.2f} s")


def number(value: Any) -> str:
    """A metric or parameter value, short: 4 significant digits for floats."""
    if value is None:
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    return f"{value:.4g}"


def pairs(values: Mapping[str, Any]) -> str:
    """``a=1, b=0.9123`` (``none`` when empty)."""
    return ", ".join(f"{key}={number(value)}" for key, value in values.items()) or "none"


def names(values: Iterable[str], limit: int = _LIST_LIMIT) -> str:
    """The first ``limit`` names joined, with how many more there are."""
    items = list(values)
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def size(value: int) -> str:
    """``1.2 MiB (1,234,567 bytes)``."""
    amount, unit = float(value), "bytes"
    for bigger in ("KiB", "MiB", "GiB", "TiB"):
        if amount < 1024:
            break
        amount, unit = amount / 1024, bigger
    if unit == "bytes":
        return f"{value:,} bytes"
    return f"{amount:.1f} {unit} ({value:,} bytes)"


def plain_url(url: str) -> str:
    """``url`` without user info, query or fragment (where signatures and keys travel)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
