"""Engine, schema and session plumbing for the assistant's own database.

Two backends are supported: SQLite (through aiosqlite; the default, a file in
the state directory) and PostgreSQL (through asyncpg). :func:`create_engine`
accepts the URL spellings people actually paste and rewrites them to the async
driver, and rejects everything else with a message that says what would work.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import AsyncAdaptedQueuePool, StaticPool

from assistant.storage.models import Base

logger = logging.getLogger(__name__)

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# How long starting processes keep trying to create the schema on a busy SQLite file.
SCHEMA_DEADLINE_SECONDS = 60.0

_SQLITE_SPELLINGS = {"sqlite", SQLITE_DRIVER}
_POSTGRES_SPELLINGS = {"postgresql", "postgres", POSTGRES_DRIVER}
_SUPPORTED = (
    "sqlite+aiosqlite:///path, sqlite:///path, postgresql://user@host:port/db, "
    "postgres://… or postgresql+asyncpg://…"
)

# Any 64-bit constant; serialises concurrent create_schema() calls on PostgreSQL.
_SCHEMA_LOCK_ID = 0x1A55_157A


def normalize_database_url(url: str) -> URL:
    """Parse ``url`` and rewrite it to the async driver SQLAlchemy should use.

    Raises :class:`ValueError` (never echoing a password) for anything that is not
    a SQLite or PostgreSQL URL.
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"database URL is empty; expected one of: {_SUPPORTED}")
    try:
        parsed = make_url(url.strip())
    except exc.ArgumentError as error:
        scheme = url.split("://", 1)[0] if "://" in url else "(no scheme)"
        raise ValueError(
            f"database URL with scheme {scheme!r} could not be parsed; expected one of: "
            f"{_SUPPORTED}"
        ) from error

    driver = parsed.drivername.lower()
    if driver in _SQLITE_SPELLINGS:
        return parsed.set(drivername=SQLITE_DRIVER)
    if driver in _POSTGRES_SPELLINGS:
        parsed = parsed.set(drivername=POSTGRES_DRIVER)
        if "sslmode" in parsed.query:
            # libpq spelling; asyncpg calls the same setting ``ssl``.
            query = dict(parsed.query)
            query.setdefault("ssl", query.pop("sslmode"))
            parsed = parsed.set(query=query)
        return parsed
    raise ValueError(
        f"unsupported database URL scheme {parsed.drivername!r} "
        f"(in {parsed.render_as_string(hide_password=True)!r}); expected one of: {_SUPPORTED}"
    )


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:")


def _enable_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried: the switch needs the database to itself, and
    SQLite answers "database is locked" without consulting the busy timeout when other
    connections are opening it at the same moment (several processes starting at once).
    Once a file is in WAL mode, the pragma is a no-op that never fails this way."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)  # on this connection's own thread (aiosqlite), not the loop


def _install_sqlite_pragmas(engine: AsyncEngine, *, memory: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # Concurrent writers wait for the lock instead of failing at once. First:
            # switching the journal mode below also waits for the lock.
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            if not memory:
                # WAL lets readers proceed while one writer commits.
                _enable_wal(cursor)
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An :class:`AsyncEngine` for a SQLite or PostgreSQL URL (see module docstring)."""
    parsed = normalize_database_url(url)
    kwargs: dict[str, Any] = {"future": True, "echo": echo}

    if parsed.drivername == SQLITE_DRIVER:
        memory = _is_sqlite_memory(parsed)
        if memory:
            # One shared connection, otherwise every connection sees its own empty DB.
            parsed = parsed.set(database=":memory:")
            kwargs["poolclass"] = StaticPool
            kwargs["connect_args"] = {"check_same_thread": False}
        else:
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # SQLAlchemy 1.4 defaults file databases to NullPool: every session would open
            # a new aiosqlite thread and connection (about 12 ms here), which dominates
            # short transactions. A queue pool keeps connections (SQLAlchemy 2.0's default).
            kwargs["poolclass"] = AsyncAdaptedQueuePool
            # Connections beyond pool_size are closed when handed back, and a new one
            # costs that 12 ms again: under the connector's concurrent sessions the
            # default 5 meant a fresh connection for most transactions.
            kwargs["pool_size"] = 20
            kwargs["max_overflow"] = 20
        engine = create_async_engine(parsed, **kwargs)
        _install_sqlite_pragmas(engine, memory=memory)
        return engine

    # PostgreSQL: connections die when the server restarts or a proxy idles them out.
    kwargs["pool_pre_ping"] = True
    # Connections beyond pool_size are closed when returned; each new one costs a TLS
    # probe, authentication and type introspection. Ten kept connections cover a
    # connector's concurrent sessions without that churn; idle ones cost the server little.
    kwargs["pool_size"] = 10
    kwargs["max_overflow"] = 20
    return create_async_engine(parsed, **kwargs)


# One lock per SQLite engine: every writer of this process (delivery store, Alexa inbox,
# schema creation) queues here rather than in SQLite's busy wait, which sleeps in steps
# of up to 100 ms.
_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[AsyncEngine, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A write transaction. On SQLite it takes the database's write lock first
    (``BEGIN IMMEDIATE``), so a read-then-write inside it cannot interleave with another
    writer and never fails to upgrade a stale read snapshot; on PostgreSQL, row locks
    and ``… RETURNING`` do that work and a plain transaction is used."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            yield conn
        return
    lock = _SQLITE_WRITE_LOCKS.setdefault(engine, asyncio.Lock())
    async with lock, engine.connect() as conn:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


async def create_schema(engine: AsyncEngine) -> None:
    """Create any missing tables; safe to call from several processes at once."""
    if engine.dialect.name == "postgresql":
        async with engine.begin() as conn:
            # Two processes racing through CREATE TABLE collide in pg_type; take turns.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
            await conn.run_sync(Base.metadata.create_all)
        return

    deadline = time.monotonic() + SCHEMA_DEADLINE_SECONDS
    attempt = 0
    while True:
        try:
            # create_all reads the catalogue, then writes: begun as a plain (deferred)
            # transaction, a reader that must upgrade to writer while another process
            # writes gets "database is locked" at once; write_transaction takes the lock
            # first, so concurrent starters queue on the busy timeout instead.
            async with write_transaction(engine) as conn:
                await conn.run_sync(Base.metadata.create_all)
            return
        except exc.OperationalError as error:
            # Another process created a table between our check and CREATE, or held the
            # database longer than the busy timeout while several processes started at
            # once (seen on a loaded CI machine). The whole step is idempotent and in
            # one transaction, so it is simply tried again until the deadline.
            text_ = str(error)
            retryable = "already exists" in text_ or "locked" in text_
            if not retryable or time.monotonic() > deadline:
                raise
            attempt += 1
            await asyncio.sleep(min(0.05 * 2**attempt, 1.0))


async def drop_schema(engine: AsyncEngine) -> None:
    """Drop every table this package owns (tests and resets only)."""
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.drop_all)


def session_factory(engine: AsyncEngine) -> sessionmaker:
    """A factory of :class:`AsyncSession`; use as ``async with factory() as s, s.begin():``."""
    return sessionmaker(engine, class_=AsyncSession, expire_on_commit=False, future=True)


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """``INSERT`` for ``table`` with the session's dialect's ``on_conflict_do_update``."""
    name = session.bind.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - create_engine() only builds the two
        raise ValueError(f"no upsert support for dialect {name!r}")
    return insert(table)
