"""Which database errors mean "busy or unreachable, retry shortly" rather than a bug: SQLite's
write lock held past the busy timeout, and PostgreSQL that cannot be connected to (refused,
starting or shutting down, out of connections, a connection lost). ``kit.problems`` answers
them 503 (``ServiceUnavailable``, with ``Retry-After``)."""

from __future__ import annotations

import sqlite3
from typing import Final, Literal

from sqlalchemy.exc import DBAPIError

_SQLITE_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_SQLITE_UNAVAILABLE_CODES: Final = frozenset({sqlite3.SQLITE_CANTOPEN})
# PostgreSQL SQLSTATEs: class 08 (connection exception), 57P01-57P03 (admin or crash
# shutdown, cannot connect now: starting up) and 53300 (too many connections).
_PG_UNAVAILABLE_STATES: Final = frozenset({"57P01", "57P02", "57P03", "53300"})
# Frames of the module that opens pool connections: an OSError raised under them is a failed
# connection (the asyncpg driver raises ConnectionRefusedError or socket.gaierror unwrapped).
_CONNECTING_MODULE: Final = "sqlalchemy.pool"

Reason = Literal["busy", "unreachable"]


def unavailable_reason(exc: BaseException) -> Reason | None:
    """``"busy"`` or ``"unreachable"`` when ``exc`` means the database is so for now, else
    None (a bug, a constraint, a bad statement: not the client's to retry)."""
    if isinstance(exc, DBAPIError):
        return "unreachable" if exc.connection_invalidated else _driver_reason(exc.orig)
    if isinstance(exc, OSError) and _raised_while_connecting(exc):
        return "unreachable"
    return None


def _driver_reason(error: BaseException | None) -> Reason | None:
    # SQLAlchemy's asyncio adapters wrap the driver's exception.
    driver = getattr(error, "driver_exception", None) or error
    if isinstance(driver, sqlite3.Error):
        code = getattr(driver, "sqlite_errorcode", None)
        if code is None:
            return None
        primary = code & 0xFF  # extended codes (BUSY_SNAPSHOT, ...) keep the primary low
        if primary in _SQLITE_BUSY_CODES:
            return "busy"
        return "unreachable" if primary in _SQLITE_UNAVAILABLE_CODES else None
    state = getattr(driver, "sqlstate", None)
    if isinstance(state, str) and (state.startswith("08") or state in _PG_UNAVAILABLE_STATES):
        return "unreachable"
    return None


def _raised_while_connecting(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if isinstance(module, str) and module.startswith(_CONNECTING_MODULE):
            return True
        tb = tb.tb_next
    return False
