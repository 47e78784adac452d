""" "Turn off all the air conditioners": one v2 control-async call for every appliance of
the type, per-device answers gathered, and an honest report — with the real runtime, the
simulated cloud and the connector's real callback receiver (SQLite and PostgreSQL)."""

from __future__ import annotations

from actions.actions import ActionAnswerPending, ActionControlDevice
from tests.test_actions import run, said, slots_after
from tests.test_home_overview import home, lg_calls  # noqa: F401 - fixture, found by name

ALL_ACS = {"device": "air conditioners", "scope": "all"}


async def control_calls(simulator) -> list[str]:
    """LG control calls made: v1 ``POST /devices/{id}`` and v2 ``control-async``."""
    return [
        c["path"]
        for c in await lg_calls(simulator)
        if c["method"] == "POST"
        and (c["path"].startswith("/devices/") or c["path"] == "/v2/devices/control-async")
    ]


async def ac_power(simulator) -> dict[str, str]:
    return {
        alias: d["state"]["operation.airConOperationMode"]
        for alias, d in (await simulator.devices()).items()
        if d["deviceType"] == "DEVICE_AIR_CONDITIONER"
    }


async def test_all_air_conditioners_off_in_one_call(simulator, home) -> None:  # noqa: F811
    await simulator.sim("DELETE", "/sim/calls")
    messages, _ = await run(ActionControlDevice(), "turn_off", ALL_ACS)
    [(response, params)] = said(messages)
    assert response == "utter_bulk_result"
    summary = params["summary"]
    assert "Bedroom AC" in summary and "Living Room AC" in summary
    assert await ac_power(simulator) == {"Bedroom AC": "POWER_OFF", "Living Room AC": "POWER_OFF"}
    assert await control_calls(simulator) == ["/v2/devices/control-async"]


async def test_a_silent_air_conditioner_is_not_reported_as_done(simulator, home) -> None:  # noqa: F811
    bedroom = (await simulator.devices())["Bedroom AC"]["deviceId"]
    await simulator.sim("PUT", "/sim/placement/faults", json={"drop": [bedroom]})
    messages, _ = await run(ActionControlDevice(), "turn_off", ALL_ACS)
    [(response, params)] = said(messages)
    assert response == "utter_bulk_result"
    summary = params["summary"]
    assert summary.startswith("1 of 2 confirmed."), summary
    assert "The Bedroom AC didn't answer in time, so I can't confirm it" in summary


async def test_switching_many_on_waits_for_a_yes(simulator, home) -> None:  # noqa: F811
    await simulator.sim("DELETE", "/sim/calls")
    before = await ac_power(simulator)
    messages, events = await run(ActionControlDevice(), "turn_on", ALL_ACS)
    [(response, params)] = said(messages)
    assert response == "utter_bulk_confirm"
    assert params["plan"] == "turn on the Bedroom AC and the Living Room AC"
    assert params["buttons"] == [("Yes", "/affirm"), ("No", "/deny")]
    assert await ac_power(simulator) == before
    assert await control_calls(simulator) == []
    pending = slots_after(events)["pending"]
    assert pending["kind"] == "confirm_bulk"

    messages, events = await run(ActionAnswerPending(), "deny", slots={"pending": pending})
    assert said(messages) == [("utter_cancelled", {})]
    assert await control_calls(simulator) == []

    messages, events = await run(ActionAnswerPending(), "affirm", slots={"pending": pending})
    [(response, params)] = said(messages)
    assert response == "utter_bulk_result"
    assert params["summary"] == "Turned on the Bedroom AC and Living Room AC. Both confirmed."
    assert slots_after(events)["pending"] is None
    assert await ac_power(simulator) == {"Bedroom AC": "POWER_ON", "Living Room AC": "POWER_ON"}


async def test_setting_many_at_once_names_the_value(simulator, home) -> None:  # noqa: F811
    messages, _ = await run(
        ActionControlDevice(), "set_value", {**ALL_ACS, "setting": "heat", "feature": "mode"}
    )
    [(response, params)] = said(messages)
    assert (response, params["plan"]) == (
        "utter_bulk_confirm",
        "set the Bedroom AC and the Living Room AC to heat",
    )


async def test_all_of_a_subset_goes_one_by_one(simulator, home) -> None:  # noqa: F811
    await simulator.sim("DELETE", "/sim/calls")
    messages, _ = await run(
        ActionControlDevice(), "turn_off", {"device": "bedroom ac", "scope": "all"}
    )
    [(response, params)] = said(messages)
    assert (response, params["summary"]) == ("utter_bulk_result", "Turned off the Bedroom AC.")
    [control] = await control_calls(simulator)
    assert control.startswith("/devices/"), control


async def test_all_of_nothing_known(simulator, home) -> None:  # noqa: F811
    messages, _ = await run(
        ActionControlDevice(), "turn_off", {"device": "jacuzzis", "scope": "all"}
    )
    assert said(messages)[0][0] == "utter_device_not_found"
    messages, _ = await run(ActionControlDevice(), "turn_off", {"scope": "all"})
    assert said(messages) == [("utter_bulk_which", {})]
