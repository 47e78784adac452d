"""The circuit breaker around LG (lgcloud/circuit.py): opens after repeated transport
failures or 5xx, fails fast without calling LG while open, lets calls through again after
its open time, and ignores LG's own refusals — alone, with the real ThinQ client against
the simulator's /sim/faults, and in a conversation (the user hears "can't reach LG" at
once and nothing is sent)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from actions.actions import ActionControlDevice, ActionDeviceStatus
from assistant.runtime import Runtime, use_runtime
from assistant.settings import load_settings
from lgcloud.circuit import CIRCUIT_OPEN, LgCircuit, LgUnavailable, Trouble
from lgcloud.errors import DeviceOffline, ThinQServerError, ThinQTransportError
from tests.conftest import RunningSimulator, runtime_env
from tests.test_actions import run, said


async def fail(circuit: LgCircuit, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        async with circuit.guard("thinq"):
            raise exc


async def succeed(circuit: LgCircuit) -> None:
    async with circuit.guard("thinq"):
        pass


async def test_opens_after_the_threshold_and_closes_after_a_success() -> None:
    circuit = LgCircuit(threshold=2, open_seconds=0.2)
    await fail(circuit, ThinQTransportError("0000", "timed out"))
    assert not circuit.is_open("thinq")
    await fail(circuit, Trouble(None))
    assert circuit.is_open("thinq")
    with pytest.raises(LgUnavailable) as refused:
        await succeed(circuit)
    assert refused.value.code == CIRCUIT_OPEN
    await asyncio.sleep(0.25)
    await succeed(circuit)  # half-open: this one goes through and closes it
    assert circuit.states() == {"thinq": "closed"}


async def test_a_failure_while_half_open_opens_it_again() -> None:
    circuit = LgCircuit(threshold=1, open_seconds=0.1)
    await fail(circuit, Trouble(None))
    await asyncio.sleep(0.15)
    await fail(circuit, ThinQTransportError("0000", "refused"))
    with pytest.raises(LgUnavailable):
        await succeed(circuit)


async def test_lg_s_refusals_and_successes_in_between_do_not_open_it() -> None:
    circuit = LgCircuit(threshold=2, open_seconds=10)
    for _ in range(5):
        await fail(circuit, DeviceOffline("1222", "offline"))
        await fail(circuit, ThinQServerError("2209", "device response delay"))
    await fail(circuit, Trouble(None))
    await succeed(circuit)
    await fail(circuit, Trouble(None))
    assert not circuit.is_open("thinq")


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        LgCircuit(threshold=0)
    with pytest.raises(ValueError):
        LgCircuit(open_seconds=0)


async def test_the_client_stops_calling_a_failing_lg(simulator: RunningSimulator) -> None:
    await simulator.sim(
        "PUT", "/sim/faults", json={"rules": [{"path": "/devices", "httpStatus": 503}]}
    )
    client = simulator.client(read_retries=0, circuit=LgCircuit(threshold=2, open_seconds=0.3))
    try:
        await simulator.sim("DELETE", "/sim/calls")
        for _ in range(2):
            with pytest.raises(ThinQServerError):
                await client.list_devices(simulator.demo_auth)
        with pytest.raises(LgUnavailable):
            await client.list_devices(simulator.demo_auth)
        calls = (await simulator.sim("GET", "/sim/calls")).json()
        assert [c["status"] for c in calls] == [503, 503]  # the third never left
        await simulator.sim("DELETE", "/sim/faults")
        await asyncio.sleep(0.35)
        assert await client.list_devices(simulator.demo_auth)
    finally:
        await client.aclose()
        await simulator.sim("DELETE", "/sim/faults")


async def test_a_user_hears_at_once_and_nothing_is_sent(
    simulator: RunningSimulator, tmp_path: Path, database_url: str
) -> None:
    env = {**runtime_env(simulator, tmp_path / "state", database_url), "LG_CIRCUIT_THRESHOLD": "1"}
    runtime = await Runtime.create(load_settings(env))
    use_runtime(runtime)
    try:
        await run(ActionDeviceStatus(), "ask_status", {"device": "fridge"})  # cache the list
        await simulator.sim(
            "PUT",
            "/sim/faults",
            json={"rules": [{"path": "/devices/*", "timeout": True, "timeoutSeconds": 4}]},
        )
        messages, _ = await run(ActionDeviceStatus(), "ask_status", {"device": "washer"})
        assert said(messages) == [("utter_lg_unavailable", {})]
        await simulator.sim("DELETE", "/sim/calls")
        messages, _ = await run(
            ActionControlDevice(), "turn_on", {"feature": "express_mode", "device": "fridge"}
        )
        assert said(messages) == [("utter_lg_unavailable", {})]
        assert (await simulator.sim("GET", "/sim/calls")).json() == []
        fridge = (await simulator.devices())["Fridge"]["state"]
        assert fridge["refrigeration.expressMode"] is False
    finally:
        use_runtime(None)
        await simulator.sim("DELETE", "/sim/faults")
        await runtime.close()
