"""The simulator's device registry: adding, removing and renaming devices at run time.

Each change must reach the partner as LG's registry push (DEVICE_REGISTERED,
DEVICE_UNREGISTERED, DEVICE_ALIAS_CHANGED), show in LG's ``GET /devices`` and
leave a device that behaves like any other. ``POST /sim/reset`` brings back the
household.json set with the matching pushes. The callback URL can be changed at
run time and is never shown or logged with its query string.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from simulator.callbacks import redacted
from tests.test_simulator_support import (
    CONTRACT,
    Receiver,
    Sim,
    callback_receiver,
    running_simulator,
)

HEX64 = re.compile(r"[0-9a-f]{64}")
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}")
DEVICE_KEYS = {"deviceId", "deviceType", "alias", "modelName", "online", "state"}
SENT = {"sent": True, "reason": None}
NOT_CONFIGURED = {"sent": False, "reason": "no callback URL is configured"}
PCC_TYPES = {"DEVICE_WASHER", "DEVICE_REFRIGERATOR", "DEVICE_DISH_WASHER", "DEVICE_OVEN"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with callback_receiver() as running:
        yield running


@pytest.fixture
async def sim(receiver: Receiver) -> AsyncIterator[Sim]:
    async with running_simulator(callback_url=receiver.url) as running:
        yield running


# --- helpers ---------------------------------------------------------------------------------


async def add(sim: Sim, **body: Any) -> httpx.Response:
    return await sim.client.post("/sim/devices", json=body)


async def added_id(sim: Sim, **body: Any) -> str:
    response = await add(sim, **body)
    assert response.status_code == 201, response.text
    return response.json()["device"]["deviceId"]


async def lg_devices(sim: Sim, token: str | None = None) -> list[dict[str, Any]]:
    response = await sim.lg("GET", "/devices", token=token)
    assert response.status_code == 200
    return response.json()["response"]


async def sim_list(sim: Sim) -> list[dict[str, Any]]:
    response = await sim.client.get("/sim/devices")
    assert response.status_code == 200
    return response.json()


async def subscriptions(sim: Sim) -> dict[str, list[str]]:
    return (await sim.client.get("/sim/subscriptions")).json()


def lg_code(response: httpx.Response) -> str:
    return response.json()["error"]["code"]


def registry_pushes(receiver: Receiver) -> list[dict[str, Any]]:
    """The push objects of every message received, after checking LG's envelope."""
    for message in receiver.messages:
        assert set(message) == {"messageId", "timestamp", "push"}
        assert MESSAGE_ID.fullmatch(message["messageId"])
        assert TIMESTAMP.fullmatch(message["timestamp"])
    return [m["push"] for m in receiver.messages]


def only_push(receiver: Receiver) -> dict[str, Any]:
    pushes = registry_pushes(receiver)
    assert len(pushes) == 1, pushes
    return pushes[0]


def lg_entry(device_id: str, device_type: str, model_name: str, alias: str) -> dict[str, Any]:
    info = {"deviceType": device_type, "modelName": model_name, "alias": alias, "reportable": True}
    return {"deviceId": device_id, "deviceInfo": info}


# --- adding --------------------------------------------------------------------------------------


