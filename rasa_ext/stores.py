"""Tracker and lock stores for the Rasa server, chosen by environment variables.

endpoints.yml points at these classes::

    tracker_store:
      type: rasa_ext.stores.EnvTrackerStore
    lock_store:
      type: rasa_ext.stores.EnvLockStore

and they pick the real store from ``TRACKER_STORE_URL`` / ``LOCK_STORE_URL``:

===========================================  ==========================================
``TRACKER_STORE_URL``                        store
===========================================  ==========================================
unset or empty                               ``InMemoryTrackerStore``
``sqlite:///path/to/rasa.db``                ``SQLTrackerStore`` on that SQLite file
``postgresql://user:pw@host:5432/db``        ``SQLTrackerStore`` on PostgreSQL (psycopg2)
``redis://[:pw@]host:6379/0`` (``rediss``)   ``RedisTrackerStore``
===========================================  ==========================================

``LOCK_STORE_URL``: unset or empty → ``InMemoryLockStore``; ``redis://host:6379/1`` →
``AtomicRedisLockStore`` (Rasa's ``RedisLockStore`` with atomic ticket changes, see
:mod:`rasa_ext.redis_lock`). Anything else fails at startup with a :class:`StoreConfigError`.
Extra keys under the endpoint (``key_prefix``, ``record_exp``, ``login_db``…) are
passed on to the chosen store; values in the URL take precedence.

Why this module reads ``os.environ`` (the rest of the project takes its settings
from :class:`assistant.settings.Settings`): Rasa builds these objects itself from
endpoints.yml inside its own process, and endpoints.yml's ``${VAR}`` substitution
has no defaults, so "in-memory unless a URL is configured" cannot be written there.
The environment is the only configuration channel Rasa leaves us.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Coroutine, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from rasa.core.brokers.broker import EventBroker
from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, InMemoryLockStore, LockStore
from rasa.core.tracker_store import (
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
)
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import Event
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from rasa_ext.redis_lock import AtomicRedisLockStore

logger = logging.getLogger(__name__)

TRACKER_STORE_URL_ENV = "TRACKER_STORE_URL"
LOCK_STORE_URL_ENV = "LOCK_STORE_URL"
SANIC_WORKERS_ENV = "SANIC_WORKERS"

_SQLITE_SCHEMES = {"sqlite", "sqlite+pysqlite", "sqlite+aiosqlite"}
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg2", "postgresql+asyncpg"}
_REDIS_SCHEMES = {"redis", "rediss"}


class StoreConfigError(ValueError):
    """TRACKER_STORE_URL or LOCK_STORE_URL cannot be used.

    Deliberately not an ImportError/AttributeError: Rasa would swallow those and
    silently fall back to an in-memory store.
    """


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and logs)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        return parts._replace(netloc=f"{user}:***@{host}").geturl()
    except ValueError:
        return "<unparseable URL>"


def _split(url: str, env_name: str) -> SplitResult:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a non-numeric port
    except ValueError as error:
        raise StoreConfigError(f"{env_name}={redact_url(url)!r} is not a valid URL") from error
    return parts


def _overlay(kwargs: Mapping[str, Any], from_url: Mapping[str, Any]) -> dict[str, Any]:
    """Endpoint kwargs overridden by whatever the URL actually specifies."""
    return {**kwargs, **{key: value for key, value in from_url.items() if value is not None}}


def _redis_kwargs(url: str, env_name: str, default_db: int) -> dict[str, Any]:
    parts = _split(url, env_name)
    db_text = parts.path.strip("/")
    try:
        db = int(db_text) if db_text else default_db
    except ValueError as error:
        raise StoreConfigError(
            f"{env_name}={redact_url(url)!r}: the path must be a Redis database number, "
            f"as in redis://host:6379/0"
        ) from error
    if not parts.hostname:
        raise StoreConfigError(f"{env_name}={redact_url(url)!r} has no host")
    return {
        "host": parts.hostname,
        "port": parts.port or 6379,
        "db": db,
        "username": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "use_ssl": True if parts.scheme == "rediss" else None,
    }


def _sql_kwargs(url: str, env_name: str) -> dict[str, Any]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise StoreConfigError(f"{env_name}={redact_url(url)!r} is not a valid URL") from error
    scheme = parsed.drivername.lower()
    if scheme in _SQLITE_SCHEMES:
        if not parsed.database or parsed.database == ":memory:":
            raise StoreConfigError(
                f"{env_name}={url!r} names no SQLite file (sqlite:///path/to/rasa.db); "
                f"leave {env_name} empty for an in-memory tracker store"
            )
        # SQLite creates the file but not its directory.
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return {"dialect": "sqlite", "db": parsed.database}
    if not parsed.database:
        raise StoreConfigError(f"{env_name}={redact_url(url)!r} names no database")
    if not parsed.host:
        raise StoreConfigError(f"{env_name}={redact_url(url)!r} has no host")
    # Rasa's SQLTrackerStore is synchronous: always the psycopg2 driver.
    return {
        "dialect": "postgresql",
        "host": parsed.host,
        "port": parsed.port,
        "db": parsed.database,
        "username": parsed.username,
        "password": parsed.password,
        "query": dict(parsed.query) or None,
    }


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def tracker_store_from_url(
    url: str | None,
    domain: Domain | None = None,
    event_broker: EventBroker | None = None,
    **kwargs: Any,
) -> TrackerStore:
    """The Rasa tracker store ``url`` describes (see the module docstring)."""
    url = (url or "").strip()
    if not url:
        if kwargs:
            logger.debug("in-memory tracker store ignores endpoint options %s", sorted(kwargs))
        return InMemoryTrackerStore(domain, event_broker)

    scheme = _scheme(url)
    try:
        if scheme in _SQLITE_SCHEMES | _POSTGRES_SCHEMES:
            options = _overlay(kwargs, _sql_kwargs(url, TRACKER_STORE_URL_ENV))
            return SQLTrackerStore(domain=domain, event_broker=event_broker, **options)
        if scheme in _REDIS_SCHEMES:
            options = _overlay(kwargs, _redis_kwargs(url, TRACKER_STORE_URL_ENV, default_db=0))
            return RedisTrackerStore(domain=domain, event_broker=event_broker, **options)
    except ImportError as error:
        # Never let an ImportError escape: Rasa would fall back to in-memory silently.
        raise StoreConfigError(
            f"{TRACKER_STORE_URL_ENV}={redact_url(url)!r} needs a missing package: {error}"
        ) from error
    raise StoreConfigError(
        f"{TRACKER_STORE_URL_ENV}={redact_url(url)!r} is not supported; use "
        "sqlite:///path/to/rasa.db, postgresql://user:password@host:5432/db, "
        "redis://host:6379/0, or leave it empty for an in-memory store"
    )


def lock_store_from_url(url: str | None, **kwargs: Any) -> LockStore:
    """The Rasa lock store ``url`` describes (see the module docstring)."""
    url = (url or "").strip()
    if not url:
        workers = os.environ.get(SANIC_WORKERS_ENV, "").strip()
        if workers.isdigit() and int(workers) > 1:
            # Rasa only checks the endpoint type, which is ours, so it would allow this.
            raise StoreConfigError(
                f"{SANIC_WORKERS_ENV}={workers} needs a shared lock store: set "
                f"{LOCK_STORE_URL_ENV}=redis://host:6379/1"
            )
        if kwargs:
            logger.debug("in-memory lock store ignores endpoint options %s", sorted(kwargs))
        return InMemoryLockStore()

    if _scheme(url) in _REDIS_SCHEMES:
        options = _overlay(kwargs, _redis_kwargs(url, LOCK_STORE_URL_ENV, default_db=1))
        try:
            return AtomicRedisLockStore(**options)
        except ImportError as error:
            raise StoreConfigError(
                f"{LOCK_STORE_URL_ENV}={redact_url(url)!r} needs a missing package: {error}"
            ) from error
    raise StoreConfigError(
        f"{LOCK_STORE_URL_ENV}={redact_url(url)!r} is not supported; use redis://host:6379/1 "
        "or leave it empty for an in-memory lock store"
    )


class StoreThreads:
    """Runs a synchronous store's coroutines on worker threads, each with an event loop
    of its own, so the server's event loop goes on with other turns meanwhile.

    Why: Rasa 3.6's ``SQLTrackerStore`` has ``async`` methods that do blocking SQLAlchemy
    work inside (read every event of the conversation, count them, insert the new ones).
    On PostgreSQL each round trip stalled every other conversation of that Rasa server:
    42 % of its time under the load test went to these calls (py-spy). A coroutine runs
    whole on one worker thread; the caller awaits its result as before.
    """

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tracker-store")
        self._local = threading.local()

    async def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, self._complete, coroutine
        )

    def _complete(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        loop = getattr(self._local, "loop", None)
        if loop is None:
            loop = self._local.loop = asyncio.new_event_loop()
        return loop.run_until_complete(coroutine)


def store_threads_for(store: TrackerStore) -> StoreThreads | None:
    """Worker threads for a SQL tracker store (one for SQLite, whose file takes one writer
    at a time; four for PostgreSQL: a few concurrent queries keep a 2-core server's loop
    free, more would only contend for the GIL), else None."""
    if not isinstance(store, SQLTrackerStore):
        return None
    return StoreThreads(1 if store.engine.dialect.name == "sqlite" else 4)


class EnvTrackerStore(TrackerStore):
    """Delegates every call to the tracker store ``TRACKER_STORE_URL`` selects (a SQL
    store's calls on worker threads: :class:`StoreThreads`)."""

    def __init__(
        self,
        domain: Domain | None = None,
        host: str | None = None,
        event_broker: EventBroker | None = None,
        **kwargs: Any,
    ) -> None:
        url = os.environ.get(TRACKER_STORE_URL_ENV, "")
        if host:
            logger.warning(
                "tracker_store url %r in endpoints.yml is ignored; %s decides",
                redact_url(host),
                TRACKER_STORE_URL_ENV,
            )
        self._store = tracker_store_from_url(url, domain, event_broker, **kwargs)
        self._threads = store_threads_for(self._store)
        logger.info(
            "tracker store: %s (%s=%r)",
            type(self._store).__name__,
            TRACKER_STORE_URL_ENV,
            redact_url(url),
        )
        super().__init__(domain, event_broker)

    @property
    def delegate(self) -> TrackerStore:
        """The store doing the work."""
        return self._store

    def __repr__(self) -> str:
        return f"EnvTrackerStore({type(self._store).__name__})"

    # Attributes the base class assigns live on the delegate, so both agree.
    @property
    def domain(self) -> Domain:
        return self._store.domain

    @domain.setter
    def domain(self, domain: Domain | None) -> None:
        self._store.domain = domain

    @property
    def event_broker(self) -> EventBroker | None:
        return self._store.event_broker

    @event_broker.setter
    def event_broker(self, event_broker: EventBroker | None) -> None:
        self._store.event_broker = event_broker

    @property
    def max_event_history(self) -> int | None:
        return self._store.max_event_history

    @max_event_history.setter
    def max_event_history(self, value: int | None) -> None:
        self._store.max_event_history = value

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not found normally (e.g. ``red``, ``engine``).
        if name in ("_store", "_threads"):
            raise AttributeError(name)
        return getattr(self._store, name)

    async def _call(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Await one of the delegate's coroutines: on a worker thread for a SQL store
        without an event broker (a broker's client belongs to the server's loop)."""
        if self._threads is None or self._store.event_broker is not None:
            return await coroutine
        return await self._threads.run(coroutine)

    # -- synchronous helpers ---------------------------------------------------------
    def init_tracker(self, sender_id: str) -> DialogueStateTracker:
        return self._store.init_tracker(sender_id)

    def deserialise_tracker(
        self, sender_id: str, serialised_tracker: str | bytes
    ) -> DialogueStateTracker | None:
        return self._store.deserialise_tracker(sender_id, serialised_tracker)

    def serialise_tracker(self, tracker: DialogueStateTracker) -> Any:
        return self._store.serialise_tracker(tracker)

    # -- the asynchronous interface (all of TrackerStore's coroutines) ---------------
    async def get_or_create_tracker(
        self,
        sender_id: str,
        max_event_history: int | None = None,
        append_action_listen: bool = True,
    ) -> DialogueStateTracker:
        return await self._call(
            self._store.get_or_create_tracker(sender_id, max_event_history, append_action_listen)
        )

    async def create_tracker(
        self, sender_id: str, append_action_listen: bool = True
    ) -> DialogueStateTracker:
        return await self._call(self._store.create_tracker(sender_id, append_action_listen))

    async def save(self, tracker: DialogueStateTracker) -> None:
        await self._call(self._store.save(tracker))

    async def exists(self, conversation_id: str) -> bool:
        return await self._call(self._store.exists(conversation_id))

    async def retrieve(self, sender_id: str) -> DialogueStateTracker | None:
        return await self._call(self._store.retrieve(sender_id))

    async def retrieve_full_tracker(self, conversation_id: str) -> DialogueStateTracker | None:
        return await self._call(self._store.retrieve_full_tracker(conversation_id))

    async def get_or_create_full_tracker(
        self, sender_id: str, append_action_listen: bool = True
    ) -> DialogueStateTracker:
        return await self._call(
            self._store.get_or_create_full_tracker(sender_id, append_action_listen)
        )

    async def stream_events(self, tracker: DialogueStateTracker) -> None:
        await self._store.stream_events(tracker)

    async def _stream_new_events(
        self, event_broker: EventBroker, new_events: list[Event], sender_id: str
    ) -> None:
        await self._store._stream_new_events(event_broker, new_events, sender_id)

    async def keys(self) -> Iterable[str]:
        keys = await self._call(self._store.keys())
        if isinstance(self._store, RedisTrackerStore):
            # Rasa 3.6's RedisTrackerStore returns whole Redis keys ("tracker:<id>"), which
            # retrieve() cannot look up (e.g. `rasa export`); return conversation ids.
            prefix = self._store.key_prefix
            return [key[len(prefix) :] if key.startswith(prefix) else key for key in keys]
        return keys


class EnvLockStore(LockStore):
    """Delegates every call to the lock store ``LOCK_STORE_URL`` selects."""

    def __init__(self, endpoint_config: EndpointConfig | None = None, **kwargs: Any) -> None:
        url = os.environ.get(LOCK_STORE_URL_ENV, "")
        options = dict(endpoint_config.kwargs) if endpoint_config is not None else {}
        options.update(kwargs)
        if endpoint_config is not None and endpoint_config.url:
            logger.warning(
                "lock_store url %r in endpoints.yml is ignored; %s decides",
                redact_url(endpoint_config.url),
                LOCK_STORE_URL_ENV,
            )
        self._store = lock_store_from_url(url, **options)
        logger.info(
            "lock store: %s (%s=%r)",
            type(self._store).__name__,
            LOCK_STORE_URL_ENV,
            redact_url(url),
        )
        super().__init__()

    @property
    def delegate(self) -> LockStore:
        return self._store

    def __repr__(self) -> str:
        return f"EnvLockStore({type(self._store).__name__})"

    def __getattr__(self, name: str) -> Any:
        if name == "_store":
            raise AttributeError(name)
        return getattr(self._store, name)

    def create_lock(self, conversation_id: str) -> TicketLock:
        return self._store.create_lock(conversation_id)

    def get_lock(self, conversation_id: str) -> TicketLock | None:
        return self._store.get_lock(conversation_id)

    def delete_lock(self, conversation_id: str) -> None:
        self._store.delete_lock(conversation_id)

    def save_lock(self, lock: TicketLock) -> None:
        self._store.save_lock(lock)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        return self._store.issue_ticket(conversation_id, lock_lifetime)

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncIterator[TicketLock]:
        async with self._store.lock(conversation_id, lock_lifetime, wait_time_in_seconds) as lock:
            yield lock

    async def _acquire_lock(
        self, conversation_id: str, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        return await self._store._acquire_lock(conversation_id, ticket, wait_time_in_seconds)

    def update_lock(self, conversation_id: str) -> None:
        self._store.update_lock(conversation_id)

    def get_or_create_lock(self, conversation_id: str) -> TicketLock:
        return self._store.get_or_create_lock(conversation_id)

    def is_someone_waiting(self, conversation_id: str) -> bool:
        return self._store.is_someone_waiting(conversation_id)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        self._store.finish_serving(conversation_id, ticket_number)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        self._store.cleanup(conversation_id, ticket_number)
