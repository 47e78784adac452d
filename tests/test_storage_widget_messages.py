"""WidgetMessageRepository on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from assistant.storage import Storage, WidgetMessage, WidgetMessageRepository, create_engine

ALICE = "widget:alice"
BOB = "widget:bob"
NOW = datetime.now(timezone.utc) - timedelta(hours=1)
BUTTONS = [
    {"title": "Yes", "payload": "/affirm"},
    {"title": "No", "payload": "/deny"},
]


async def test_append_returns_the_stored_message(storage: Storage) -> None:
    log = storage.widget_messages
    at = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    message = await log.append(ALICE, "bot", "Start the washer?", BUTTONS, now=at)
    assert isinstance(message, WidgetMessage)
    assert message.id > 0
    assert (message.sender_id, message.role, message.text) == (ALICE, "bot", "Start the washer?")
    assert message.buttons == tuple(BUTTONS)
    assert message.proactive is False
    assert message.created_at == at and message.created_at.tzinfo == timezone.utc
    # What is read back is exactly what append returned.
    assert await log.recent(ALICE) == [message]
    assert message.to_json() == {
        "id": message.id,
        "role": "bot",
        "text": "Start the washer?",
        "buttons": BUTTONS,
        "proactive": False,
        "created_at": "2026-03-01T07:30:15.123Z",
    }


async def test_defaults_and_button_normalisation(storage: Storage) -> None:
    log = storage.widget_messages
    plain = await log.append(ALICE, "user", "hi")
    assert plain.buttons == () and plain.proactive is False
    assert plain.created_at.tzinfo is not None
    assert abs(plain.created_at - datetime.now(timezone.utc)) < timedelta(minutes=1)
    assert plain.to_json()["buttons"] == [] and plain.to_json()["created_at"].endswith("Z")
    # Keys other than title/payload are dropped; tuples and other mappings are accepted.
    extra = await log.append(
        ALICE, "bot", "Pick one", ({"title": "Ok", "payload": "/ok", "url": "x"},), proactive=True
    )
    [_, stored] = await log.recent(ALICE)
    assert stored.buttons == ({"title": "Ok", "payload": "/ok"},) == extra.buttons
    assert stored.proactive is True
    unicode = await log.append(
        ALICE, "bot", "Kühlschrank: 8 °C ❄️", [{"title": "Ja ✓", "payload": "/ja"}]
    )
    assert (await log.after(ALICE, extra.id)) == [unicode]


async def test_recent_is_the_newest_oldest_first(storage: Storage) -> None:
    log = storage.widget_messages
    appended = [
        await log.append(ALICE, "user" if i % 2 else "bot", f"m{i}", now=NOW) for i in range(6)
    ]
    ids = [m.id for m in appended]
    assert ids == sorted(ids) and len(set(ids)) == 6
    assert [m.text for m in await log.recent(ALICE)] == [f"m{i}" for i in range(6)]
    assert [m.text for m in await log.recent(ALICE, limit=4)] == ["m2", "m3", "m4", "m5"]
    assert [m.text for m in await log.recent(ALICE, limit=1)] == ["m5"]
    assert await log.recent(BOB) == []


async def test_order_is_by_id_not_by_creation_time(storage: Storage) -> None:
    log = storage.widget_messages
    await log.append(ALICE, "bot", "second in time", now=NOW + timedelta(minutes=1))
    await log.append(ALICE, "bot", "first in time", now=NOW)
    assert [m.text for m in await log.recent(ALICE)] == ["second in time", "first in time"]


async def test_after_pages_through_what_was_missed(storage: Storage) -> None:
    log = storage.widget_messages
    appended = [await log.append(ALICE, "bot", f"m{i}") for i in range(7)]
    assert await log.after(ALICE, 0) == appended
    assert await log.after(ALICE, appended[2].id) == appended[3:]
    assert await log.after(ALICE, appended[-1].id) == []
    # Paging: each page starts after the last id seen.
    first = await log.after(ALICE, 0, limit=3)
    second = await log.after(ALICE, first[-1].id, limit=3)
    third = await log.after(ALICE, second[-1].id, limit=3)
    assert first + second + third == appended
    assert len(third) == 1


async def test_senders_never_see_each_others_messages(storage: Storage) -> None:
    log = storage.widget_messages
    a1 = await log.append(ALICE, "user", "alice 1")
    b1 = await log.append(BOB, "bot", "bob 1")
    a2 = await log.append(ALICE, "bot", "alice 2")
    b2 = await log.append(BOB, "bot", "bob 2")
    assert await log.recent(ALICE) == [a1, a2]
    assert await log.recent(BOB) == [b1, b2]
    assert await log.after(ALICE, 0) == [a1, a2]
    assert await log.after(BOB, a1.id) == [b1, b2]
    assert await log.unread_count(ALICE) == 1
    assert await log.unread_count(BOB) == 2
    # Alice marking Bob's newest id as read only reaches her own newest message.
    assert await log.mark_read(ALICE, b2.id) == a2.id
    assert await log.last_read(BOB) == 0
    assert await log.unread_count(BOB) == 2
    assert await log.unread_count(ALICE) == 0


async def test_append_is_idempotent_by_key(storage: Storage) -> None:
    log = storage.widget_messages
    first = await log.append(BOB, "bot", "Washer done.", key="outbox-1", proactive=True)
    await log.append(BOB, "user", "thanks")
    again = await log.append(BOB, "bot", "Washer done (redelivered).", key="outbox-1")
    assert again == first  # the stored message: same id, text, proactive flag, time
    assert [m.text for m in await log.recent(BOB)] == ["Washer done.", "thanks"]
    # Messages without a key are never deduplicated.
    await log.append(BOB, "user", "thanks")
    assert len(await log.recent(BOB)) == 3


async def test_a_key_of_another_sender_is_refused(storage: Storage) -> None:
    log = storage.widget_messages
    await log.append(ALICE, "bot", "for Alice", key="outbox-1")
    with pytest.raises(ValueError, match="another conversation"):
        await log.append(BOB, "bot", "for Bob", key="outbox-1")
    assert await log.recent(BOB) == []


async def test_concurrent_appends_of_one_key_store_one_row(
    storage: Storage, database_url: str
) -> None:
    """Appends of the same key at once, from two "processes" (engines of their own)."""
    other_engine = create_engine(database_url)
    try:
        logs = [storage.widget_messages, WidgetMessageRepository(other_engine)]
        results = await asyncio.gather(
            *(
                logs[i % 2].append(ALICE, "bot", "Dryer done.", key="outbox-7", proactive=True)
                for i in range(10)
            ),
            *(logs[i % 2].append(ALICE, "user", f"u{i}") for i in range(4)),
            *(logs[i % 2].append(BOB, "bot", "Dryer done.", key=f"b{i}") for i in range(4)),
        )
    finally:
        await other_engine.dispose()
    same_key = results[:10]
    assert len({m.id for m in same_key}) == 1
    assert all(m == same_key[0] for m in same_key)
    alice = await storage.widget_messages.recent(ALICE)
    assert [m.text for m in alice].count("Dryer done.") == 1
    assert len(alice) == 5
    assert len(await storage.widget_messages.recent(BOB)) == 4
    ids = [m.id for m in results]
    assert len(set(ids)) == 1 + 4 + 4


async def test_append_trims_the_senders_log(storage: Storage) -> None:
    log = WidgetMessageRepository(storage.engine, keep_per_sender=3)
    bob = await log.append(BOB, "bot", "for Bob")
    appended = [await log.append(ALICE, "bot", f"m{i}") for i in range(5)]
    assert await log.recent(ALICE) == appended[2:]
    assert await log.after(ALICE, 0) == appended[2:]
    assert await log.recent(BOB) == [bob]  # another sender's log is not trimmed
    # A redelivery of a kept key inserts nothing and so trims nothing.
    keyed = await log.append(ALICE, "bot", "keyed", key="k")
    assert await log.append(ALICE, "bot", "keyed", key="k") == keyed
    assert await log.recent(ALICE) == [*appended[3:], keyed]


async def test_the_default_cap_is_two_hundred(storage: Storage) -> None:
    log = storage.widget_messages
    appended = [await log.append(ALICE, "user", f"m{i}") for i in range(203)]
    assert await log.recent(ALICE, limit=1000) == appended[3:]


async def test_mark_read_is_monotonic_and_clamped(storage: Storage) -> None:
    log = storage.widget_messages
    assert await log.last_read(ALICE) == 0
    # Nothing to read yet: no marker is stored.
    assert await log.mark_read(ALICE, 5) == 0
    assert await log.last_read(ALICE) == 0
    m = [await log.append(ALICE, "bot", f"m{i}") for i in range(4)]
    assert await log.mark_read(ALICE, m[2].id) == m[2].id
    assert await log.mark_read(ALICE, m[0].id) == m[2].id  # never moves back
    assert await log.mark_read(ALICE, 0) == m[2].id
    assert await log.last_read(ALICE) == m[2].id
    # Beyond the newest message: clamped to it.
    assert await log.mark_read(ALICE, m[3].id + 1000) == m[3].id
    assert await log.last_read(ALICE) == m[3].id
    newer = await log.append(ALICE, "bot", "new")
    assert await log.mark_read(ALICE, newer.id) == newer.id


async def test_unread_count_counts_bot_messages_after_the_marker(storage: Storage) -> None:
    log = storage.widget_messages
    assert await log.unread_count(ALICE) == 0
    await log.append(ALICE, "user", "start the washer")
    reply = await log.append(ALICE, "bot", "Started.")
    assert await log.unread_count(ALICE) == 1  # the user's own message is never unread
    await log.mark_read(ALICE, reply.id)
    assert await log.unread_count(ALICE) == 0
    await log.append(ALICE, "bot", "Washer done.", proactive=True)
    await log.append(ALICE, "user", "thanks")
    last = await log.append(ALICE, "bot", "You're welcome.")
    assert await log.unread_count(ALICE) == 2
    await log.mark_read(ALICE, last.id)
    assert await log.unread_count(ALICE) == 0


async def test_concurrent_mark_reads_keep_the_highest(storage: Storage) -> None:
    log = storage.widget_messages
    m = [await log.append(ALICE, "bot", f"m{i}") for i in range(8)]
    await asyncio.gather(*(log.mark_read(ALICE, message.id) for message in reversed(m)))
    assert await log.last_read(ALICE) == m[-1].id


async def test_prune_deletes_old_messages_and_orphaned_markers(storage: Storage) -> None:
    log = storage.widget_messages  # keep_days=30
    now = NOW + timedelta(hours=1)
    old = now - timedelta(days=30, seconds=1)
    edge = await log.append(ALICE, "bot", "exactly 30 days old", now=now - timedelta(days=30))
    await log.append(ALICE, "bot", "old", now=old)
    fresh = await log.append(ALICE, "bot", "fresh", now=now)
    await log.mark_read(ALICE, fresh.id)
    bob_old = await log.append(BOB, "bot", "old for Bob", now=old - timedelta(days=100))
    await log.mark_read(BOB, bob_old.id)

    # Alice's old message, Bob's old message and Bob's now useless read marker.
    assert await log.prune(now=now) == 3
    assert await log.prune(now=now) == 0
    assert await log.recent(ALICE) == [edge, fresh]
    assert await log.last_read(ALICE) == fresh.id  # Alice still has messages
    assert await log.recent(BOB) == []
    assert await log.last_read(BOB) == 0


async def test_prune_uses_keep_days_and_the_current_time(storage: Storage) -> None:
    log = WidgetMessageRepository(storage.engine, keep_days=1)
    await log.append(ALICE, "bot", "two days old", now=datetime.now(timezone.utc) - timedelta(2))
    kept = await log.append(ALICE, "bot", "an hour old", now=NOW)
    assert await log.prune() == 1
    assert await log.recent(ALICE) == [kept]


async def test_ids_are_never_reused(storage: Storage) -> None:
    log = storage.widget_messages
    first = await log.append(ALICE, "bot", "one")
    second = await log.append(ALICE, "bot", "two")
    # Everything (including the newest row) is pruned...
    assert await log.prune(now=datetime.now(timezone.utc) + timedelta(days=60)) == 2
    # ...and a new message still gets an id the browser has not seen.
    third = await log.append(ALICE, "bot", "three")
    assert third.id > second.id > first.id
    assert await log.after(ALICE, second.id) == [third]


async def test_invalid_input_is_refused(storage: Storage) -> None:
    log = storage.widget_messages
    bad_appends = [
        {"sender_id": ""},
        {"sender_id": "x" * 256},
        {"sender_id": None},
        {"role": "system"},
        {"role": "Bot"},
        {"text": ""},
        {"text": "   "},
        {"text": "x" * 4001},
        {"text": None},
        {"buttons": "Yes"},
        {"buttons": {"title": "Yes", "payload": "/affirm"}},
        {"buttons": ["Yes"]},
        {"buttons": [{"title": "Yes"}]},
        {"buttons": [{"payload": "/affirm"}]},
        {"buttons": [{"title": "", "payload": "/affirm"}]},
        {"buttons": [{"title": 1, "payload": "/affirm"}]},
        {"buttons": [{"title": "Yes", "payload": None}]},
        {"buttons": [{"title": "x" * 81, "payload": "/affirm"}]},
        {"buttons": [{"title": "Yes", "payload": "/" * 1001}]},
        {"buttons": [{"title": f"b{i}", "payload": f"/b{i}"} for i in range(11)]},
        {"key": ""},
        {"key": "k" * 129},
        {"proactive": "yes"},
        {"now": datetime(2026, 1, 1)},
    ]
    for bad in bad_appends:
        arguments = {"sender_id": ALICE, "role": "bot", "text": "hello", **bad}
        with pytest.raises(ValueError):
            await log.append(**arguments)  # type: ignore[arg-type]
    assert await log.recent(ALICE) == []

    # The limits themselves are allowed.
    await log.append(
        "x" * 255,
        "bot",
        "x" * 4000,
        [{"title": "t" * 80, "payload": "p" * 1000}] * 10,
        key="k" * 128,
    )

    with pytest.raises(ValueError):
        await log.recent("")
    for limit in (0, -1, 1001, True, 1.5):
        with pytest.raises(ValueError):
            await log.recent(ALICE, limit=limit)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            await log.after(ALICE, 0, limit=limit)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await log.after(ALICE, -1)
    with pytest.raises(ValueError):
        await log.mark_read(ALICE, -1)
    with pytest.raises(ValueError):
        await log.mark_read(ALICE, "3")  # type: ignore[arg-type]
    for method in (log.last_read, log.unread_count):
        with pytest.raises(ValueError):
            await method("")
    with pytest.raises(ValueError):
        await log.prune(now=datetime(2026, 1, 1))
    for bad_settings in ({"keep_per_sender": 0}, {"keep_days": 0}, {"keep_days": -3}):
        with pytest.raises(ValueError):
            WidgetMessageRepository(storage.engine, **bad_settings)


async def test_storage_opens_the_widget_log(storage: Storage) -> None:
    assert isinstance(storage.widget_messages, WidgetMessageRepository)
    assert "widget_messages" not in repr(storage)