async def test_added_device_is_registered_everywhere(sim: Sim, receiver: Receiver) -> None:
    template = (await sim.sim_devices())["Dishwasher"]
    before = await lg_devices(sim)

    response = await add(sim, deviceType="DEVICE_DISH_WASHER", alias="Kitchen Dishwasher")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"device", "callback"}
    assert body["callback"] == SENT
    device = body["device"]
    assert set(device) == DEVICE_KEYS
    new_id = device["deviceId"]
    assert HEX64.fullmatch(new_id)
    assert new_id not in sim.ids.values()
    assert device["deviceType"] == "DEVICE_DISH_WASHER"
    assert device["alias"] == "Kitchen Dishwasher"
    assert device["modelName"] == template["modelName"]
    assert device["online"] is True
    assert device["state"] == template["state"]  # the template's initial state

    push = only_push(receiver)
    assert push["pushType"] == "DEVICE_REGISTERED"
    assert push["serviceId"] == sim.config.service_id
    assert push["deviceId"] == new_id
    assert push["userNumber"] == "demo"
    assert push["modelName"] == template["modelName"]
    assert push["deviceType"] == "DEVICE_DISH_WASHER"
    assert push["alias"] == "Kitchen Dishwasher"
    assert set(push) == {
        "pushType",
        "serviceId",
        "deviceId",
        "userNumber",
        "modelName",
        "deviceType",
        "alias",
    }

    after = await lg_devices(sim)
    assert after == [
        *before,
        lg_entry(new_id, "DEVICE_DISH_WASHER", template["modelName"], "Kitchen Dishwasher"),
    ]
    assert (await sim.sim_devices())["Kitchen Dishwasher"] == device
    assert (await sim.client.get(f"/sim/devices/{new_id}")).json() == device
    assert [d["deviceInfo"]["alias"] for d in await lg_devices(sim, sim.neighbour_token)] == [
        "Neighbour AC"
    ]
    # same profile and status as the household.json dishwasher
    for path in ("/devices/profile/{}", "/devices/{}"):
        ours = await sim.lg("GET", path.format(new_id))
        theirs = await sim.lg("GET", path.format(sim.ids["Dishwasher"]))
        assert ours.status_code == 200
        assert ours.json()["response"] == theirs.json()["response"]


async def test_a_64_character_alias_and_a_model_name_are_accepted(
    sim: Sim, receiver: Receiver
) -> None:
    alias = "A" * 64
    response = await add(sim, deviceType="DEVICE_OVEN", alias=alias, modelName="LX-1")
    assert response.status_code == 201
    assert (response.json()["device"]["alias"], response.json()["device"]["modelName"]) == (
        alias,
        "LX-1",
    )
    push = only_push(receiver)
    assert (push["alias"], push["modelName"]) == (alias, "LX-1")


CYCLES = [
    ("DEVICE_WASHER", "washerOperationMode", 45, "WASHING_IS_COMPLETE"),
    ("DEVICE_DRYER", "dryerOperationMode", 50, "DRYING_IS_COMPLETE"),
    ("DEVICE_STYLER", "stylerOperationMode", 35, "STYLING_IS_COMPLETE"),
    ("DEVICE_DISH_WASHER", "dishWasherOperationMode", 70, "DISHWASHING_IS_COMPLETE"),
]


@pytest.mark.parametrize(("device_type", "op_name", "minutes", "push_code"), CYCLES)
async def test_added_cycle_appliance_runs_and_pushes_on_completion(
    sim: Sim, receiver: Receiver, device_type: str, op_name: str, minutes: int, push_code: str
) -> None:
    new_id = await added_id(sim, deviceType=device_type, alias="Second one")
    # The templates differ (the dryer is off with remote control disabled); start from idle.
    idle = {"runState.currentState": "INITIAL", "remoteControlEnable.remoteControlEnabled": True}
    assert (await sim.client.post(f"/sim/devices/{new_id}/state", json=idle)).status_code == 200
    assert (await sim.lg("POST", f"/push/{new_id}")).status_code == 200
    start = {"operation": {op_name: "START"}}
    response = await sim.lg("POST", f"/devices/{new_id}", json=start)
    assert response.status_code == 200, response.text
    state = (await sim.client.get(f"/sim/devices/{new_id}")).json()["state"]
    assert state["runState.currentState"] == "RUNNING"
    assert state["timer.remainHour"] * 60 + state["timer.remainMinute"] == minutes
    receiver.messages.clear()

    await sim.advance((minutes - 1) * 60)
    state = (await sim.client.get(f"/sim/devices/{new_id}")).json()["state"]
    assert (state["runState.currentState"], state["timer.remainMinute"]) == ("RUNNING", 1)
    result = await sim.advance(60)
    assert {"deviceId": new_id, "pushCode": push_code, "sent": True, "reason": None} in result[
        "pushes"
    ]
    state = (await sim.client.get(f"/sim/devices/{new_id}")).json()["state"]
    assert state["runState.currentState"] == "END"
    # only the subscribed device pushed (the household.json ones are not subscribed)
    assert registry_pushes(receiver) == [
        {
            "pushType": "DEVICE_PUSH",
            "serviceId": sim.config.service_id,
            "deviceId": new_id,
            "pushCode": push_code,
            "deviceType": device_type,
            "userList": ["demo"],
        }
    ]


