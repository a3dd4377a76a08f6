"""Liveness (the process answers) and readiness (its dependencies answer)."""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

log = structlog.get_logger("armillary.health")

router = APIRouter(tags=["health"])

_CHECK_TIMEOUT = 3.0


@router.get("/healthz", summary="Liveness: the process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database, and Redis/RabbitMQ when configured")
async def readyz(request: Request) -> JSONResponse:
    runtime = request.app.state.runtime
    checks: dict[str, str] = {}
    checks["database"] = await _check(_database(runtime))
    if runtime.settings.redis_url:
        checks["redis"] = await _check(runtime.cache.ping())
    if runtime.settings.rabbitmq_url:
        checks["rabbitmq"] = await _check(_rabbitmq(runtime.settings.rabbitmq_url))
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe, timeout=_CHECK_TIMEOUT)
    except Exception as exc:
        log.warning("readiness_check_failed", error=type(exc).__name__)
        return "unavailable"
    return "ok"


async def _database(runtime: Any) -> None:
    async with runtime.db.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


async def _rabbitmq(url: str) -> None:
    import aio_pika  # imported here: only processes configured for RabbitMQ need it

    connection = await aio_pika.connect(url, timeout=_CHECK_TIMEOUT)
    await connection.close()
