"""connector.store on SQLite and PostgreSQL: idempotent recording, compare-and-set claims."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from assistant.notifications import Notice
from assistant.storage import Storage
from connector.store import (
    DELIVERED,
    FAILED,
    PENDING,
    PLANNED,
    RECEIVED,
    SENDING,
    AttemptOutcome,
    DeliveryStore,
    NewCallback,
)

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(storage: Storage) -> DeliveryStore:
    return DeliveryStore(storage.engine)


def callback(message_id: str, device: str = "washer-1") -> NewCallback:
    return NewCallback(
        message_id=message_id,
        push_type="DEVICE_PUSH",
        device_id=device,
        body={"messageId": message_id, "push": {"pushType": "DEVICE_PUSH", "deviceId": device}},
    )


def notice(
    sender: str, device: str = "washer-1", text: str = "Your Washer has finished."
) -> Notice:
    return Notice(
        sender_id=sender,
        channel="callback",
        thinq_user="user-1",
        device_id=device,
        kind="push",
        response="utter_notify_washing_is_complete",
        params={"device": "Washer"},
        text=text,
    )


async def planned_row(store: DeliveryStore, message_id: str = "m1", sender: str = "s1") -> str:
    await store.record_callbacks([callback(message_id)], T0)
    rows = await store.plan_callbacks({message_id: [notice(sender)]}, T0, claim=False)
    return rows[0].id


async def test_record_callbacks_reports_only_new_message_ids(store: DeliveryStore) -> None:
    assert await store.record_callbacks([callback("m1"), callback("m2"), callback("m1")], T0) == {
        "m1",
        "m2",
    }
    # LG retried m1; m3 is new.
    assert await store.record_callbacks([callback("m1"), callback("m3")], T0) == {"m3"}
    stored = await store.load_callbacks(["m1", "m3", "nope"])
    assert set(stored) == {"m1", "m3"}
    assert stored["m1"].state == RECEIVED
    assert stored["m1"].received_at == T0
    assert stored["m1"].body["push"]["deviceId"] == "washer-1"
    assert await store.count_callbacks_by_state() == {RECEIVED: 3, PLANNED: 0}


async def test_concurrent_recording_of_one_message_id_reports_it_new_once(
    store: DeliveryStore,
) -> None:
    results = await asyncio.gather(
        *(store.record_callbacks([callback("m1")], T0) for _ in range(6))
    )
    assert sorted(len(r) for r in results) == [0, 0, 0, 0, 0, 1]


async def test_plan_inserts_claimed_rows_once_per_conversation(store: DeliveryStore) -> None:
    await store.record_callbacks([callback("m1")], T0)
    rows = await store.plan_callbacks({"m1": [notice("s1"), notice("s2"), notice("s1")]}, T0)
    assert sorted(r.sender_id for r in rows) == ["s1", "s2"]
    assert {(r.state, r.attempts, r.claimed_at) for r in rows} == {(SENDING, 1, T0)}
    assert len({r.id for r in rows}) == 2 and all(len(r.id) == 36 for r in rows)
    assert (await store.load_callbacks(["m1"]))["m1"].state == PLANNED

    # Planning the same callback again (a redelivered queue item) adds nothing.
    assert await store.plan_callbacks({"m1": [notice("s1"), notice("s2")]}, T0) == []
    assert len(await store.list_outbox(message_id="m1")) == 2
    assert await store.unfinished_for(["m1"]) != []


async def test_concurrent_planning_inserts_each_row_once(store: DeliveryStore) -> None:
    await store.record_callbacks([callback("m1")], T0)
    results = await asyncio.gather(
        *(store.plan_callbacks({"m1": [notice("s1"), notice("s2")]}, T0) for _ in range(4))
    )
    assert sorted(len(r) for r in results) == [0, 0, 0, 2]


async def test_claim_is_compare_and_set(store: DeliveryStore) -> None:
    row_id = await planned_row(store)
    results = await asyncio.gather(*(store.claim([row_id], T0) for _ in range(5)))
    winners = [r for r in results if r]
    assert len(winners) == 1
    claimed = winners[0][0]
    assert (claimed.state, claimed.attempts, claimed.claimed_at) == (SENDING, 1, T0)
    # Held: nobody else gets it, not even with a takeover window that it is inside of.
    assert await store.claim([row_id], T0 + timedelta(seconds=1)) == []
    assert await store.claim([row_id], T0, takeover_before=T0) == []
    # Its worker died: after reclaim_after another may take it over (a new attempt).
    later = T0 + timedelta(seconds=60)
    taken = await store.claim([row_id], later, takeover_before=later - timedelta(seconds=30))
    assert [(r.attempts, r.claimed_at) for r in taken] == [(2, later)]


async def test_claim_only_due_respects_next_attempt_at(store: DeliveryStore) -> None:
    row_id = await planned_row(store)
    claimed = (await store.claim([row_id], T0))[0]
    await store.finish(
        [AttemptOutcome(row_id, claimed.attempts, PENDING, "HTTP 503", T0 + timedelta(seconds=5))],
        T0,
    )
    assert await store.claim([row_id], T0 + timedelta(seconds=1), only_due=True) == []
    assert await store.claim([row_id], T0 + timedelta(seconds=5), only_due=True) != []


async def test_finish_records_outcomes_and_is_fenced_by_attempt(store: DeliveryStore) -> None:
    ids = [await planned_row(store, f"m{i}", "s1") for i in range(3)]
    claimed = {r.id: r for r in await store.claim(ids, T0)}
    later = T0 + timedelta(seconds=2)
    await store.finish(
        [
            AttemptOutcome(ids[0], claimed[ids[0]].attempts, DELIVERED),
            AttemptOutcome(ids[1], claimed[ids[1]].attempts, PENDING, "HTTP 503", later),
            AttemptOutcome(ids[2], claimed[ids[2]].attempts, FAILED, "HTTP 400: bad recipient"),
        ],
        T0,
    )
    delivered, retry, failed = [await store.get(i) for i in ids]
    assert (delivered.state, delivered.delivered_at) == (DELIVERED, T0)
    assert (retry.state, retry.next_attempt_at, retry.last_error) == (PENDING, later, "HTTP 503")
    assert (failed.state, failed.last_error) == (FAILED, "HTTP 400: bad recipient")

    # A stale outcome (attempt 1) for a row now on attempt 2 changes nothing.
    await store.claim([ids[1]], later)
    await store.finish([AttemptOutcome(ids[1], 1, FAILED, "late")], later)
    assert ((await store.get(ids[1])).state, (await store.get(ids[1])).attempts) == (SENDING, 2)
    # Delivered by anyone is delivered; a second delivery keeps the first time.
    await store.finish([AttemptOutcome(ids[0], 1, DELIVERED)], later)
    assert (await store.get(ids[0])).delivered_at == T0
    assert await store.count_by_state() == {PENDING: 0, SENDING: 1, DELIVERED: 1, FAILED: 1}


async def test_reserve_due_hands_each_row_to_one_scheduler(store: DeliveryStore) -> None:
    ids = [await planned_row(store, f"m{i}", "s1") for i in range(4)]
    claimed = await store.claim(ids, T0)
    await store.finish(
        [
            AttemptOutcome(r.id, r.attempts, PENDING, "down", T0 + timedelta(seconds=n))
            for n, r in enumerate(claimed)
        ],
        T0,
    )
    now = T0 + timedelta(seconds=2)  # three of the four are due
    hold = now + timedelta(seconds=30)
    results = await asyncio.gather(*(store.reserve_due(now, hold) for _ in range(3)))
    reserved = [i for r in results for i in r]
    assert len(reserved) == len(set(reserved)) == 3
    assert {(await store.get(i)).next_attempt_at for i in reserved} == {hold}
    assert await store.reserve_due(now, hold) == []
    # Reserved rows are still claimable by the worker the scheduler queued them for.
    assert len(await store.claim(reserved, now)) == 3


async def test_sweeper_queries(store: DeliveryStore) -> None:
    await store.record_callbacks([callback("old")], T0)
    await store.record_callbacks([callback("new")], T0 + timedelta(seconds=50))
    assert await store.stale_received(T0 + timedelta(seconds=30)) == ["old"]

    row_id = await planned_row(store, "m1")
    await store.claim([row_id], T0)
    assert await store.release_stale_sending(T0, T0) == []  # claimed at T0, not before
    now = T0 + timedelta(seconds=40)
    assert await store.release_stale_sending(now - timedelta(seconds=30), now) == [row_id]
    row = await store.get(row_id)
    assert (row.state, row.next_attempt_at, row.attempts) == (PENDING, now, 1)


async def test_list_outbox_filters_newest_first(store: DeliveryStore) -> None:
    await store.record_callbacks([callback("m1"), callback("m2")], T0)
    await store.plan_callbacks({"m1": [notice("s1"), notice("s2")]}, T0)
    await store.plan_callbacks({"m2": [notice("s1")]}, T0 + timedelta(seconds=1))
    assert [r.message_id for r in await store.list_outbox(sender_id="s1")] == ["m2", "m1"]
    assert len(await store.list_outbox(state=SENDING)) == 3
    assert await store.list_outbox(state=FAILED) == []
    assert len(await store.list_outbox(limit=1)) == 1
    with pytest.raises(ValueError, match="state must be one of"):
        await store.list_outbox(state="lost")


async def test_history_claims_are_compare_and_set(store: DeliveryStore) -> None:
    await store.record_callbacks([callback("m1")], T0)
    rows = await store.plan_callbacks({"m1": [notice("s1"), notice("s2")]}, T0)
    await store.finish([AttemptOutcome(r.id, r.attempts, DELIVERED) for r in rows], T0)
    since = T0 - timedelta(hours=1)
    results = await asyncio.gather(*(store.claim_history(since, T0) for _ in range(3)))
    assert sorted(len(r) for r in results) == [0, 0, 2]
    assert await store.claim_history(since, T0) == []
    await store.release_history([rows[0].id])
    again = await store.claim_history(since, T0 + timedelta(seconds=1))
    assert [r.id for r in again] == [rows[0].id]
    # Too old to be worth recording any more.
    await store.release_history([rows[0].id])
    assert await store.claim_history(T0 + timedelta(seconds=1), T0) == []


async def test_the_oldest_waiting_message_and_callback(store: DeliveryStore) -> None:
    assert await store.oldest_waiting() == (None, None)
    await store.record_callbacks([callback("m0")], T0)
    assert await store.oldest_waiting() == (None, T0)
    await planned_row(store, "m1")  # planned at T0: a pending message, its callback done
    message, unplanned = await store.oldest_waiting()
    assert unplanned == T0  # m0 is still waiting to be planned
    assert message is not None and message.tzinfo is not None
