"""Security events in the audit log: refused tokens (401 to a request that presented one) and
reads of a project the caller may not see (the 404 a non-member gets), so that a token sweep
or a walk through other tenants' projects leaves a trace.

They are aggregated, so that the sweep cannot flood the hash chain: per kind and source (the
client address for tokens, the user for projects) the first event of a window is recorded and
the rest are counted into the next recorded one (``suppressed_before``); and each kind records
at most ``per_kind_limit`` events a window whatever the sources (a sweep from many addresses),
counting the others the same way.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from uuid import UUID

from armillary.kit import context

INVALID_TOKEN = "security.invalid_token"  # noqa: S105 - an audit action name
DENIED_PROJECT_READ = "security.project_denied"
_MARK = "security_event"


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    action: str
    source: str
    resource: str | None = None


def mark_denied_project(project: str, user_id: UUID) -> None:
    """Note that ``user_id`` was refused a project it may not see (answered 404)."""
    ctx = context.current()
    if ctx is not None:
        ctx.user_id = user_id  # the entry's actor
        ctx.extras[_MARK] = SecurityEvent(DENIED_PROJECT_READ, f"user:{user_id}", project)


def event_of(status: int, presented_token: bool) -> SecurityEvent | None:
    """The security event of a request that ended with ``status``, if it is one."""
    ctx = context.current()
    if ctx is None:
        return None
    marked = ctx.extras.get(_MARK)
    if status == 404 and isinstance(marked, SecurityEvent):
        return marked
    if status == 401 and presented_token:
        return SecurityEvent(INVALID_TOKEN, f"addr:{ctx.client_address}")
    return None


class SecurityEventSampler:
    """Decides which events are recorded, and how many each one stands for."""

    def __init__(
        self,
        *,
        window_seconds: float = 60.0,
        per_kind_limit: int = 100,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window_seconds
        self.per_kind_limit = per_kind_limit
        self.max_sources = max_sources
        self._clock = clock
        # (action, source) -> (window start, events suppressed since the last recorded one)
        self._sources: OrderedDict[tuple[str, str], tuple[float, int]] = OrderedDict()
        # action -> (window start, recorded in it, suppressed by the limit)
        self._kinds: dict[str, tuple[float, int, int]] = {}

    def admit(self, event: SecurityEvent) -> int | None:
        """None when the event is only counted; else how many events it follows that were
        not recorded (to put in its entry)."""
        now = self._clock()
        key = (event.action, event.source)
        started, suppressed = self._sources.pop(key, (now - self.window, 0))
        kind_started, recorded, kind_suppressed = self._kinds.get(
            event.action, (now - self.window, 0, 0)
        )
        if now - kind_started >= self.window:
            kind_started, recorded = now, 0
        if now - started < self.window or recorded >= self.per_kind_limit:
            if now - started >= self.window:  # refused by the kind's limit only
                kind_suppressed += 1
            else:
                suppressed += 1
            self._remember(key, started, suppressed)
            self._kinds[event.action] = (kind_started, recorded, kind_suppressed)
            return None
        self._remember(key, now, 0)
        self._kinds[event.action] = (kind_started, recorded + 1, 0)
        return suppressed + kind_suppressed

    def _remember(self, key: tuple[str, str], started: float, suppressed: int) -> None:
        self._sources[key] = (started, suppressed)
        while len(self._sources) > self.max_sources:
            self._sources.popitem(last=False)
