"""The simulator's v2 Placement API over real HTTP, callbacks caught on loopback.

Every endpoint answers 202 with a requestId, then POSTs one callback per device of
the calling user (never the neighbour's) to the callback URL. Control by type
reports each device's own result; event subscriptions lapse on the simulated
clock; the /sim/placement fault knobs delay, drop, duplicate and shuffle callbacks.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.test_simulator_support import CONTRACT, Sim, running_simulator

MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}")
ACCEPTED_KEYS = {"messageId", "requestId", "response", "responseCode", "statusCode", "timestamp"}
CALLBACK_KEYS = ACCEPTED_KEYS
DEVICE_KEYS = {"deviceId", "deviceType", "pushType", "serviceId", "userNumber"}
WASHER_START = {"operation": {"washerOperationMode": "START"}}


# --- a partner callback endpoint that can be waited on -------------------------------------------


@dataclass
class Inbox:
    url: str = ""
    arrivals: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def of(self, request_id: str) -> list[dict[str, Any]]:
        return [body for _, body in self.arrivals if body.get("requestId") == request_id]

    def times(self, request_id: str) -> dict[str, float]:
        return {
            body["response"]["deviceId"]: at
            for at, body in self.arrivals
            if body.get("requestId") == request_id
        }

    async def wait(self, request_id: str, count: int, timeout: float = 5.0) -> list[dict]:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.of(request_id)) >= count), timeout
            )
        return self.of(request_id)


@pytest.fixture
async def inbox() -> AsyncIterator[Inbox]:
    box = Inbox()

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        async with box.changed:
            box.arrivals.append((time.monotonic(), body))
            box.changed.notify_all()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/lg/callback", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box.url = f"http://127.0.0.1:{runner.addresses[0][1]}/lg/callback"
        yield box
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim(inbox: Inbox) -> AsyncIterator[Sim]:
    async with running_simulator(callback_url=inbox.url) as running:
        yield running


# --- helpers -------------------------------------------------------------------------------------


async def requests_log(sim: Sim, request_id: str | None = None) -> list[dict[str, Any]]:
    params = {"requestId": request_id} if request_id else None
    response = await sim.client.get("/sim/placement/requests", params=params)
    assert response.status_code == 200
    return response.json()


async def settled(sim: Sim, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The request's log entry once no callback of it is pending any more."""
    deadline = time.monotonic() + timeout
    while True:
        [entry] = await requests_log(sim, request_id)
        if all(d["status"] != "pending" for d in entry["devices"]):
            return entry
        assert time.monotonic() < deadline, entry
        await asyncio.sleep(0.02)


async def accepted(sim: Sim, method: str, path: str, **kwargs: Any) -> str:
    response = await sim.lg(method, path, **kwargs)
    assert response.status_code == 202, response.text
    return response.json()["requestId"]


async def callbacks(sim: Sim, inbox: Inbox, request_id: str) -> list[dict[str, Any]]:
    """Every callback of a request, after all of them were sent (none may follow)."""
    await settled(sim, request_id)
    return inbox.of(request_id)


