"""AlexaInboxRepository on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from assistant.storage import AlexaInboxRepository, Storage, create_engine
from assistant.storage.alexa_inbox import LATE_REPLY, NOTIFICATION

ALICE = "alexa:amzn1.ask.account.ALICE"
BOB = "alexa:amzn1.ask.account.BOB"
T0 = datetime(2025, 1, 1, 12, 0, tzinfo=timezone.utc)


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
    for i in range(60):
        await storage.alexa_inbox.add(f"k{i:02}", ALICE, f"message {i:02}", now=T0)
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
