"""EnvTrackerStore / EnvLockStore: store selection from the environment, real backends."""

from __future__ import annotations

import asyncio
import threading
import time
import warnings
from collections.abc import Awaitable, Iterator
from pathlib import Path

import pytest
import redis
from rasa.core.brokers.broker import EventBroker
from rasa.core.lock_store import InMemoryLockStore, LockStore, RedisLockStore
from rasa.core.tracker_store import (
    FailSafeTrackerStore,
    InMemoryTrackerStore,
    RedisTrackerStore,
    SQLTrackerStore,
    TrackerStore,
    check_if_tracker_store_async,
)
from rasa.core.utils import AvailableEndpoints
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import ActionExecuted, SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.utils.endpoints import EndpointConfig

from rasa_ext.stores import (
    LOCK_STORE_URL_ENV,
    TRACKER_STORE_URL_ENV,
    EnvLockStore,
    EnvTrackerStore,
    StoreConfigError,
)

with warnings.catch_warnings():
    # Rasa warns about the removed slot auto-fill for every domain that has slots.
    warnings.simplefilter("ignore", UserWarning)
    DOMAIN = Domain.from_dict(
        {
            "intents": ["greet", "start_appliance"],
            "slots": {"appliance": {"type": "text", "mappings": [{"type": "custom"}]}},
        }
    )


def tracker_endpoint(**kwargs: object) -> EndpointConfig:
    return EndpointConfig(type="rasa_ext.stores.EnvTrackerStore", **kwargs)


def lock_endpoint(**kwargs: object) -> EndpointConfig:
    return EndpointConfig(type="rasa_ext.stores.EnvLockStore", **kwargs)


def conversation(sender_id: str) -> DialogueStateTracker:
    return DialogueStateTracker.from_events(
        sender_id,
        [
            ActionExecuted("action_listen"),
            UserUttered("start the washer", intent={"name": "start_appliance", "confidence": 1}),
            SlotSet("appliance", "washer"),
            ActionExecuted("utter_started"),
            ActionExecuted("action_listen"),
        ],
        slots=DOMAIN.slots,
    )


def event_dicts(tracker: DialogueStateTracker) -> list[dict]:
    return [event.as_dict() for event in tracker.events]