def by_device(messages: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    result = {m["response"]["deviceId"]: m for m in messages}
    assert len(result) == len(messages), "one callback per device"
    return result


async def set_faults(sim: Sim, **faults: Any) -> None:
    response = await sim.client.put("/sim/placement/faults", json=faults)
    assert response.status_code == 200, response.text


async def add_device(sim: Sim, **body: Any) -> str:
    response = await sim.client.post("/sim/devices", json=body)
    assert response.status_code == 201, response.text
    return response.json()["device"]["deviceId"]


def error_code(response: httpx.Response) -> str:
    return response.json()["response"]["error"]["code"]


# --- the 202 answer and the callbacks ------------------------------------------------------------

# (method, path, body, pushType, responseCode of every callback on a fresh simulator)
ENDPOINTS = [
    ("POST", "/v2/devices/profile-async", None, "DEVICE_PROFILE", "0000"),
    ("POST", "/v2/devices/status-async", None, "DEVICE_STATUS", "0000"),
    ("POST", "/v2/devices/event-async", None, "DEVICE_EVENT_SUBSCRIBED", "0000"),
    ("DELETE", "/v2/devices/event-async", None, "DEVICE_EVENT_UNSUBSCRIBED", "1204"),
    ("POST", "/v2/devices/push-async", None, "DEVICE_PUSH_SUBSCRIBED", "0000"),
    ("DELETE", "/v2/devices/push-async", None, "DEVICE_PUSH_UNSUBSCRIBED", "1206"),
]
ALL_PATHS = [
    *((method, path, body) for method, path, body, _, _ in ENDPOINTS),
    ("POST", "/v2/devices/control-async", {"deviceType": "DEVICE_WASHER", "command": WASHER_START}),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "push_type", "code"), ENDPOINTS, ids=[e[3] for e in ENDPOINTS]
)
async def test_one_callback_per_device_of_the_user(
    sim: Sim, inbox: Inbox, method: str, path: str, body: Any, push_type: str, code: str
) -> None:
    headers = sim.headers()
    response = await sim.client.request(method, path, headers=headers, json=body)
    assert response.status_code == 202, response.text
    answer = response.json()
    assert set(answer) == ACCEPTED_KEYS
    assert answer["messageId"] == headers["x-message-id"]
    assert MESSAGE_ID.fullmatch(answer["requestId"])
    assert answer["requestId"] != answer["messageId"]
    assert (answer["response"], answer["responseCode"], answer["statusCode"]) == ({}, "0000", 202)
    assert TIMESTAMP.fullmatch(answer["timestamp"])

    messages = by_device(await callbacks(sim, inbox, answer["requestId"]))
    assert set(messages) == set(sim.ids.values())  # the demo user's nine, no neighbour's
    aliases = {device_id: alias for alias, device_id in sim.ids.items()}
    for device_id, message in messages.items():
        assert set(message) == CALLBACK_KEYS
        assert MESSAGE_ID.fullmatch(message["messageId"])
        assert TIMESTAMP.fullmatch(message["timestamp"])
        inner = message["response"]
        assert inner["pushType"] == push_type
        assert inner["deviceType"] == CONTRACT[aliases[device_id]][0]
        assert inner["serviceId"] == sim.creds.service_id
        assert inner["userNumber"] == "demo"
        assert message["responseCode"] == code
        if code == "0000":
            assert set(inner) == DEVICE_KEYS | {"result"}
            assert message["statusCode"] == 200
        else:
            assert set(inner) == DEVICE_KEYS | {"error"}
            assert inner["error"]["code"] == code
            assert inner["error"]["message"]
            assert message["statusCode"] == 400
    assert len({m["messageId"] for m in messages.values()}) == len(messages)


async def test_profile_and_status_results_match_v1(sim: Sim, inbox: Inbox) -> None:
    profiles = by_device(
        await callbacks(sim, inbox, await accepted(sim, "POST", "/v2/devices/profile-async"))
    )
    statuses = by_device(
        await callbacks(sim, inbox, await accepted(sim, "POST", "/v2/devices/status-async"))
    )
    for device_id in sim.ids.values():
        profile = (await sim.lg("GET", f"/devices/profile/{device_id}")).json()["response"]
        assert profiles[device_id]["response"]["result"] == profile
        status = (await sim.lg("GET", f"/devices/{device_id}")).json()["response"]
        assert statuses[device_id]["response"]["result"] == status


