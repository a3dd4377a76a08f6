"""Async engine, declarative base and the unit of work that commits at the edge."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from ssl import SSLContext
from typing import Any

from sqlalchemy import (
    DateTime,
    Dialect,
    MetaData,
    Select,
    TypeDecorator,
    and_,
    event,
    inspect,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.elements import SavepointClause

from armillary.kit import tracing
from armillary.kit.secret_sources import SecretRef
from armillary.kit.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

AfterCommit = Callable[[], Awaitable[None]]


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every database. SQLite keeps no zone, so values read
    back from it are naive; this marks them UTC (they were written as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    return uuid.uuid4()


# Each service's PostgreSQL schema (ADR 0026), in search-path order for a process that runs
# them all: identity first, so the embedded shape's one outbox is identity's.
SERVICE_SCHEMAS = ("identity", "data", "workflows", "registry", "serving", "tracking")


def search_path(schemas: Sequence[str]) -> str:
    """A search path over ``schemas`` (then ``public``, for extensions)."""
    return ", ".join([*(f'"{schema}"' for schema in schemas), "public"])


# Connections per process by role; a burst opens twice as many, which then stay open (ADR
# 0035). The embedded shape is one "api" process. A service process (role = its service name)
# gets 3: 2 copies of each of the 5 services of ADR 0025 (60 at a burst), 2 schedulers (2x(4 +
# leader lock + LISTEN)) and 4 workers (4x(4 + LISTEN), a burst covering 4 slots) need 92 of
# PostgreSQL's default 100 less its 3 superuser slots (docs/operations.md,
# tests/faults/test_distributed_budget.py). Tracking (ADR 0037) is a sixth: 2 copies of it add
# 12 at a burst, past the default 100, so that layout needs max_connections raised or a pooler.
SERVICE_POOL_SIZE = 3
POOL_SIZE_BY_ROLE = {
    "api": 10,
    "worker": 2,
    "scheduler": 2,
    **dict.fromkeys(SERVICE_SCHEMAS, SERVICE_POOL_SIZE),
}


def password_refused(exc: BaseException) -> bool:
    """Whether PostgreSQL refused the password (SQLSTATE 28P01), through any wrapping."""
    seen: BaseException | None = exc
    while seen is not None:
        if getattr(seen, "sqlstate", None) == "28P01" or type(seen).__name__ == (
            "InvalidPasswordError"
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _current_password(ref: SecretRef) -> Callable[..., Any]:
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        # A cached read is cheap; the secret manager is asked only when the cache has aged
        # or the server refused what it held (a rotated password).
        cparams["password"] = ref.read()
        try:
            return dialect.connect(*cargs, **cparams)
        except Exception as exc:
            if not password_refused(exc):
                raise
            cparams["password"] = ref.read(fresh=True)
            return dialect.connect(*cargs, **cparams)

    return connect


def database_ssl(settings: Settings) -> SSLContext | None:
    """The TLS context of PostgreSQL connections (``ARMILLARY_DATABASE_SSLMODE``)."""
    if settings.database_sslmode != "verify-full" or settings.database_url is None:
        return None
    from armillary.kit.tls import client_context

    return client_context(settings.ca_file("database"))


async def connect_direct(
    dsn: str, password_ref: SecretRef | None = None, *, ssl: SSLContext | None = None
) -> Any:
    """An asyncpg connection outside the pool (leader lock, LISTEN), with the password read
    again from its source when the server refuses it."""
    import asyncio

    import asyncpg

    options: dict[str, Any] = {} if ssl is None else {"ssl": ssl}
    if password_ref is None:
        return await asyncpg.connect(dsn, **options)
    try:
        password = await asyncio.to_thread(password_ref.read)
        return await asyncpg.connect(dsn, password=password, **options)
    except asyncpg.InvalidPasswordError:
        fresh = await asyncio.to_thread(password_ref.read, fresh=True)
        return await asyncpg.connect(dsn, password=fresh, **options)


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


class Database:
    """Owns the engine and the session factory of one process."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        echo: bool = False,
        busy_timeout_seconds: float = 30.0,
        behind_pooler: bool = False,
        password_ref: SecretRef | None = None,
        ssl: SSLContext | None = None,
        schemas: Sequence[str] = SERVICE_SCHEMAS,
        direct_url: str | None = None,
    ) -> None:
        self.url = url
        # The leader lock and LISTEN hold a session for hours: never through a transaction
        # pooler, which would hand that session to other clients between statements.
        self.direct_url = direct_url or url
        # verify-full TLS to PostgreSQL: the pool and the direct connections alike.
        self.ssl = ssl
        # The same for libpq's tools (pg_dump, pg_restore in `armillary backup`).
        self.libpq_env: dict[str, str] = {}
        # Where the password lives when a secret manager or a file holds it: read for each
        # new connection, and read again from the source when the server refuses it.
        self.password_ref = password_ref
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            # One file, many sessions: NullPool plus WAL and a busy timeout keeps writers queued
            # instead of failing with "database is locked".
            kwargs["poolclass"] = NullPool
            kwargs["connect_args"] = {"timeout": busy_timeout_seconds}
        else:
            # The burst (twice ``pool_size``) is the pool, opened on demand and kept: an
            # overflow connection would be closed at check-in, so under sustained concurrency
            # above the pool every request past it paid a PostgreSQL connect (ADR 0035).
            kwargs["pool_size"] = 2 * pool_size
            kwargs["max_overflow"] = 0
            # Recycle instead of pinging on every checkout (a round trip per request); a
            # connection the server dropped fails once and is replaced.
            kwargs["pool_recycle"] = 1800
            connect_args: dict[str, Any] = {}
            if behind_pooler:
                # A transaction pooler hands each transaction to any server connection:
                # asyncpg's statement cache and SQLAlchemy's named prepared statements would
                # meet statements (or their absence) of another client's session.
                connect_args = {
                    "statement_cache_size": 0,
                    "prepared_statement_cache_size": 0,
                    "prepared_statement_name_func": _unique_statement_name,
                }
            else:
                # The schemas of the services this process runs (ADR 0026). A transaction
                # pooler passes no start-up options: behind one, the role's default applies
                # (`armillary db roles`, `db upgrade`).
                connect_args["server_settings"] = {"search_path": search_path(schemas)}
            if ssl is not None:
                connect_args["ssl"] = ssl
            if connect_args:
                kwargs["connect_args"] = connect_args
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        tracing.instrument_engine(self.engine)
        if password_ref is not None and not self.is_sqlite:
            event.listen(self.engine.sync_engine, "do_connect", _current_password(password_ref))
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "before_execute", _sqlite_write_transaction)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Reads need no transaction: autocommit saves the BEGIN and COMMIT round trips. Not
        # behind a transaction pooler: asyncpg prepares a statement, then runs it, and
        # outside a transaction the pooler may hand those two steps to two server
        # connections ("prepared statement ... does not exist").
        self.read_engine = (
            self.engine
            if behind_pooler
            else self.engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.read_sessionmaker = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, role: str = "api", schemas: Sequence[str] = SERVICE_SCHEMAS
    ) -> Database:
        db = cls._from_settings(settings, role=role, schemas=schemas)
        if db.ssl is not None:
            import ssl as ssl_module

            ca = settings.ca_file("database") or ssl_module.get_default_verify_paths().cafile
            db.libpq_env = {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(ca or "")}
        return db

    @classmethod
    def _from_settings(cls, settings: Settings, *, role: str, schemas: Sequence[str]) -> Database:
        """The process's database; ``role`` (api, worker, scheduler) sizes its pool unless
        ``ARMILLARY_DATABASE_POOL_SIZE`` says otherwise; ``schemas`` are the services' it
        runs."""
        if settings.database_url is None:
            settings.home.mkdir(parents=True, exist_ok=True)
        return cls(
            settings.database_dsn,
            pool_size=settings.database_pool_size or POOL_SIZE_BY_ROLE.get(role, 10),
            busy_timeout_seconds=settings.database_busy_timeout_seconds,
            behind_pooler=settings.database_pooler,
            password_ref=settings.secret_ref("database_password"),
            ssl=database_ssl(settings),
            schemas=schemas,
            direct_url=settings.database_direct_dsn,
        )

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction: commits when the block ends without error, then runs after-commit
        callbacks (event dispatch, checkpoints); rolls back on error.

        Application code never commits; this is the only place that does.
        """
        session = self.sessionmaker()
        try:
            yield session
            await commit(session)
        except BaseException as exc:
            keep = bool(getattr(exc, "keep_changes", False))
            if keep:
                await commit(session)
            else:
                await rollback(session)
            raise
        finally:
            await session.close()

    @asynccontextmanager
    async def read_only(self) -> AsyncIterator[AsyncSession]:
        """A session for reads: no transaction, nothing to commit; writes are refused."""
        session = self.read_sessionmaker()
        session.info["read_only"] = True
        try:
            yield session
        finally:
            await session.close()

    @asynccontextmanager
    async def read_connection(self) -> AsyncIterator[AsyncConnection]:
        """A bare connection for hot read paths that use Core queries: no ORM session, no
        transaction (about half the cost of a session per request)."""
        async with self.read_engine.connect() as connection:
            yield connection

    async def dispose(self) -> None:
        await self.engine.dispose()


async def commit(session: AsyncSession) -> None:
    """Commit and then run what was registered to happen only after a successful commit."""
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    session.info.pop("on_rollback", None)
    await session.commit()
    for callback in callbacks:
        await callback()


async def rollback(session: AsyncSession) -> None:
    """Roll back, then undo outside effects registered with :func:`on_rollback`."""
    session.info.pop("after_commit", None)
    callbacks: list[AfterCommit] = session.info.pop("on_rollback", [])
    await session.rollback()
    for callback in callbacks:
        await callback()


def on_rollback(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` if this transaction rolls back (e.g. delete an object written for it)."""
    session.info.setdefault("on_rollback", []).append(callback)


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once this session's transaction has committed (never on rollback)."""
    session.info.setdefault("after_commit", []).append(callback)


