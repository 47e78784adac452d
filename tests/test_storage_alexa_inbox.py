"""AlexaInboxRepository on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from assistant.storage import AlexaInboxRepository, Storage, create_engine
from assistant.storage.alexa_inbox import LATE_REPLY, NOTIFICATION

ALICE = "alexa:amzn1.ask.account.ALICE"
BOB = "alexa:amzn1.ask.account.BOB"
# Recent: messages older than keep_days (7) are no longer read out.
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


async def test_add_is_idempotent_by_key(storage: Storage) -> None:
    inbox = storage.alexa_inbox
    assert await inbox.add("outbox-1", ALICE, "The Washer has finished.", NOTIFICATION) is True
    assert await inbox.add("outbox-1", ALICE, "The Washer has finished.", NOTIFICATION) is False
    assert await inbox.count(ALICE) == 1
    [message] = await inbox.take_all(ALICE)
    assert (message.key, message.sender_id, message.kind) == ("outbox-1", ALICE, NOTIFICATION)
    assert message.text == "The Washer has finished."
    assert message.created_at.tzinfo is not None


async def test_take_all_is_oldest_first_per_sender_and_removes_them(storage: Storage) -> None:
    inbox = storage.alexa_inbox
    # Added out of order; two in the same instant keep the order they were added in.
    await inbox.add("b", ALICE, "second", now=T0 + timedelta(seconds=1))
    await inbox.add("a", ALICE, "first", now=T0)
    await inbox.add("c", ALICE, "third", LATE_REPLY, now=T0 + timedelta(seconds=1))
    await inbox.add("z", BOB, "for Bob", now=T0)

    assert await inbox.count(ALICE) == 3
    taken = await inbox.take_all(ALICE)
    assert [m.text for m in taken] == ["first", "second", "third"]
    assert [m.kind for m in taken] == [NOTIFICATION, NOTIFICATION, LATE_REPLY]
    assert await inbox.take_all(ALICE) == []
    assert await inbox.count(ALICE) == 0
    # Another sender's messages are neither read nor removed.
    assert [m.text for m in await inbox.take_all(BOB)] == ["for Bob"]


async def test_take_all_with_a_limit_leaves_the_newer_ones(storage: Storage) -> None:
    inbox = storage.alexa_inbox
    for i in range(7):
        await inbox.add(f"k{i}", ALICE, f"message {i}", now=T0 + timedelta(minutes=i))
    assert [m.text for m in await inbox.take_all(ALICE, limit=5)] == [
        f"message {i}" for i in range(5)
    ]
    assert await inbox.count(ALICE) == 2
    assert [m.text for m in await inbox.take_all(ALICE, limit=5)] == ["message 5", "message 6"]


async def test_a_key_once_taken_can_be_added_again_only_as_new(storage: Storage) -> None:
    # The key guards against a redelivery while the message waits; after it was read
    # the outbox row is delivered and is not handed over again.
    inbox = storage.alexa_inbox
    await inbox.add("k", ALICE, "once")
    await inbox.take_all(ALICE)
    assert await inbox.add("k", ALICE, "once") is True


async def test_invalid_input_is_refused(storage: Storage) -> None:
    inbox = storage.alexa_inbox
    with pytest.raises(ValueError):
        await inbox.add("k", ALICE, "   ")
    with pytest.raises(ValueError):
        await inbox.add("k", ALICE, "text", kind="email")
    with pytest.raises(ValueError):
        await inbox.add("k" * 129, ALICE, "text")
    with pytest.raises(ValueError):
        await inbox.add("k", "", "text")
    with pytest.raises(ValueError):
        await inbox.add("k", ALICE, "text", now=datetime(2025, 1, 1))
    assert await inbox.take_all(ALICE, limit=0) == []


async def test_concurrent_takers_get_each_message_exactly_once(
    storage: Storage, database_url: str
) -> None:
    """Two "processes" (engines of their own) and several launches in each, all at once."""
    seeding = AlexaInboxRepository(storage.engine, keep_per_sender=60)  # above the cap of 20
    for i in range(60):
        await seeding.add(f"k{i:02}", ALICE, f"message {i:02}", now=T0)
    other_engine = create_engine(database_url)
    try:
        repositories = [storage.alexa_inbox, AlexaInboxRepository(other_engine)]

        async def launch(repository: AlexaInboxRepository, limit: int) -> list[str]:
            got: list[str] = []
            while taken := await repository.take_all(ALICE, limit=limit):
                got += [m.key for m in taken]
            return got

        # Small batches, so the takers' transactions overlap many times over.
        results = await asyncio.gather(
            *(launch(repositories[n % 2], limit) for n, limit in enumerate([1, 2, 3, 1, 2, 3]))
        )
    finally:
        await other_engine.dispose()
    everything = [key for got in results for key in got]
    assert len(everything) == len(set(everything)) == 60  # none twice, none lost
    assert await storage.alexa_inbox.count(ALICE) == 0
    for got in results:
        assert got == sorted(got)  # each caller heard its share oldest first


# -- caps and expiry ------------------------------------------------------------------


async def test_add_trims_the_senders_inbox_to_the_newest(storage: Storage) -> None:
    inbox = AlexaInboxRepository(storage.engine, keep_per_sender=3)
    await inbox.add("bob", BOB, "for Bob", now=T0)
    for i in range(5):
        assert await inbox.add(f"k{i}", ALICE, f"message {i}", now=T0 + timedelta(minutes=i))
    assert await inbox.count(ALICE) == 3
    assert await inbox.count(BOB) == 1  # another sender's inbox is not trimmed
    assert [m.text for m in await inbox.take_all(ALICE)] == [f"message {i}" for i in (2, 3, 4)]


async def test_trimming_keeps_the_newest_by_creation_time(storage: Storage) -> None:
    inbox = AlexaInboxRepository(storage.engine, keep_per_sender=2)
    await inbox.add("late", ALICE, "newest", now=T0 + timedelta(minutes=5))
    await inbox.add("early", ALICE, "oldest", now=T0)
    await inbox.add("middle", ALICE, "middle", now=T0 + timedelta(minutes=1))
    assert [m.text for m in await inbox.take_all(ALICE)] == ["middle", "newest"]


async def test_the_default_cap_is_twenty(storage: Storage) -> None:
    for i in range(23):
        await storage.alexa_inbox.add(f"k{i:02}", ALICE, f"message {i:02}")
    assert await storage.alexa_inbox.count(ALICE) == 20
    taken = await storage.alexa_inbox.take_all(ALICE)
    assert [m.key for m in taken] == [f"k{i:02}" for i in range(3, 23)]


async def test_a_redelivery_does_not_trim(storage: Storage) -> None:
    inbox = AlexaInboxRepository(storage.engine, keep_per_sender=2)
    await inbox.add("a", ALICE, "a", now=T0)
    await inbox.add("b", ALICE, "b", now=T0 + timedelta(minutes=1))
    assert await inbox.add("a", ALICE, "a", now=T0 + timedelta(minutes=2)) is False
    assert [m.key for m in await inbox.take_all(ALICE)] == ["a", "b"]


async def test_take_all_drops_expired_messages_unread(storage: Storage) -> None:
    inbox = storage.alexa_inbox  # keep_days=7
    now = T0 + timedelta(hours=1)
    week = timedelta(days=7)
    await inbox.add("stale", ALICE, "washer done last week", now=now - week - timedelta(seconds=1))
    await inbox.add("edge", ALICE, "exactly a week old", now=now - week)
    await inbox.add("fresh", ALICE, "dryer done", now=now - timedelta(minutes=1))
    await inbox.add("bob-stale", BOB, "old news for Bob", now=now - week - timedelta(days=1))
    assert await inbox.count(ALICE, now=now) == 2  # the expired one no longer counts

    taken = await inbox.take_all(ALICE, limit=1, now=now)
    assert [m.key for m in taken] == ["edge"]
    # The expired message was deleted, not just skipped: even when read as of a time at
    # which it was fresh, it is gone. The fresh one is still there.
    assert [m.key for m in await inbox.take_all(ALICE, now=now - week)] == ["fresh"]
    # Bob's expired message is left to prune(): take_all only touches its own sender.
    assert await inbox.take_all(BOB, now=now - week) != []


async def test_take_all_expires_by_the_repositorys_keep_days(storage: Storage) -> None:
    inbox = AlexaInboxRepository(storage.engine, keep_days=1)
    now = T0 + timedelta(hours=1)
    await inbox.add("two-days", ALICE, "old", now=now - timedelta(days=2))
    await inbox.add("an-hour", ALICE, "new", now=now - timedelta(hours=1))
    assert [m.key for m in await inbox.take_all(ALICE, now=now)] == ["an-hour"]
    assert await inbox.count(ALICE, now=now - timedelta(days=3)) == 0


async def test_prune_deletes_expired_messages_of_every_sender(storage: Storage) -> None:
    inbox = storage.alexa_inbox
    now = T0 + timedelta(hours=1)
    old = now - timedelta(days=8)
    await inbox.add("a-old", ALICE, "old", now=old)
    await inbox.add("a-new", ALICE, "new", now=now)
    await inbox.add("b-old-1", BOB, "old", now=old)
    await inbox.add("b-old-2", BOB, "older", now=old - timedelta(days=30))
    assert await inbox.prune(now=now) == 3
    assert await inbox.prune(now=now) == 0
    # As of a time when they were all fresh, only the new one is left.
    assert await inbox.count(ALICE, now=old) == 1
    assert await inbox.count(BOB, now=old - timedelta(days=30)) == 0
    # Default now: today's messages are not expired.
    assert await inbox.prune() == 0
    assert [m.key for m in await inbox.take_all(ALICE)] == ["a-new"]


async def test_caps_and_expiry_settings_are_checked(storage: Storage) -> None:
    for bad in ({"keep_per_sender": 0}, {"keep_days": 0}, {"keep_days": True}):
        with pytest.raises(ValueError):
            AlexaInboxRepository(storage.engine, **bad)
    with pytest.raises(ValueError):
        await storage.alexa_inbox.prune(now=datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        await storage.alexa_inbox.take_all(ALICE, now=datetime(2025, 1, 1))


async def test_concurrent_adds_for_one_sender_trim_without_deadlocks(
    storage: Storage, database_url: str
) -> None:
    """Adds, takes and prunes at once from two "processes", with a small cap."""
    other_engine = create_engine(database_url)
    try:
        inboxes = [
            AlexaInboxRepository(storage.engine, keep_per_sender=5),
            AlexaInboxRepository(other_engine, keep_per_sender=5),
        ]
        adds = [
            inboxes[i % 2].add(f"k{i:02}", ALICE, f"message {i:02}", now=T0 + timedelta(seconds=i))
            for i in range(40)
        ]
        others = [inboxes[i % 2].prune() for i in range(4)]
        results = await asyncio.gather(*adds, *others)
    finally:
        await other_engine.dispose()
    assert all(results[:40])
    assert await storage.alexa_inbox.count(ALICE) == 5
    taken = await storage.alexa_inbox.take_all(ALICE)
    assert [m.key for m in taken] == [f"k{i:02}" for i in range(35, 40)]