async def test_status_of_an_offline_device_is_its_own_1222(sim: Sim, inbox: Inbox) -> None:
    fridge = sim.ids["Fridge"]
    await sim.client.post(f"/sim/devices/{fridge}/online", json={"online": False})
    messages = by_device(
        await callbacks(sim, inbox, await accepted(sim, "POST", "/v2/devices/status-async"))
    )
    assert messages[fridge]["responseCode"] == "1222"
    assert messages[fridge]["response"]["error"]["message"] == "Not connected device"
    others = [m for device_id, m in messages.items() if device_id != fridge]
    assert len(others) == 8 and all(m["responseCode"] == "0000" for m in others)


async def test_the_neighbour_gets_only_their_own_device(sim: Sim, inbox: Inbox) -> None:
    request_id = await accepted(sim, "POST", "/v2/devices/profile-async", token=sim.neighbour_token)
    [message] = await callbacks(sim, inbox, request_id)
    assert message["response"]["userNumber"] == "neighbour"
    assert message["response"]["deviceId"] not in sim.ids.values()
    devices = (await sim.lg("GET", "/devices", token=sim.neighbour_token)).json()["response"]
    assert message["response"]["deviceId"] == devices[0]["deviceId"]


async def test_request_ids_are_unique_and_callbacks_only_carry_their_own(
    sim: Sim, inbox: Inbox
) -> None:
    ids = [await accepted(sim, "POST", "/v2/devices/status-async") for _ in range(3)]
    assert len(set(ids)) == 3
    for request_id in ids:
        assert len(await callbacks(sim, inbox, request_id)) == 9
    assert len(inbox.arrivals) == 27


async def test_push_subscriptions_round_trip_with_v1(sim: Sim, inbox: Inbox) -> None:
    everyone = set(sim.ids.values())

    async def codes(method: str) -> set[str]:
        request_id = await accepted(sim, method, "/v2/devices/push-async")
        return {m["responseCode"] for m in await callbacks(sim, inbox, request_id)}

    assert await codes("POST") == {"0000"}
    assert set((await sim.client.get("/sim/subscriptions")).json()["push"]) == everyone
    v1 = (await sim.lg("GET", "/push")).json()["response"]
    assert {entry["deviceId"] for entry in v1} == everyone
    assert await codes("POST") == {"1207"}  # each device: already subscribed
    assert await codes("DELETE") == {"0000"}
    assert (await sim.client.get("/sim/subscriptions")).json()["push"] == []
    assert await codes("DELETE") == {"1206"}


async def test_v2_calls_are_in_the_call_log(sim: Sim) -> None:
    await sim.client.delete("/sim/calls")
    await accepted(sim, "POST", "/v2/devices/profile-async")
    await sim.lg("POST", "/v2/devices/event-async", json={"expire": {"unit": "DAY", "timer": 1}})
    calls = (await sim.client.get("/sim/calls")).json()
    assert calls == [
        {"method": "POST", "path": "/v2/devices/profile-async", "status": 202, "code": None},
        {"method": "POST", "path": "/v2/devices/event-async", "status": 400, "code": "1102"},
    ]


async def test_without_a_callback_url_the_log_says_why(sim: Sim, inbox: Inbox) -> None:
    await sim.client.put("/sim/callback-url", json={"url": None})
    request_id = await accepted(sim, "POST", "/v2/devices/profile-async")
    entry = await settled(sim, request_id)
    assert {(d["status"], d["sent"], d["reason"]) for d in entry["devices"]} == {
        ("failed", False, "no callback URL is configured")
    }
    assert inbox.arrivals == []


async def test_the_pages_other_delete_path_is_not_served(sim: Sim) -> None:
    # The page's DELETE example says /v2/users/event-async; we serve /v2/devices/... only.
    response = await sim.lg("DELETE", "/v2/users/event-async")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "1000"


# --- control by device type ----------------------------------------------------------------------


async def control_async(sim: Sim, body: Any, token: str | None = None) -> httpx.Response:
    return await sim.lg("POST", "/v2/devices/control-async", json=body, token=token)


