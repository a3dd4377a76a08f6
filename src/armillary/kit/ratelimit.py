"""Request rate limits and login-failure throttling on top of the ``limits`` library.

Counters live in Redis when one is configured (so every process of the distributed shape shares
them) and in memory otherwise (the embedded shape). The counting itself is the library's: this
module only picks the limit for a request, names the key, and decides what an outage means.

A service whose traffic needs budgets of its own (predictions: per API key and per deployment,
known only once the caller is authenticated) delegates its paths, which the middleware then
leaves alone, and spends from its budgets with :meth:`RateLimiter.spend`.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import structlog
from limits import RateLimitItem, parse, parse_many
from limits.aio import strategies
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.errors import ConcurrentUpdateError, StorageError
from redis.exceptions import RedisError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.kit import context
from armillary.kit.cache import redis_tls_options
from armillary.kit.errors import PROBLEM_MEDIA_TYPE, problem_body
from armillary.kit.ratelimit_window import SlidingWindowInOneTrip
from armillary.kit.settings import Settings

log = structlog.get_logger("armillary.ratelimit")

RouteClass = Literal["auth", "read", "write", "tracking"]

AUTH_PATHS = frozenset({"/api/v1/auth/token", "/api/v1/auth/refresh"})
DEFAULT_EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Experiment tracking (MLflow's API, ADR 0037): a training loop logs at its own pace, far
# above what a person's writes need, so these writes have a budget of their own.
TRACKING_PREFIX = "/mlflow/"
# How long a client should wait before retrying when the limiter's store is down.
STORE_RETRY_AFTER_SECONDS = 5
# Short socket timeouts: a hung Redis must turn into a fast 503 (or pass), not a hung request.
_REDIS_TIMEOUT_SECONDS = 1.0
# Everything a store can raise when it is unreachable or misbehaving. Programming errors are
# left out on purpose so they surface instead of silently opening the limiter.
_STORE_ERRORS: tuple[type[Exception], ...] = (
    StorageError,
    ConcurrentUpdateError,
    RedisError,
    OSError,
    TimeoutError,
)

_STRATEGIES: dict[str, type[strategies.RateLimiter]] = {
    "moving-window": strategies.MovingWindowRateLimiter,
    "sliding-window-counter": strategies.SlidingWindowCounterRateLimiter,
    "fixed-window": strategies.FixedWindowRateLimiter,
}


class RateLimitStoreUnavailable(Exception):
    """The limiter's store could not be reached and the caller must fail closed."""


