"""AtomicRedisLockStore on a real Redis: ticket changes made by several Rasa servers at
once neither reuse a ticket nor drop one, and two servers never hold one conversation's
lock together."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from rasa.core.lock import TicketLock

from rasa_ext.redis_lock import AtomicRedisLockStore

pytestmark = pytest.mark.redis


def new_store(url: str, prefix: str) -> AtomicRedisLockStore:
    """One Rasa server's lock store (its own Redis connection pool)."""
    parts = urlsplit(url)
    return AtomicRedisLockStore(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 6379,
        db=int(parts.path.lstrip("/") or 0),
        key_prefix=prefix,
    )


@pytest.fixture
def stores(redis_url: str, redis_key_prefix: str) -> Iterator[list[AtomicRedisLockStore]]:
    made = [new_store(redis_url, redis_key_prefix) for _ in range(4)]
    yield made
    for store in made:
        store.red.close()


def test_tickets_issued_at_once_by_several_servers_are_all_distinct_and_kept(
    stores: list[AtomicRedisLockStore],
) -> None:
    per_store = 25
    with concurrent.futures.ThreadPoolExecutor(len(stores)) as pool:
        issued = list(
            pool.map(
                lambda store: [store.issue_ticket("busy", 60) for _ in range(per_store)], stores
            )
        )
    numbers = [n for batch in issued for n in batch]
    assert sorted(numbers) == list(range(len(stores) * per_store))
    lock = stores[0].get_lock("busy")
    assert lock is not None
    assert sorted(t.number for t in lock.tickets) == sorted(numbers)


def test_a_change_by_another_server_between_read_and_write_is_not_overwritten(
    stores: list[AtomicRedisLockStore],
) -> None:
    first, other = stores[0], stores[1]
    first.issue_ticket("raced", 60)
    original_get = first.get_lock
    interfered = []

    # The other server issues a ticket right after the first one has read the queue: the
    # first one's write must be refused by Redis and the change redone on the new queue.
    real_from_dict = TicketLock.from_dict

    started = []

    def from_dict_then_interfere(data: dict) -> TicketLock:
        lock = real_from_dict(data)
        if not started:
            started.append(True)
            interfered.append(other.issue_ticket("raced", 60))
        return lock

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TicketLock, "from_dict", staticmethod(from_dict_then_interfere))
        mine = first.issue_ticket("raced", 60)
    assert interfered == [1]
    assert mine == 2
    assert sorted(t.number for t in original_get("raced").tickets) == [0, 1, 2]


def test_cleanup_keeps_the_queue_when_a_ticket_was_issued_meanwhile(
    stores: list[AtomicRedisLockStore],
) -> None:
    first, other = stores[0], stores[1]
    ticket = first.issue_ticket("handover", 60)
    waiting = other.issue_ticket("handover", 60)
    first.cleanup("handover", ticket)
    lock = other.get_lock("handover")
    assert lock is not None and not lock.is_locked(waiting)
    other.cleanup("handover", waiting)
    assert other.get_lock("handover") is None


async def test_two_servers_never_hold_one_conversations_lock_together(
    stores: list[AtomicRedisLockStore],
) -> None:
    holding: list[int] = []
    overlaps: list[tuple[int, ...]] = []
    turns: list[int] = []

    async def turn(server: int) -> None:
        async with stores[server].lock("one-chat", lock_lifetime=30, wait_time_in_seconds=0.005):
            holding.append(server)
            if len(holding) > 1:
                overlaps.append(tuple(holding))
            await asyncio.sleep(0.01)
            turns.append(server)
            holding.remove(server)

    await asyncio.gather(*(turn(i % len(stores)) for i in range(16)))
    assert overlaps == []
    assert len(turns) == 16
    assert stores[0].get_lock("one-chat") is None


def test_the_stores_prefix_keeps_conversations_of_other_deployments_apart(
    redis_url: str, redis_key_prefix: str
) -> None:
    mine = new_store(redis_url, redis_key_prefix)
    theirs = new_store(redis_url, redis_key_prefix + "other")
    try:
        assert mine.issue_ticket("shared-id", 60) == 0
        assert theirs.issue_ticket("shared-id", 60) == 0
        client = redis.Redis.from_url(redis_url)
        assert client.exists(f"{redis_key_prefix}:lock:shared-id")
        client.close()
    finally:
        theirs.delete_lock("shared-id")
        mine.red.close()
        theirs.red.close()


async def test_turns_queued_behind_a_dead_servers_ticket_go_on_in_order(
    stores: list[AtomicRedisLockStore],
) -> None:
    # A server took a ticket and died: nobody will finish it; it must expire, and the turns
    # queued behind it, which wait longer than their own lifetime, must keep their places.
    dead, live = stores[0], stores[1]
    dead.issue_ticket("crashed", 0.6)
    served: list[str] = []

    async def turn(name: str) -> None:
        async with live.lock("crashed", lock_lifetime=0.6, wait_time_in_seconds=0.05):
            served.append(name)
            await asyncio.sleep(0.4)

    started = time.monotonic()
    await asyncio.gather(turn("first"), turn("second"), turn("third"))
    assert served == ["first", "second", "third"]
    assert time.monotonic() - started >= 0.6 + 3 * 0.4  # the dead ticket held until it expired
    assert live.get_lock("crashed") is None


async def test_a_turn_longer_than_the_lifetime_keeps_its_conversation(
    stores: list[AtomicRedisLockStore],
) -> None:
    # The lifetime bounds how long a dead server blocks a conversation, not how long a live
    # turn may take: the running turn renews its ticket.
    events: list[tuple[str, str]] = []

    async def turn(store: AtomicRedisLockStore, name: str, seconds: float) -> None:
        async with store.lock("long", lock_lifetime=0.3, wait_time_in_seconds=0.02):
            events.append(("in", name))
            await asyncio.sleep(seconds)
            events.append(("out", name))

    async def later(coroutine: Any) -> None:
        await asyncio.sleep(0.05)
        await coroutine

    await asyncio.gather(turn(stores[0], "long", 1.0), later(turn(stores[1], "next", 0.01)))
    assert events == [("in", "long"), ("out", "long"), ("in", "next"), ("out", "next")]


async def test_messages_of_one_conversation_are_served_in_arrival_order(
    stores: list[AtomicRedisLockStore],
) -> None:
    served: list[int] = []

    async def turn(number: int) -> None:
        async with stores[0].lock("ordered", lock_lifetime=30, wait_time_in_seconds=0.005):
            served.append(number)
            await asyncio.sleep(0.002)

    await asyncio.gather(*(turn(n) for n in range(20)))
    assert served == list(range(20))


async def test_a_cancelled_waiting_turn_gives_its_place_up_at_once(
    stores: list[AtomicRedisLockStore],
) -> None:
    store = stores[0]
    release = asyncio.Event()

    async def holder() -> None:
        async with store.lock("cancelled", lock_lifetime=30, wait_time_in_seconds=0.01):
            await release.wait()

    async def waiter() -> None:
        async with store.lock("cancelled", lock_lifetime=30, wait_time_in_seconds=0.01):
            raise AssertionError("the cancelled turn ran")

    holding = asyncio.create_task(holder())
    await asyncio.sleep(0.05)
    waiting = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    assert len(store.get_lock("cancelled").tickets) == 2
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.05)  # the shielded cleanup's transaction
    assert len(store.get_lock("cancelled").tickets) == 1  # only the holder's
    release.set()
    await holding
    assert store.get_lock("cancelled") is None