async def test_control_starts_every_washer_each_with_its_own_result(sim: Sim, inbox: Inbox) -> None:
    washer = sim.ids["Washer"]
    remote_off = await add_device(sim, deviceType="DEVICE_WASHER", alias="Cellar Washer")
    state = {"remoteControlEnable.remoteControlEnabled": False}
    assert (await sim.client.post(f"/sim/devices/{remote_off}/state", json=state)).is_success
    neighbours = await add_device(
        sim, deviceType="DEVICE_WASHER", alias="Neighbour Washer", owner="neighbour"
    )
    inbox.arrivals.clear()  # DEVICE_REGISTERED pushes

    response = await control_async(sim, {"deviceType": "DEVICE_WASHER", "command": WASHER_START})
    assert response.status_code == 202
    messages = by_device(await callbacks(sim, inbox, response.json()["requestId"]))
    assert set(messages) == {washer, remote_off}  # not the neighbour's washer
    ok, refused = messages[washer], messages[remote_off]
    assert (ok["responseCode"], ok["statusCode"], ok["response"]["result"]) == ("0000", 200, {})
    assert ok["response"]["pushType"] == "DEVICE_CONTROL"
    assert (refused["responseCode"], refused["statusCode"]) == ("2301", 400)
    assert refused["response"]["error"]["code"] == "2301"
    assert "result" not in refused["response"]

    states = {
        device_id: (await sim.client.get(f"/sim/devices/{device_id}")).json()["state"]
        for device_id in (washer, remote_off, neighbours)
    }
    assert states[washer]["runState.currentState"] == "RUNNING"
    assert states[remote_off]["runState.currentState"] == "INITIAL"
    assert states[neighbours]["runState.currentState"] == "INITIAL"


async def test_control_both_air_conditioners(sim: Sim, inbox: Inbox) -> None:
    living, bedroom = sim.ids["Living Room AC"], sim.ids["Bedroom AC"]
    body = {
        "deviceType": "DEVICE_AIR_CONDITIONER",
        "command": {"airFlow": {"windStrength": "HIGH"}},
    }
    messages = by_device(
        await callbacks(sim, inbox, (await control_async(sim, body)).json()["requestId"])
    )
    assert set(messages) == {living, bedroom}  # not the neighbour's AC
    assert messages[living]["responseCode"] == "2304"  # powered off
    assert messages[bedroom]["responseCode"] == "0000"
    assert (await sim.state("Bedroom AC"))["airFlow.windStrength"] == "HIGH"
    assert (await sim.state("Living Room AC"))["airFlow.windStrength"] == "AUTO"

    power_on = {
        "deviceType": "DEVICE_AIR_CONDITIONER",
        "command": {"operation": {"airConOperationMode": "POWER_ON"}},
    }
    await sim.client.post(f"/sim/devices/{bedroom}/online", json={"online": False})
    messages = by_device(
        await callbacks(sim, inbox, (await control_async(sim, power_on)).json()["requestId"])
    )
    assert messages[living]["responseCode"] == "0000"
    assert messages[bedroom]["responseCode"] == "1222"
    assert (await sim.state("Living Room AC"))["operation.airConOperationMode"] == "POWER_ON"


async def test_a_command_the_profile_refuses_changes_nothing(sim: Sim, inbox: Inbox) -> None:
    before = await sim.sim_devices()
    for command, code in [
        ({"operation": {"washerOperationMode": "SPIN"}}, "1102"),
        ({"runState": {"currentState": "RUNNING"}}, "1102"),
        ({}, "1101"),
        ([{"operation": {"washerOperationMode": "START"}}], "1311"),
    ]:
        response = await control_async(sim, {"deviceType": "DEVICE_WASHER", "command": command})
        assert response.status_code == 202, command
        [message] = await callbacks(sim, inbox, response.json()["requestId"])
        assert message["responseCode"] == code, command
    assert await sim.sim_devices() == before