def rasa_tracker_store(monkeypatch: pytest.MonkeyPatch, url: str | None, **kwargs) -> TrackerStore:
    """Build the store exactly as ``rasa run`` does from endpoints.yml."""
    if url is None:
        monkeypatch.delenv(TRACKER_STORE_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(TRACKER_STORE_URL_ENV, url)
    store = TrackerStore.create(tracker_endpoint(**kwargs), domain=DOMAIN)
    assert isinstance(store, EnvTrackerStore), "Rasa must use our class, unwrapped"
    assert check_if_tracker_store_async(store)
    return store


async def assert_round_trip(store: TrackerStore, sender_id: str) -> None:
    assert not await store.exists(sender_id)
    assert await store.retrieve(sender_id) is None

    original = conversation(sender_id)
    await store.save(original)

    assert await store.exists(sender_id)
    assert sender_id in list(await store.keys())
    restored = await store.retrieve(sender_id)
    assert restored is not None
    assert restored.sender_id == sender_id
    assert event_dicts(restored) == event_dicts(original)
    assert restored.get_slot("appliance") == "washer"
    assert restored.latest_message.intent["name"] == "start_appliance"
    full = await store.retrieve_full_tracker(sender_id)
    assert event_dicts(full) == event_dicts(original)

    # Appending and saving again stores only what is new.
    restored.update(UserUttered("hi", intent={"name": "greet", "confidence": 1}))
    await store.save(restored)
    again = await store.retrieve(sender_id)
    assert len(again.events) == len(original.events) + 1
    assert again.latest_message.text == "hi"

    created = await store.get_or_create_tracker(f"{sender_id}-new")
    assert [e.as_dict()["event"] for e in created.events] == ["action"]
    assert await store.exists(f"{sender_id}-new")


async def test_in_memory_when_url_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    store = rasa_tracker_store(monkeypatch, None)
    assert isinstance(store.delegate, InMemoryTrackerStore)
    await assert_round_trip(store, "memory-sender")


async def test_in_memory_when_url_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    store = rasa_tracker_store(monkeypatch, "  ")
    assert isinstance(store.delegate, InMemoryTrackerStore)


async def test_sqlite_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "rasa.db"
    store = rasa_tracker_store(monkeypatch, f"sqlite:///{path}")
    try:
        assert isinstance(store.delegate, SQLTrackerStore)
        await assert_round_trip(store, "sqlite-sender")
        assert path.exists()
    finally:
        store.delegate.engine.dispose()

    # A new process (new store) sees what the first one saved.
    reopened = rasa_tracker_store(monkeypatch, f"sqlite:///{path}")
    try:
        restored = await reopened.retrieve("sqlite-sender")
        assert restored.get_slot("appliance") == "washer"
    finally:
        reopened.delegate.engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_postgresql(
    monkeypatch: pytest.MonkeyPatch, postgres_database_url: str, scheme: str
) -> None:
    url = postgres_database_url.replace("postgresql://", f"{scheme}://", 1)
    store = rasa_tracker_store(monkeypatch, url)
    try:
        assert isinstance(store.delegate, SQLTrackerStore)
        assert store.delegate.engine.url.drivername == "postgresql"
        assert store.delegate.engine.url.database == postgres_database_url.rsplit("/", 1)[1]
        await assert_round_trip(store, f"pg-sender-{scheme}")
    finally:
        store.delegate.engine.dispose()


class SlowStoreWatch:
    """Makes every SQL save of ``store`` block for ``seconds`` (as a slow database round
    trip does) and records the threads the blocking work ran on."""

    def __init__(self, store: EnvTrackerStore, seconds: float) -> None:
        self.threads: list[threading.Thread] = []
        inner = store.delegate
        original = inner._additional_events

        def slow(session, tracker):  # type: ignore[no-untyped-def]
            self.threads.append(threading.current_thread())
            time.sleep(seconds)
            return original(session, tracker)

        inner._additional_events = slow  # type: ignore[method-assign]


async def ticks_during(work: Awaitable[object]) -> int:
    """How often another coroutine of this event loop got to run while ``work`` ran."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    running = asyncio.create_task(ticker())
    await work
    done.set()
    await running
    return ticks


async def assert_sql_work_off_the_loop(store: EnvTrackerStore, sender_id: str) -> None:
    watch = SlowStoreWatch(store, seconds=0.3)
    original = conversation(sender_id)
    ticks = await ticks_during(store.save(original))
    # The blocking part ran on a worker thread, and the loop served others meanwhile
    # (about 30 ticks in 0.3 s; on the loop itself there would be one).
    assert watch.threads and all(t is not threading.main_thread() for t in watch.threads)
    assert ticks >= 5, ticks
    restored = await store.retrieve(sender_id)
    assert restored is not None and event_dicts(restored) == event_dicts(original)
    # Turns of many conversations at once all complete, each stored once.
    others = [conversation(f"{sender_id}-{n}") for n in range(8)]
    watch_many = SlowStoreWatch(store, seconds=0.01)
    await asyncio.gather(*(store.save(other) for other in others))
    for other in others:
        assert event_dicts(await store.retrieve(other.sender_id)) == event_dicts(other)
    assert len(watch_many.threads) == len(others)


async def test_sqlite_work_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    store = rasa_tracker_store(monkeypatch, f"sqlite:///{tmp_path / 'rasa.db'}")
    try:
        await assert_sql_work_off_the_loop(store, "sqlite-threads")
    finally:
        store.delegate.engine.dispose()


@pytest.mark.postgres
async def test_postgresql_work_runs_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, postgres_database_url: str
) -> None:
    store = rasa_tracker_store(monkeypatch, postgres_database_url)
    try:
        await assert_sql_work_off_the_loop(store, "pg-threads")
    finally:
        store.delegate.engine.dispose()


async def test_with_an_event_broker_the_sql_store_stays_on_the_loop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A broker's client belongs to the server's event loop: no worker threads then.
    store = rasa_tracker_store(monkeypatch, f"sqlite:///{tmp_path / 'rasa.db'}")
    try:
        store.event_broker = RecordingBroker()
        watch = SlowStoreWatch(store, seconds=0.0)
        await store.save(conversation("broker-sender"))
        assert watch.threads == [threading.main_thread()]
        assert store.event_broker.published
    finally:
        store.delegate.engine.dispose()


class RecordingBroker(EventBroker):
    def __init__(self) -> None:
        self.published: list[dict] = []

    def publish(self, event: dict) -> None:
        self.published.append(event)


async def test_in_memory_store_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    store = rasa_tracker_store(monkeypatch, None)
    threads = []
    original = store.delegate.save

    async def recording_save(tracker: DialogueStateTracker) -> None:
        threads.append(threading.current_thread())
        await original(tracker)

    store.delegate.save = recording_save  # type: ignore[method-assign]
    await store.save(conversation("memory-threads"))
    assert threads == [threading.main_thread()]


@pytest.mark.redis
async def test_redis(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_key_prefix: str
) -> None:
    store = rasa_tracker_store(monkeypatch, redis_url, key_prefix=redis_key_prefix)
    assert isinstance(store.delegate, RedisTrackerStore)
    db = int(redis_url.rsplit("/", 1)[1])
    assert store.delegate.red.connection_pool.connection_kwargs["db"] == db
    await assert_round_trip(store, "redis-sender")

    client = redis.Redis.from_url(redis_url)
    try:
        assert client.exists(f"{redis_key_prefix}:tracker:redis-sender")
    finally:
        client.close()


def test_endpoint_kwargs_reach_the_delegate(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing connects here: the Redis client is lazy.
    monkeypatch.setenv(TRACKER_STORE_URL_ENV, "redis://:s3cret@127.0.0.1:6390/7")
    store = EnvTrackerStore(domain=DOMAIN, record_exp=30.0, key_prefix="abc")
    assert store.delegate.record_exp == 30.0
    assert store.delegate.key_prefix == "abc:tracker:"
    kwargs = store.delegate.red.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == (
        "127.0.0.1",
        6390,
        7,
        "s3cret",
    )
    assert "s3cret" not in repr(store)


def test_domain_and_history_settings_reach_the_delegate(monkeypatch: pytest.MonkeyPatch) -> None:
    store = rasa_tracker_store(monkeypatch, None)
    other = Domain.from_dict({"intents": ["bye"]})
    store.domain = other
    assert store.delegate.domain is other
    assert store.domain is other
    store.max_event_history = 5
    assert store.delegate.max_event_history == 5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mongodb://localhost:27017/rasa", "not supported"),
        ("dynamo://table", "not supported"),
        ("localhost:6379", "not supported"),
        ("sqlite://", "names no SQLite file"),
        ("postgresql://user@localhost:5432", "names no database"),
        ("redis://localhost:6379/zero", "database number"),
        ("redis://localhost:notaport/0", "not a valid URL"),
    ],
)
def test_bad_tracker_store_url_fails_at_startup(
    monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    monkeypatch.setenv(TRACKER_STORE_URL_ENV, url)
    with pytest.raises(StoreConfigError, match=message) as caught:
        # Through Rasa's own factory: the error must not be swallowed into in-memory.
        TrackerStore.create(tracker_endpoint(), domain=DOMAIN)
    assert TRACKER_STORE_URL_ENV in str(caught.value)


def test_bad_url_error_hides_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TRACKER_STORE_URL_ENV, "mysql://app:hunter2@db:3306/rasa")
    with pytest.raises(StoreConfigError) as caught:
        EnvTrackerStore(domain=DOMAIN)
    assert "hunter2" not in str(caught.value)
    assert "mysql://app:***@db:3306/rasa" in str(caught.value)


async def test_endpoints_yml_as_rasa_run_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    endpoints_file = tmp_path / "endpoints.yml"
    endpoints_file.write_text(
        "tracker_store:\n"
        "  type: rasa_ext.stores.EnvTrackerStore\n"
        "lock_store:\n"
        "  type: rasa_ext.stores.EnvLockStore\n"
    )
    monkeypatch.setenv(TRACKER_STORE_URL_ENV, f"sqlite:///{tmp_path / 'rasa.db'}")
    monkeypatch.delenv(LOCK_STORE_URL_ENV, raising=False)
    monkeypatch.delenv("SANIC_WORKERS", raising=False)
    endpoints = AvailableEndpoints.read_endpoints(str(endpoints_file))

    tracker_store = TrackerStore.create(endpoints.tracker_store)
    lock_store = LockStore.create(endpoints.lock_store)
    assert isinstance(tracker_store.delegate, SQLTrackerStore)
    assert isinstance(lock_store.delegate, InMemoryLockStore)
    try:
        # The agent sets the model's domain later and wraps the store in a fail-safe one.
        tracker_store.domain = DOMAIN
        wrapped = FailSafeTrackerStore(tracker_store)
        async with lock_store.lock("yml-sender", wait_time_in_seconds=0.01):
            await wrapped.save(conversation("yml-sender"))
        restored = await wrapped.retrieve("yml-sender")
        assert restored.get_slot("appliance") == "washer"
    finally:
        tracker_store.delegate.engine.dispose()


# -- lock store -------------------------------------------------------------------------


def rasa_lock_store(monkeypatch: pytest.MonkeyPatch, url: str | None, **kwargs) -> LockStore:
    if url is None:
        monkeypatch.delenv(LOCK_STORE_URL_ENV, raising=False)
    else:
        monkeypatch.setenv(LOCK_STORE_URL_ENV, url)
    store = LockStore.create(lock_endpoint(**kwargs))
    assert isinstance(store, EnvLockStore)
    return store


async def assert_lock_cycle(store: LockStore, conversation_id: str) -> None:
    first = store.issue_ticket(conversation_id)
    second = store.issue_ticket(conversation_id)
    assert second == first + 1
    lock = store.get_lock(conversation_id)
    assert lock is not None and lock.is_locked(second)
    assert store.is_someone_waiting(conversation_id)
    store.cleanup(conversation_id, first)
    assert not store.get_lock(conversation_id).is_locked(second)
    store.cleanup(conversation_id, second)
    assert store.get_lock(conversation_id) is None

    async with store.lock(conversation_id, lock_lifetime=10, wait_time_in_seconds=0.01) as held:
        assert held.conversation_id == conversation_id
        assert store.get_lock(conversation_id) is not None
    assert store.get_lock(conversation_id) is None


async def test_in_memory_lock_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANIC_WORKERS", raising=False)
    store = rasa_lock_store(monkeypatch, None)
    assert isinstance(store.delegate, InMemoryLockStore)
    await assert_lock_cycle(store, "conversation-1")


@pytest.mark.redis
async def test_redis_lock_store(
    monkeypatch: pytest.MonkeyPatch, redis_url: str, redis_key_prefix: str
) -> None:
    store = rasa_lock_store(monkeypatch, redis_url, key_prefix=redis_key_prefix)
    assert isinstance(store.delegate, RedisLockStore)
    client = redis.Redis.from_url(redis_url)
    try:
        store.issue_ticket("conversation-r")
        assert client.exists(f"{redis_key_prefix}:lock:conversation-r")
        store.delete_lock("conversation-r")
        await assert_lock_cycle(store, "conversation-r")
        assert not client.exists(f"{redis_key_prefix}:lock:conversation-r")
    finally:
        client.close()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    monkeypatch.delenv(LOCK_STORE_URL_ENV, raising=False)
    monkeypatch.delenv("SANIC_WORKERS", raising=False)
    yield monkeypatch


@pytest.mark.parametrize(
    "url", ["memcached://localhost:11211", "sqlite:///locks.db", "redis://localhost:6379/x"]
)
def test_bad_lock_store_url_fails_at_startup(clean_env: pytest.MonkeyPatch, url: str) -> None:
    clean_env.setenv(LOCK_STORE_URL_ENV, url)
    with pytest.raises(StoreConfigError, match=LOCK_STORE_URL_ENV):
        LockStore.create(lock_endpoint())


def test_in_memory_lock_store_refuses_several_workers(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SANIC_WORKERS", "4")
    with pytest.raises(StoreConfigError, match="SANIC_WORKERS=4"):
        LockStore.create(lock_endpoint())
