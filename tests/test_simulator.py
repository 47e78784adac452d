"""The LG cloud simulator over real HTTP: headers, envelope, devices, profiles, control."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.test_simulator_support import (
    CONTRACT,
    WRITE_ONLY,
    Sim,
    new_message_id,
    profile_property,
    running_simulator,
)

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}$")


@pytest.fixture
async def sim() -> AsyncIterator[Sim]:
    async with running_simulator() as running:
        yield running


def lg_code(response: Any) -> str:
    return response.json()["error"]["code"]


# --- common headers ---------------------------------------------------------------------------


async def test_valid_headers_get_the_success_envelope(sim: Sim) -> None:
    message_id = new_message_id()
    headers = sim.headers(x_message_id=message_id)
    response = await sim.client.get("/devices", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"messageId", "timestamp", "response"}
    assert body["messageId"] == message_id
    assert TIMESTAMP.match(body["timestamp"])


@pytest.mark.parametrize(
    "header", ["Authorization", "x-country-code", "x-message-id", "x-service-id", "x-service-key"]
)
async def test_missing_header_is_1101_naming_it(sim: Sim, header: str) -> None:
    headers = sim.headers()
    del headers[header]
    response = await sim.client.get("/devices", headers=headers)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "1101"
    assert header in body["error"]["message"]
    assert set(body) == {"messageId", "timestamp", "error"}
    assert TIMESTAMP.match(body["timestamp"])


# Each case breaks one header *and* every header checked after it: the first check must win.
HEADER_CASES = [
    (
        "message id",
        {"x_message_id": "short", "Authorization": "Token x", "x_service_id": "nope"},
        400,
        "1104",
    ),
    ("message id chars", {"x_message_id": "a" * 21 + "!"}, 400, "1104"),
    ("message id long", {"x_message_id": "a" * 23}, 400, "1104"),
    ("auth scheme", {"Authorization": "Token abc", "x_service_id": "nope"}, 400, "1103"),
    ("auth no token", {"Authorization": "Bearer"}, 400, "1103"),
    ("auth two tokens", {"Authorization": "Bearer a b"}, 400, "1103"),
    ("service id", {"x_service_id": "nope", "x_service_key": "nope"}, 401, "1203"),
    ("service key", {"x_service_key": "nope", "Authorization": "Bearer unknown"}, 401, "1301"),
    ("token", {"Authorization": "Bearer unknown", "x_country_code": "usa"}, 401, "1302"),
    ("country", {"x_country_code": "us"}, 400, "1102"),
    ("country long", {"x_country_code": "USA"}, 400, "1102"),
]


@pytest.mark.parametrize(("case", "overrides", "status", "code"), HEADER_CASES)
async def test_header_errors_in_order(
    sim: Sim, case: str, overrides: dict[str, str], status: int, code: str
) -> None:
    response = await sim.client.get("/devices", headers=sim.headers(**overrides))
    assert response.status_code == status, case
    assert lg_code(response) == code, case


async def test_missing_header_wins_over_every_other_error(sim: Sim) -> None:
    headers = sim.headers(x_message_id="bad", Authorization="nonsense")
    del headers["x-service-key"]
    response = await sim.client.get("/devices", headers=headers)
    assert lg_code(response) == "1101"


async def test_headers_are_checked_on_every_thinq_path(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    paths = [
        ("GET", "/devices"),
        ("GET", f"/devices/profile/{washer}"),
        ("GET", f"/devices/{washer}"),
        ("POST", f"/devices/{washer}"),
        ("GET", "/push"),
        ("POST", f"/push/{washer}"),
        ("DELETE", f"/push/{washer}"),
        ("GET", "/pcc"),
        ("POST", f"/pcc/{washer}"),
        ("DELETE", f"/pcc/{washer}"),
        ("POST", f"/event/{washer}"),
        ("DELETE", f"/event/{washer}"),
    ]
    for method, path in paths:
        response = await sim.client.request(
            method, path, headers=sim.headers(x_service_key="wrong")
        )
        assert (response.status_code, lg_code(response)) == (401, "1301"), path


async def test_errors_never_echo_secrets(sim: Sim) -> None:
    response = await sim.client.get("/devices", headers=sim.headers(x_service_id="nope"))
    assert sim.creds.service_key not in response.text
    assert sim.creds.demo_token not in response.text


# --- unknown routes and bad input ---------------------------------------------------------------


async def test_unknown_route_is_a_json_404(sim: Sim) -> None:
    response = await sim.lg("GET", "/nothing/here")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


async def test_wrong_method_is_json(sim: Sim) -> None:
    response = await sim.lg("PUT", "/devices")
    assert response.status_code == 405
    assert "error" in response.json()


async def test_unknown_sim_route_is_a_json_404(sim: Sim) -> None:
    response = await sim.client.get("/sim/nothing")
    assert response.status_code == 404
    assert "reason" in response.json()


# --- device list, profiles, status ------------------------------------------------------------


async def test_device_list_of_the_demo_user(sim: Sim) -> None:
    response = await sim.lg("GET", "/devices")
    devices = response.json()["response"]
    assert [d["deviceInfo"]["alias"] for d in devices] == list(CONTRACT)
    for entry in devices:
        info = entry["deviceInfo"]
        assert set(info) == {"deviceType", "modelName", "alias", "reportable"}
        assert info["deviceType"] == CONTRACT[info["alias"]][0]
        assert info["modelName"]
        assert info["reportable"] is True
        assert entry["deviceId"] == sim.ids[info["alias"]]
        assert re.fullmatch(r"[0-9a-f]{64}", entry["deviceId"])


async def test_device_ids_are_the_documented_hashes(sim: Sim) -> None:
    import hashlib

    for alias, device_id in sim.ids.items():
        assert device_id == hashlib.sha256(("lg-demo/" + alias).encode()).hexdigest()


async def test_neighbour_sees_only_their_own_device(sim: Sim) -> None:
    response = await sim.lg("GET", "/devices", token=sim.neighbour_token)
    devices = response.json()["response"]
    assert [d["deviceInfo"]["alias"] for d in devices] == ["Neighbour AC"]


@pytest.mark.parametrize("alias", list(CONTRACT))
async def test_profile_matches_the_contract(sim: Sim, alias: str) -> None:
    response = await sim.lg("GET", f"/devices/profile/{sim.ids[alias]}")
    assert response.status_code == 200
    profile = response.json()["response"]
    assert set(profile) >= {"property", "notification", "error"}
    assert isinstance(profile["notification"]["push"], list)
    assert profile["notification"]["push"]
    assert isinstance(profile["error"], list)
    modes = {"r": ["r"], "w": ["w"], "rw": ["r", "w"]}
    for key, (prop_type, mode, allowed, _initial) in CONTRACT[alias][1].items():
        prop = profile_property(profile, key)
        assert prop is not None, key
        assert prop["type"] == prop_type, key
        assert prop["mode"] == modes[mode], key
        for m in modes[mode]:
            if prop_type == "enum" and allowed is not None:
                assert prop["value"][m] == allowed, key
            if prop_type == "range":
                low, high, step = allowed
                assert prop["value"][m] == {"min": low, "max": high, "step": step}, key
            if prop_type == "boolean":
                assert sorted(prop["value"][m]) == [False, True], key
        if prop_type == "number":
            assert prop.get("value") in (None, {"r": {}}), key


@pytest.mark.parametrize(
    ("alias", "states"),
    [
        ("Washer", {"POWER_OFF", "INITIAL", "RUNNING", "PAUSE", "END", "RESERVED"}),
        ("Dryer", {"POWER_OFF", "INITIAL", "RUNNING", "PAUSE", "END", "RESERVED"}),
        ("Styler", {"POWER_OFF", "INITIAL", "RUNNING", "PAUSE", "END", "RESERVED"}),
        ("Dishwasher", {"POWER_OFF", "INITIAL", "RUNNING", "PAUSE", "END", "RESERVED"}),
        ("Oven", {"INITIAL", "PREHEATING", "PREHEATING_IS_DONE", "PAUSE"}),
    ],
)
async def test_run_state_enum_covers_every_state_the_simulator_produces(
    sim: Sim, alias: str, states: set[str]
) -> None:
    response = await sim.lg("GET", f"/devices/profile/{sim.ids[alias]}")
    values = profile_property(response.json()["response"], "runState.currentState")["value"]["r"]
    assert states <= set(values)


async def test_per_location_resources_are_lists_with_location_names(sim: Sim) -> None:
    response = await sim.lg("GET", f"/devices/profile/{sim.ids['Fridge']}")
    prop = response.json()["response"]["property"]
    assert [i["locationName"] for i in prop["temperatureInUnits"]] == ["FRIDGE", "FREEZER"]
    assert [i["locationName"] for i in prop["doorStatus"]] == ["MAIN"]
    assert isinstance(prop["refrigeration"], dict)


async def test_status_is_thinq_status_json(sim: Sim) -> None:
    response = await sim.lg("GET", f"/devices/{sim.ids['Fridge']}")
    assert response.status_code == 200
    status = response.json()["response"]
    assert status["refrigeration"] == {"expressMode": False, "rapidFreeze": False}
    assert status["temperatureInUnits"] == [
        {"locationName": "FRIDGE", "targetTemperatureC": 3},
        {"locationName": "FREEZER", "targetTemperatureC": -18},
    ]
    assert status["doorStatus"] == [{"locationName": "MAIN", "doorState": "CLOSE"}]
    washer = (await sim.lg("GET", f"/devices/{sim.ids['Washer']}")).json()["response"]
    assert washer["runState"] == {"currentState": "INITIAL"}
    assert "operation" not in washer  # write-only: no status


async def test_sim_devices_match_the_contract_initial_state(sim: Sim) -> None:
    response = await sim.client.get("/sim/devices")
    entries = response.json()
    assert [e["alias"] for e in entries] == list(CONTRACT)  # no neighbour device
    for entry in entries:
        assert set(entry) == {"deviceId", "deviceType", "alias", "modelName", "online", "state"}
        device_type, keys = CONTRACT[entry["alias"]]
        assert entry["deviceType"] == device_type
        assert entry["online"] is True
        for key, (_type, _mode, _allowed, initial) in keys.items():
            if initial is WRITE_ONLY:
                assert key not in entry["state"], key
            else:
                assert entry["state"][key] == initial, (entry["alias"], key)
                assert type(entry["state"][key]) is type(initial), (entry["alias"], key)


# --- ownership and connectivity ----------------------------------------------------------------


async def test_unknown_device_is_1205(sim: Sim) -> None:
    for method, path in [
        ("GET", "/devices/" + "0" * 64),
        ("GET", "/devices/profile/" + "0" * 64),
        ("POST", "/push/" + "0" * 64),
    ]:
        response = await sim.lg(method, path)
        assert (response.status_code, lg_code(response)) == (404, "1205"), path


async def test_another_users_device_is_1212(sim: Sim) -> None:
    neighbour = (await sim.lg("GET", "/devices", token=sim.neighbour_token)).json()["response"]
    their_ac = neighbour[0]["deviceId"]
    before = await sim.client.get(f"/sim/devices/{their_ac}")
    for method, path, body in [
        ("GET", f"/devices/{their_ac}", None),
        ("GET", f"/devices/profile/{their_ac}", None),
        ("POST", f"/devices/{their_ac}", {"airFlow": {"windStrength": "HIGH"}}),
        ("POST", f"/push/{their_ac}", None),
        ("POST", f"/event/{their_ac}", None),
    ]:
        response = await sim.lg(method, path, json=body)
        assert (response.status_code, lg_code(response)) == (404, "1212"), path
    assert (await sim.client.get(f"/sim/devices/{their_ac}")).json() == before.json()
    # and the other way round
    response = await sim.lg("GET", f"/devices/{sim.ids['Fridge']}", token=sim.neighbour_token)
    assert lg_code(response) == "1212"
    ok = await sim.lg("GET", f"/devices/{their_ac}", token=sim.neighbour_token)
    assert ok.status_code == 200


async def test_offline_device_is_1222_for_status_and_control(sim: Sim) -> None:
    fridge = sim.ids["Fridge"]
    response = await sim.client.post(f"/sim/devices/{fridge}/online", json={"online": False})
    assert response.json()["online"] is False
    status = await sim.lg("GET", f"/devices/{fridge}")
    assert (status.status_code, lg_code(status)) == (400, "1222")
    assert status.json()["error"]["message"] == "Not connected device"
    control = await sim.control("Fridge", {"refrigeration": {"expressMode": True}})
    assert lg_code(control) == "1222"
    assert (await sim.lg("GET", f"/devices/profile/{fridge}")).status_code == 200
    assert (await sim.lg("GET", "/devices")).status_code == 200
    assert (await sim.state("Fridge"))["refrigeration.expressMode"] is False
    await sim.client.post(f"/sim/devices/{fridge}/online", json={"online": True})
    assert (
        await sim.control("Fridge", {"refrigeration": {"expressMode": True}})
    ).status_code == 200


# --- control: success -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "body", "expected"),
    [
        ("Fridge", {"refrigeration": {"expressMode": True}}, {"refrigeration.expressMode": True}),
        ("Bedroom AC", {"airFlow": {"windStrength": "HIGH"}}, {"airFlow.windStrength": "HIGH"}),
        (
            "Bedroom AC",
            {"temperatureInUnits": {"targetTemperatureC": 22.5}},
            {"temperatureInUnits.targetTemperatureC": 22.5},
        ),
        (
            "Fridge",
            {"temperatureInUnits": {"locationName": "FRIDGE", "targetTemperatureC": 4}},
            {
                "temperatureInUnits.FRIDGE.targetTemperatureC": 4,
                "temperatureInUnits.FREEZER.targetTemperatureC": -18,
            },
        ),
        (
            "Fridge",
            {"temperatureInUnits": {"locationName": "FREEZER", "targetTemperatureC": -23}},
            {"temperatureInUnits.FREEZER.targetTemperatureC": -23},
        ),
        (
            "Bedroom AC",
            {
                "airFlow": {"windStrength": "MID"},
                "airConJobMode": {"currentJobMode": "HEAT"},
                "temperatureInUnits": {"targetTemperatureC": 30},
            },
            {
                "airFlow.windStrength": "MID",
                "airConJobMode.currentJobMode": "HEAT",
                "temperatureInUnits.targetTemperatureC": 30,
            },
        ),
        (
            "Oven",
            {"temperature": {"targetTemperatureC": 50.0}},
            {"temperature.targetTemperatureC": 50},
        ),
        ("Oven", {"cook": {"cookMode": "BROIL"}}, {"cook.cookMode": "BROIL"}),
        (
            "Air Purifier",
            {"airPurifierJobMode": {"currentJobMode": "DUAL_CLEAN"}},
            {"airPurifierJobMode.currentJobMode": "DUAL_CLEAN"},
        ),
        ("Washer", {"timer": {"relativeHourToStart": 19}}, {"timer.relativeHourToStart": 19}),
    ],
)
async def test_control_success(
    sim: Sim, alias: str, body: dict[str, Any], expected: dict[str, Any]
) -> None:
    response = await sim.control(alias, body)
    assert response.status_code == 200, response.text
    assert response.json()["response"] == {}
    state = await sim.state(alias)
    for key, value in expected.items():
        assert state[key] == value, key
    status = (await sim.lg("GET", f"/devices/{sim.ids[alias]}")).json()["response"]
    for resource, props in body.items():
        if isinstance(status[resource], list):
            item = next(i for i in status[resource] if i["locationName"] == props["locationName"])
            assert {k: item[k] for k in props} == props
        else:
            assert {k: status[resource][k] for k in props} == props


# --- control: refusals change nothing -------------------------------------------------------------

TEMP = "temperatureInUnits"


def fridge_temp(location: str | None, value: Any) -> dict[str, Any]:
    props: dict[str, Any] = {"targetTemperatureC": value}
    if location is not None:
        props["locationName"] = location
    return {TEMP: props}


def ac_temp(value: Any) -> dict[str, Any]:
    return {TEMP: {"targetTemperatureC": value}}


REFUSALS = [
    ("unknown resource", "Fridge", {"nope": {"x": 1}}, "1102"),
    ("unknown property", "Fridge", {"refrigeration": {"nope": True}}, "1102"),
    (
        "read-only per-location",
        "Fridge",
        {"doorStatus": {"locationName": "MAIN", "doorState": "OPEN"}},
        "1102",
    ),
    ("read-only number", "Fridge", {"waterFilterInfo": {"usedTime": 0}}, "1102"),
    ("read-only state", "Washer", {"runState": {"currentState": "RUNNING"}}, "1102"),
    (
        "read-only boolean",
        "Washer",
        {"remoteControlEnable": {"remoteControlEnabled": False}},
        "1102",
    ),
    ("above max", "Fridge", fridge_temp("FRIDGE", 8), "1102"),
    ("below min", "Fridge", fridge_temp("FREEZER", -24), "1102"),
    ("off step", "Bedroom AC", ac_temp(22.3), "1102"),
    ("off step int grid", "Fridge", fridge_temp("FRIDGE", 3.5), "1102"),
    ("off step oven", "Oven", {"temperature": {"targetTemperatureC": 182}}, "1102"),
    ("enum value", "Bedroom AC", {"airFlow": {"windStrength": "TURBO"}}, "1102"),
    ("enum wrong case", "Bedroom AC", {"airFlow": {"windStrength": "high"}}, "1102"),
    ("string for boolean", "Fridge", {"refrigeration": {"expressMode": "true"}}, "1102"),
    ("number for boolean", "Fridge", {"refrigeration": {"expressMode": 1}}, "1102"),
    ("bool as number", "Bedroom AC", ac_temp(True), "1102"),
    ("string as number", "Bedroom AC", ac_temp("22"), "1102"),
    ("null value", "Bedroom AC", {"airFlow": {"windStrength": None}}, "1102"),
    ("missing locationName", "Fridge", fridge_temp(None, 4), "1101"),
    ("unknown location", "Fridge", fridge_temp("CONVERTIBLE", 4), "1102"),
    ("location on plain resource", "Bedroom AC", fridge_temp("FRIDGE", 22), "1102"),
    ("only locationName", "Fridge", {TEMP: {"locationName": "FRIDGE"}}, "1101"),
    ("empty resource", "Fridge", {"refrigeration": {}}, "1101"),
    ("resource not an object", "Fridge", {"refrigeration": True}, "1102"),
    ("empty body", "Fridge", {}, "1101"),
    ("not an object", "Fridge", [1, 2], "1311"),
    (
        "write-only value not in enum",
        "Dishwasher",
        {"operation": {"dishWasherOperationMode": "WAKE_UP"}},
        "1102",
    ),
    ("unknown command", "Washer", {"operation": {"washerOperationMode": "SPIN"}}, "1102"),
    (
        "atomic: valid then invalid",
        "Fridge",
        {"refrigeration": {"expressMode": True, "rapidFreeze": True}, **fridge_temp("FRIDGE", 99)},
        "1102",
    ),
    (
        "atomic: invalid delay with valid start",
        "Washer",
        {"timer": {"relativeHourToStart": 20}, "operation": {"washerOperationMode": "START"}},
        "1102",
    ),
]


@pytest.mark.parametrize(("case", "alias", "body", "code"), REFUSALS, ids=[r[0] for r in REFUSALS])
async def test_control_refusal_changes_nothing(
    sim: Sim, case: str, alias: str, body: Any, code: str
) -> None:
    before = await sim.sim_devices()
    response = await sim.control(alias, body)
    assert response.status_code == 400, response.text
    assert lg_code(response) == code
    assert await sim.sim_devices() == before


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "1311"),
        (b'{"refrigeration": {"expressMode": NaN}}', "1311"),
        (b'{"temperatureInUnits": {"locationName": "FRIDGE", "targetTemperatureC": -Infinity}}',
         "1311"),
        (b"\xff\xfe", "1311"),
        (b"", "1101"),
        (b"   ", "1101"),
        (b"null", "1311"),
        (b'"text"', "1311"),
        (b"[" * 100_000, "1311"),
    ],
    ids=["truncated", "nan", "infinity", "not utf-8", "no body", "blank", "null", "string", "deep"],
)  # fmt: skip
async def test_malformed_bodies(sim: Sim, raw: bytes, code: str) -> None:
    before = await sim.sim_devices()
    response = await sim.client.post(
        f"/devices/{sim.ids['Fridge']}",
        content=raw,
        headers={**sim.headers(), "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert lg_code(response) == code
    assert await sim.sim_devices() == before


# --- appliance rules ------------------------------------------------------------------------------


async def test_dryer_start_with_remote_control_off_is_2301(sim: Sim) -> None:
    start = {"operation": {"dryerOperationMode": "START"}}
    response = await sim.control("Dryer", start)
    assert (response.status_code, lg_code(response)) == (400, "2301")
    assert (await sim.state("Dryer"))["runState.currentState"] == "POWER_OFF"
    # waking it works without remote control; starting still does not
    assert (
        await sim.control("Dryer", {"operation": {"dryerOperationMode": "WAKE_UP"}})
    ).status_code == 200
    assert (await sim.state("Dryer"))["runState.currentState"] == "INITIAL"
    assert lg_code(await sim.control("Dryer", start)) == "2301"
    await sim.set_state("Dryer", **{"remoteControlEnable.remoteControlEnabled": True})
    assert (await sim.control("Dryer", start)).status_code == 200
    state = await sim.state("Dryer")
    assert state["runState.currentState"] == "RUNNING"
    assert (state["timer.remainHour"], state["timer.remainMinute"]) == (0, 50)


async def test_washer_start_stop_power_off_wake_up(sim: Sim) -> None:
    def op(mode: str) -> dict[str, Any]:
        return {"operation": {"washerOperationMode": mode}}

    assert (await sim.control("Washer", op("START"))).status_code == 200
    state = await sim.state("Washer")
    assert state["runState.currentState"] == "RUNNING"
    assert (state["timer.remainHour"], state["timer.remainMinute"]) == (0, 45)

    assert lg_code(await sim.control("Washer", op("START"))) == "2302"
    assert lg_code(await sim.control("Washer", op("WAKE_UP"))) == "2302"
    delay = {"timer": {"relativeHourToStart": 3}}
    assert lg_code(await sim.control("Washer", delay)) == "2302"
    assert (await sim.state("Washer"))["timer.relativeHourToStart"] == 0

    await sim.advance(10 * 60)
    assert (await sim.state("Washer"))["timer.remainMinute"] == 35
    assert (await sim.control("Washer", op("STOP"))).status_code == 200
    assert (await sim.state("Washer"))["runState.currentState"] == "PAUSE"
    assert lg_code(await sim.control("Washer", op("STOP"))) == "2302"
    await sim.advance(10 * 60)  # paused: no countdown
    assert (await sim.state("Washer"))["timer.remainMinute"] == 35
    assert (await sim.control("Washer", op("START"))).status_code == 200  # resume keeps time
    state = await sim.state("Washer")
    assert (state["runState.currentState"], state["timer.remainMinute"]) == ("RUNNING", 35)

    assert (await sim.control("Washer", op("POWER_OFF"))).status_code == 200
    state = await sim.state("Washer")
    assert state["runState.currentState"] == "POWER_OFF"
    assert (state["timer.remainHour"], state["timer.remainMinute"]) == (0, 0)
    assert lg_code(await sim.control("Washer", op("START"))) == "2304"
    assert lg_code(await sim.control("Washer", op("STOP"))) == "2302"
    assert (await sim.control("Washer", op("POWER_OFF"))).status_code == 200  # from any state
    assert (await sim.control("Washer", op("WAKE_UP"))).status_code == 200
    assert (await sim.state("Washer"))["runState.currentState"] == "INITIAL"


async def test_dishwasher_and_styler_commands(sim: Sim) -> None:
    stop = {"operation": {"dishWasherOperationMode": "STOP"}}
    assert (await sim.control("Dishwasher", stop)).status_code == 200
    assert (await sim.state("Dishwasher"))["runState.currentState"] == "PAUSE"
    start = {"operation": {"dishWasherOperationMode": "START"}}
    assert (await sim.control("Dishwasher", start)).status_code == 200
    state = await sim.state("Dishwasher")
    assert (state["runState.currentState"], state["timer.remainHour"]) == ("RUNNING", 1)
    assert state["timer.remainMinute"] == 10
    styler_off = {"operation": {"stylerOperationMode": "POWER_OFF"}}
    assert (await sim.control("Styler", styler_off)).status_code == 200
    assert (await sim.state("Styler"))["runState.currentState"] == "POWER_OFF"


async def test_air_conditioner_powered_off_refuses_settings_with_2304(sim: Sim) -> None:
    before = await sim.state("Living Room AC")
    for body in [
        {"temperatureInUnits": {"targetTemperatureC": 22}},
        {"airFlow": {"windStrength": "HIGH"}},
        {"airConJobMode": {"currentJobMode": "FAN"}},
        {"operation": {"airConOperationMode": "POWER_OFF"}, "airFlow": {"windStrength": "HIGH"}},
    ]:
        response = await sim.control("Living Room AC", body)
        assert (response.status_code, lg_code(response)) == (400, "2304"), body
    assert await sim.state("Living Room AC") == before
    # switching on in the same body carries the settings
    body = {
        "operation": {"airConOperationMode": "POWER_ON"},
        "temperatureInUnits": {"targetTemperatureC": 21.5},
    }
    assert (await sim.control("Living Room AC", body)).status_code == 200
    state = await sim.state("Living Room AC")
    assert state["operation.airConOperationMode"] == "POWER_ON"
    assert state["temperatureInUnits.targetTemperatureC"] == 21.5
    off = {"operation": {"airConOperationMode": "POWER_OFF"}}
    assert (await sim.control("Living Room AC", off)).status_code == 200
    assert (await sim.state("Living Room AC"))["operation.airConOperationMode"] == "POWER_OFF"


async def test_air_purifier_powered_off_refuses_settings_with_2304(sim: Sim) -> None:
    off = {"operation": {"airPurifierOperationMode": "POWER_OFF"}}
    assert (await sim.control("Air Purifier", off)).status_code == 200
    response = await sim.control("Air Purifier", {"airFlow": {"windStrength": "HIGH"}})
    assert lg_code(response) == "2304"
    assert (await sim.state("Air Purifier"))["airFlow.windStrength"] == "MID"


async def test_fridge_sabbath_mode_refuses_other_writes_with_2305(sim: Sim) -> None:
    assert (await sim.control("Fridge", {"sabbath": {"sabbathMode": True}})).status_code == 200
    before = await sim.state("Fridge")
    for body in [
        {"refrigeration": {"expressMode": True}},
        {"temperatureInUnits": {"locationName": "FRIDGE", "targetTemperatureC": 5}},
    ]:
        response = await sim.control("Fridge", body)
        assert (response.status_code, lg_code(response)) == (400, "2305")
    assert await sim.state("Fridge") == before
    assert (await sim.control("Fridge", {"sabbath": {"sabbathMode": False}})).status_code == 200
    assert (
        await sim.control("Fridge", {"refrigeration": {"expressMode": True}})
    ).status_code == 200
    # entering sabbath mode and changing something else in one body is refused too
    both = {"sabbath": {"sabbathMode": True}, "refrigeration": {"rapidFreeze": True}}
    assert lg_code(await sim.control("Fridge", both)) == "2305"
    assert (await sim.state("Fridge"))["sabbath.sabbathMode"] is False


async def test_oven_start_preheats_and_stop_pauses(sim: Sim) -> None:
    start = {"operation": {"ovenOperationMode": "START"}}
    stop = {"operation": {"ovenOperationMode": "STOP"}}
    assert lg_code(await sim.control("Oven", stop)) == "2302"
    assert (await sim.control("Oven", start)).status_code == 200
    assert (await sim.state("Oven"))["runState.currentState"] == "PREHEATING"
    assert lg_code(await sim.control("Oven", start)) == "2302"
    assert (await sim.control("Oven", {"cook": {"cookMode": "WARM"}})).status_code == 200
    assert (await sim.control("Oven", stop)).status_code == 200
    assert (await sim.state("Oven"))["runState.currentState"] == "PAUSE"
    await sim.set_state("Oven", **{"remoteControlEnable.remoteControlEnabled": False})
    assert lg_code(await sim.control("Oven", start)) == "2301"
    assert (await sim.state("Oven"))["runState.currentState"] == "PAUSE"


# --- subscriptions ----------------------------------------------------------------------------


async def test_push_subscribe_list_unsubscribe(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    assert (await sim.lg("GET", "/push")).json()["response"] is None
    response = await sim.lg("POST", f"/push/{washer}")
    assert (response.status_code, response.json()["response"]) == (200, {})
    again = await sim.lg("POST", f"/push/{washer}")
    assert (again.status_code, lg_code(again)) == (400, "1207")
    assert (await sim.lg("GET", "/push")).json()["response"] == [{"deviceId": washer}]
    assert (await sim.client.get("/sim/subscriptions")).json()["push"] == [washer]
    # the neighbour does not see the demo user's subscriptions
    assert (await sim.lg("GET", "/push", token=sim.neighbour_token)).json()["response"] is None
    response = await sim.lg("DELETE", f"/push/{washer}")
    assert (response.status_code, response.json()["response"]) == (200, {})
    again = await sim.lg("DELETE", f"/push/{washer}")
    assert (again.status_code, lg_code(again)) == (400, "1206")
    assert (await sim.lg("GET", "/push")).json()["response"] is None


async def test_pcc_subscribe_list_unsubscribe(sim: Sim) -> None:
    for alias in ["Washer", "Fridge", "Dishwasher", "Oven"]:
        response = await sim.lg("POST", f"/pcc/{sim.ids[alias]}")
        assert response.status_code == 200, alias
    for alias in ["Dryer", "Living Room AC", "Styler", "Air Purifier"]:
        for method in ["POST", "DELETE"]:
            response = await sim.lg(method, f"/pcc/{sim.ids[alias]}")
            assert (response.status_code, lg_code(response)) == (400, "1214"), alias
    listed = (await sim.lg("GET", "/pcc")).json()["response"]
    assert {e["deviceId"] for e in listed} == {
        sim.ids[a] for a in ["Washer", "Fridge", "Dishwasher", "Oven"]
    }
    assert lg_code(await sim.lg("POST", f"/pcc/{sim.ids['Washer']}")) == "1207"
    assert (await sim.lg("DELETE", f"/pcc/{sim.ids['Washer']}")).status_code == 200
    assert lg_code(await sim.lg("DELETE", f"/pcc/{sim.ids['Washer']}")) == "1206"
    assert sim.ids["Washer"] not in (await sim.client.get("/sim/subscriptions")).json()["pcc"]


async def test_event_subscription_expires_in_simulated_time(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    response = await sim.lg("POST", f"/event/{washer}")
    assert response.status_code == 200
    assert (await sim.client.get("/sim/subscriptions")).json()["event"] == [washer]
    await sim.advance(3601)  # default expiry is one hour
    assert (await sim.client.get("/sim/subscriptions")).json()["event"] == []
    assert lg_code(await sim.lg("DELETE", f"/event/{washer}")) == "1204"

    body = {"expire": {"unit": "HOUR", "timer": 24}}
    assert (await sim.lg("POST", f"/event/{washer}", json=body)).status_code == 200
    await sim.advance(23 * 3600)
    assert (await sim.client.get("/sim/subscriptions")).json()["event"] == [washer]
    assert (await sim.lg("DELETE", f"/event/{washer}")).status_code == 200
    assert lg_code(await sim.lg("DELETE", f"/event/{washer}")) == "1204"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"expire": {"unit": "HOUR", "timer": 25}}, "1102"),
        ({"expire": {"timer": 0}}, "1102"),
        ({"expire": {"timer": True}}, "1102"),
        ({"expire": {"timer": 1.5}}, "1102"),
        ({"expire": {"unit": "DAY", "timer": 1}}, "1102"),
        ({"expire": "1h"}, "1102"),
        ({"other": 1}, "1102"),
        ([1], "1311"),
    ],
)
async def test_event_body_validation(sim: Sim, body: Any, code: str) -> None:
    response = await sim.lg("POST", f"/event/{sim.ids['Washer']}", json=body)
    assert (response.status_code, lg_code(response)) == (400, code)
    assert (await sim.client.get("/sim/subscriptions")).json()["event"] == []


async def test_event_malformed_json_is_1311(sim: Sim) -> None:
    response = await sim.lg("POST", f"/event/{sim.ids['Washer']}", content=b"{oops")
    assert lg_code(response) == "1311"


# --- reset and /sim extras ------------------------------------------------------------------------


async def test_reset_restores_state_and_keeps_subscriptions(sim: Sim) -> None:
    initial = await sim.sim_devices()
    await sim.lg("POST", f"/push/{sim.ids['Washer']}")
    await sim.lg("POST", f"/pcc/{sim.ids['Oven']}")
    await sim.lg("POST", f"/event/{sim.ids['Fridge']}")
    await sim.control("Washer", {"operation": {"washerOperationMode": "START"}})
    await sim.control("Fridge", {"refrigeration": {"expressMode": True}})
    await sim.client.post(f"/sim/devices/{sim.ids['Oven']}/online", json={"online": False})
    await sim.advance(20 * 60)
    assert await sim.sim_devices() != initial
    subscriptions = (await sim.client.get("/sim/subscriptions")).json()

    response = await sim.client.post("/sim/reset")
    assert response.status_code == 200
    assert await sim.sim_devices() == initial
    assert (await sim.client.get("/sim/subscriptions")).json() == subscriptions
    # the restored countdowns run again from their initial values
    await sim.advance(60)
    assert (await sim.state("Styler"))["timer.remainMinute"] == 34


async def test_calls_log_counts_thinq_calls_without_secrets(sim: Sim) -> None:
    assert (await sim.client.delete("/sim/calls")).status_code == 200
    await sim.lg("GET", "/devices")
    await sim.lg("GET", f"/devices/{sim.ids['Washer']}")
    await sim.control("Dryer", {"operation": {"dryerOperationMode": "START"}})
    await sim.client.get("/sim/devices")  # /sim calls are not LG calls
    response = await sim.client.get("/sim/calls")
    calls = response.json()
    assert calls == [
        {"method": "GET", "path": "/devices", "status": 200, "code": None},
        {"method": "GET", "path": f"/devices/{sim.ids['Washer']}", "status": 200, "code": None},
        {"method": "POST", "path": f"/devices/{sim.ids['Dryer']}", "status": 400, "code": "2301"},
    ]
    for secret in (sim.creds.demo_token, sim.creds.service_key):
        assert secret not in response.text
    await sim.client.delete("/sim/calls")
    assert (await sim.client.get("/sim/calls")).json() == []


async def test_sim_state_validation(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    before = await sim.sim_devices()
    for body in [
        {"runState.nope": 1},
        {"operation.washerOperationMode": "START"},  # write-only: no state to set
        {"runState.currentState": "FLYING"},
        {"remoteControlEnable.remoteControlEnabled": "yes"},
        {"timer.remainMinute": "ten"},
        {"timer.remainMinute": True},
        {"timer.remainHour": 10**400},
        {"timer.remainHour": 1e300},
        {"runState.currentState": "RUNNING", "timer.nope": 1},  # atomic
        {},
        [],
    ]:
        response = await sim.client.post(f"/sim/devices/{washer}/state", json=body)
        assert response.status_code == 400, body
        assert response.json()["reason"]
    bad_json = await sim.client.post(f"/sim/devices/{washer}/state", content=b"{")
    assert bad_json.status_code == 400
    unknown = await sim.client.post("/sim/devices/nope/state", json={"x": 1})
    assert unknown.status_code == 404
    assert await sim.sim_devices() == before

    response = await sim.client.post(
        f"/sim/devices/{sim.ids['Fridge']}/state", json={"doorStatus.MAIN.doorState": "OPEN"}
    )
    assert response.json()["state"]["doorStatus.MAIN.doorState"] == "OPEN"
    status = (await sim.lg("GET", f"/devices/{sim.ids['Fridge']}")).json()["response"]
    assert status["doorStatus"] == [{"locationName": "MAIN", "doorState": "OPEN"}]


async def test_sim_online_and_clock_validation(sim: Sim) -> None:
    fridge = sim.ids["Fridge"]
    for body in [{}, {"online": "no"}, {"online": 0}, {"online": True, "x": 1}]:
        response = await sim.client.post(f"/sim/devices/{fridge}/online", json=body)
        assert response.status_code == 400, body
    for body in [{}, {"seconds": -1}, {"seconds": "60"}, {"seconds": True}, {"seconds": 1e300}]:
        response = await sim.client.post("/sim/clock/advance", json=body)
        assert response.status_code == 400, body
    clock = (await sim.client.get("/sim/clock")).json()
    result = await sim.advance(90)
    assert result["now"] == clock["now"] + 90
    assert result["pushes"] == []


async def test_sim_health_and_becon(sim: Sim) -> None:
    assert (await sim.client.get("/sim/health")).status_code == 200
    response = await sim.client.get("/sim/becon/facilities")
    # The contract's demo site (§4); tests/test_simulator_becon.py checks every field.
    assert response.status_code == 200
    assert {f["facilityId"] for f in response.json()} == {
        "IDU-301",
        "IDU-101",
        "IDU-201",
        "VENT-001",
        "AIRCARE-001",
    }


@pytest.mark.parametrize(
    "raw",
    [b"{", b"[]", b"null", b'{"pushCode": 5}', b'{"pushCode": ""}', b"{}"],
)
async def test_sim_push_trigger_bad_input(sim: Sim, raw: bytes) -> None:
    response = await sim.client.post(f"/sim/devices/{sim.ids['Washer']}/push", content=raw)
    assert response.status_code == 400
    assert response.json()["sent"] is False


async def test_sim_triggers_without_subscription_or_callback_url(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    push = {"pushCode": "WASHING_IS_COMPLETE"}
    pcc = {"diagnosisType": "DRAIN_FILTER_CLOGGED", "contentUrl": "https://example.com/guide"}
    response = await sim.client.post(f"/sim/devices/{washer}/push", json=push)
    assert (response.status_code, response.json()["sent"]) == (409, False)
    response = await sim.client.post(f"/sim/devices/{washer}/pcc", json=pcc)
    assert (response.status_code, response.json()["sent"]) == (409, False)
    await sim.lg("POST", f"/push/{washer}")
    await sim.lg("POST", f"/pcc/{washer}")
    # subscribed, but this simulator has no callback URL
    response = await sim.client.post(f"/sim/devices/{washer}/push", json=push)
    assert response.status_code == 409
    assert "callback" in response.json()["reason"]
    response = await sim.client.post(f"/sim/devices/{washer}/pcc", json=pcc)
    assert response.status_code == 409
    response = await sim.client.post("/sim/devices/nope/push", json=push)
    assert response.status_code == 404
    response = await sim.client.post(f"/sim/devices/{washer}/pcc", json={"diagnosisType": "X"})
    assert response.status_code == 400