@dataclass(frozen=True)
class Decision:
    """Outcome of one request against its limit; ``reset_after`` is in whole seconds."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: int


def redis_storage_uri(redis_url: str) -> str:
    """The ``limits`` async URI (``async+redis://...``) for a plain Redis URL."""
    if redis_url.startswith("async+"):
        return redis_url
    if redis_url.startswith("unix://"):
        return "async+redis+" + redis_url
    return "async+" + redis_url


def create_rate_limit_storage(settings: Settings) -> Storage:
    """Redis storage (redis-py client) when ``redis_url`` is set, else process memory.

    Exceptions are wrapped in ``limits.errors.StorageError`` so callers handle one type.
    """
    if settings.redis_url:
        return RedisStorage(
            redis_storage_uri(settings.redis_url),
            wrap_exceptions=True,
            implementation="redispy",
            socket_connect_timeout=_REDIS_TIMEOUT_SECONDS,
            socket_timeout=_REDIS_TIMEOUT_SECONDS,
            **redis_tls_options(settings.redis_url, settings.ca_file("redis")),
        )
    return MemoryStorage()


class RateLimiter:
    """Per-route-class request limits and login-failure throttling over one store."""

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.enabled = settings.rate_limit_enabled
        self.fail_open = settings.rate_limit_on_store_failure == "allow"
        self._strategy = _STRATEGIES[settings.rate_limit_strategy](storage)
        self._one_trip = SlidingWindowInOneTrip.for_storage(storage, settings.rate_limit_strategy)
        self._limits: dict[str, RateLimitItem] = {
            "auth": parse(settings.rate_limit_auth),
            "read": parse(settings.rate_limit_read),
            "write": parse(settings.rate_limit_write),
            "tracking": parse(settings.rate_limit_tracking),
        }
        self._per_client = parse_many(settings.login_failures_per_client)
        self._per_account = parse(settings.login_failures_per_account)
        self._per_address = parse(settings.login_failures_per_address)
        self._delegated: dict[str, re.Pattern[str]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """A limiter over the store ``settings`` select (see ``create_rate_limit_storage``)."""
        return cls(create_rate_limit_storage(settings), settings)

    async def hit(self, route_class: str, key: str) -> Decision:
        """Count one request of ``route_class`` for ``key`` and say whether it may proceed.

        When the store fails, auth routes raise ``RateLimitStoreUnavailable`` (an unlimited
        login endpoint invites password guessing); other classes follow
        ``rate_limit_on_store_failure``.
        """
        item = self._limits[route_class]
        try:
            if self._one_trip is not None:
                allowed, stats = await self._one_trip.hit(item, "request", route_class, key)
            else:
                allowed = await self._strategy.hit(item, "request", route_class, key)
                stats = await self._strategy.get_window_stats(item, "request", route_class, key)
        except _STORE_ERRORS as exc:
            _log_store_failure(exc, operation="hit", route_class=route_class)
            if route_class == "auth" or not self.fail_open:
                raise RateLimitStoreUnavailable from exc
            return Decision(allowed=True, limit=item.amount, remaining=item.amount, reset_after=0)
        return Decision(
            allowed=allowed,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=_seconds_until(stats.reset_time),
        )

    def delegate(self, path_pattern: str) -> None:
        """Leave requests whose path matches ``path_pattern`` (a regular expression matched
        from the start) to the service that owns them: it applies its own budgets with
        :meth:`spend`, and the middleware's per-user and per-address limits skip them."""
        self._delegated.setdefault(path_pattern, re.compile(path_pattern))

    def delegated(self, path: str) -> bool:
        """Whether a service applies its own budgets to ``path`` (see :meth:`delegate`)."""
        return any(pattern.match(path) for pattern in self._delegated.values())

    async def spend(self, item: RateLimitItem, *identifiers: str) -> Decision:
        """Count one request against a service's own budget ``item`` for the bucket that
        ``identifiers`` name. Window statistics are read only when the request is refused (for
        ``Retry-After``): an allowed request costs one store round trip, and its decision says
        nothing of what remains (``remaining`` is 0). A store failure
        follows ``rate_limit_on_store_failure`` (raises ``RateLimitStoreUnavailable`` when it
        is ``deny``)."""
        try:
            if await self._strategy.hit(item, "budget", *identifiers):
                return Decision(allowed=True, limit=item.amount, remaining=0, reset_after=0)
            stats = await self._strategy.get_window_stats(item, "budget", *identifiers)
        except _STORE_ERRORS as exc:
            _log_store_failure(exc, operation="spend")
            if not self.fail_open:
                raise RateLimitStoreUnavailable from exc
            return Decision(allowed=True, limit=item.amount, remaining=item.amount, reset_after=0)
        return Decision(
            allowed=False,
            limit=item.amount,
            remaining=max(0, stats.remaining),
            reset_after=_seconds_until(stats.reset_time),
        )

    async def login_blocked(self, account: str, address: str | None) -> int | None:
        """Seconds this client must wait before trying ``account`` again, or None.

        Waits come from this client's own failures for the account (a ladder of growing
        windows), from the address's failures across accounts, and from the account's
        failures everywhere, but the last only for a client that has itself failed for the
        account: a clean client can always sign in, so failing on purpose locks nobody out.
        Only looks (``test``), never counts: a blocked attempt is not itself a failure.
        Raises ``RateLimitStoreUnavailable`` when the store is down (fail closed).
        """
        client = _client_key(account, address)
        checks: list[tuple[RateLimitItem, tuple[str, ...]]] = [
            (item, ("login-client", client)) for item in self._per_client
        ]
        if address:
            checks.append((self._per_address, ("login-address", address)))
        waits: list[int] = []
        try:
            if await self._has_failed(client):
                checks.append((self._per_account, ("login-account", _account_id(account))))
            for item, identifiers in checks:
                if not await self._strategy.test(item, *identifiers):
                    stats = await self._strategy.get_window_stats(item, *identifiers)
                    waits.append(max(1, _seconds_until(stats.reset_time)))
        except _STORE_ERRORS as exc:
            _log_store_failure(exc, operation="login_blocked")
            raise RateLimitStoreUnavailable from exc
        return max(waits) if waits else None

    async def login_failed(self, account: str, address: str | None) -> None:
        """Count one failed login against the client (for this account), the address and the
        account."""
        try:
            for item, identifiers in self._login_counters(account, address):
                await self._strategy.hit(item, *identifiers)
        except _STORE_ERRORS as exc:
            _log_store_failure(exc, operation="login_failed")
            raise RateLimitStoreUnavailable from exc

    async def login_succeeded(self, account: str, address: str | None) -> None:
        """Forget this client's failures for the account, and the account's (OWASP: reset
        the counter on a successful login).

        The per-address counter is kept, so one valid account cannot launder guesses made
        from the same address against others.
        """
        client = _client_key(account, address)
        try:
            for item in self._per_client:
                await self._strategy.clear(item, "login-client", client)
            await self._strategy.clear(self._per_account, "login-account", _account_id(account))
        except _STORE_ERRORS as exc:
            _log_store_failure(exc, operation="login_succeeded")
            raise RateLimitStoreUnavailable from exc

    async def _has_failed(self, client: str) -> bool:
        # The widest window of the ladder remembers the client's failures longest.
        widest = max(self._per_client, key=lambda item: item.get_expiry())
        stats = await self._strategy.get_window_stats(widest, "login-client", client)
        return stats.remaining < widest.amount

    def _login_counters(
        self, account: str, address: str | None
    ) -> list[tuple[RateLimitItem, tuple[str, ...]]]:
        client = _client_key(account, address)
        counters: list[tuple[RateLimitItem, tuple[str, ...]]] = [
            (item, ("login-client", client)) for item in self._per_client
        ]
        counters.append((self._per_account, ("login-account", _account_id(account))))
        if address:
            counters.append((self._per_address, ("login-address", address)))
        return counters


def _client_key(account: str, address: str | None) -> str:
    # One key per (account, client address); hashed like the account alone.
    return hashlib.sha256(f"{_account_id(account)}|{address or '-'}".encode()).hexdigest()


def _account_id(account: str) -> str:
    # Hashed so e-mail addresses never sit in Redis keys; normalized so case does not split
    # one account's budget into several.
    return hashlib.sha256(account.strip().lower().encode()).hexdigest()


def _seconds_until(reset_time: float) -> int:
    return max(0, math.ceil(reset_time - time.time()))


def _log_store_failure(exc: BaseException, **fields: str) -> None:
    # The type only: a message could carry a connection URL with its password.
    log.error("rate limit store unavailable", error=type(exc).__name__, **fields)


Identify = Callable[[Scope], Awaitable[str | None]]


class RateLimitMiddleware:
    """Pure ASGI middleware that applies the per-route-class limit to every HTTP request.

    Pure ASGI rather than ``BaseHTTPMiddleware`` so streaming responses and context variables
    pass through untouched. It must sit inside ``RequestContextMiddleware``: the client address
    it keys anonymous callers by is the one that middleware resolved (``X-Forwarded-For`` is
    believed only from trusted proxies), so a client cannot pick its own bucket.
    """

    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        identify: Identify,
        *,
        exempt_paths: frozenset[str] = DEFAULT_EXEMPT_PATHS,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.identify = identify
        self.exempt_paths = exempt_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not self.limiter.enabled
            or scope["path"] in self.exempt_paths
            or self.limiter.delegated(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        route_class = route_class_for(scope["method"], scope["path"])
        key = await self._key(scope, route_class)
        try:
            decision = await self.limiter.hit(route_class, key)
        except RateLimitStoreUnavailable:
            await _problem(
                scope,
                receive,
                send,
                status=503,
                title="Service unavailable",
                detail="Rate limiting is temporarily unavailable; retry shortly.",
                headers={"Retry-After": str(STORE_RETRY_AFTER_SECONDS)},
            )
            return
        headers = _rate_limit_headers(decision)
        if not decision.allowed:
            headers["Retry-After"] = str(max(1, decision.reset_after))
            await _problem(
                scope,
                receive,
                send,
                status=429,
                title="Too many requests",
                detail="Request rate limit exceeded; retry after the indicated delay.",
                headers=headers,
            )
            return
        extra = [(name.lower().encode(), value.encode()) for name, value in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _key(self, scope: Scope, route_class: RouteClass) -> str:
        # Auth routes are keyed by address: the caller is not identified yet, and keying by
        # the account being tried would let an attacker lock out someone else.
        if route_class != "auth":
            user_id = await self.identify(scope)
            if user_id:
                return f"user:{user_id}"
        return f"addr:{_address(scope)}"


def route_class_for(method: str, path: str) -> RouteClass:
    """Which limit applies: token endpoints, then tracking writes, then writes, then
    everything else."""
    if path in AUTH_PATHS:
        return "auth"
    if method.upper() in _WRITE_METHODS:
        return "tracking" if path.startswith(TRACKING_PREFIX) else "write"
    return "read"


def _address(scope: Scope) -> str:
    ctx = context.current()
    if ctx is not None and ctx.client_address:
        return ctx.client_address
    peer = scope.get("client")
    return str(peer[0]) if peer else "unknown"


def _rate_limit_headers(decision: Decision) -> dict[str, str]:
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_after),
    }


async def _problem(
    scope: Scope,
    receive: Receive,
    send: Send,
    *,
    status: int,
    title: str,
    detail: str,
    headers: dict[str, str],
) -> None:
    ctx = context.current()
    body = problem_body(
        status,
        title,
        detail,
        instance=scope["path"],
        request_id=ctx.request_id if ctx else None,
    )
    response = JSONResponse(
        body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE
    )
    await response(scope, receive, send)
