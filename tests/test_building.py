"""Building-manager conversations (BECON) through the real actions, the real runtime and
the simulated BECON cloud over HTTP, on SQLite and PostgreSQL: facilities named fuzzily,
one-facility commands, many-facility commands that list the changes and wait for a yes,
roles, and BECON's validation errors explained. Effects are checked through the
contract's ``/sim/becon/facilities``."""

from __future__ import annotations

import socket
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
    ActionHomeOverview,
)
from assistant.building import BuildingAssistant
from assistant.facilities import load_catalog
from assistant.runtime import Runtime, use_runtime
from assistant.storage.building_links import OCCUPANT
from lgcloud.becon import BeconClient
from tests.conftest import RunningSimulator
from tests.test_actions import said

SENDER = "manager-1"


@pytest.fixture
async def building(simulator: RunningSimulator, runtime: Runtime) -> AsyncIterator[Runtime]:
    assert runtime.building is not None, "demo mode configures BECON"
    use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(None)


def tracker(
    text: str,
    intent: str,
    entities: dict[str, Any] | None = None,
    slots: dict[str, Any] | None = None,
    sender: str = SENDER,
) -> Tracker:
    return Tracker(
        sender_id=sender,
        slots=slots or {},
        latest_message={
            "intent": {"name": intent, "confidence": 1.0},
            "entities": [{"entity": k, "value": v} for k, v in (entities or {}).items()],
            "text": text,
        },
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def run(action, text, intent, entities=None, slots=None, sender=SENDER):
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(text, intent, entities, slots, sender), {})
    return said(dispatcher.messages), events


async def facilities(simulator: RunningSimulator) -> dict[str, dict[str, Any]]:
    listed = (await simulator.sim("GET", "/sim/becon/facilities")).json()
    return {entry["name"]: entry["state"] for entry in listed}


def pending_of(events) -> Any:
    return next(e["value"] for e in events if e["event"] == "slot" and e["name"] == "pending")


async def test_turn_on_the_meeting_room_unit(simulator, building) -> None:
    replies, _ = await run(
        ActionControlDevice(),
        "turn on the meeting room 3F unit",
        "turn_on",
        {"device": "meeting room 3F unit"},
    )
    assert replies == [("utter_building_done", {"result": "Turned on Meeting Room 3F."})]
    assert (await facilities(simulator))["Meeting Room 3F"]["power"] == "ON"


async def test_set_the_lobby_to_23_degrees_means_the_indoor_unit(simulator, building) -> None:
    before = await facilities(simulator)
    replies, _ = await run(
        ActionControlDevice(),
        "set the lobby to 23 degrees",
        "set_value",
        {"device": "lobby", "number": 23},
    )
    assert replies == [("utter_building_done", {"result": "Done: Lobby is now set to 23 °C."})]
    after = await facilities(simulator)
    assert after["Lobby"]["setTemperature"] == 23
    assert after["Lobby Purifier"] == before["Lobby Purifier"]


async def test_switch_office_2f_to_heating(simulator, building) -> None:
    replies, _ = await run(
        ActionControlDevice(),
        "switch office 2F to heating",
        "set_value",
        {"device": "office 2F", "setting": "heat"},
    )
    assert replies == [("utter_building_done", {"result": "Done: Office 2F is now heating."})]
    assert (await facilities(simulator))["Office 2F"]["operationMode"] == "HEAT"


async def test_set_the_ventilation_fan_to_high(simulator, building) -> None:
    replies, _ = await run(
        ActionControlDevice(),
        "set the ventilation fan to high",
        "set_value",
        {"device": "ventilation fan", "setting": "high"},
    )
    assert replies == [
        ("utter_building_done", {"result": "Done: Ventilation 1 is now on fan speed high."})
    ]
    assert (await facilities(simulator))["Ventilation 1"]["fanSpeed"] == "HIGH"


async def test_the_temperature_in_office_2f(simulator, building) -> None:
    replies, _ = await run(
        ActionDeviceStatus(),
        "what's the temperature in office 2F",
        "ask_status",
        {"device": "office 2F", "feature": "temperature"},
    )
    assert replies == [
        ("utter_building_status", {"status": "Office 2F is at 24.5 °C, set to 23 °C."})
    ]


