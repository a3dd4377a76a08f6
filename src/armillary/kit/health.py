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


@router.get("/readyz", summary="Readiness: the dependencies this process cannot work without")
async def readyz(request: Request) -> JSONResponse:
    """Ready when the database answers. Redis is reported but does not decide it: the cache
    falls back to the database and rate limits fail open, so taking every API process out of
    the load balancer for a Redis blip would turn a slowdown into an outage. RabbitMQ is not
    checked: no process of this shape publishes or consumes through it yet, and a probe must
    fail only for what the process really uses."""
    runtime = request.app.state.runtime
    required = {"database": await _check(_database(runtime))}
    degradable: dict[str, str] = {}
    if runtime.settings.redis_url:
        degradable["redis"] = await _check(runtime.cache.ping())
    ready = all(v == "ok" for v in required.values())
    degraded = sorted(name for name, v in degradable.items() if v != "ok")
    body: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "checks": {**required, **degradable},
    }
    if degraded:
        body["degraded"] = degraded
    return JSONResponse(body, status_code=200 if ready else 503)


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
