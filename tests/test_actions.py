"""The custom actions with real trackers, a real runtime and the simulator behind it.

Each test builds the tracker Rasa would send, runs the action, and asserts the
exact responses and events, then checks the simulated appliance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import (
    ActionAnswerPending,
    ActionControlDevice,
    ActionDeviceStatus,
    ActionListDevices,
)
from assistant.runtime import use_runtime


@pytest.fixture(autouse=True)
async def installed_runtime(runtime) -> AsyncIterator[None]:
    use_runtime(runtime)
    yield
    use_runtime(None)


def tracker(
    intent: str, entities: dict[str, Any] | None = None, slots: dict[str, Any] | None = None
) -> Tracker:
    return Tracker(
        sender_id="user-1",
        slots=slots or {},
        latest_message={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in (entities or {}).items()],
            "text": "",
        },
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def run(action, intent, entities=None, slots=None):
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(intent, entities, slots), {})
    return dispatcher.messages, events


def said(messages) -> list[tuple[str, dict]]:
    """(response name, its parameters) for each message, buttons as (title, payload)."""
    skip = {"text", "buttons", "elements", "custom", "template", "response", "image", "attachment"}
    out = []
    for m in messages:
        params = {k: v for k, v in m.items() if k not in skip}
        if m.get("buttons"):
            params["buttons"] = [(b["title"], b["payload"]) for b in m["buttons"]]
        out.append((m["response"], params))
    return out


def slots_after(events) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in events if e["event"] == "slot"}


async def test_turn_on_express_mode_on_the_fridge(simulator):
    fridge = (await simulator.devices())["Fridge"]["deviceId"]
    messages, events = await run(
        ActionControlDevice(), "turn_on", {"feature": "express_mode", "device": "fridge"}
    )
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Fridge's express mode is now on."})
    ]
    assert events == [
        SlotSet("context_devices", [fridge]),
        SlotSet(
            "last_request",
            {
                "action": "turn_on",
                "feature": "express_mode",
                "setting": None,
                "number": None,
                "direction": None,
            },
        ),
    ]
    assert (await simulator.devices())["Fridge"]["state"]["refrigeration.expressMode"] is True


async def test_out_of_range_temperature_changes_nothing_and_says_why(simulator):
    before = (await simulator.devices())["Living Room AC"]["state"]
    await simulator.sim("DELETE", "/sim/calls")
    messages, _ = await run(
        ActionControlDevice(), "set_value", {"device": "living room AC", "number": "45"}
    )
    assert said(messages) == [
        (
            "utter_refuse_out_of_range",
            {
                "device": "Living Room AC",
                "feature": "temperature",
                "requested": "45°C",
                "minimum": "18°C",
                "maximum": "30°C",
            },
        )
    ]
    assert (await simulator.devices())["Living Room AC"]["state"] == before
    calls = (await simulator.sim("GET", "/sim/calls")).json()
    assert [c for c in calls if c["method"] == "POST"] == []  # refused before calling LG


async def test_ambiguous_device_is_asked_then_resolved(simulator):
    devices = await simulator.devices()
    messages, events = await run(
        ActionControlDevice(), "set_value", {"device": "AC", "number": "22"}
    )
    living, bedroom = devices["Living Room AC"]["deviceId"], devices["Bedroom AC"]["deviceId"]
    assert said(messages) == [
        (
            "utter_ask_which_device",
            {
                "options": "Bedroom AC or Living Room AC",
                "buttons": [
                    ("Bedroom AC", '/inform_device{"device": "Bedroom AC"}'),
                    ("Living Room AC", '/inform_device{"device": "Living Room AC"}'),
                ],
            },
        )
    ]
    slots = slots_after(events)
    assert slots["pending"]["kind"] == "choose_device"
    assert set(slots["pending"]["candidates"]) == {living, bedroom}
    # Nothing changed while we asked.
    assert (await simulator.devices())["Bedroom AC"]["state"][
        "temperatureInUnits.targetTemperatureC"
    ] == 23

    messages, events = await run(
        ActionAnswerPending(), "inform_device", {"device": "bedroom"}, slots
    )
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Bedroom AC's temperature is now 22°C."})
    ]
    assert slots_after(events) == {"context_devices": [bedroom], "pending": None}
    after = await simulator.devices()
    assert after["Bedroom AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 22
    assert after["Living Room AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 24


async def test_follow_up_uses_it_and_repeats_on_another_device(simulator):
    devices = await simulator.devices()
    bedroom = devices["Bedroom AC"]["deviceId"]
    messages, events = await run(ActionDeviceStatus(), "ask_status", {"device": "bedroom AC"})
    assert said(messages) == [
        (
            "utter_device_status",
            {
                "device": "Bedroom AC",
                "summary": "power on, mode cool, set to 23°C, currently 25°C, fan speed low",
            },
        )
    ]
    slots = slots_after(events)
    assert slots == {"context_devices": [bedroom]}

    messages, events = await run(
        ActionControlDevice(), "adjust_value", {"number": "two", "direction": "down"}, slots
    )
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Bedroom AC's temperature is now 21°C."})
    ]
    slots.update(slots_after(events))

    # "and the living room too": the living room AC is off, so LG refuses and we explain.
    messages, _ = await run(
        ActionControlDevice(), "repeat_on_device", {"device": "living room"}, slots
    )
    assert said(messages) == [("utter_device_powered_off", {"device": "Living Room AC"})]


async def test_feature_resolves_the_only_capable_device(simulator):
    messages, _ = await run(ActionControlDevice(), "turn_on", {"feature": "rapid_freeze"})
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Fridge's rapid freeze is now on."})
    ]


async def test_freezer_temperature_by_compartment_word_and_by_number(simulator):
    messages, _ = await run(
        ActionControlDevice(), "set_value", {"device": "freezer", "number": "minus 20"}
    )
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Fridge's freezer temperature is now -20°C."})
    ]
    # "the fridge to 5" fits only the fridge compartment's 1..7 range.
    messages, _ = await run(ActionControlDevice(), "set_value", {"device": "fridge", "number": "5"})
    assert said(messages) == [
        ("utter_control_done", {"result": "Done: the Fridge's fridge temperature is now 5°C."})
    ]
    state = (await simulator.devices())["Fridge"]["state"]
    assert state["temperatureInUnits.FREEZER.targetTemperatureC"] == -20
    assert state["temperatureInUnits.FRIDGE.targetTemperatureC"] == 5


async def test_oven_start_needs_confirmation_and_no_does_nothing(simulator):
    messages, events = await run(ActionControlDevice(), "start_appliance", {"device": "oven"})
    assert said(messages) == [
        (
            "utter_confirm_control",
            {
                "device": "Oven",
                "action": "start the Oven",
                "buttons": [("Yes", "/affirm"), ("No", "/deny")],
            },
        )
    ]
    slots = slots_after(events)
    assert slots["pending"]["kind"] == "confirm"
    assert (await simulator.devices())["Oven"]["state"]["runState.currentState"] == "INITIAL"

    messages, events = await run(ActionAnswerPending(), "deny", None, slots)
    assert said(messages) == [("utter_cancelled", {})]
    assert slots_after(events) == {"pending": None}
    assert (await simulator.devices())["Oven"]["state"]["runState.currentState"] == "INITIAL"

    messages, _ = await run(ActionAnswerPending(), "affirm", None, slots)
    assert said(messages) == [("utter_control_done", {"result": "Started the Oven."})]
    assert (await simulator.devices())["Oven"]["state"]["runState.currentState"] == "PREHEATING"


async def test_remote_start_off_is_explained(simulator):
    messages, _ = await run(ActionControlDevice(), "start_appliance", {"device": "dryer"})
    assert said(messages) == [("utter_remote_control_off", {"device": "Dryer"})]


async def test_delayed_start(simulator):
    messages, _ = await run(
        ActionControlDevice(), "schedule_start", {"device": "washer", "number": "3"}
    )
    assert said(messages) == [
        ("utter_control_done", {"result": "The Washer will start in 3 hours."})
    ]
    state = (await simulator.devices())["Washer"]["state"]
    assert state["runState.currentState"] == "RESERVED"
    assert state["timer.relativeHourToStart"] == 3


async def test_remaining_time_and_air_quality(simulator):
    messages, _ = await run(ActionDeviceStatus(), "ask_remaining_time", {"device": "dishwasher"})
    assert said(messages) == [
        ("utter_remaining_time", {"device": "Dishwasher", "time": "1 hour 10 minutes"})
    ]
    messages, _ = await run(ActionDeviceStatus(), "ask_remaining_time", {"device": "washer"})
    assert said(messages) == [("utter_not_running", {"device": "Washer", "state": "on and ready"})]
    messages, _ = await run(ActionDeviceStatus(), "ask_status", {"feature": "air_quality"})
    assert said(messages) == [
        (
            "utter_device_status",
            {
                "device": "Air Purifier",
                "summary": "air quality normal, PM2.5 38 µg/m³, PM10 52 µg/m³",
            },
        )
    ]


async def test_missing_feature_unknown_device_offline_and_nothing_pending(simulator):
    messages, _ = await run(
        ActionControlDevice(), "turn_on", {"feature": "express_mode", "device": "washer"}
    )
    assert said(messages) == [
        ("utter_device_lacks_feature", {"device": "Washer", "feature": "express mode"})
    ]

    messages, _ = await run(ActionControlDevice(), "turn_on", {"device": "garage freezer"})
    assert said(messages)[0][0] == "utter_device_not_found"
    assert said(messages)[0][1]["mention"] == "garage freezer"

    styler = (await simulator.devices())["Styler"]["deviceId"]
    await simulator.sim("POST", f"/sim/devices/{styler}/online", json={"online": False})
    messages, _ = await run(ActionDeviceStatus(), "ask_status", {"device": "styler"})
    assert said(messages) == [("utter_device_offline", {"device": "Styler"})]

    messages, events = await run(ActionAnswerPending(), "affirm")
    assert said(messages) == [("utter_nothing_pending", {})]
    assert events == []


async def test_list_devices(simulator):
    messages, _ = await run(ActionListDevices(), "list_devices")
    ((response, params),) = said(messages)
    assert response == "utter_device_list" and params["count"] == 9
    assert "Living Room AC (air conditioner)" in params["devices"]


async def test_unlinked_sender_outside_demo_mode(runtime, simulator):
    object.__setattr__(runtime.settings, "demo_mode", False)
    messages, events = await run(ActionListDevices(), "list_devices")
    assert said(messages) == [("utter_not_linked", {})]
    assert events == []
