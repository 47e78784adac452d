"""Engine construction, URL handling and schema creation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from assistant.storage import Storage, TokenCipher, TokenKeyError, create_engine, create_schema
from assistant.storage.db import normalize_database_url
from assistant.storage.models import Base
from tests.db_fixtures import make_settings


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite+aiosqlite:////var/x/a.db", "sqlite+aiosqlite:////var/x/a.db"),
        ("sqlite:////var/x/a.db", "sqlite+aiosqlite:////var/x/a.db"),
        ("sqlite:///relative/a.db", "sqlite+aiosqlite:///relative/a.db"),
        ("postgresql://u:pw@db:5432/app", "postgresql+asyncpg://u:pw@db:5432/app"),
        ("postgres://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db:6543/app", "postgresql+asyncpg://u@db:6543/app"),
        ("postgresql://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
    ],
)
def test_urls_are_rewritten_to_async_drivers(given: str, expected: str) -> None:
    assert normalize_database_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    "url",
    [
        "mysql://u:pw@db/app",
        "postgresql+psycopg2://u@db/app",
        "sqlite+pysqlite:///a.db",
        "redis://localhost:6379/0",
        "not a url",
        "",
    ],
)
def test_other_urls_are_rejected_clearly(url: str) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        create_engine(url)


def test_rejection_does_not_echo_the_password() -> None:
    with pytest.raises(ValueError) as caught:
        create_engine("mysql://user:hunter2@db/app")
    assert "hunter2" not in str(caught.value)
    assert "mysql" in str(caught.value)


async def test_sqlite_engine_creates_directory_and_sets_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "assistant.db"
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert engine.dialect.name == "sqlite"
        assert engine.url.drivername == "sqlite+aiosqlite"
        async with engine.connect() as conn:
            journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
            foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
            busy_timeout = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
        assert journal.lower() == "wal"
        assert foreign_keys == 1
        assert busy_timeout >= 1000
        assert path.exists()
    finally:
        await engine.dispose()


async def test_sqlite_in_memory_engine_shares_one_database() -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        await create_schema(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert set(tables) >= {"linked_accounts", "cached_devices", "device_list_refreshes"}
    finally:
        await engine.dispose()


@pytest.mark.postgres
async def test_postgres_engine_pre_pings(postgres_database_url: str) -> None:
    engine = create_engine(postgres_database_url)
    try:
        assert engine.url.drivername == "postgresql+asyncpg"
        assert engine.sync_engine.pool._pre_ping is True
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_create_schema_is_idempotent_and_concurrency_safe(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        # Several processes starting at once each call create_schema on an empty DB.
        others = [create_engine(database_url) for _ in range(4)]
        try:
            # Every start runs to its end before the engines go (a failed one must not
            # leave the others' connections, and their threads, behind).
            results = await asyncio.gather(
                *(create_schema(other) for other in others), return_exceptions=True
            )
        finally:
            for other in others:
                await other.dispose()
        assert [r for r in results if isinstance(r, BaseException)] == []
        await create_schema(engine)
        await create_schema(engine)
        async with engine.connect() as conn:
            tables = await conn.run_sync(lambda c: inspect(c).get_table_names())
        assert {t.name for t in Base.metadata.sorted_tables} <= set(tables)

        async with engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"]: col for col in inspect(c).get_columns("linked_accounts")}
            )
            indexes = await conn.run_sync(lambda c: inspect(c).get_indexes("linked_accounts"))
        assert columns["channel"]["nullable"] is True
        assert columns["token_expires_at"]["nullable"] is True
        assert any(index["column_names"] == ["thinq_user"] for index in indexes)
    finally:
        await engine.dispose()


async def test_storage_open_from_settings(tmp_path: Path, database_url: str) -> None:
    key = TokenCipher.generate_key()
    settings = make_settings(tmp_path, DATABASE_URL=database_url, TOKEN_ENCRYPTION_KEY=key)
    storage = await Storage.open(settings)
    try:
        await storage.accounts.link("s", "u", "token", "US", "aic")
        assert (await storage.accounts.get("s")).token == "token"
        assert key not in repr(storage)
    finally:
        await storage.close()
    # Reopening (a restart) finds the same data with the same key.
    async with await Storage.open(settings) as reopened:
        assert (await reopened.accounts.get("s")).token == "token"


async def test_storage_open_without_key_outside_demo_mode_fails_before_connecting(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "never" / "created.db"
    settings = make_settings(
        tmp_path,
        DEMO_MODE="0",
        THINQ_SERVICE_ID="svc",
        THINQ_SERVICE_KEY="key",
        DATABASE_URL=f"sqlite:///{db_path}",
    )
    with pytest.raises(TokenKeyError, match="TOKEN_ENCRYPTION_KEY"):
        await Storage.open(settings)
    assert not db_path.parent.exists()
