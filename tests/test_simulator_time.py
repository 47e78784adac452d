"""Simulated time in the LG cloud simulator: delayed start, countdowns, push callbacks."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import pytest

from tests.test_simulator_support import Receiver, Sim, callback_receiver, running_simulator

WASHER_START = {"operation": {"washerOperationMode": "START"}}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with callback_receiver() as running:
        yield running


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[Sim]:
    async with running_simulator(callback_url=receiver.url) as running:
        yield running


async def test_delayed_start_is_reserved_then_runs(sim: Sim) -> None:
    body = {"timer": {"relativeHourToStart": 2}, **WASHER_START}
    assert (await sim.control("Washer", body)).status_code == 200
    state = await sim.state("Washer")
    assert state["runState.currentState"] == "RESERVED"
    assert state["timer.relativeHourToStart"] == 2
    start_again = await sim.control("Washer", WASHER_START)
    assert start_again.json()["error"]["code"] == "2302"

    await sim.advance(3600)
    state = await sim.state("Washer")
    assert (state["runState.currentState"], state["timer.relativeHourToStart"]) == ("RESERVED", 1)
    await sim.advance(3600)
    state = await sim.state("Washer")
    assert state["runState.currentState"] == "RUNNING"
    assert state["timer.relativeHourToStart"] == 0
    assert (state["timer.remainHour"], state["timer.remainMinute"]) == (0, 45)


async def test_delay_set_before_start_and_overshooting_advance(sim: Sim) -> None:
    assert (await sim.control("Washer", {"timer": {"relativeHourToStart": 1}})).status_code == 200
    assert (await sim.control("Washer", WASHER_START)).status_code == 200
    assert (await sim.state("Washer"))["runState.currentState"] == "RESERVED"
    await sim.advance(3600 + 15 * 60)  # one jump spans the reservation and part of the cycle
    state = await sim.state("Washer")
    assert (state["runState.currentState"], state["timer.remainMinute"]) == ("RUNNING", 30)


async def test_stop_while_reserved_pauses(sim: Sim) -> None:
    await sim.control("Washer", {"timer": {"relativeHourToStart": 3}, **WASHER_START})
    stop = {"operation": {"washerOperationMode": "STOP"}}
    assert (await sim.control("Washer", stop)).status_code == 200
    assert (await sim.state("Washer"))["runState.currentState"] == "PAUSE"
    await sim.advance(5 * 3600)
    assert (await sim.state("Washer"))["runState.currentState"] == "PAUSE"


async def test_countdown_ends_with_a_push_only_when_subscribed(
    sim: Sim, receiver: Receiver
) -> None:
    washer = sim.ids["Washer"]
    assert (await sim.lg("POST", f"/push/{washer}")).status_code == 200
    assert (await sim.control("Washer", WASHER_START)).status_code == 200

    result = await sim.advance(44 * 60)
    state = await sim.state("Washer")
    assert (state["runState.currentState"], state["timer.remainMinute"]) == ("RUNNING", 1)
    assert receiver.pushes() == []

    # The styler (35 min) and dishwasher (1:10) started running at boot, unsubscribed.
    assert (await sim.state("Styler"))["runState.currentState"] == "END"
    assert {p["pushCode"] for p in result["pushes"] if p["sent"]} == set()

    result = await sim.advance(60)
    state = await sim.state("Washer")
    assert state["runState.currentState"] == "END"
    assert (state["timer.remainHour"], state["timer.remainMinute"]) == (0, 0)
    assert result["pushes"] == [
        {"deviceId": washer, "pushCode": "WASHING_IS_COMPLETE", "sent": True, "reason": None}
    ]
    assert len(receiver.messages) == 1
    message = receiver.messages[0]
    assert set(message) == {"messageId", "timestamp", "push"}
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", message["messageId"])
    assert message["push"] == {
        "pushType": "DEVICE_PUSH",
        "serviceId": sim.config.service_id,
        "deviceId": washer,
        "pushCode": "WASHING_IS_COMPLETE",
        "deviceType": "DEVICE_WASHER",
        "userList": ["demo"],
    }
    await sim.advance(2 * 3600)  # the dishwasher ends too, unsubscribed: nothing sent
    assert (await sim.state("Dishwasher"))["runState.currentState"] == "END"
    assert len(receiver.messages) == 1


async def test_restart_after_end_runs_a_fresh_cycle(sim: Sim) -> None:
    await sim.control("Washer", WASHER_START)
    await sim.advance(45 * 60)
    assert (await sim.state("Washer"))["runState.currentState"] == "END"
    assert (await sim.control("Washer", WASHER_START)).status_code == 200
    state = await sim.state("Washer")
    assert (state["runState.currentState"], state["timer.remainMinute"]) == ("RUNNING", 45)


async def test_oven_preheat_completes_with_a_push(sim: Sim, receiver: Receiver) -> None:
    oven = sim.ids["Oven"]
    await sim.lg("POST", f"/push/{oven}")
    assert (
        await sim.control("Oven", {"operation": {"ovenOperationMode": "START"}})
    ).status_code == 200
    await sim.advance(9 * 60)
    assert (await sim.state("Oven"))["runState.currentState"] == "PREHEATING"
    await sim.advance(60)
    assert (await sim.state("Oven"))["runState.currentState"] == "PREHEATING_IS_DONE"
    assert [p["pushCode"] for p in receiver.pushes()] == ["PREHEATING_IS_COMPLETE"]
    assert receiver.pushes()[0]["deviceType"] == "DEVICE_OVEN"


async def test_offline_appliance_finishes_without_pushing(sim: Sim, receiver: Receiver) -> None:
    styler = sim.ids["Styler"]
    await sim.lg("POST", f"/push/{styler}")
    await sim.client.post(f"/sim/devices/{styler}/online", json={"online": False})
    await sim.advance(35 * 60)
    assert (await sim.state("Styler"))["runState.currentState"] == "END"
    assert receiver.messages == []


async def test_sim_push_and_pcc_triggers_deliver(sim: Sim, receiver: Receiver) -> None:
    fridge = sim.ids["Fridge"]
    await sim.lg("POST", f"/push/{fridge}")
    await sim.lg("POST", f"/pcc/{fridge}")
    response = await sim.client.post(
        f"/sim/devices/{fridge}/push", json={"pushCode": "DOOR_IS_OPEN"}
    )
    assert (response.status_code, response.json()) == (200, {"sent": True})
    pcc = {"diagnosisType": "WATER_FILTER_EXPIRED", "contentUrl": "https://example.com/filter"}
    response = await sim.client.post(f"/sim/devices/{fridge}/pcc", json=pcc)
    assert (response.status_code, response.json()) == (200, {"sent": True})

    push_message, pcc_message = receiver.messages
    assert push_message["push"]["pushCode"] == "DOOR_IS_OPEN"
    assert push_message["push"]["deviceType"] == "DEVICE_REFRIGERATOR"
    assert set(pcc_message) == {"messageId", "timestamp", "event"}
    event = pcc_message["event"]
    assert set(event) == {
        "pushType",
        "deviceId",
        "deviceType",
        "diagnosisType",
        "contentUrl",
        "diagnosisTimestamp",
    }
    assert (event["pushType"], event["deviceId"]) == ("PCC_EVENT", fridge)
    assert (event["diagnosisType"], event["contentUrl"]) == (
        pcc["diagnosisType"],
        pcc["contentUrl"],
    )
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}", event["diagnosisTimestamp"])


async def test_failing_callback_endpoint_is_502_and_never_stops_time(
    sim: Sim, receiver: Receiver
) -> None:
    receiver.status = 500
    washer = sim.ids["Washer"]
    await sim.lg("POST", f"/push/{washer}")
    response = await sim.client.post(
        f"/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
    )
    assert response.status_code == 502
    assert response.json()["sent"] is False
    assert "500" in response.json()["reason"]
    await sim.control("Washer", WASHER_START)
    result = await sim.advance(45 * 60)
    washer_pushes = [p for p in result["pushes"] if p["deviceId"] == washer]
    assert [(p["pushCode"], p["sent"]) for p in washer_pushes] == [("WASHING_IS_COMPLETE", False)]
    assert (await sim.state("Washer"))["runState.currentState"] == "END"
    assert (await sim.client.get("/sim/health")).status_code == 200


async def test_unreachable_callback_url_is_502() -> None:
    async with callback_receiver() as gone:
        url = gone.url
    async with running_simulator(callback_url=url) as sim:
        washer = sim.ids["Washer"]
        await sim.lg("POST", f"/push/{washer}")
        response = await sim.client.post(
            f"/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
        )
        assert response.status_code == 502
        await sim.control("Washer", WASHER_START)
        await sim.advance(45 * 60)
        assert (await sim.state("Washer"))["runState.currentState"] == "END"


async def test_background_ticker_runs_in_real_time(receiver: Receiver) -> None:
    # 3600x: one real second is a simulated hour; the 35-minute styler ends in ~0.6 s.
    async with running_simulator(
        callback_url=receiver.url, time_scale=3600, tick_seconds=0.05
    ) as sim:
        await sim.lg("POST", f"/push/{sim.ids['Styler']}")
        for _ in range(100):
            if receiver.pushes():
                break
            await asyncio.sleep(0.05)
        assert (await sim.state("Styler"))["runState.currentState"] == "END"
        assert [p["pushCode"] for p in receiver.pushes()] == ["STYLING_IS_COMPLETE"]