async def test_pcc_accepts_only_its_device_types_on_added_devices(sim: Sim) -> None:
    accepted = []
    for device_type in sorted({t for t, _ in CONTRACT.values()}):
        new_id = await added_id(sim, deviceType=device_type, alias=f"Extra {device_type}")
        response = await sim.lg("POST", f"/pcc/{new_id}")
        if device_type in PCC_TYPES:
            assert response.status_code == 200, device_type
            accepted.append(new_id)
        else:
            assert (response.status_code, lg_code(response)) == (400, "1214"), device_type
    assert (await subscriptions(sim))["pcc"] == accepted
    assert len(accepted) == len(PCC_TYPES)


async def test_added_device_of_another_owner(sim: Sim, receiver: Receiver) -> None:
    demo_before = await lg_devices(sim)
    response = await add(
        sim,
        deviceType="DEVICE_AIR_CONDITIONER",
        alias="Guest Room AC",
        modelName="LW9999",
        owner="neighbour",
    )
    assert response.status_code == 201
    new_id = response.json()["device"]["deviceId"]
    push = only_push(receiver)
    assert (push["userNumber"], push["modelName"], push["alias"]) == (
        "neighbour",
        "LW9999",
        "Guest Room AC",
    )
    neighbours = await lg_devices(sim, sim.neighbour_token)
    assert [d["deviceInfo"]["alias"] for d in neighbours] == ["Neighbour AC", "Guest Room AC"]
    assert await lg_devices(sim) == demo_before
    assert "Guest Room AC" not in await sim.sim_devices()  # /sim/devices: demo user only
    assert (await sim.client.get(f"/sim/devices/{new_id}")).status_code == 200
    response = await sim.lg("GET", f"/devices/{new_id}")
    assert (response.status_code, lg_code(response)) == (404, "1212")
    body = {"operation": {"airConOperationMode": "POWER_ON"}, "airFlow": {"windStrength": "HIGH"}}
    response = await sim.lg("POST", f"/devices/{new_id}", token=sim.neighbour_token, json=body)
    assert response.status_code == 200, response.text
    state = (await sim.client.get(f"/sim/devices/{new_id}")).json()["state"]
    assert (state["operation.airConOperationMode"], state["airFlow.windStrength"]) == (
        "POWER_ON",
        "HIGH",
    )


# --- renaming and removing ------------------------------------------------------------------------


async def test_rename_announces_the_new_alias(sim: Sim, receiver: Receiver) -> None:
    washer = sim.ids["Washer"]
    await sim.lg("POST", f"/push/{washer}")
    before = await lg_devices(sim)

    response = await sim.client.patch(f"/sim/devices/{washer}", json={"alias": "Laundry"})
    assert response.status_code == 200
    body = response.json()
    assert body["callback"] == SENT
    assert set(body["device"]) == DEVICE_KEYS
    assert (body["device"]["deviceId"], body["device"]["alias"]) == (washer, "Laundry")
    push = only_push(receiver)
    assert push == {
        "pushType": "DEVICE_ALIAS_CHANGED",
        "serviceId": sim.config.service_id,
        "deviceId": washer,
        "userNumber": "demo",
        "alias": "Laundry",
    }
    after = await lg_devices(sim)
    for old, new in zip(before, after, strict=True):
        if old["deviceId"] == washer:
            assert new["deviceInfo"] == {**old["deviceInfo"], "alias": "Laundry"}
        else:
            assert new == old
    assert (await subscriptions(sim))["push"] == [washer]  # renaming keeps subscriptions

    again = await sim.client.patch(f"/sim/devices/{washer}", json={"alias": "Laundry"})
    assert again.status_code == 200
    assert again.json()["callback"] == {"sent": False, "reason": "the alias did not change"}
    assert len(receiver.messages) == 1