async def test_is_the_lobby_purifier_on(simulator, building) -> None:
    replies, _ = await run(
        ActionDeviceStatus(),
        "is the lobby purifier on?",
        "ask_status",
        {"device": "lobby purifier"},
    )
    assert replies == [
        ("utter_building_status", {"status": "Lobby Purifier is on, fan speed auto."})
    ]


async def test_air_cleaning_in_the_lobby_means_the_purifier(simulator, building) -> None:
    await run(ActionControlDevice(), "turn off the lobby purifier", "turn_off")
    replies, _ = await run(ActionControlDevice(), "turn on air cleaning in the lobby", "turn_on")
    assert replies == [("utter_building_done", {"result": "Turned on Lobby Purifier."})]
    assert (await facilities(simulator))["Lobby Purifier"]["power"] == "ON"


async def test_all_indoor_units_lists_the_changes_and_waits_for_yes(simulator, building) -> None:
    before = await facilities(simulator)
    replies, events = await run(
        ActionControlDevice(),
        "turn off all indoor units at headquarters",
        "turn_off",
        {"device": "indoor units", "scope": "all"},
    )
    [(response, params)] = replies
    assert response == "utter_building_confirm"
    assert params["plan"] == (
        "This will turn off 2 facilities at Headquarters: Lobby (on → off); "
        "Office 2F (on → off). Already off: Meeting Room 3F."
    )
    assert params["buttons"] == [("Yes", "/affirm"), ("No", "/deny")]
    assert await facilities(simulator) == before  # nothing yet
    pending = pending_of(events)
    replies, events = await run(
        ActionAnswerPending(), "/affirm", "affirm", slots={"pending": pending}
    )
    assert replies == [
        ("utter_building_result", {"summary": "Turned off Lobby and Office 2F. Both confirmed."})
    ]
    assert events == [SlotSet("pending", None)]
    after = await facilities(simulator)
    assert [after[n]["power"] for n in ("Lobby", "Office 2F", "Meeting Room 3F")] == ["OFF"] * 3
    assert after["Lobby Purifier"]["power"] == "ON" and after["Ventilation 1"]["power"] == "ON"


async def test_no_to_a_building_wide_command_changes_nothing(simulator, building) -> None:
    before = await facilities(simulator)
    _, events = await run(
        ActionControlDevice(),
        "turn off all indoor units at headquarters",
        "turn_off",
        {"device": "indoor units", "scope": "all"},
    )
    replies, events = await run(
        ActionAnswerPending(), "no", "deny", slots={"pending": pending_of(events)}
    )
    assert replies == [("utter_building_cancelled", {})]
    assert await facilities(simulator) == before


async def test_an_occupant_may_look_but_not_control(simulator, building) -> None:
    await building.storage.building_links.grant("occupant-1", "HQ", OCCUPANT)
    before = await facilities(simulator)
    replies, _ = await run(
        ActionControlDevice(), "turn off the lobby", "turn_off", sender="occupant-1"
    )
    assert replies == [("utter_building_occupant_refused", {"site": "Headquarters"})]
    replies, _ = await run(
        ActionDeviceStatus(), "is the lobby on?", "ask_status", sender="occupant-1"
    )
    assert replies[0][0] == "utter_building_status"
    assert await facilities(simulator) == before


async def test_a_yes_after_the_role_was_taken_away_changes_nothing(simulator, building) -> None:
    _, events = await run(
        ActionControlDevice(),
        "turn off all indoor units at headquarters",
        "turn_off",
        {"scope": "all"},
    )
    await building.storage.building_links.grant(SENDER, "HQ", OCCUPANT)
    before = await facilities(simulator)
    replies, _ = await run(
        ActionAnswerPending(), "yes", "affirm", slots={"pending": pending_of(events)}
    )
    assert replies[0][0] == "utter_building_occupant_refused"
    assert await facilities(simulator) == before


@pytest.mark.parametrize(
    ("text", "number", "reason"),
    [
        ("set the lobby to 35 degrees", 35, "set temperature 35 is outside 16 to 30"),
        ("set the lobby to 22.3 degrees", 22.3, "set temperature 22.3 is not a multiple of 0.5"),
    ],
)
async def test_becon_validation_errors_are_explained(simulator, building, text, number, reason):
    before = await facilities(simulator)
    replies, _ = await run(ActionControlDevice(), text, "set_value", {"number": number})
    assert replies == [
        (
            "utter_building_refused",
            {"facility": "Lobby", "change": f"set temperature {number} °C", "reason": reason},
        )
    ]
    assert await facilities(simulator) == before


