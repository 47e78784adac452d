"""What the user is told when LG misbehaves (``/sim/faults``), with the real actions, the
real runtime and the simulated cloud over HTTP: offline, response delay, too many calls,
invalid status, invalid token, 5xx, slowness and timeouts. Every answer is specific and
honest, and no device is changed twice: after a command whose outcome is unknown, the
next one reads the device's state first and sends nothing blindly."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from actions.actions import ActionControlDevice, ActionDeviceStatus
from assistant.conversation import took_effect
from assistant.household import Appliance
from assistant.planning import CommandRequest, plan_command
from assistant.runtime import Runtime, use_runtime
from assistant.vocabulary import load_vocabulary
from lgcloud.profile import parse_profile
from tests.conftest import RunningSimulator
from tests.test_actions import run, said

EXPRESS = {"feature": "express_mode", "device": "fridge"}


@pytest.fixture
async def installed(simulator: RunningSimulator, runtime: Runtime) -> AsyncIterator[Runtime]:
    use_runtime(runtime)
    # The device list and profiles are cached first, so faults hit only what follows.
    await run(ActionDeviceStatus(), "ask_status", {"device": "fridge"})
    try:
        yield runtime
    finally:
        use_runtime(None)
        await simulator.sim("DELETE", "/sim/faults")


async def faults(simulator: RunningSimulator, *rules: dict[str, Any]) -> None:
    answer = await simulator.sim("PUT", "/sim/faults", json={"rules": list(rules)})
    assert answer.status_code == 200, answer.text


async def controls(simulator: RunningSimulator, device_id: str) -> list[int]:
    """HTTP statuses of the control commands the device got (v1 POST /devices/{id})."""
    calls = (await simulator.sim("GET", "/sim/calls")).json()
    return [
        c["status"] for c in calls if c["method"] == "POST" and c["path"] == f"/devices/{device_id}"
    ]


async def express(simulator: RunningSimulator) -> bool:
    return (await simulator.devices())["Fridge"]["state"]["refrigeration.expressMode"]


@pytest.mark.parametrize(
    ("code", "response"),
    [
        ("1222", "utter_device_offline"),
        ("1306", "utter_lg_busy"),
        ("1103", "utter_account_problem"),
        ("2205", "utter_not_in_this_state"),
    ],
)
async def test_a_refused_command_is_explained_and_changes_nothing(
    simulator, installed, code, response
) -> None:
    await faults(simulator, {"method": "POST", "path": "/devices/*", "error": code})
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages)[0][0] == response
    assert await express(simulator) is False


async def test_lg_unreachable_for_reads(simulator, installed) -> None:
    await faults(simulator, {"method": "GET", "path": "/devices/*", "httpStatus": 503})
    messages, _ = await run(ActionDeviceStatus(), "ask_status", {"device": "washer"})
    assert said(messages) == [("utter_lg_unavailable", {})]


async def test_a_slow_lg_still_answers(simulator, installed) -> None:
    await faults(simulator, {"method": "POST", "path": "/devices/*", "latencyMs": 800})
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages)[0][0] == "utter_control_done"
    assert await express(simulator) is True


async def test_a_lost_answer_is_checked_not_resent(simulator, installed) -> None:
    fridge = (await simulator.devices())["Fridge"]["deviceId"]
    # LG did it, but the answer never came (the client gives up after 3 s).
    await faults(
        simulator,
        {
            "method": "POST",
            "path": "/devices/*",
            "timeout": True,
            "timeoutSeconds": 6,
            "applied": True,
            "count": 1,
        },
    )
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages) == [("utter_control_unconfirmed", {"device": "Fridge"})]
    assert await express(simulator) is True
    # The user says it again: the state is read, the command is not sent a second time.
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages) == [
        ("utter_control_already_done", {"result": "Done: the Fridge's express mode is now on."})
    ]
    # (The held request is logged with its 504 only when the simulator lets it go.)
    assert (await controls(simulator, fridge)).count(200) == 0
    # Known now: the next command is sent without another look.
    messages, _ = await run(ActionControlDevice(), "turn_off", EXPRESS)
    assert said(messages)[0][0] == "utter_control_done"
    assert (await controls(simulator, fridge)).count(200) == 1


async def test_a_delay_that_did_nothing_is_sent_again_after_a_look(simulator, installed) -> None:
    fridge = (await simulator.devices())["Fridge"]["deviceId"]
    await faults(simulator, {"method": "POST", "path": "/devices/*", "error": "2209", "count": 1})
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages) == [("utter_control_unconfirmed", {"device": "Fridge"})]
    assert await express(simulator) is False
    await simulator.sim("DELETE", "/sim/calls")
    messages, _ = await run(ActionControlDevice(), "turn_on", EXPRESS)
    assert said(messages)[0][0] == "utter_control_done"
    assert await express(simulator) is True
    calls = [(c["method"], c["path"]) for c in (await simulator.sim("GET", "/sim/calls")).json()]
    assert calls == [("GET", f"/devices/{fridge}"), ("POST", f"/devices/{fridge}")]


async def test_a_write_only_start_is_judged_by_the_run_state(simulator, installed) -> None:
    washer = (await simulator.devices())["Washer"]["deviceId"]
    await faults(
        simulator,
        {"method": "POST", "path": "/devices/*", "httpStatus": 502, "applied": True, "count": 1},
    )
    messages, _ = await run(ActionControlDevice(), "start_appliance", {"device": "washer"})
    assert said(messages) == [("utter_control_unconfirmed", {"device": "Washer"})]
    messages, _ = await run(ActionControlDevice(), "start_appliance", {"device": "washer"})
    assert said(messages)[0][0] == "utter_control_already_done"
    assert await controls(simulator, washer) == [502]
    assert (await simulator.devices())["Washer"]["state"]["runState.currentState"] == "RUNNING"


def _appliance(resources: dict[str, Any]) -> Appliance:
    profile = parse_profile({"property": resources})
    return Appliance("d1", "DEVICE_STYLER", "Styler", "model", profile)


def test_took_effect_says_when_the_state_cannot_tell() -> None:
    vocab = load_vocabulary()
    styler = _appliance(
        {
            "operation": {
                "stylerOperationMode": {
                    "type": "enum",
                    "mode": ["w"],
                    "value": {"w": ["START", "SLEEP_MODE"]},
                }
            }
        }
    )
    plan = plan_command(CommandRequest("start"), styler, vocab, status={})
    assert took_effect(plan, {"runState.currentState": "RUNNING"}, vocab) is True
    assert took_effect(plan, {"runState.currentState": "INITIAL"}, vocab) is False
    assert took_effect(plan, {}, vocab) is None  # no run state to look at