BAD_CONTROL = [
    ("no body", None, 400, "1101"),
    ("not an object", [1], 400, "1311"),
    ("extra field", {"deviceType": "DEVICE_WASHER", "command": WASHER_START, "x": 1}, 400, "1102"),
    ("no deviceType", {"command": WASHER_START}, 400, "1101"),
    ("deviceType not a string", {"deviceType": 5, "command": WASHER_START}, 400, "1102"),
    ("empty deviceType", {"deviceType": "", "command": WASHER_START}, 400, "1102"),
    ("no command", {"deviceType": "DEVICE_WASHER"}, 400, "1101"),
    ("command is text", {"deviceType": "DEVICE_WASHER", "command": "START"}, 400, "1102"),
    ("no such type", {"deviceType": "DEVICE_HOOD", "command": {"lamp": {"x": 1}}}, 404, "1205"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "code"), BAD_CONTROL, ids=[c[0] for c in BAD_CONTROL]
)
async def test_control_refusals_send_no_callback(
    sim: Sim, inbox: Inbox, case: str, body: Any, status: int, code: str
) -> None:
    before = await sim.sim_devices()
    response = await control_async(sim, body)
    assert (response.status_code, error_code(response)) == (status, code), case
    assert "requestId" not in response.json()
    assert await requests_log(sim) == []
    assert await sim.sim_devices() == before


async def test_control_of_a_type_only_the_neighbour_has_is_1205(sim: Sim) -> None:
    body = {"deviceType": "DEVICE_WASHER", "command": WASHER_START}
    response = await control_async(sim, body, token=sim.neighbour_token)
    assert (response.status_code, error_code(response)) == (404, "1205")


async def test_malformed_control_json_is_1311(sim: Sim) -> None:
    response = await sim.client.post(
        "/v2/devices/control-async",
        content=b'{"deviceType": "DEVICE_WASHER", "command": {"x": NaN}}',
        headers={**sim.headers(), "content-type": "application/json"},
    )
    assert (response.status_code, error_code(response)) == (400, "1311")


# --- event subscriptions: validation and expiry on the simulated clock ---------------------------


async def event_ids(sim: Sim) -> set[str]:
    return set((await sim.client.get("/sim/subscriptions")).json()["event"])


async def subscribe_events(sim: Sim, inbox: Inbox, body: Any = None) -> None:
    request_id = await accepted(sim, "POST", "/v2/devices/event-async", json=body)
    assert {m["responseCode"] for m in await callbacks(sim, inbox, request_id)} == {"0000"}


@pytest.mark.parametrize(
    ("body", "hours"),
    [
        (None, 1),
        ({}, 1),
        ({"expire": {}}, 1),
        ({"expire": {"unit": "HOUR"}}, 1),
        ({"expire": {"timer": 3}}, 3),
        ({"expire": {"unit": "HOUR", "timer": 2}}, 2),
        ({"expire": {"unit": "HOUR", "timer": 24}}, 24),
    ],
)
async def test_event_subscription_lapses_on_the_simulated_clock(
    sim: Sim, inbox: Inbox, body: Any, hours: int
) -> None:
    await subscribe_events(sim, inbox, body)
    everyone = set(sim.ids.values())
    assert await event_ids(sim) == everyone
    await sim.advance(hours * 3600 - 1)
    assert await event_ids(sim) == everyone
    await sim.advance(1)
    assert await event_ids(sim) == set()


async def test_subscribing_again_renews_from_now(sim: Sim, inbox: Inbox) -> None:
    await subscribe_events(sim, inbox)
    await sim.advance(30 * 60)
    await subscribe_events(sim, inbox)
    await sim.advance(45 * 60)  # 75 minutes after the first: alive thanks to the renewal
    assert await event_ids(sim) == set(sim.ids.values())
    await sim.advance(15 * 60)
    assert await event_ids(sim) == set()


