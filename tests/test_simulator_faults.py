"""``/sim/faults`` over real HTTP: latency, LG error codes (v1 and v2 envelopes), bare
5xx, timeouts with and without the request taking effect, lost callbacks, counts, and
malformed rules refused with a reason and nothing changed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.test_simulator_support import Sim, callback_receiver, running_simulator

WASHER_START = {"operation": {"washerOperationMode": "START"}}
EXPRESS_ON = {"refrigeration": {"expressMode": True}}


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with running_simulator() as running:
        yield running


async def put_rules(sim: Sim, *rules: dict[str, Any]) -> httpx.Response:
    return await sim.client.put("/sim/faults", json={"rules": list(rules)})


async def test_no_rules_by_default_and_clearing(sim: Sim) -> None:
    assert (await sim.client.get("/sim/faults")).json() == {"rules": []}
    await put_rules(sim, {"path": "/devices", "error": "2209"})
    assert (await sim.client.delete("/sim/faults")).json() == {"rules": []}
    assert (await sim.lg("GET", "/devices")).status_code == 200


async def test_an_lg_error_code_in_lg_s_envelope(sim: Sim) -> None:
    await put_rules(sim, {"method": "GET", "path": "/devices/*", "error": "1222"})
    fridge = sim.ids["Fridge"]
    answer = await sim.lg("GET", f"/devices/{fridge}")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "1222"
    assert (await sim.lg("GET", "/devices")).status_code == 200  # not matched
    calls = (await sim.client.get("/sim/calls")).json()
    assert [(c["path"], c["status"], c["code"]) for c in calls][-2:] == [
        (f"/devices/{fridge}", 400, "1222"),
        ("/devices", 200, None),
    ]


async def test_v2_paths_get_the_v2_envelope(sim: Sim) -> None:
    await put_rules(sim, {"path": "/v2/devices/*", "error": "1306"})
    answer = await sim.lg("POST", "/v2/devices/status-async", json={})
    assert answer.status_code == 400
    assert answer.json()["response"]["error"]["code"] == "1306"


async def test_an_error_not_applied_changes_nothing(sim: Sim) -> None:
    await put_rules(sim, {"method": "POST", "path": "/devices/*", "error": "2209", "count": 1})
    answer = await sim.control("Fridge", EXPRESS_ON)
    assert answer.json()["error"]["code"] == "2209"
    assert (await sim.state("Fridge"))["refrigeration.expressMode"] is False
    # The rule was good for one request: the next one is served.
    assert (await sim.control("Fridge", EXPRESS_ON)).status_code == 200
    assert (await sim.state("Fridge"))["refrigeration.expressMode"] is True
    [rule] = (await sim.client.get("/sim/faults")).json()["rules"]
    assert (rule["hits"], rule["count"]) == (1, 1)


async def test_an_applied_error_takes_effect_but_answers_the_error(sim: Sim) -> None:
    await put_rules(
        sim, {"method": "POST", "path": "/devices/*", "httpStatus": 503, "applied": True}
    )
    answer = await sim.control("Fridge", EXPRESS_ON)
    assert answer.status_code == 503
    assert (await sim.state("Fridge"))["refrigeration.expressMode"] is True


async def test_latency_delays_the_answer(sim: Sim) -> None:
    await put_rules(sim, {"method": "GET", "path": "/devices", "latencyMs": 300})
    started = time.monotonic()
    assert (await sim.lg("GET", "/devices")).status_code == 200
    assert time.monotonic() - started >= 0.3


async def test_a_timeout_applied_keeps_the_client_waiting_and_the_device_did_it(sim: Sim) -> None:
    await put_rules(
        sim,
        {"method": "POST", "path": "/devices/*", "timeout": True, "applied": True, "count": 1},
    )
    with pytest.raises(httpx.TimeoutException):
        await sim.client.post(
            f"/devices/{sim.ids['Washer']}",
            headers=sim.headers(),
            json=WASHER_START,
            timeout=0.5,
        )
    assert (await sim.state("Washer"))["runState.currentState"] == "RUNNING"


async def test_a_timeout_not_applied_leaves_the_device_alone(sim: Sim) -> None:
    await put_rules(
        sim, {"method": "POST", "path": "/devices/*", "timeout": True, "timeoutSeconds": 1}
    )
    answer = await sim.control("Washer", WASHER_START)
    assert answer.status_code == 504
    assert (await sim.state("Washer"))["runState.currentState"] == "INITIAL"


async def test_lost_callbacks() -> None:
    async with callback_receiver() as receiver, running_simulator(callback_url=receiver.url) as sim:
        washer = sim.ids["Washer"]
        assert (await sim.lg("POST", f"/push/{washer}")).status_code == 200
        await put_rules(sim, {"callback": "DEVICE_PUSH", "drop": True, "count": 1})
        first = await sim.client.post(
            f"/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
        )
        assert first.status_code == 502
        assert first.json()["sent"] is False
        assert "dropped by /sim/faults" in first.json()["reason"]
        second = await sim.client.post(
            f"/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
        )
        assert second.json() == {"sent": True}
        assert len(receiver.pushes()) == 1


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ([{"path": "/devices"}], "does nothing"),
        ([{"path": "devices", "error": "1222"}], "path"),
        ([{"path": "/sim/devices", "error": "1222"}], "not faulted"),
        ([{"path": "/devices", "error": "9999"}], "error"),
        ([{"path": "/devices", "error": "1222", "timeout": True}], "exclude"),
        ([{"path": "/devices", "httpStatus": 404}], "httpStatus"),
        ([{"path": "/devices", "latencyMs": -1}], "latencyMs"),
        ([{"path": "/devices", "latencyMs": 10, "applied": True}], "applied"),
        ([{"path": "/devices", "method": "PATCH", "latencyMs": 1}], "method"),
        ([{"path": "/devices", "latencyMs": 1, "surprise": 1}], "unknown fields"),
        ([{"callback": "DEVICE_PUSH"}], "drop"),
        ([{"callback": "DEVICE_PUSH", "drop": True, "path": "/x"}], "no path"),
        (["nope"], "object"),
    ],
)
async def test_malformed_rules_are_refused_and_nothing_changes(
    sim: Sim, rules: list[Any], reason: str
) -> None:
    await put_rules(sim, {"path": "/push", "latencyMs": 1})
    answer = await sim.client.put("/sim/faults", json={"rules": rules})
    assert answer.status_code == 400
    assert reason in answer.json()["reason"]
    assert [r["path"] for r in (await sim.client.get("/sim/faults")).json()["rules"]] == ["/push"]


async def test_a_body_that_is_not_rules_is_refused(sim: Sim) -> None:
    for body in ([], {"rules": {}}, {"rule": []}):
        assert (await sim.client.put("/sim/faults", json=body)).status_code == 400
    assert (
        await sim.client.put(
            "/sim/faults", content=b"{", headers={"content-type": "application/json"}
        )
    ).status_code == 400