async def test_remove_unregisters_and_drops_subscriptions(sim: Sim, receiver: Receiver) -> None:
    washer, fridge = sim.ids["Washer"], sim.ids["Fridge"]
    for path in (f"/push/{washer}", f"/pcc/{washer}", f"/event/{washer}", f"/push/{fridge}"):
        assert (await sim.lg("POST", path)).status_code == 200, path
    model_name = (await sim.sim_devices())["Washer"]["modelName"]

    response = await sim.client.delete(f"/sim/devices/{washer}")
    assert response.status_code == 200
    assert response.json() == {"removed": washer, "callback": SENT}
    assert only_push(receiver) == {
        "pushType": "DEVICE_UNREGISTERED",
        "serviceId": sim.config.service_id,
        "deviceId": washer,
        "userNumber": "demo",
        "deviceType": "DEVICE_WASHER",
        "alias": "Washer",
    }
    assert await subscriptions(sim) == {"push": [fridge], "pcc": [], "event": []}
    assert (await sim.lg("GET", "/push")).json()["response"] == [{"deviceId": fridge}]
    listed = await lg_devices(sim)
    assert lg_entry(washer, "DEVICE_WASHER", model_name, "Washer") not in listed
    assert [d["deviceInfo"]["alias"] for d in listed] == [a for a in CONTRACT if a != "Washer"]
    for method, path in [("GET", f"/devices/{washer}"), ("POST", f"/push/{washer}")]:
        response = await sim.lg(method, path)
        assert (response.status_code, lg_code(response)) == (404, "1205"), path
    assert (await sim.client.get(f"/sim/devices/{washer}")).status_code == 404
    assert (await sim.client.delete(f"/sim/devices/{washer}")).status_code == 404
    assert len(receiver.messages) == 1


async def test_removed_running_appliance_never_pushes(sim: Sim, receiver: Receiver) -> None:
    styler = await added_id(sim, deviceType="DEVICE_STYLER", alias="Hall Styler")  # RUNNING
    assert (await sim.lg("POST", f"/push/{styler}")).status_code == 200
    assert (await sim.client.delete(f"/sim/devices/{styler}")).status_code == 200
    result = await sim.advance(2 * 3600)
    assert all(p["deviceId"] != styler for p in result["pushes"])
    assert [p["pushType"] for p in registry_pushes(receiver)] == [
        "DEVICE_REGISTERED",
        "DEVICE_UNREGISTERED",
    ]


# --- bad input changes nothing ------------------------------------------------------------------


BAD_ADD_BODIES: list[bytes] = [
    json.dumps(body).encode()
    for body in [
        {},
        {"alias": "No type"},
        {"deviceType": "DEVICE_TOASTER", "alias": "Toaster"},
        {"deviceType": 5, "alias": "Five"},
        {"deviceType": "", "alias": "Empty"},
        {"deviceType": "DEVICE_WASHER"},
        {"deviceType": "DEVICE_WASHER", "alias": ""},
        {"deviceType": "DEVICE_WASHER", "alias": "   "},
        {"deviceType": "DEVICE_WASHER", "alias": "x" * 65},
        {"deviceType": "DEVICE_WASHER", "alias": 7},
        {"deviceType": "DEVICE_WASHER", "alias": ["Washer"]},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "owner": "nobody"},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "owner": 1},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "modelName": ""},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "modelName": 3},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "modelName": "m" * 65},
        {"deviceType": "DEVICE_WASHER", "alias": "X", "colour": "red"},
    ]
] + [b"{", b"[]", b"null", b'"Washer"', b""]


@pytest.mark.parametrize("raw", BAD_ADD_BODIES)
async def test_bad_add_is_400_and_changes_nothing(sim: Sim, receiver: Receiver, raw: bytes) -> None:
    before, lg_before = await sim_list(sim), await lg_devices(sim)
    response = await sim.client.post(
        "/sim/devices", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, raw
    assert response.json()["error"] == "bad_request"
    assert response.json()["reason"]
    assert await sim_list(sim) == before
    assert await lg_devices(sim) == lg_before
    assert receiver.messages == []


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b'{"alias": ""}',
        b'{"alias": " "}',
        json.dumps({"alias": "x" * 65}).encode(),
        b'{"alias": 5}',
        b'{"alias": null}',
        b'{"alias": "Ok", "extra": 1}',
        b'{"name": "Ok"}',
        b"[]",
        b"{",
        b"",
    ],
)
async def test_bad_rename_is_400_and_changes_nothing(
    sim: Sim, receiver: Receiver, raw: bytes
) -> None:
    before = await sim_list(sim)
    response = await sim.client.patch(f"/sim/devices/{sim.ids['Washer']}", content=raw)
    assert response.status_code == 400, raw
    assert response.json()["reason"]
    assert await sim_list(sim) == before
    assert receiver.messages == []


