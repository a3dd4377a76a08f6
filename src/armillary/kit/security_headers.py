"""Headers every response carries, errors and streams included."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from armillary.kit.tls import HSTS


class SecurityHeadersMiddleware:
    """``X-Content-Type-Options: nosniff`` on every response: a browser must not run a
    downloaded dataset or a task's log as HTML or script because its bytes look like it.
    Over HTTPS, ``Strict-Transport-Security`` too: clients never fall back to plain HTTP."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if scope.get("scheme") == "https":
                    headers["Strict-Transport-Security"] = HSTS
            await send(message)

        await self.app(scope, receive, send_with_headers)
