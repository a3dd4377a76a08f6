"""A process the tracing tests run: ``python -m tests.integration.observability.traced_process
RECEIVER_URL``. It sets tracing up from its environment and prints ``tracing on|off`` and
what is installed; with tracing on, it serves one request (bearer token, a token in the
path and in the query, an X-Request-Id) to an instrumented app with the kit's request
context, whose handler logs a line and makes an outgoing call with a signed query string."""

from __future__ import annotations

import asyncio
import sys
from types import SimpleNamespace

import httpx
import structlog
from fastapi import FastAPI
from opentelemetry import trace

from armillary.kit import tracing
from armillary.kit.logging import configure_logging
from armillary.kit.request_context import RequestContextMiddleware

SECRETS = (
    "SERVER-BEARER-SECRET",
    "PATH-SECRET",
    "QUERY-SECRET",
    "SIGNATURE-SECRET",
    "CLIENT-SECRET",
)


async def serve_one(receiver: str) -> None:
    app = FastAPI()
    log = structlog.get_logger("probe")

    @app.get("/api/v1/downloads/{token}")
    async def download(token: str) -> dict[str, bool]:
        log.info("probe.inside")
        async with httpx.AsyncClient() as client:
            await client.get(
                f"{receiver}/presigned?X-Amz-Signature=SIGNATURE-SECRET&token=QUERY-SECRET",
                headers={"Authorization": "Bearer CLIENT-SECRET"},
            )
        return {"ok": True}

    settings = SimpleNamespace(trusted_proxy_networks=[])
    app.add_middleware(RequestContextMiddleware, settings=settings)  # type: ignore[arg-type]
    tracing.instrument_app(app)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://probe") as client:
        answer = await client.get(
            "/api/v1/downloads/PATH-SECRET?token=QUERY-SECRET",
            headers={"Authorization": "Bearer SERVER-BEARER-SECRET", "X-Request-Id": "probe-1"},
        )
        assert answer.status_code == 200, answer.text


def main(receiver: str) -> None:
    on = tracing.setup("probe")
    provider = trace.get_tracer_provider()
    print(f"tracing {'on' if on else 'off'} {type(provider).__name__}", flush=True)
    if not on:
        return
    configure_logging("INFO")
    asyncio.run(serve_one(receiver))
    provider.force_flush()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv[1])
