"""Outermost middleware: request id, the request context, and the structured access log."""

from __future__ import annotations

import re
import time
import uuid

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.kit import context, tracing
from armillary.kit.client_address import client_address
from armillary.kit.errors import PROBLEM_MEDIA_TYPE, DomainError, problem_body
from armillary.kit.problems import known_problem
from armillary.kit.settings import Settings

log = structlog.get_logger("armillary.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Accepts a well-formed ``X-Request-ID`` (or makes one), returns it, and logs one line per
    request with route template, status, duration and user."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.trusted = settings.trusted_proxy_networks

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        user_agent = None
        for key, value in scope.get("headers", []):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
            elif key == b"user-agent":
                user_agent = value.decode("latin-1")[:512]
        request_id = incoming if incoming and _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        ctx = context.RequestContext(
            request_id=request_id,
            client_address=client_address(scope, self.trusted),
            user_agent=user_agent,
        )
        token = context.bind(ctx)
        tracing.record_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:
            # Rendered here, inside the request context, so the body carries the request id;
            # the stack trace goes to the log only. A middleware's known problem (a domain
            # error, a busy or unreachable database) keeps its own status.
            problem = known_problem(exc, scope["path"])
            if problem is None:
                log.error("unhandled_error", path=scope["path"], exc_info=exc)
            if not response_started:
                await _send_problem(send_wrapper, request_id, scope["path"], problem)
        finally:
            route = scope.get("route")
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=getattr(route, "path", None),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client=ctx.client_address,
            )
            context.reset(token)


async def _send_problem(
    send: Send, request_id: str, path: str, problem: DomainError | None
) -> None:
    if problem is None:
        status, title, headers = 500, "Internal server error", {}
        detail, extra = "An unexpected error occurred; quote the request id when reporting it", {}
    else:
        status, title, headers = problem.status, problem.title, problem.headers
        detail, extra = problem.detail, problem.extra
    body = orjson.dumps(
        problem_body(status, title, detail, instance=path, request_id=request_id, extra=extra)
    )
    raw_headers = [
        (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
