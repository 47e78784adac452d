"""Device states kept fresh by status events, over real HTTP on SQLite and PostgreSQL:
the simulator sends DEVICE_STATUS events for subscribed devices (control, countdown,
/sim changes), the connector's receiver deep-merges them into ``device_states``, and a
status read is then answered without asking LG — but only while that is known to be
right (live subscription, device covered, a whole state read since, no control of ours
since without an event)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from assistant.household import Appliance, HouseholdService
from assistant.settings import demo_callback_secret
from assistant.storage.models import DeviceState
from lgcloud.errors import DeviceOffline
from lgcloud.thinq import thinq_headers
from tests.event_support import (
    HOUR,
    Rig,
    event_rig,  # noqa: F401 - fixture, found by name
    start_receiver,
    wait_for,
)

WASHER_START = {"operation": {"washerOperationMode": "START"}}


@pytest.fixture
async def subscribed(rig: Rig) -> AsyncIterator[Rig]:
    """Demo user linked, connector receiving, events subscribed, every device covered."""
    await rig.link()
    rig.service = await start_receiver(rig)
    assert (await rig.renewer("worker-1").run_once()).subscribed == ["demo"]
    await rig.wait_covered(sorted((await rig.ids()).values()))
    yield rig


async def appliance(rig: Rig, household: HouseholdService, alias: str) -> Appliance:
    appliances = await household.appliances("demo", rig.auth)
    return next(a for a in appliances if a.alias == alias)


async def status_calls(rig: Rig, device_id: str) -> int:
    return len(await rig.calls("GET", f"/devices/{device_id}"))


async def sim_state(rig: Rig, device_id: str) -> dict[str, Any]:
    return (await rig.simulator.sim("GET", f"/sim/devices/{device_id}")).json()["state"]


async def stored(rig: Rig, device_id: str) -> dict[str, Any]:
    found = await rig.states.get(device_id)
    assert found is not None
    return found.state


def status_event(device_id: str, report: Any, **extra: Any) -> dict[str, Any]:
    event = {
        "pushType": "DEVICE_STATUS",
        "deviceId": device_id,
        "deviceType": "DEVICE_WASHER",
        "userNumber": "demo",
        "report": report,
        **extra,
    }
    return {
        "messageId": uuid.uuid4().hex[:22],
        "timestamp": "2026-11-23T21:00:00.000000",
        "event": event,
    }


async def post_callback(rig: Rig, body: Any, *, raw: bytes | None = None) -> httpx.Response:
    assert rig.service is not None
    secret = demo_callback_secret(rig.settings.thinq.service_key)
    url = f"http://127.0.0.1:{rig.service.bound_port}/lg/callbacks"
    async with httpx.AsyncClient(timeout=10) as http:
        if raw is not None:
            return await http.post(
                url,
                params={"secret": secret},
                content=raw,
                headers={"content-type": "application/json"},
            )
        return await http.post(url, params={"secret": secret}, json=body)


# --- events from the simulator update device_states --------------------------------------------


async def test_events_keep_the_state_fresh_and_reads_skip_lg(subscribed: Rig) -> None:
    rig = subscribed
    household = rig.household()
    washer = await appliance(rig, household, "Washer")
    wid = washer.device_id

    # Covered but never read whole: the first read asks LG and keeps the answer.
    first = await household.status(rig.auth, washer)
    assert first == await sim_state(rig, wid)
    assert await status_calls(rig, wid) == 1
    assert await household.status(rig.auth, washer) == first
    assert await status_calls(rig, wid) == 1  # answered from device_states

    # A control (not ours: from LG's app, say) reaches us only as an event.
    client = rig.simulator.client()
    try:
        await client.control(rig.auth, wid, WASHER_START)
    finally:
        await client.aclose()

    async def running() -> bool:
        return (await stored(rig, wid)).get("runState.currentState") == "RUNNING"

    await wait_for(running)
    read = await household.status(rig.auth, washer)
    assert read["runState.currentState"] == "RUNNING"
    assert (read["timer.remainHour"], read["timer.remainMinute"]) == (0, 45)
    assert read == await sim_state(rig, wid)

    # The countdown on the simulated clock: events, merged, read without LG.
    await rig.advance(10 * 60)
    read = await household.status(rig.auth, washer)
    assert read["timer.remainMinute"] == 35
    assert read == await sim_state(rig, wid)
    await rig.advance(35 * 60)
    read = await household.status(rig.auth, washer)
    assert (read["runState.currentState"], read["timer.remainMinute"]) == ("END", 0)
    assert read == await sim_state(rig, wid)
    assert await status_calls(rig, wid) == 1

    # What the simulator sent: only what changed.
    sent = await rig.sim_events(wid)
    assert [e["status"] for e in sent] == ["sent"] * len(sent)
    assert sent[0]["report"] == {
        "runState": {"currentState": "RUNNING"},
        "timer": {"remainMinute": 45},
    }
    assert sent[-1]["report"] == {"runState": {"currentState": "END"}, "timer": {"remainMinute": 0}}


async def test_sim_state_changes_and_reset_send_events(subscribed: Rig) -> None:
    rig = subscribed
    household = rig.household()
    fridge = await appliance(rig, household, "Fridge")
    fid = fridge.device_id
    await household.status(rig.auth, fridge)  # the whole state, once
    change = {
        "temperatureInUnits.FRIDGE.targetTemperatureC": 5,
        "doorStatus.MAIN.doorState": "OPEN",
    }
    assert (await rig.simulator.sim("POST", f"/sim/devices/{fid}/state", json=change)).is_success
    # /sim answers after its events were delivered: no polling needed.
    read = await household.status(rig.auth, fridge)
    assert read["temperatureInUnits.FRIDGE.targetTemperatureC"] == 5
    assert read["temperatureInUnits.FREEZER.targetTemperatureC"] == -18  # merged, not replaced
    assert read["doorStatus.MAIN.doorState"] == "OPEN"
    [event] = await rig.sim_events(fid)
    assert event["report"] == {
        "temperatureInUnits": [{"locationName": "FRIDGE", "targetTemperatureC": 5}],
        "doorStatus": [{"locationName": "MAIN", "doorState": "OPEN"}],
    }
    assert (await rig.simulator.sim("POST", "/sim/reset")).is_success
    read = await household.status(rig.auth, fridge)
    assert read == await sim_state(rig, fid)
    assert read["temperatureInUnits.FRIDGE.targetTemperatureC"] == 3
    assert await status_calls(rig, fid) == 1


async def test_a_device_offline_sends_what_it_missed_when_back(subscribed: Rig) -> None:
    rig = subscribed
    wid = (await rig.ids())["Washer"]
    online = f"/sim/devices/{wid}/online"
    await rig.simulator.sim("POST", online, json={"online": False})
    await rig.simulator.sim(
        "POST", f"/sim/devices/{wid}/state", json={"timer.relativeHourToStart": 3}
    )
    assert await rig.sim_events(wid) == []
    await rig.simulator.sim("POST", online, json={"online": True})
    [event] = await rig.sim_events(wid)
    assert event["report"] == {"timer": {"relativeHourToStart": 3}}
    assert (await stored(rig, wid))["timer.relativeHourToStart"] == 3


async def test_a_v1_subscription_sends_events_for_its_device_until_it_lapses(rig: Rig) -> None:
    rig.service = await start_receiver(rig)
    ids = await rig.ids()
    oven, washer = ids["Oven"], ids["Washer"]
    headers = thinq_headers(rig.auth, rig.simulator.service_id, rig.simulator.service_key)
    body = {"expire": {"unit": "HOUR", "timer": 1}}
    async with httpx.AsyncClient(base_url=rig.simulator.url) as http:
        assert (await http.post(f"/event/{oven}", headers=headers, json=body)).is_success
        control = {"operation": {"ovenOperationMode": "START"}}
        headers = thinq_headers(rig.auth, rig.simulator.service_id, rig.simulator.service_key)
        assert (await http.post(f"/devices/{oven}", headers=headers, json=control)).is_success

    async def preheating() -> bool:
        return [e["report"] for e in await rig.sim_events(oven)] == [
            {"runState": {"currentState": "PREHEATING"}}
        ]

    await wait_for(preheating)
    await rig.advance(10 * 60)
    reports = [e["report"] for e in await rig.sim_events(oven)]
    assert reports[-1] == {"runState": {"currentState": "PREHEATING_IS_DONE"}}
    # Only the subscribed device: the washer's change is not sent.
    change = {"timer.relativeHourToStart": 1}
    assert (await rig.simulator.sim("POST", f"/sim/devices/{washer}/state", json=change)).is_success
    assert await rig.sim_events(washer) == []
    # The events were merged (the oven is the demo user's, as userNumber says).
    assert (await stored(rig, oven))["runState.currentState"] == "PREHEATING_IS_DONE"

    await rig.advance(50 * 60)  # the hour is up
    change = {"runState.currentState": "COOKING_IN_PROGRESS"}
    assert (await rig.simulator.sim("POST", f"/sim/devices/{oven}/state", json=change)).is_success
    assert len(await rig.sim_events(oven)) == 2


# --- when the read goes to LG ---------------------------------------------------------------------


async def test_reads_go_to_lg_before_the_first_whole_state_and_after_expiry(rig: Rig) -> None:
    await rig.link()
    rig.service = await start_receiver(rig)
    household = rig.household()
    dryer = await appliance(rig, household, "Dryer")
    did = dryer.device_id

    # No subscription: every read asks LG (and the answer is kept for later).
    await household.status(rig.auth, dryer)
    await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 2

    # Subscribed now (a second later: time moves): the state read before is not known
    # complete; one more read.
    await rig.advance(1)
    await rig.renewer("worker-1").run_once()
    await rig.wait_covered([did])
    await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 3
    await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 3

    # A device covered but never read: an event makes a row from its report alone,
    # which is no whole state; the first read asks LG, the next one need not.
    washer = await appliance(rig, household, "Washer")
    wid = washer.device_id
    change = {"timer.relativeHourToStart": 2}
    assert (await rig.simulator.sim("POST", f"/sim/devices/{wid}/state", json=change)).is_success
    row = await rig.states.get(wid)
    assert row is not None and row.state == change and row.full_at is None
    read = await household.status(rig.auth, washer)
    assert read == await sim_state(rig, wid) and read["timer.relativeHourToStart"] == 2
    assert await status_calls(rig, wid) == 1
    await household.status(rig.auth, washer)
    assert await status_calls(rig, wid) == 1

    # Expired (nobody renewed): LG again, every time.
    await rig.advance(24 * HOUR)
    await household.status(rig.auth, dryer)
    await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 5


async def test_our_own_control_makes_the_next_read_ask_lg(subscribed: Rig) -> None:
    rig = subscribed
    household = rig.household()
    ac = await appliance(rig, household, "Living Room AC")
    aid = ac.device_id
    await household.status(rig.auth, ac)
    assert await status_calls(rig, aid) == 1

    # No event can arrive (the callback URL is gone): the stored state must not answer.
    await rig.simulator.sim("PUT", "/sim/callback-url", json={"url": None})
    await household.send(rig.auth, ac, [{"operation": {"airConOperationMode": "POWER_ON"}}])
    read = await household.status(rig.auth, ac)
    assert read["operation.airConOperationMode"] == "POWER_ON"
    assert await status_calls(rig, aid) == 2
    await household.status(rig.auth, ac)
    assert await status_calls(rig, aid) == 2  # that read made it whole again

    # Unless an event tells us the result.
    body = [{"airFlow": {"windStrength": "HIGH"}}]
    await household.send(rig.auth, ac, body)
    event = status_event(
        aid, {"airFlow": {"windStrength": "HIGH"}}, deviceType="DEVICE_AIR_CONDITIONER"
    )
    assert (await post_callback(rig, event)).json()["status"] == "merged"
    read = await household.status(rig.auth, ac)
    assert read["airFlow.windStrength"] == "HIGH"
    assert read == await sim_state(rig, aid)
    assert await status_calls(rig, aid) == 2


# --- the merge, and what is refused ---------------------------------------------------------------


async def test_deep_merge_of_a_report(subscribed: Rig) -> None:
    rig = subscribed
    household = rig.household()
    fridge = await appliance(rig, household, "Fridge")
    fid = fridge.device_id
    before = await household.status(rig.auth, fridge)
    report = {
        "temperatureInUnits": [{"locationName": "FREEZER", "targetTemperatureC": -20}],
        "refrigeration": {"expressMode": True},
    }
    answer = await post_callback(rig, status_event(fid, report, deviceType="DEVICE_REFRIGERATOR"))
    assert answer.status_code == 200 and answer.json()["status"] == "merged"
    after = await stored(rig, fid)
    changed = {k: v for k, v in after.items() if before.get(k) != v}
    assert changed == {
        "temperatureInUnits.FREEZER.targetTemperatureC": -20,
        "refrigeration.expressMode": True,
    }
    assert (
        after["temperatureInUnits.FRIDGE.targetTemperatureC"]
        == before["temperatureInUnits.FRIDGE.targetTemperatureC"]
    )
    assert after["refrigeration.rapidFreeze"] == before["refrigeration.rapidFreeze"]
    assert set(after) == set(before)

    # A redelivery (same messageId) merges once: a newer change is not undone by it.
    first = status_event(fid, {"refrigeration": {"rapidFreeze": True}})
    second = status_event(fid, {"refrigeration": {"rapidFreeze": False}})
    assert (await post_callback(rig, first)).json()["status"] == "merged"
    assert (await post_callback(rig, second)).json()["status"] == "merged"
    assert (await post_callback(rig, first)).json()["status"] == "duplicate"
    assert (await stored(rig, fid))["refrigeration.rapidFreeze"] is False


async def test_merge_event_alone(rig: Rig) -> None:
    states = rig.states
    merged = await states.merge_event("dev-1", {"a.x": 1, "b.L1.y": "on"}, "m1", thinq_user="u")
    assert merged.outcome == "merged"
    await states.merge_event("dev-1", {"a.x": 2, "a.z": None}, "m2")
    row = await states.get("dev-1")
    assert row is not None
    assert row.state == {"a.x": 2, "a.z": None, "b.L1.y": "on"}
    assert (row.thinq_user, row.full_at, row.version) == ("u", None, 2)
    assert (await states.merge_event("dev-2", {"a.x": 1}, "m3")).outcome == "unknown_device"
    assert await states.get("dev-2") is None


MALFORMED: list[tuple[Any, str]] = [
    ({"pushType": "DEVICE_STATUS", "deviceId": "d"}, "report must be a non-empty object"),
    ({"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {}}, "report must be a non-empty"),
    ({"pushType": "DEVICE_STATUS", "deviceId": "d", "report": []}, "report must be a non-empty"),
    ({"pushType": "DEVICE_STATUS", "report": {"runState": {"currentState": "END"}}}, "deviceId"),
    (
        {"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {"runState": "END"}},
        "must be an object or a list",
    ),
    (
        {"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {"runState": {"x": {"y": 1}}}},
        "must be a string, number, boolean or null",
    ),
    (
        {"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {"t": [{"targetC": 3}]}},
        "locationName",
    ),
    (
        {"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {"a.b": {"c": 1}}},
        "must not contain '.'",
    ),
    ({"pushType": "DEVICE_STATUS", "deviceId": "d", "report": {"runState": {}}}, "no property"),
]


async def test_malformed_events_are_400_and_store_nothing(subscribed: Rig) -> None:
    rig = subscribed
    wid = (await rig.ids())["Washer"]

    async def snapshot() -> tuple[int, Any]:
        async with rig.storage.engine.connect() as conn:
            count = (await conn.execute(select(func.count()).select_from(DeviceState))).scalar_one()
        row = await rig.states.get(wid)
        return count, row

    before = await snapshot()
    for event, reason in MALFORMED:
        event = {**event, "deviceId": wid} if "deviceId" in event else event
        body = {"messageId": uuid.uuid4().hex[:22], "event": event}
        answer = await post_callback(rig, body)
        assert answer.status_code == 400, event
        assert answer.json()["error"] == "bad_request" and reason in answer.json()["reason"], (
            answer.json()
        )
    no_id = {"event": {"pushType": "DEVICE_STATUS", "deviceId": wid, "report": {"a": {"b": 1}}}}
    assert (await post_callback(rig, no_id)).json()["reason"] == "messageId is missing"
    assert (await post_callback(rig, None, raw=b"{nope")).status_code == 400
    # An unknown device cannot be filed under anyone: 404, nothing stored.
    stranger = status_event("no-such-device", {"a": {"b": 1}})
    del stranger["event"]["userNumber"]
    answer = await post_callback(rig, stranger)
    assert (answer.status_code, answer.json()["error"]) == (404, "unknown_device")
    assert await snapshot() == before


async def test_a_silent_offline_device_is_asked_of_lg_once_its_state_is_old(
    subscribed: Rig,
) -> None:
    rig = subscribed
    household = rig.household(state_max_age_seconds=900)
    dryer = await appliance(rig, household, "Dryer")
    did = dryer.device_id
    await household.status(rig.auth, dryer)
    await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 1  # the second from device_states
    await rig.simulator.sim("POST", f"/sim/devices/{did}/online", json={"online": False})
    await rig.advance(10 * 60)
    await household.status(rig.auth, dryer)  # young enough: still the stored state
    assert await status_calls(rig, did) == 1
    await rig.advance(6 * 60)
    with pytest.raises(DeviceOffline):  # 16 minutes: LG is asked, and says offline
        await household.status(rig.auth, dryer)
    assert await status_calls(rig, did) == 2


async def test_a_device_found_offline_is_not_answered_from_its_stored_state(
    subscribed: Rig,
) -> None:
    rig = subscribed
    household = rig.household(state_max_age_seconds=900)
    dryer = await appliance(rig, household, "Dryer")
    await household.status(rig.auth, dryer)
    await household.mark_unreachable(dryer.device_id)  # e.g. v2 status answered 1222
    offline = f"/sim/devices/{dryer.device_id}/online"
    await rig.simulator.sim("POST", offline, json={"online": False})
    with pytest.raises(DeviceOffline):
        await household.status(rig.auth, dryer)
