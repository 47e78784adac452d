"""Database and Redis fixtures shared by test modules.

Import the ones you need (a conftest.py may import all of ``__all__``)::

    from tests.db_fixtures import database_url, storage, token_cipher  # noqa: F401

* ``postgres_server_url`` (session): a reachable PostgreSQL admin URL, from
  ``TEST_POSTGRES_URL`` (default ``postgresql://root@127.0.0.1:5432/test``, falling
  back to user ``postgres`` when that default is refused).
* ``postgres_database_url`` (session): ``postgresql://…/lgassist_test_<random>``, a
  throwaway database created for the test session and dropped at its end.
* ``database_url`` (function, parametrized ``sqlite`` / ``postgres``): a SQLite file in
  ``tmp_path``, or the throwaway PostgreSQL database with this package's tables
  dropped, so every test starts empty.
* ``token_cipher`` (function): a :class:`TokenCipher` with a fresh random key.
* ``storage`` (function, async): :class:`Storage` opened on ``database_url``.
* ``redis_server_url`` (session): ``TEST_REDIS_URL`` (default
  ``redis://127.0.0.1:6379/15``, a database number reserved for tests).
* ``redis_key_prefix`` / ``redis_url`` (function): a unique alphanumeric key prefix and
  the Redis URL; every key starting with the prefix is deleted after the test. Tests
  must put their keys under the prefix (Rasa's Redis stores take ``key_prefix``), so
  concurrent test runs sharing the database never wipe each other's keys.

PostgreSQL and Redis being unreachable is a test *failure*, never a skip: CI must not
go green without having exercised them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from assistant.settings import Settings, load_settings
from assistant.storage import Storage, TokenCipher
from assistant.storage.models import Base

__all__ = [
    "database_url",
    "make_settings",
    "postgres_database_url",
    "postgres_server_url",
    "redis_key_prefix",
    "redis_server_url",
    "redis_url",
    "reset_postgres_tables",
    "storage",
    "token_cipher",
]

DEFAULT_POSTGRES_URL = "postgresql://root@127.0.0.1:5432/test"
FALLBACK_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def _libpq_url(url: str) -> str:
    """``postgresql+asyncpg://…`` / ``postgres://…`` → ``postgresql://…`` for psycopg2."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _pg_connect(url: str):
    import psycopg2

    connection = psycopg2.connect(_libpq_url(url), connect_timeout=5)
    connection.autocommit = True
    return connection


def make_settings(tmp_path: Path, **env: str) -> Settings:
    """Demo-mode :class:`Settings` rooted in ``tmp_path``; ``env`` adds/overrides variables."""
    base = {"STATE_DIR": str(tmp_path / "state"), "DEMO_MODE": "1"}
    return load_settings({**base, **env})


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    configured = os.environ.get("TEST_POSTGRES_URL")
    candidates = [configured] if configured else [DEFAULT_POSTGRES_URL, FALLBACK_POSTGRES_URL]
    errors = []
    for url in candidates:
        try:
            _pg_connect(url).close()
        except Exception as error:
            errors.append(f"  {_redacted(url)}: {str(error).strip()}")
            continue
        return _libpq_url(url)
    pytest.fail(
        "PostgreSQL is required for these tests and could not be reached:\n"
        + "\n".join(errors)
        + "\nStart it or set TEST_POSTGRES_URL=postgresql://user@host:port/db "
        "(a user allowed to CREATE DATABASE). These tests never skip.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def postgres_database_url(postgres_server_url: str) -> Iterator[str]:
    name = f"lgassist_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_connect(postgres_server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    except Exception as error:
        admin.close()
        pytest.fail(
            f"cannot create the throwaway database {name} on "
            f"{_redacted(postgres_server_url)}: {error}",
            pytrace=False,
        )
    parts = urlsplit(postgres_server_url)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with admin.cursor() as cursor:
            # FORCE (PostgreSQL 13+) ends connections a test forgot to close.
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def reset_postgres_tables(url: str) -> None:
    """Drop this package's tables in the database at ``url`` (a test starts empty)."""
    names = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    connection = _pg_connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {names} CASCADE")
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'assistant.db'}"
    url = request.getfixturevalue("postgres_database_url")
    reset_postgres_tables(url)
    return url


@pytest.fixture
def token_cipher() -> TokenCipher:
    return TokenCipher([TokenCipher.generate_key()])


@pytest.fixture
async def storage(database_url: str, token_cipher: TokenCipher) -> AsyncIterator[Storage]:
    opened = await Storage.open_url(database_url, token_cipher)
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    import redis

    url = os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
    except Exception as error:
        pytest.fail(
            f"Redis is required for these tests and could not be reached at "
            f"{_redacted(url)}: {error}\nStart it or set TEST_REDIS_URL=redis://host:port/db "
            "(a database number reserved for tests). These tests never skip.",
            pytrace=False,
        )
    finally:
        client.close()
    return url


@pytest.fixture
def redis_key_prefix() -> str:
    return f"lgassisttest{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url(redis_server_url: str, redis_key_prefix: str) -> Iterator[str]:
    import redis

    yield redis_server_url
    client = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client.scan_iter(match=f"{redis_key_prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
