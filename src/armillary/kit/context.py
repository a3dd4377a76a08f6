"""Per-request context shared by logging, audit and metrics, carried in context variables."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID


@dataclass
class RequestContext:
    request_id: str
    client_address: str | None = None
    user_agent: str | None = None
    user_id: UUID | None = None
    audit_recorded: bool = False
    route_name: str | None = None
    extras: dict[str, object] = field(default_factory=dict)


_current: ContextVar[RequestContext | None] = ContextVar("armillary_request", default=None)


def current() -> RequestContext | None:
    """The context of the request being handled, or None outside a request."""
    return _current.get()


def bind(ctx: RequestContext | None) -> object:
    return _current.set(ctx)


def reset(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
