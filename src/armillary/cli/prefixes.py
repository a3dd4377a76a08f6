"""Ids given by a unique prefix, as git takes abbreviated commit hashes.

The API takes whole ids only, so a prefix is resolved here against the ids a listing
returns: one match is the id, none is "not found", several is an error that lists them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: A whole UUID needs no lookup.
_WHOLE_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
#: The candidates an ambiguity error names (the rest are counted).
SHOWN_CANDIDATES = 10


class PrefixError(Exception):
    """A prefix that names no id, or more than one."""


def is_whole_id(value: str) -> bool:
    """Whether ``value`` is a complete UUID (any case), so no listing is needed."""
    return bool(_WHOLE_UUID.match(value.strip().lower()))


def resolve(prefix: str, candidates: Iterable[tuple[str, str]], kind: str) -> str:
    """The one id among ``candidates`` (``(id, description)`` pairs) that starts with
    ``prefix``; case and dashes in the prefix do not matter. Raises :class:`PrefixError`
    when none or several match."""
    wanted = _normalized(prefix)
    if not wanted:
        raise PrefixError(f"An empty {kind} id matches nothing")
    matches: dict[str, str] = {}
    for candidate, description in candidates:
        if _normalized(candidate).startswith(wanted):
            matches.setdefault(candidate, description)
    if len(matches) == 1:
        return next(iter(matches))
    if not matches:
        raise PrefixError(f"No {kind} id starts with {prefix!r}")
    shown = [f"  {key}  {text}".rstrip() for key, text in sorted(matches.items())]
    more = len(shown) - SHOWN_CANDIDATES
    listing = shown[:SHOWN_CANDIDATES] + ([f"  ... and {more} more"] if more > 0 else [])
    raise PrefixError(
        f"{kind.capitalize()} id prefix {prefix!r} is ambiguous; it matches {len(matches)} "
        f"{kind}s (give more characters):\n" + "\n".join(listing)
    )


def _normalized(value: str) -> str:
    return value.strip().lower().replace("-", "")