async def test_a_purifier_has_no_temperature(simulator, building) -> None:
    replies, _ = await run(
        ActionControlDevice(), "set the lobby purifier to 23 degrees", "set_value", {"number": 23}
    )
    assert replies == [
        ("utter_building_not_capable", {"facility": "Lobby Purifier", "feature": "set temperature"})
    ]


async def test_which_indoor_unit_is_asked_then_answered(simulator, building) -> None:
    replies, events = await run(ActionControlDevice(), "turn on the indoor unit", "turn_on")
    [(response, params)] = replies
    assert response == "utter_building_which"
    assert params["options"] == "Lobby, Meeting Room 3F or Office 2F"
    assert ("Meeting Room 3F", '/inform_device{"device": "Meeting Room 3F"}') in params["buttons"]
    replies, _ = await run(
        ActionAnswerPending(),
        '/inform_device{"device": "Meeting Room 3F"}',
        "inform_device",
        {"device": "Meeting Room 3F"},
        slots={"pending": pending_of(events)},
    )
    assert replies == [("utter_building_done", {"result": "Turned on Meeting Room 3F."})]
    assert (await facilities(simulator))["Meeting Room 3F"]["power"] == "ON"


async def test_home_requests_still_reach_the_home(simulator, building) -> None:
    replies, _ = await run(
        ActionControlDevice(),
        "turn on express mode on my fridge",
        "turn_on",
        {"feature": "express_mode", "device": "fridge"},
    )
    assert replies == [
        ("utter_control_done", {"result": "Done: the Fridge's express mode is now on."})
    ]
    assert (await simulator.devices())["Fridge"]["state"]["refrigeration.expressMode"] is True


async def test_an_expired_token_is_renewed_mid_conversation(simulator, building) -> None:
    await run(ActionDeviceStatus(), "is the lobby on?", "ask_status")
    assert (await simulator.sim("POST", "/sim/becon/expire-tokens")).status_code == 200
    replies, _ = await run(ActionControlDevice(), "turn on the meeting room 3F unit", "turn_on")
    assert replies == [("utter_building_done", {"result": "Turned on Meeting Room 3F."})]


async def test_with_becon_unreachable_home_turns_go_on_and_building_ones_say_so(
    simulator, building
) -> None:
    becon = building.settings.becon
    assert becon is not None
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = BuildingAssistant(
        BeconClient(dead, becon.service_id, becon.service_key, becon.symmetric_key),
        building.storage.building_links,
        load_catalog(),
        demo_site="HQ",
    )
    real, building.building = building.building, unreachable
    try:
        replies, _ = await run(
            ActionControlDevice(), "turn on the lobby", "turn_on", {"device": "lobby"}
        )
        # "lobby" alone is no building word: with BECON down it is the home's, which has none.
        assert replies[0][0] == "utter_device_not_found"
        replies, _ = await run(
            ActionControlDevice(),
            "turn off all indoor units at headquarters",
            "turn_off",
            {"scope": "all"},
        )
        assert replies == [("utter_building_unavailable", {})]
        replies, _ = await run(
            ActionControlDevice(),
            "turn on express mode on my fridge",
            "turn_on",
            {"feature": "express_mode", "device": "fridge"},
        )
        assert replies[0][0] == "utter_control_done"
    finally:
        building.building = real
        await unreachable.aclose()


async def test_how_is_everything_at_headquarters(simulator, building) -> None:
    asked = ((ActionHomeOverview(), "home_overview"), (ActionDeviceStatus(), "ask_status"))
    for action, intent in asked:
        replies, _ = await run(action, "how is everything at headquarters?", intent)
        assert replies == [
            (
                "utter_building_status",
                {
                    "status": "Headquarters: Meeting Room 3F is off, cooling, 26.5 °C there, "
                    "set to 24 °C, fan speed auto; Lobby is on, cooling, 23 °C there, set to "
                    "22 °C, fan speed medium; Office 2F is on, cooling, 24.5 °C there, set to "
                    "23 °C, fan speed low; Ventilation 1 is on, fan speed low; Lobby Purifier "
                    "is on, fan speed auto."
                },
            )
        ]