async def test_unsubscribing_after_the_lapse_is_1204_per_device(sim: Sim, inbox: Inbox) -> None:
    fridge = sim.ids["Fridge"]
    await subscribe_events(sim, inbox, {"expire": {"timer": 1}})
    await sim.advance(3600)
    assert (await sim.lg("POST", f"/event/{fridge}")).status_code == 200  # v1, one device
    request_id = await accepted(sim, "DELETE", "/v2/devices/event-async")
    messages = by_device(await callbacks(sim, inbox, request_id))
    assert messages.pop(fridge)["responseCode"] == "0000"
    assert {m["responseCode"] for m in messages.values()} == {"1204"}
    assert await event_ids(sim) == set()


BAD_EXPIRY = [
    ("unit MINUTE", {"expire": {"unit": "MINUTE", "timer": 1}}, "1102"),
    ("unit lower case", {"expire": {"unit": "hour", "timer": 1}}, "1102"),
    ("timer 0", {"expire": {"unit": "HOUR", "timer": 0}}, "1102"),
    ("timer 25", {"expire": {"unit": "HOUR", "timer": 25}}, "1102"),
    ("timer negative", {"expire": {"unit": "HOUR", "timer": -1}}, "1102"),
    ("timer text", {"expire": {"unit": "HOUR", "timer": "1"}}, "1102"),
    ("timer fraction", {"expire": {"unit": "HOUR", "timer": 1.5}}, "1102"),
    ("timer boolean", {"expire": {"unit": "HOUR", "timer": True}}, "1102"),
    ("expire text", {"expire": "1h"}, "1102"),
    ("extra expire field", {"expire": {"unit": "HOUR", "timer": 1, "x": 1}}, "1102"),
    ("extra field", {"expire": {"timer": 1}, "x": 1}, "1102"),
    ("not an object", [1], "1311"),
]


@pytest.mark.parametrize(("case", "body", "code"), BAD_EXPIRY, ids=[c[0] for c in BAD_EXPIRY])
async def test_bad_expiry_is_refused_before_anything_happens(
    sim: Sim, inbox: Inbox, case: str, body: Any, code: str
) -> None:
    response = await sim.lg("POST", "/v2/devices/event-async", json=body)
    assert response.status_code == 400, case
    answer = response.json()
    assert set(answer) == {
        "messageId",
        "responseCode",
        "statusCode",
        "response",
        "error",
        "timestamp",
    }
    assert (answer["responseCode"], answer["statusCode"]) == (code, 400)
    assert answer["response"]["error"] == answer["error"]
    assert answer["error"]["code"] == code
    assert await event_ids(sim) == set()
    assert await requests_log(sim) == []
    await asyncio.sleep(0.05)
    assert inbox.arrivals == []


async def test_bad_expiry_json_is_1311(sim: Sim) -> None:
    response = await sim.client.post("/v2/devices/event-async", content=b"{", headers=sim.headers())
    assert (response.status_code, error_code(response)) == (400, "1311")


# --- headers: the same checks and refusals as v1 -------------------------------------------------

HEADER_CASES = [
    ("missing message id", {"x_message_id": None}, 400, "1101"),
    ("bad message id", {"x_message_id": "short"}, 400, "1104"),
    ("auth scheme", {"Authorization": "Token abc"}, 400, "1103"),
    ("service id", {"x_service_id": "nope"}, 401, "1203"),
    ("service key", {"x_service_key": "nope"}, 401, "1301"),
    ("token", {"Authorization": "Bearer unknown"}, 401, "1302"),
    ("country", {"x_country_code": "usa"}, 400, "1102"),
]