async def test_unknown_device_is_404_for_rename_and_remove(sim: Sim, receiver: Receiver) -> None:
    before = await sim_list(sim)
    unknown = "0" * 64
    response = await sim.client.patch(f"/sim/devices/{unknown}", json={"alias": "Ghost"})
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    response = await sim.client.delete(f"/sim/devices/{unknown}")
    assert (response.status_code, response.json()["error"]) == (404, "not_found")
    assert await sim_list(sim) == before
    assert receiver.messages == []


# --- callbacks that cannot be delivered -----------------------------------------------------------


async def test_changes_happen_without_a_callback_url() -> None:
    async with running_simulator() as sim:
        response = await add(sim, deviceType="DEVICE_WASHER", alias="Spare Washer")
        assert response.status_code == 201
        assert response.json()["callback"] == NOT_CONFIGURED
        new_id = response.json()["device"]["deviceId"]
        assert "Spare Washer" in await sim.sim_devices()
        response = await sim.client.patch(f"/sim/devices/{new_id}", json={"alias": "Spare"})
        assert (response.status_code, response.json()["callback"]) == (200, NOT_CONFIGURED)
        response = await sim.client.delete(f"/sim/devices/{sim.ids['Oven']}")
        assert (response.status_code, response.json()["callback"]) == (200, NOT_CONFIGURED)
        response = await sim.client.post("/sim/reset")
        assert response.status_code == 200
        assert [(c["pushType"], c["sent"]) for c in response.json()["callbacks"]] == [
            ("DEVICE_UNREGISTERED", False),
            ("DEVICE_REGISTERED", False),
        ]
        assert [e["alias"] for e in await sim_list(sim)] == list(CONTRACT)


async def test_failing_callback_never_undoes_a_change(sim: Sim, receiver: Receiver) -> None:
    receiver.status = 500
    response = await add(sim, deviceType="DEVICE_REFRIGERATOR", alias="Garage Fridge")
    assert response.status_code == 201
    callback = response.json()["callback"]
    assert callback["sent"] is False
    assert "500" in callback["reason"]
    new_id = response.json()["device"]["deviceId"]
    assert "Garage Fridge" in await sim.sim_devices()
    response = await sim.client.patch(f"/sim/devices/{new_id}", json={"alias": "Cellar Fridge"})
    assert (response.status_code, response.json()["callback"]["sent"]) == (200, False)
    assert "Cellar Fridge" in await sim.sim_devices()
    response = await sim.client.delete(f"/sim/devices/{new_id}")
    assert (response.status_code, response.json()["callback"]["sent"]) == (200, False)
    assert (await sim.client.get(f"/sim/devices/{new_id}")).status_code == 404
    assert len(receiver.messages) == 3  # each was attempted


# --- reset ----------------------------------------------------------------------------------------


