"""Checks the object store against the rows that point into it (``armillary doctor``).

Each service knows which objects its rows own and says so with a ``storage_references``
function returning :class:`References`; the composition (``armillary.app``) gathers them,
since kit knows no service. :func:`examine` lists the store once and reports

* missing objects: a committed row points at a key the store does not hold (data loss);
* orphans: objects no row owns, older than a grace period (younger ones may belong to an
  upload whose transaction has not committed yet).

:func:`repair` deletes orphans only, after reading the references again, so an object a row
started pointing at in the meantime is kept.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from armillary.kit.storage.base import ObjectInfo, ObjectStore
from armillary.kit.storage.errors import InvalidObjectKey

#: Uploads in flight are not committed yet: their objects look like orphans until they are.
DEFAULT_GRACE: timedelta = timedelta(hours=1)


@dataclass
class References:
    """The objects one service's rows own.

    ``keys`` maps each key a row records to a short description of that row (reported when
    the object is missing). ``prefixes`` covers objects owned by a row without being listed
    one by one (a task attempt's log chunks, a deployment's request samples): any object whose
    key starts with one of them is owned, and none is required to exist.
    """

    keys: dict[str, str] = field(default_factory=dict)
    prefixes: set[str] = field(default_factory=set)

    def merge(self, other: References) -> References:
        return References({**self.keys, **other.keys}, self.prefixes | other.prefixes)


ReferenceSource = Callable[[AsyncSession], Awaitable[References]]


@dataclass(frozen=True)
class Missing:
    key: str
    owner: str


@dataclass(frozen=True)
class Findings:
    """What :func:`examine` found."""

    objects: int
    references: int
    missing: list[Missing]
    orphans: list[ObjectInfo]
    #: Unowned objects kept because they are younger than the grace period.
    recent: int

    @property
    def healthy(self) -> bool:
        return not self.missing and not self.orphans


class _Owned:
    """Whether a key is owned by a reference: exact keys, or a prefix (bisect over prefixes
    with the nested ones dropped, so the one candidate is the greatest prefix <= key)."""

    def __init__(self, references: References) -> None:
        self._keys = set(references.keys)
        kept: list[str] = []
        for prefix in sorted(p for p in references.prefixes if p):
            if not kept or not prefix.startswith(kept[-1]):
                kept.append(prefix)
        self._prefixes = kept

    def __call__(self, key: str) -> bool:
        if key in self._keys:
            return True
        at = bisect.bisect_right(self._prefixes, key)
        return at > 0 and key.startswith(self._prefixes[at - 1])


async def gather_references(
    session: AsyncSession, sources: Iterable[ReferenceSource]
) -> References:
    """Every service's references, merged."""
    merged = References()
    for source in sources:
        merged = merged.merge(await source(session))
    return merged


async def examine(
    store: ObjectStore, references: References, *, now: datetime, grace: timedelta = DEFAULT_GRACE
) -> Findings:
    """Compare the store's objects with ``references`` (see the module docstring)."""
    owned = _Owned(references)
    present: set[str] = set()
    orphans: list[ObjectInfo] = []
    recent = 0
    async for info in store.list():
        present.add(info.key)
        if owned(info.key):
            continue
        if now - info.last_modified < grace:
            recent += 1
        else:
            orphans.append(info)
    missing = [
        Missing(key, owner) for key, owner in sorted(references.keys.items()) if key not in present
    ]
    return Findings(
        objects=len(present),
        references=len(references.keys),
        missing=missing,
        orphans=sorted(orphans, key=lambda info: info.key),
        recent=recent,
    )


@dataclass(frozen=True)
class Repair:
    deleted: list[str]
    #: Orphans that a row came to own since they were found, or whose key the store refuses.
    kept: list[str]


async def repair(store: ObjectStore, findings: Findings, fresh: References) -> Repair:
    """Delete the orphans of ``findings`` that ``fresh`` (references read again, after the
    listing) still does not own. Never deletes a referenced object."""
    owned = _Owned(fresh)
    deleted: list[str] = []
    kept: list[str] = []
    for info in findings.orphans:
        if owned(info.key):
            kept.append(info.key)
            continue
        try:
            await store.delete(info.key)
        except InvalidObjectKey:
            # Not a platform key (e.g. a stray file in the local root): left to a person.
            kept.append(info.key)
            continue
        deleted.append(info.key)
    return Repair(deleted, kept)
