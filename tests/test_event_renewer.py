"""The event-subscription renewer against the real simulator over HTTP, on SQLite and on
PostgreSQL: first subscription, renewal before expiry on the simulated clock, renewal
across a restart (graceful and not), one renewer among several, failures and backoff,
and the simulator letting a subscription lapse when nobody renews it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from assistant.settings import EventSettings, SettingsError, load_event_settings
from assistant.storage import Storage
from assistant.storage.db import create_engine, create_schema
from assistant.storage.device_states import LeaseRepository
from assistant.storage.models import utcnow
from connector.renewer import LEASE_NAME
from lgcloud.call_budget import CallBudget
from tests.event_support import (
    HOUR,
    SENDER,
    Rig,
    event_rig,  # noqa: F401 - fixture, found by name
    start_receiver,
    wait_for,
)

MARGIN = 600  # seconds, the default EVENT_RENEW_MARGIN_SECONDS


@pytest.fixture
async def linked(rig: Rig) -> AsyncIterator[Rig]:
    """The demo user linked (one sender) and a connector taking the callbacks."""
    await rig.link()
    rig.service = await start_receiver(rig)
    yield rig


async def demo_devices(rig: Rig) -> set[str]:
    return set((await rig.ids()).values())


async def test_a_linked_user_is_subscribed_on_the_first_pass(linked: Rig) -> None:
    rig = linked
    assert await rig.subscribed() == set()
    renewer = rig.renewer("worker-1")
    result = await renewer.run_once()
    assert (result.held, result.subscribed, result.failed) == (True, ["demo"], [])
    # Every one of the demo user's devices, none of the neighbour's.
    assert await rig.subscribed() == await demo_devices(rig)
    assert await rig.event_calls() == 1
    row = await rig.subscriptions.get("demo")
    assert row is not None
    assert row.expires_at == rig.clock() + timedelta(hours=24)
    assert row.subscribed_at == rig.clock()
    assert (row.attempts, row.last_error, row.next_attempt_at) == (0, None, None)
    # LG's per-device answers mark each device as covered.
    await rig.wait_covered(sorted(await demo_devices(rig)))

    # Not due: later passes (this renewer or another) leave it alone.
    for _ in range(3):
        assert (await renewer.run_once()).subscribed == []
    await rig.advance(12 * HOUR)
    assert (await renewer.run_once()).subscribed == []
    assert await rig.event_calls() == 1


async def test_renewed_before_it_expires_as_the_clock_advances(linked: Rig) -> None:
    rig = linked
    renewer = rig.renewer("worker-1")
    await renewer.run_once()
    first = await rig.subscriptions.get("demo")
    assert first is not None and first.expires_at is not None

    await rig.advance(24 * HOUR - MARGIN - 60)  # eleven minutes left: not yet due
    assert (await renewer.run_once()).subscribed == []
    assert await rig.event_calls() == 1

    await rig.advance(120)  # nine minutes left: due
    assert (await renewer.run_once()).subscribed == ["demo"]
    assert await rig.event_calls() == 2
    renewed = await rig.subscriptions.get("demo")
    assert renewed is not None and renewed.expires_at == rig.clock() + timedelta(hours=24)
    assert renewed.subscribed_at == first.subscribed_at  # the stretch goes on unbroken

    await rig.advance(20 * 60)  # past the first expiry: LG still sends events
    assert await rig.subscribed() == await demo_devices(rig)
    assert await rig.event_calls() == 2


async def test_subscription_renewal_across_a_restart(rig: Rig) -> None:
    """The connector's own renewer (worker role): stopped and replaced by a new process's
    (new owner id) on the same database, it renews on time, and only once."""
    await rig.link()
    env = {"EVENT_SUBSCRIPTIONS": "1", "EVENT_RENEW_INTERVAL_SECONDS": "0.1"}
    first = await start_receiver(rig, **env)
    rig.service = first
    assert first.renewer is not None
    await wait_for(lambda: _recorded(rig, 1))
    owner_before = first.renewer.owner
    await wait_for(lambda: _held_by(rig, owner_before))
    before = await rig.subscriptions.get("demo")
    assert before is not None and before.expires_at is not None

    await first.stop()  # graceful: lets go of the lease
    rig.service = None
    assert await rig.leases.holder(LEASE_NAME, rig.clock()) is None

    await rig.advance(12 * HOUR)  # while no connector runs
    second = await start_receiver(rig, **env)
    rig.service = second
    assert second.renewer is not None and second.renewer.owner != owner_before
    await wait_for(lambda: _passes(second, 5))
    assert await rig.event_calls() == 1  # nothing double-subscribed
    assert await rig.leases.holder(LEASE_NAME, rig.clock()) == second.renewer.owner

    await rig.advance(12 * HOUR - MARGIN + 60)  # due now
    await wait_for(lambda: _recorded(rig, 2))
    after = await rig.subscriptions.get("demo")
    assert after is not None and after.expires_at == rig.clock() + timedelta(hours=24)
    assert after.subscribed_at == before.subscribed_at
    passes = second.renewer.stats.passes
    await wait_for(lambda: _passes(second, passes + 5))
    assert await rig.event_calls() == 2
    await rig.advance(MARGIN)  # the old expiry passes: still subscribed
    assert await rig.subscribed() == await demo_devices(rig)


async def _recorded(rig: Rig, renewals: int) -> bool:
    """LG was asked ``renewals`` times and the last answer is recorded."""
    row = await rig.subscriptions.get("demo")
    return (
        await rig.event_calls() >= renewals
        and row is not None
        and row.expires_at == rig.clock() + timedelta(hours=24)
    )


async def _held_by(rig: Rig, owner: str) -> bool:
    return await rig.leases.holder(LEASE_NAME, rig.clock()) == owner


async def _passes(service: object, count: int) -> bool:
    renewer = service.renewer
    return renewer.stats.passes >= count


async def test_a_crashed_renewer_is_taken_over_when_its_lease_runs_out(linked: Rig) -> None:
    rig = linked
    crashed = rig.renewer("worker-1")  # interval 60 s: a lease of 180 s
    assert (await crashed.run_once()).subscribed == ["demo"]
    # worker-1 dies without letting go; worker-2 starts on the same database.
    successor = rig.renewer("worker-2")
    assert (await successor.run_once()).held is False
    await rig.advance(181)
    result = await successor.run_once()
    assert result.held is True and result.subscribed == []  # taken over; nothing due
    assert (await crashed.run_once()).held is False  # the old one, should it come back
    await rig.advance(24 * HOUR - MARGIN - 181 + 1)
    assert (await successor.run_once()).subscribed == ["demo"]
    assert await rig.event_calls() == 2


async def test_two_renewers_at_once_subscribe_once(linked: Rig, database_url: str) -> None:
    rig = linked
    # Separate engines, as separate processes would have.
    other = await Storage.open_url(database_url, rig.storage.cipher)
    try:
        renewers = [rig.renewer("worker-1"), rig.renewer("worker-2", storage=other)]
        for round_ in range(3):
            results = await asyncio.gather(*(r.run_once() for r in renewers))
            assert sum(r.held for r in results) == 1, round_
            assert sorted(u for r in results for u in r.subscribed) == ["demo"], round_
            assert await rig.event_calls() == round_ + 1
            # Nothing is due again until the next renewal; many passes change nothing.
            for _ in range(3):
                results = await asyncio.gather(*(r.run_once() for r in renewers))
                assert [u for r in results for u in r.subscribed] == []
            await rig.advance(24 * HOUR - MARGIN + 1)
        assert await rig.event_calls() == 3
    finally:
        await other.close()


async def test_a_failure_is_recorded_and_retried_with_backoff(linked: Rig) -> None:
    rig = linked
    # The shared call budget backs the user off after 1306 (on the simulated clock here).
    budget = CallBudget(None, clock=lambda: rig.clock().timestamp())
    renewer = rig.renewer("worker-1", budget=budget)
    renewer._retry_base = 10.0  # first retry after 5-10 s, second after 10-20 s
    limit = await rig.simulator.sim("PUT", "/sim/rate-limit", json={"maxCallsPerMinute": 0})
    assert limit.status_code == 200

    result = await renewer.run_once()
    assert (result.subscribed, result.failed) == ([], ["demo"])
    row = await rig.subscriptions.get("demo")
    assert row is not None and row.expires_at is None
    assert row.attempts == 1 and row.last_error is not None and "1306" in row.last_error
    assert row.next_attempt_at is not None
    assert timedelta(seconds=5) <= row.next_attempt_at - rig.clock() <= timedelta(seconds=10)
    assert await rig.event_calls() == 1
    assert (await renewer.run_once()).failed == []  # backing off: not tried again yet
    assert await rig.event_calls() == 1

    # LG lets us through again, but our budget still backs the user off (30 s after a
    # 1306): RateLimited without calling LG is a failure like any other.
    await rig.simulator.sim("DELETE", "/sim/rate-limit")
    await rig.advance(11)
    assert (await renewer.run_once()).failed == ["demo"]
    assert await rig.event_calls() == 1
    row = await rig.subscriptions.get("demo")
    assert row is not None and row.attempts == 2 and "1306" in (row.last_error or "")

    await rig.advance(30)
    assert (await renewer.run_once()).subscribed == ["demo"]
    row = await rig.subscriptions.get("demo")
    assert row is not None and (row.attempts, row.last_error, row.next_attempt_at) == (
        0,
        None,
        None,
    )
    assert row.expires_at == rig.clock() + timedelta(hours=24)
    assert await rig.subscribed() == await demo_devices(rig)


async def test_an_unusable_token_is_a_recorded_failure(rig: Rig) -> None:
    await rig.link(token="not-a-token-lg-knows")
    result = await rig.renewer("worker-1").run_once()
    assert result.failed == ["demo"]
    row = await rig.subscriptions.get("demo")
    assert row is not None and row.last_error is not None and "1302" in row.last_error
    assert await rig.subscribed() == set()


async def test_a_subscription_lapses_when_nobody_renews_it(linked: Rig) -> None:
    rig = linked
    renewer = rig.renewer("worker-1")
    await renewer.run_once()
    washer = (await rig.ids())["Washer"]
    await rig.advance(24 * HOUR)  # no pass in between
    assert await rig.subscribed() == set()
    row = await rig.subscriptions.get("demo")
    assert row is not None and not row.active(rig.clock())
    # The simulator sends nothing for a lapsed subscription.
    before = len(await rig.sim_events(washer))
    state = {"runState.currentState": "RUNNING", "timer.remainMinute": 30}
    answer = await rig.simulator.sim("POST", f"/sim/devices/{washer}/state", json=state)
    assert answer.status_code == 200
    assert len(await rig.sim_events(washer)) == before

    # The next pass subscribes again, as a new stretch (what came in between was missed).
    assert (await renewer.run_once()).subscribed == ["demo"]
    again = await rig.subscriptions.get("demo")
    assert again is not None and again.subscribed_at == rig.clock()
    assert row.subscribed_at is not None and again.subscribed_at > row.subscribed_at
    assert await rig.subscribed() == await demo_devices(rig)


async def test_users_come_and_go_with_their_linked_accounts(linked: Rig) -> None:
    rig = linked
    renewer = rig.renewer("worker-1")
    await renewer.run_once()
    assert await rig.subscribed() == await demo_devices(rig)

    # Linked a moment ago: subscribed on the next pass.
    await rig.link("bob", user="neighbour", token=rig.simulator.neighbour_token)
    assert (await renewer.run_once()).subscribed == ["neighbour"]
    assert len(await rig.subscribed()) == len(await demo_devices(rig)) + 1
    assert {s.thinq_user for s in await rig.subscriptions.all()} == {"demo", "neighbour"}

    # Unlinked: no longer renewed.
    await rig.storage.accounts.unlink(SENDER)
    await rig.advance(24 * HOUR - MARGIN + 1)
    assert (await renewer.run_once()).subscribed == ["neighbour"]
    assert await rig.event_calls() == 3


async def test_the_lease_is_compare_and_set(database_url: str) -> None:
    engine = create_engine(database_url)
    await create_schema(engine)
    leases = LeaseRepository(engine)
    now = utcnow()
    ttl = timedelta(seconds=30)
    try:
        results = await asyncio.gather(
            *(leases.acquire("x", f"owner-{i}", ttl, now) for i in range(8))
        )
        assert sum(results) == 1
        holder = await leases.holder("x", now)
        assert holder == f"owner-{results.index(True)}"
        assert await leases.acquire("x", holder, ttl, now + timedelta(seconds=20))  # extends
        assert not await leases.acquire("x", "late", ttl, now + timedelta(seconds=49))
        assert await leases.acquire("x", "late", ttl, now + timedelta(seconds=50))
        assert not await leases.release("x", holder)  # not its lease any more
        assert await leases.release("x", "late")
        assert await leases.holder("x", now) is None
    finally:
        await engine.dispose()


def test_event_settings_defaults_and_checks() -> None:
    assert load_event_settings({}) == EventSettings(
        enabled=True,
        renew_interval_seconds=60.0,
        renew_margin_seconds=600.0,
        subscription_hours=24,
    )
    custom = load_event_settings(
        {
            "EVENT_SUBSCRIPTIONS": "0",
            "EVENT_RENEW_INTERVAL_SECONDS": "30",
            "EVENT_RENEW_MARGIN_SECONDS": "120",
            "EVENT_SUBSCRIPTION_HOURS": "2",
        }
    )
    assert custom == EventSettings(False, 30.0, 120.0, 2)
    for bad in (
        {"EVENT_SUBSCRIPTION_HOURS": "0"},
        {"EVENT_SUBSCRIPTION_HOURS": "25"},
        {"EVENT_SUBSCRIPTION_HOURS": "1.5"},
        {"EVENT_RENEW_INTERVAL_SECONDS": "0"},
        {"EVENT_RENEW_MARGIN_SECONDS": "-1"},
        {"EVENT_SUBSCRIPTION_HOURS": "1", "EVENT_RENEW_MARGIN_SECONDS": "3600"},
        {"EVENT_SUBSCRIPTIONS": "maybe"},
    ):
        with pytest.raises(SettingsError):
            load_event_settings(bad)


async def test_a_device_added_to_the_account_is_covered_at_the_next_pass(linked: Rig) -> None:
    rig = linked
    renewer = rig.renewer("worker-1")
    await renewer.run_once()
    before = await rig.subscriptions.get("demo")
    assert before is not None
    added = await rig.simulator.sim(
        "POST", "/sim/devices", json={"deviceType": "DEVICE_WASHER", "alias": "Garage Washer"}
    )
    assert added.status_code == 201, added.text
    new_id = added.json()["device"]["deviceId"]
    assert new_id not in await rig.subscribed()
    # The connector's worker plans DEVICE_REGISTERED and asks for an early renewal.
    await wait_for(lambda: rig.subscriptions.renewal_requested("demo"))
    await rig.advance(60)
    assert (await renewer.run_once()).subscribed == ["demo"]
    assert new_id in await rig.subscribed()
    assert await rig.event_calls() == 2
    after = await rig.subscriptions.get("demo")
    assert after is not None and after.subscribed_at == before.subscribed_at  # unbroken
    assert not await rig.subscriptions.renewal_requested("demo")
    assert (await renewer.run_once()).subscribed == []  # done: not due again