@pytest.mark.parametrize(
    ("case", "overrides", "status", "code"), HEADER_CASES, ids=[c[0] for c in HEADER_CASES]
)
async def test_header_refusals_on_every_placement_path(
    sim: Sim, inbox: Inbox, case: str, overrides: dict[str, Any], status: int, code: str
) -> None:
    before = await sim.sim_devices()
    for method, path, body in ALL_PATHS:
        response = await sim.client.request(
            method, path, headers=sim.headers(**overrides), json=body
        )
        assert (response.status_code, error_code(response)) == (status, code), (case, path)
        assert response.json()["error"]["code"] == code
        assert "requestId" not in response.json()
        assert sim.creds.service_key not in response.text
    assert await requests_log(sim) == []
    assert await sim.sim_devices() == before
    subscriptions = (await sim.client.get("/sim/subscriptions")).json()
    assert (subscriptions["push"], subscriptions["event"]) == ([], [])
    await asyncio.sleep(0.05)
    assert inbox.arrivals == []


async def test_refused_calls_are_logged_with_their_code(sim: Sim) -> None:
    await sim.client.delete("/sim/calls")
    await sim.client.post("/v2/devices/status-async", headers=sim.headers(x_service_key="nope"))
    calls = (await sim.client.get("/sim/calls")).json()
    assert calls == [
        {"method": "POST", "path": "/v2/devices/status-async", "status": 401, "code": "1301"}
    ]


# --- fault knobs --------------------------------------------------------------------------------


async def test_delay_holds_one_callback_back_in_real_seconds(sim: Sim, inbox: Inbox) -> None:
    fridge = sim.ids["Fridge"]
    await set_faults(sim, delaySeconds={fridge: 1.0})
    sent_at = time.monotonic()
    request_id = await accepted(sim, "POST", "/v2/devices/profile-async")
    await inbox.wait(request_id, 8)
    [entry] = await requests_log(sim, request_id)
    fridge_entry = next(d for d in entry["devices"] if d["deviceId"] == fridge)
    assert (fridge_entry["status"], fridge_entry["sent"]) == ("pending", False)
    assert fridge_entry["delaySeconds"] == 1.0
    await inbox.wait(request_id, 9)
    times = inbox.times(request_id)
    assert times[fridge] - sent_at >= 0.95
    assert max(t for d, t in times.items() if d != fridge) - sent_at < 0.9
    assert [b["response"]["deviceId"] for _, b in inbox.arrivals][-1] == fridge
    entry = await settled(sim, request_id)
    assert all(d["status"] == "sent" and d["deliveries"] == 1 for d in entry["devices"])


async def test_drop_never_sends_that_callback(sim: Sim, inbox: Inbox) -> None:
    washer = sim.ids["Washer"]
    await set_faults(sim, drop=[washer])
    request_id = await accepted(sim, "POST", "/v2/devices/status-async")
    messages = by_device(await callbacks(sim, inbox, request_id))
    assert set(messages) == set(sim.ids.values()) - {washer}
    [entry] = await requests_log(sim, request_id)
    dropped = next(d for d in entry["devices"] if d["deviceId"] == washer)
    assert (dropped["status"], dropped["sent"], dropped["deliveries"]) == ("dropped", False, 0)
    assert "faults" in dropped["reason"]
    assert entry["faults"]["drop"] == [washer]
    await asyncio.sleep(0.1)
    assert len(inbox.of(request_id)) == 8


async def test_duplicate_sends_the_same_body_twice(sim: Sim, inbox: Inbox) -> None:
    washer = sim.ids["Washer"]
    await set_faults(sim, duplicate=[washer])
    request_id = await accepted(sim, "POST", "/v2/devices/profile-async")
    messages = await callbacks(sim, inbox, request_id)
    assert len(messages) == 10
    twice = [m for m in messages if m["response"]["deviceId"] == washer]
    assert len(twice) == 2 and twice[0] == twice[1]
    [entry] = await requests_log(sim, request_id)
    washer_entry = next(d for d in entry["devices"] if d["deviceId"] == washer)
    assert (washer_entry["duplicate"], washer_entry["deliveries"]) == (True, 2)