async def test_reset_restores_the_household_and_announces_it(sim: Sim, receiver: Receiver) -> None:
    initial, lg_initial = await sim_list(sim), await lg_devices(sim)
    neighbour_initial = await lg_devices(sim, sim.neighbour_token)
    models = {e["alias"]: e["modelName"] for e in initial}
    washer, fridge, oven, dryer = (sim.ids[a] for a in ("Washer", "Fridge", "Oven", "Dryer"))
    await sim.lg("POST", f"/push/{dryer}")  # kept: the dryer stays throughout
    await sim.lg("POST", f"/push/{washer}")  # dropped with the washer's removal
    kitchen = await added_id(sim, deviceType="DEVICE_DISH_WASHER", alias="Kitchen Dishwasher")
    await sim.lg("POST", f"/push/{kitchen}")
    await sim.lg("POST", f"/pcc/{kitchen}")
    guest = await added_id(
        sim, deviceType="DEVICE_AIR_CONDITIONER", alias="Guest AC", owner="neighbour"
    )
    assert (await sim.client.delete(f"/sim/devices/{washer}")).status_code == 200
    assert (await sim.client.patch(f"/sim/devices/{fridge}", json={"alias": "Big"})).is_success
    assert (await sim.client.patch(f"/sim/devices/{oven}", json={"alias": "Old"})).is_success
    assert (await sim.client.delete(f"/sim/devices/{oven}")).status_code == 200
    off = {"operation": {"airPurifierOperationMode": "POWER_OFF"}}
    assert (await sim.control("Air Purifier", off)).status_code == 200
    receiver.messages.clear()

    response = await sim.client.post("/sim/reset")
    assert response.status_code == 200
    assert response.json() == {
        "reset": True,
        "callbacks": [
            {"pushType": "DEVICE_UNREGISTERED", "deviceId": kitchen, **SENT},
            {"pushType": "DEVICE_UNREGISTERED", "deviceId": guest, **SENT},
            {"pushType": "DEVICE_REGISTERED", "deviceId": washer, **SENT},
            {"pushType": "DEVICE_REGISTERED", "deviceId": oven, **SENT},
            {"pushType": "DEVICE_ALIAS_CHANGED", "deviceId": fridge, **SENT},
        ],
    }
    service = sim.config.service_id
    assert registry_pushes(receiver) == [
        {
            "pushType": "DEVICE_UNREGISTERED",
            "serviceId": service,
            "deviceId": kitchen,
            "userNumber": "demo",
            "deviceType": "DEVICE_DISH_WASHER",
            "alias": "Kitchen Dishwasher",
        },
        {
            "pushType": "DEVICE_UNREGISTERED",
            "serviceId": service,
            "deviceId": guest,
            "userNumber": "neighbour",
            "deviceType": "DEVICE_AIR_CONDITIONER",
            "alias": "Guest AC",
        },
        {
            "pushType": "DEVICE_REGISTERED",
            "serviceId": service,
            "deviceId": washer,
            "userNumber": "demo",
            "modelName": models["Washer"],
            "deviceType": "DEVICE_WASHER",
            "alias": "Washer",
        },
        {
            "pushType": "DEVICE_REGISTERED",
            "serviceId": service,
            "deviceId": oven,
            "userNumber": "demo",
            "modelName": models["Oven"],
            "deviceType": "DEVICE_OVEN",
            "alias": "Oven",  # its original alias, not the one it had when removed
        },
        {
            "pushType": "DEVICE_ALIAS_CHANGED",
            "serviceId": service,
            "deviceId": fridge,
            "userNumber": "demo",
            "alias": "Fridge",
        },
    ]
    assert await sim_list(sim) == initial  # same devices, order, ids, aliases and state
    assert await lg_devices(sim) == lg_initial
    assert await lg_devices(sim, sim.neighbour_token) == neighbour_initial
    assert await subscriptions(sim) == {"push": [dryer], "pcc": [], "event": []}

    # The returned washer is a working device again, subscriptions and all.
    assert (await sim.lg("POST", f"/push/{washer}")).status_code == 200
    start = {"operation": {"washerOperationMode": "START"}}
    assert (await sim.control("Washer", start)).status_code == 200
    result = await sim.advance(45 * 60)
    washer_push = {"deviceId": washer, "pushCode": "WASHING_IS_COMPLETE", **SENT}
    assert washer_push in result["pushes"]

    receiver.messages.clear()
    response = await sim.client.post("/sim/reset")
    assert response.json() == {"reset": True, "callbacks": []}  # nothing left to announce
    assert receiver.messages == []


# --- the callback URL -----------------------------------------------------------------------------


def with_secret(url: str, secret: str) -> str:
    """The receiver's URL with credentials and a query string that both hold a secret."""
    return url.replace("http://", f"http://partner:{secret}@") + f"?key={secret}"


