"""The two floors Armillary is measured against, served by uvicorn as ``floors:floor1`` and
``floors:floor2`` (``--app-dir bench/auth_get``). They import nothing from ``armillary``.

floor1: a bare FastAPI endpoint returning the project JSON (a static dict) at the same path.
    BENCH_BODY   the JSON body Armillary returned for the project

floor2: the same endpoint doing only what cannot be skipped: verify the JWT (PyJWT, EdDSA, with
    the public keys Armillary published) and read the project row by slug with one raw asyncpg
    query, then return the same JSON.
    BENCH_JWKS       Armillary's /api/v1/auth/jwks document, fetched once by run.py
    BENCH_PG_DSN     postgresql://... of the benchmark database
    BENCH_ISSUER     expected ``iss`` (default armillary)
    BENCH_AUDIENCE   expected ``aud`` (default armillary-api)
    BENCH_MY_ROLE    the ``my_role`` field to return (Armillary's answer for the caller)
    BENCH_POOL_MAX   asyncpg pool size (default 20: Armillary's pool_size 10 + max_overflow 10)
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request

PATH = "/api/v1/projects/{slug}"

# --- floor 1 -------------------------------------------------------------------------------

_BODY: dict[str, Any] = {}


@asynccontextmanager
async def _floor1_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    _BODY.update(json.loads(os.environ["BENCH_BODY"]))
    yield


floor1 = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_floor1_lifespan)


@floor1.get("/healthz")
async def floor1_health() -> dict[str, str]:
    return {"status": "ok"}


@floor1.get(PATH)
async def floor1_project(slug: str) -> dict[str, Any]:
    return _BODY


# --- floor 2 -------------------------------------------------------------------------------

_COLUMNS = "id, slug, name, description, created_by, created_at, updated_at"
_QUERY = f"SELECT {_COLUMNS} FROM identity_projects WHERE slug = $1"  # noqa: S608 - constant
_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]
_state: dict[str, Any] = {}


@asynccontextmanager
async def _floor2_lifespan(_app: FastAPI) -> AsyncIterator[None]:
    import asyncpg
    from jwt import PyJWT
    from jwt.algorithms import OKPAlgorithm

    jwks = json.loads(os.environ["BENCH_JWKS"])
    _state["keys"] = {
        k["kid"]: OKPAlgorithm.from_jwk(k) for k in jwks["keys"] if k.get("alg") == "EdDSA"
    }
    _state["jwt"] = PyJWT()
    _state["issuer"] = os.environ.get("BENCH_ISSUER", "armillary")
    _state["audience"] = os.environ.get("BENCH_AUDIENCE", "armillary-api")
    _state["my_role"] = os.environ.get("BENCH_MY_ROLE", "owner")
    size = int(os.environ.get("BENCH_POOL_MAX", "20"))
    pool = await asyncpg.create_pool(os.environ["BENCH_PG_DSN"], min_size=size // 2, max_size=size)
    _state["pool"] = pool
    try:
        yield
    finally:
        await pool.close()


floor2 = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, lifespan=_floor2_lifespan)


def _iso(value: datetime) -> str:
    # The same text pydantic writes for an aware UTC datetime.
    return value.isoformat().replace("+00:00", "Z")


def _verify(request: Request) -> dict[str, Any]:
    import jwt

    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "Missing bearer token")
    try:
        header = jwt.get_unverified_header(token)
        key = _state["keys"].get(header.get("kid"))
        if key is None or header.get("typ") != "at+jwt":
            raise HTTPException(401, "Invalid token")
        claims: dict[str, Any] = _state["jwt"].decode(
            token,
            key,
            algorithms=["EdDSA"],
            audience=_state["audience"],
            issuer=_state["issuer"],
            options={"require": _REQUIRED},
        )
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "Invalid token") from exc
    return claims


@floor2.get("/healthz")
async def floor2_health() -> dict[str, str]:
    return {"status": "ok"}


@floor2.get(PATH)
async def floor2_project(slug: str, request: Request) -> dict[str, Any]:
    _verify(request)
    async with _state["pool"].acquire() as conn:
        row = await conn.fetchrow(_QUERY, slug)
    if row is None:
        raise HTTPException(404, "Project not found")
    return {
        "id": str(row["id"]),
        "slug": row["slug"],
        "name": row["name"],
        "description": row["description"],
        "created_by": str(row["created_by"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "my_role": _state["my_role"],
    }