async def test_shuffle_sends_in_random_order(sim: Sim, inbox: Inbox) -> None:
    household_order = list(sim.ids.values())
    plain = await callbacks(sim, inbox, await accepted(sim, "POST", "/v2/devices/status-async"))
    assert [m["response"]["deviceId"] for m in plain] == household_order

    await set_faults(sim, shuffle=True)
    orders = []
    for _ in range(4):  # all four in household order by chance: (1/9!)^4
        request_id = await accepted(sim, "POST", "/v2/devices/status-async")
        arrived = [m["response"]["deviceId"] for m in await callbacks(sim, inbox, request_id)]
        assert sorted(arrived) == sorted(household_order)
        [entry] = await requests_log(sim, request_id)
        assert [d["deviceId"] for d in entry["devices"]] == arrived  # the log shows send order
        orders.append(arrived)
    assert any(order != household_order for order in orders)


async def test_faults_get_put_delete_and_survive_reset(sim: Sim) -> None:
    empty = {"delaySeconds": {}, "drop": [], "duplicate": [], "shuffle": False}
    assert (await sim.client.get("/sim/placement/faults")).json() == empty
    washer, fridge = sim.ids["Washer"], sim.ids["Fridge"]
    faults = {"delaySeconds": {fridge: 2}, "drop": [washer], "shuffle": True}
    response = await sim.client.put("/sim/placement/faults", json=faults)
    expected = {"delaySeconds": {fridge: 2.0}, "drop": [washer], "duplicate": [], "shuffle": True}
    assert (response.status_code, response.json()) == (200, expected)
    assert (await sim.client.post("/sim/reset")).status_code == 200
    assert (await sim.client.get("/sim/placement/faults")).json() == expected
    # PUT replaces the whole set
    await set_faults(sim, duplicate=[fridge])
    assert (await sim.client.get("/sim/placement/faults")).json() == {
        **empty,
        "duplicate": [fridge],
    }
    response = await sim.client.delete("/sim/placement/faults")
    assert (response.status_code, response.json()) == (200, empty)


async def test_faults_are_validated(sim: Sim) -> None:
    washer = sim.ids["Washer"]
    for body in [
        [],
        "x",
        {"nope": 1},
        {"delaySeconds": [washer]},
        {"delaySeconds": {washer: -1}},
        {"delaySeconds": {washer: 601}},
        {"delaySeconds": {washer: "1"}},
        {"delaySeconds": {washer: True}},
        {"delaySeconds": {"0" * 64: 1}},
        {"drop": washer},
        {"drop": [5]},
        {"drop": ["no-such-device"]},
        {"duplicate": ["no-such-device"]},
        {"drop": [washer], "duplicate": [washer]},
        {"shuffle": "yes"},
    ]:
        response = await sim.client.put("/sim/placement/faults", json=body)
        assert response.status_code == 400, body
        assert response.json()["reason"], body
    bad_json = await sim.client.put("/sim/placement/faults", content=b"{")
    assert bad_json.status_code == 400
    assert (await sim.client.get("/sim/placement/faults")).json()["drop"] == []


async def test_faults_apply_to_requests_accepted_while_in_force(sim: Sim, inbox: Inbox) -> None:
    washer = sim.ids["Washer"]
    await set_faults(sim, delaySeconds={washer: 0.6})
    request_id = await accepted(sim, "POST", "/v2/devices/profile-async")
    await sim.client.delete("/sim/placement/faults")  # too late for that request
    await inbox.wait(request_id, 9)
    assert [b["response"]["deviceId"] for _, b in inbox.arrivals][-1] == washer


async def test_a_delayed_callback_does_not_outlive_the_simulator(inbox: Inbox) -> None:
    started = time.monotonic()
    async with running_simulator(callback_url=inbox.url) as sim:
        await set_faults(sim, delaySeconds={sim.ids["Oven"]: 600})
        request_id = await accepted(sim, "POST", "/v2/devices/profile-async")
        await inbox.wait(request_id, 8)
    assert time.monotonic() - started < 10  # shut down without waiting out the delay
    assert len(inbox.arrivals) == 8