async def test_callback_url_can_be_set_read_and_cleared(receiver: Receiver) -> None:
    secret = secrets.token_urlsafe(24)
    async with running_simulator() as sim:
        response = await sim.client.get("/sim/callback-url")
        assert response.json() == {"url": None, "registered": False}
        washer = sim.ids["Washer"]
        await sim.lg("POST", f"/push/{washer}")
        trigger = {"pushCode": "WASHING_IS_COMPLETE"}
        assert (await sim.client.post(f"/sim/devices/{washer}/push", json=trigger)).status_code == (
            409
        )

        response = await sim.client.put(
            "/sim/callback-url", json={"url": with_secret(receiver.url, secret)}
        )
        assert response.status_code == 200
        assert response.json() == {"url": receiver.url, "registered": True}
        assert secret not in response.text
        response = await sim.client.get("/sim/callback-url")
        assert response.json() == {"url": receiver.url, "registered": True}
        assert secret not in response.text

        # Every callback now goes there: registry pushes and the contract's push trigger.
        response = await add(sim, deviceType="DEVICE_WASHER", alias="Spare Washer")
        assert response.json()["callback"] == SENT
        response = await sim.client.post(f"/sim/devices/{washer}/push", json=trigger)
        assert (response.status_code, response.json()) == (200, {"sent": True})
        assert [m["push"]["pushType"] for m in receiver.messages] == [
            "DEVICE_REGISTERED",
            "DEVICE_PUSH",
        ]

        response = await sim.client.put("/sim/callback-url", json={"url": None})
        assert response.json() == {"url": None, "registered": False}
        response = await add(sim, deviceType="DEVICE_WASHER", alias="Third Washer")
        assert response.json()["callback"] == NOT_CONFIGURED
        assert len(receiver.messages) == 2


async def test_startup_callback_url_is_shown_redacted(receiver: Receiver) -> None:
    secret = secrets.token_urlsafe(24)
    async with running_simulator(callback_url=with_secret(receiver.url, secret)) as sim:
        response = await sim.client.get("/sim/callback-url")
        assert response.json() == {"url": receiver.url, "registered": True}
        assert secret not in response.text
        assert secret not in repr(sim.config)
        response = await add(sim, deviceType="DEVICE_OVEN", alias="Second Oven")
        assert response.json()["callback"] == SENT


SECRET = "s3cr3t-" + "q" * 20


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(body).encode()
        for body in [
            {"url": f"ftp://example.com/cb?key={SECRET}"},
            {"url": f"not a url {SECRET}"},
            {"url": f"example.com/cb?key={SECRET}"},
            {"url": "http://"},
            {"url": f"http:///only/path?key={SECRET}"},
            {"url": f"http://example.com:99999/cb?key={SECRET}"},
            {"url": f"http://example.com/c b?key={SECRET}"},
            {"url": "http://example.com/" + "x" * 3000},
            {"url": 5},
            {"url": ["http://example.com/"]},
            {},
            {"url": "http://example.com/", "secret": 1},
        ]
    ]
    + [b"{", b"[]", b""],
)
async def test_bad_callback_url_is_400_and_changes_nothing(raw: bytes) -> None:
    async with running_simulator(callback_url="http://127.0.0.1:9/kept") as sim:
        response = await sim.client.put("/sim/callback-url", content=raw)
        assert response.status_code == 400, raw
        assert response.json()["reason"]
        assert SECRET not in response.text
        response = await sim.client.get("/sim/callback-url")
        assert response.json() == {"url": "http://127.0.0.1:9/kept", "registered": True}


async def test_callback_url_secret_is_never_logged(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = secrets.token_urlsafe(24)
    async with callback_receiver() as gone:
        unreachable = gone.url
    async with running_simulator(callback_url=with_secret(receiver.url, secret)) as sim:
        receiver.status = 500  # a failed delivery is logged (redacted)
        assert (await add(sim, deviceType="DEVICE_WASHER", alias="W2")).status_code == 201
        for url in (with_secret(unreachable, secret), with_secret(receiver.url, secret)):
            response = await sim.client.put("/sim/callback-url", json={"url": url})
            assert response.status_code == 200
            assert (await add(sim, deviceType="DEVICE_OVEN", alias="O2")).status_code == 201
        bad = {"url": f"ftp://partner:{secret}@example.com/?key={secret}"}
        assert (await sim.client.put("/sim/callback-url", json=bad)).status_code == 400
        assert (await sim.client.post("/sim/reset")).status_code == 200
    assert f"callback URL set to {unreachable}" in caplog.text
    assert "not delivered" in caplog.text
    assert secret not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:p@127.0.0.1:8080/cb?key=s#frag", "http://127.0.0.1:8080/cb"),
        ("https://u:p@[::1]:8443/cb?key=s", "https://[::1]:8443/cb"),
        ("https://partner.example/lg", "https://partner.example/lg"),
    ],
)
def test_redacted_drops_credentials_query_and_fragment(url: str, shown: str) -> None:
    assert redacted(url) == shown