async def next_number(session: AsyncSession, row: Base, counter: InstrumentedAttribute[int]) -> int:
    """Add one to ``row``'s integer ``counter`` in the database and return the new value, in
    one ``UPDATE ... RETURNING`` statement; ``row`` then shows that value.

    The increment happens under the row's write lock, so two transactions never get the same
    number, on PostgreSQL or SQLite, whatever either had read before.
    """
    state = inspect(row)
    if state.identity is None:
        raise LookupError("the row has no identity yet: flush it first")
    mapper = state.mapper
    key = and_(*(c == v for c, v in zip(mapper.primary_key, state.identity, strict=True)))
    number = await session.scalar(
        update(mapper.class_)
        .where(key)
        .values({counter: counter + 1})
        .returning(counter)
        .execution_options(synchronize_session=False)
    )
    if number is None:
        raise LookupError(f"the row to allocate {counter.key} from is gone")
    # What the database now holds; not a change to flush.
    set_committed_value(row, counter.key, number)
    return int(number)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_write_transaction(
    conn: Connection, clauseelement: Any, _multiparams: Any, _params: Any, _options: Any
) -> None:
    """Start SQLite's write transaction before a locking read or a savepoint.

    SQLite has no row locks and the dialect drops ``FOR UPDATE``; pysqlite also opens a
    transaction only at the first INSERT/UPDATE/DELETE. So a locking read ran outside any
    transaction (two requests both read a counter at N and wrote N+1), and a savepoint taken
    before the first write became the outermost transaction (its RELEASE committed early).
    ``BEGIN IMMEDIATE`` waits (busy timeout) for the one write lock: the read then sees every
    committed write and nobody else commits until this transaction ends. A connection already
    in a transaction has written, so it holds the write lock already.
    """
    if isinstance(clauseelement, Select):
        if clauseelement._for_update_arg is None:
            return
    elif not isinstance(clauseelement, SavepointClause):
        return
    driver = conn.connection.driver_connection
    # None is autocommit (read-only sessions): there is no transaction to protect.
    if driver is None or driver.isolation_level is None or driver.in_transaction:
        return
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("BEGIN IMMEDIATE")
    finally:
        cursor.close()
