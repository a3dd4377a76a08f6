"""Which database errors are "busy or unreachable" (503, retry) and which stay errors."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from armillary.kit.database_unavailable import unavailable_reason
from armillary.kit.db import Database
from armillary.kit.problems import install_error_handlers, install_openapi


def _wrapped(orig: BaseException, **kwargs: bool) -> OperationalError:
    return OperationalError("INSERT INTO t VALUES (?)", ("secret",), orig, **kwargs)  # type: ignore[arg-type]


def test_sqlite_write_lock_held_past_the_timeout_is_busy(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    holder = sqlite3.connect(path, isolation_level=None)
    waiter = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError) as caught:
            waiter.execute("BEGIN IMMEDIATE")
    finally:
        holder.close()
        waiter.close()
    assert unavailable_reason(_wrapped(caught.value)) == "busy"


def test_a_sqlite_file_that_cannot_be_opened_is_unreachable(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError) as caught:
        sqlite3.connect(tmp_path / "missing-dir" / "x.db")
    assert unavailable_reason(_wrapped(caught.value)) == "unreachable"


def test_a_bad_statement_is_not_unavailability() -> None:
    connection = sqlite3.connect(":memory:")
    with pytest.raises(sqlite3.OperationalError) as caught:
        connection.execute("SELEC 1")
    connection.close()
    assert unavailable_reason(_wrapped(caught.value)) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.ConnectionFailureError("connection failure"), True),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.UndefinedTableError("no such table"), False),
    ],
)
def test_postgresql_states(error: Exception, expected: bool) -> None:
    assert (unavailable_reason(_wrapped(error)) == "unreachable") is expected


def test_a_lost_connection_is_unreachable() -> None:
    lost = _wrapped(Exception("connection reset"), connection_invalidated=True)
    assert unavailable_reason(lost) == "unreachable"
    assert unavailable_reason(ProgrammingError("SELECT", None, Exception("x"))) is None


def test_os_errors_count_only_when_connecting() -> None:
    assert unavailable_reason(ConnectionRefusedError("elsewhere")) is None
    assert unavailable_reason(FileNotFoundError("/some/path")) is None


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_postgresql_connection_is_unreachable() -> None:
    db = Database(f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/x")
    try:
        with pytest.raises(OSError) as caught:
            async with db.read_connection() as connection:
                await connection.execute(text("SELECT 1"))
    finally:
        await db.dispose()
    assert unavailable_reason(caught.value) == "unreachable"


async def test_other_os_errors_stay_500() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/file")
    async def read_file() -> None:
        raise FileNotFoundError("/srv/secret/path")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/file")
    assert response.status_code == 500


def test_every_operation_documents_the_503() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/things")
    async def things() -> list[str]:
        return []

    install_openapi(app, public_paths=frozenset())
    responses = app.openapi()["paths"]["/things"]["get"]["responses"]
    assert "application/problem+json" in responses["503"]["content"]
