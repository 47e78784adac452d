""" "How is everything at home?": the action with a real tracker, the real runtime, the
simulated cloud's v2 placement API, and the connector's real callback receiver storing
the per-device answers the turn gathers (on SQLite and PostgreSQL). One LG call for the
whole home, grouped answers, and honest partial results."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import ActionHomeOverview
from assistant.runtime import Runtime, use_runtime
from assistant.settings import demo_callback_secret
from assistant.storage.device_states import DeviceStateRepository
from connector.service import ConnectorService, Roles
from tests.conftest import RunningSimulator
from tests.test_actions import run, said, tracker


@pytest.fixture
async def home(simulator: RunningSimulator, runtime: Runtime) -> AsyncIterator[Runtime]:
    """The runtime, with a connector on the same database receiving LG's callbacks."""
    service = ConnectorService(runtime.settings, Roles(), port=0, storage=runtime.storage)
    await service.start()
    secret = demo_callback_secret(runtime.settings.thinq.service_key)
    url = f"http://127.0.0.1:{service.bound_port}/lg/callbacks?secret={secret}"
    assert (await simulator.sim("PUT", "/sim/callback-url", json={"url": url})).status_code == 200
    use_runtime(runtime)
    try:
        yield runtime
    finally:
        use_runtime(None)
        await simulator.sim("DELETE", "/sim/placement/faults")
        await service.stop()


async def lg_calls(simulator: RunningSimulator) -> list[dict]:
    return (await simulator.sim("GET", "/sim/calls")).json()


async def test_everything_at_home_in_one_lg_call_grouped(simulator, home) -> None:
    await run(ActionHomeOverview(), "home_overview")  # the device list is cached now
    await simulator.sim("DELETE", "/sim/calls")
    messages, _ = await run(ActionHomeOverview(), "home_overview")
    [(response, params)] = said(messages)
    assert response == "utter_home_overview"
    summary = params["summary"]
    # Grouped the way people think of a home, in a fixed order.
    assert summary.index("Laundry:") < summary.index("Kitchen:") < summary.index("Air:")
    for alias in ("Washer", "Dryer", "Styler", "Fridge", "Dishwasher", "Oven"):
        assert alias in summary
    assert "Bedroom AC" in summary and "Living Room AC" in summary
    assert "Styler (running, 35 minutes left)" in summary  # the contract: RUNNING, 0 h 35
    calls = [c["path"] for c in await lg_calls(simulator)]
    assert calls == ["/v2/devices/status-async"], calls


async def test_a_device_that_does_not_answer_is_named_and_not_guessed(simulator, home) -> None:
    devices = await simulator.devices()
    oven = devices["Oven"]["deviceId"]
    await simulator.sim("PUT", "/sim/placement/faults", json={"drop": [oven]})
    messages, _ = await run(ActionHomeOverview(), "home_overview")
    [(response, params)] = said(messages)
    assert response == "utter_home_overview_partial"
    assert (params["answered"], params["total"], params["missing"]) == (8, 9, "Oven")
    assert "Oven" not in params["summary"] and "Washer" in params["summary"]


async def test_an_offline_device_is_said_to_be_offline(simulator, home) -> None:
    dryer = (await simulator.devices())["Dryer"]["deviceId"]
    await simulator.sim("POST", f"/sim/devices/{dryer}/online", json={"online": False})
    messages, _ = await run(ActionHomeOverview(), "home_overview")
    [(response, params)] = said(messages)
    assert response == "utter_home_overview"
    assert "Dryer (offline)" in params["summary"]


async def test_a_device_found_offline_loses_its_stored_state(simulator, home) -> None:
    dryer_id = (await simulator.devices())["Dryer"]["deviceId"]
    states = DeviceStateRepository(home.storage.engine)
    session = await home.session_for("user-1", None)
    assert session is not None
    dryer = next(
        a
        for a in await home.household.appliances(session.thinq_user, session.auth)
        if a.device_id == dryer_id
    )
    await home.household.status(session.auth, dryer)  # a whole state is stored
    stored = await states.get(dryer_id)
    assert stored is not None and not stored.stale
    await simulator.sim("POST", f"/sim/devices/{dryer_id}/online", json={"online": False})
    messages, _ = await run(ActionHomeOverview(), "home_overview")
    assert "Dryer (offline)" in said(messages)[0][1]["summary"]
    stored = await states.get(dryer_id)
    assert stored is not None and stored.stale


async def test_refresh_my_devices_reads_the_device_list_again(simulator, home) -> None:
    await run(ActionHomeOverview(), "home_overview")  # the device list is cached now
    added = await simulator.sim(
        "POST", "/sim/devices", json={"deviceType": "DEVICE_DRYER", "alias": "Garage Dryer"}
    )
    assert added.status_code == 201, added.text
    await simulator.sim("DELETE", "/sim/calls")
    dispatcher = CollectingDispatcher()
    refresh = tracker("home_overview")
    refresh.latest_message["text"] = "refresh my devices"
    await ActionHomeOverview().run(dispatcher, refresh, {})
    assert "Garage Dryer (off)" in said(dispatcher.messages)[0][1]["summary"]
    # The list itself was read from LG again (not only the states).
    # (The building side may list its BECON site on a first turn: ThinQ calls only here.)
    paths = [c["path"] for c in await lg_calls(simulator) if not c["path"].startswith("/tms/")]
    assert paths[0] == "/devices" and "/v2/devices/status-async" in paths, paths
