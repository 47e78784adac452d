"""lgcloud.placement against the simulator over real HTTP, and the callback parser.

The client returns the requestId of an accepted (202) call and raises the same typed
errors as the v1 client; the callbacks that follow parse into PlacementResults. The
parser is strict with anything claiming to be a placement callback, returns None for
LG's other callbacks, and never raises anything but PlacementCallbackRejected.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from lgcloud.callbacks import CallbackRejected, parse_callback
from lgcloud.errors import (
    CommandRefused,
    DeviceNotFound,
    ThinQAuthError,
    ThinQBadRequest,
    ThinQServerError,
    ThinQTransportError,
)
from lgcloud.message_id import is_valid_message_id
from lgcloud.placement import PlacementClient
from lgcloud.placement_callbacks import (
    PlacementCallbackRejected,
    PlacementResult,
    parse_placement_callback,
)
from lgcloud.thinq import ThinQAuth
from tests.conftest import RunningSimulator

# --- a callback receiver and the client, against the conftest simulator ---------------------


class Inbox:
    def __init__(self) -> None:
        self.url = ""
        self.bodies: list[bytes] = []
        self.changed = asyncio.Condition()

    def of(self, request_id: str) -> list[PlacementResult]:
        parsed = [parse_placement_callback(body) for body in self.bodies]
        return [p for p in parsed if p is not None and p.request_id == request_id]

    async def wait(self, request_id: str, count: int) -> list[PlacementResult]:
        async with self.changed:
            await asyncio.wait_for(
                self.changed.wait_for(lambda: len(self.of(request_id)) >= count), 5
            )
        return self.of(request_id)


@pytest.fixture
async def inbox(simulator: RunningSimulator) -> AsyncIterator[Inbox]:
    box = Inbox()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        async with box.changed:
            box.bodies.append(body)
            box.changed.notify_all()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/callback", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box.url = f"http://127.0.0.1:{runner.addresses[0][1]}/callback"
        response = await simulator.sim("PUT", "/sim/callback-url", json={"url": box.url})
        assert response.status_code == 200
        yield box
    finally:
        await runner.cleanup()


@pytest.fixture
async def client(simulator: RunningSimulator) -> AsyncIterator[PlacementClient]:
    created = PlacementClient(simulator.url, simulator.service_id, simulator.service_key)
    try:
        yield created
    finally:
        await created.aclose()


async def settled(simulator: RunningSimulator, request_id: str) -> list[dict[str, Any]]:
    for _ in range(250):
        listed = (
            await simulator.sim("GET", "/sim/placement/requests", params={"requestId": request_id})
        ).json()
        devices = listed[0]["devices"]
        if all(d["status"] != "pending" for d in devices):
            return devices
        await asyncio.sleep(0.02)
    raise AssertionError(f"callbacks of {request_id} still pending")


async def results(
    simulator: RunningSimulator, inbox: Inbox, request_id: str
) -> dict[str, PlacementResult]:
    devices = await settled(simulator, request_id)
    got = {r.device_id: r for r in inbox.of(request_id)}
    assert len(got) == len(devices)
    return got


# --- the client against the simulator ----------------------------------------------------------


async def test_every_call_returns_the_request_id_its_callbacks_carry(
    simulator: RunningSimulator, inbox: Inbox, client: PlacementClient
) -> None:
    auth = simulator.demo_auth
    demo_ids = {d["deviceId"] for d in (await simulator.devices()).values()}
    calls = [
        (client.profiles(auth), "DEVICE_PROFILE", "0000"),
        (client.statuses(auth), "DEVICE_STATUS", "0000"),
        (client.subscribe_events(auth, hours=5), "DEVICE_EVENT_SUBSCRIBED", "0000"),
        (client.unsubscribe_events(auth), "DEVICE_EVENT_UNSUBSCRIBED", "0000"),
        (client.subscribe_pushes(auth), "DEVICE_PUSH_SUBSCRIBED", "0000"),
        (client.unsubscribe_pushes(auth), "DEVICE_PUSH_UNSUBSCRIBED", "0000"),
        (client.unsubscribe_pushes(auth), "DEVICE_PUSH_UNSUBSCRIBED", "1206"),
    ]
    seen = set()
    for call, push_type, code in calls:
        request_id = await call
        assert is_valid_message_id(request_id) and request_id not in seen
        seen.add(request_id)
        got = await results(simulator, inbox, request_id)
        assert set(got) == demo_ids
        for result in got.values():
            assert (result.push_type, result.user_number) == (push_type, "demo")
            assert result.service_id == simulator.service_id
            assert result.ok is (code == "0000")
            assert result.error_code == (None if code == "0000" else code)
            if result.ok:
                assert result.error() is None
            else:
                assert isinstance(result.error(), ThinQBadRequest)
        if push_type == "DEVICE_PROFILE":
            assert all("property" in r.result for r in got.values())


async def test_event_hours_reach_the_simulated_clock(
    simulator: RunningSimulator, inbox: Inbox, client: PlacementClient
) -> None:
    await results(simulator, inbox, await client.subscribe_events(simulator.demo_auth, hours=3))

    async def events() -> list[str]:
        return (await simulator.sim("GET", "/sim/subscriptions")).json()["event"]

    assert len(await events()) == 9
    simulator.clock.advance(3 * 3600 - 1)
    assert len(await events()) == 9
    simulator.clock.advance(1)
    assert await events() == []


async def test_control_reports_each_device(
    simulator: RunningSimulator, inbox: Inbox, client: PlacementClient
) -> None:
    devices = await simulator.devices()
    living, bedroom = devices["Living Room AC"]["deviceId"], devices["Bedroom AC"]["deviceId"]
    request_id = await client.control(
        simulator.demo_auth, "DEVICE_AIR_CONDITIONER", {"airFlow": {"windStrength": "HIGH"}}
    )
    got = await results(simulator, inbox, request_id)
    assert set(got) == {living, bedroom}
    assert got[bedroom].ok and got[bedroom].result == {}
    refused = got[living]
    assert (refused.ok, refused.error_code, refused.status_code) == (False, "2304", 400)
    assert refused.result is None
    error = refused.error()
    assert isinstance(error, CommandRefused) and error.code == "2304"
    assert "powered off" in refused.error_message


async def test_errors_are_typed_like_v1(simulator: RunningSimulator) -> None:
    auth = simulator.demo_auth
    for client, call_auth, exc_type, code in [
        (
            PlacementClient(simulator.url, simulator.service_id, "wrong"),
            auth,
            ThinQAuthError,
            "1301",
        ),
        (
            PlacementClient(simulator.url, simulator.service_id, simulator.service_key),
            ThinQAuth("unknown-token", "US"),
            ThinQAuthError,
            "1302",
        ),
        (
            PlacementClient(simulator.url, simulator.service_id, simulator.service_key),
            ThinQAuth(simulator.demo_token, "usa"),
            ThinQBadRequest,
            "1102",
        ),
    ]:
        try:
            with pytest.raises(exc_type) as raised:
                await client.statuses(call_auth)
            assert raised.value.code == code
        finally:
            await client.aclose()

    client = PlacementClient(simulator.url, simulator.service_id, simulator.service_key)
    try:
        with pytest.raises(DeviceNotFound) as no_hood:
            await client.control(auth, "DEVICE_HOOD", {"lamp": {"lampBrightness": 1}})
        assert no_hood.value.code == "1205"
    finally:
        await client.aclose()


async def test_arguments_are_checked_before_any_call(
    simulator: RunningSimulator, client: PlacementClient
) -> None:
    auth = simulator.demo_auth
    await simulator.sim("DELETE", "/sim/calls")
    for hours in (0, 25, -1, True, 1.5, "1", None):
        with pytest.raises(ValueError, match="hours"):
            await client.subscribe_events(auth, hours=hours)  # type: ignore[arg-type]
    for device_type, command in [
        ("", {"x": {"y": 1}}),
        (None, {"x": {"y": 1}}),
        ("DEVICE_WASHER", {}),
        ("DEVICE_WASHER", []),
        ("DEVICE_WASHER", "START"),
    ]:
        with pytest.raises(ValueError):
            await client.control(auth, device_type, command)  # type: ignore[arg-type]
    assert (await simulator.sim("GET", "/sim/calls")).json() == []


# --- the client against a scripted server (headers, bodies, odd answers) -------------------------


class Scripted:
    """Answers every request with the next scripted (status, body, delay)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, Any, float]] = []
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append(
            {
                "method": request.method,
                "path": request.path,
                "headers": dict(request.headers),
                "body": json.loads(raw) if raw else None,
            }
        )
        status, body, delay = self.answers.pop(0) if self.answers else (202, ACCEPTED, 0.0)
        await asyncio.sleep(delay)
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        return web.json_response(body, status=status)


ACCEPTED = {
    "messageId": "a30a1a28922240cd9b9373",
    "requestId": "Dk6yZpYbKJvkuDvKHYP2oY",
    "response": {},
    "responseCode": "0000",
    "statusCode": 202,
    "timestamp": "2020-08-25T05:46:35.922378",
}


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        yield server, f"http://127.0.0.1:{runner.addresses[0][1]}/"
    finally:
        await runner.cleanup()


async def test_paths_methods_headers_and_bodies(scripted: tuple[Scripted, str]) -> None:
    server, url = scripted
    client = PlacementClient(url, "sid", "skey")
    auth = ThinQAuth("tok", "KR")
    try:
        assert await client.profiles(auth) == ACCEPTED["requestId"]
        await client.statuses(auth)
        await client.control(auth, "DEVICE_REFRIGERATOR", {"refrigeration": {"expressMode": True}})
        await client.subscribe_events(auth)
        await client.subscribe_events(auth, hours=24)
        await client.unsubscribe_events(auth)
        await client.subscribe_pushes(auth)
        await client.unsubscribe_pushes(auth)
    finally:
        await client.aclose()
    seen = [(r["method"], r["path"], r["body"]) for r in server.requests]
    assert seen == [
        ("POST", "/v2/devices/profile-async", None),
        ("POST", "/v2/devices/status-async", None),
        (
            "POST",
            "/v2/devices/control-async",
            {
                "deviceType": "DEVICE_REFRIGERATOR",
                "command": {"refrigeration": {"expressMode": True}},
            },
        ),
        ("POST", "/v2/devices/event-async", {"expire": {"unit": "HOUR", "timer": 1}}),
        ("POST", "/v2/devices/event-async", {"expire": {"unit": "HOUR", "timer": 24}}),
        ("DELETE", "/v2/devices/event-async", None),
        ("POST", "/v2/devices/push-async", None),
        ("DELETE", "/v2/devices/push-async", None),
    ]
    message_ids = set()
    for request in server.requests:
        headers = request["headers"]
        assert headers["Authorization"] == "Bearer tok"
        assert (headers["x-service-id"], headers["x-service-key"]) == ("sid", "skey")
        assert headers["x-country-code"] == "KR"
        assert is_valid_message_id(headers["x-message-id"])
        message_ids.add(headers["x-message-id"])
    assert len(message_ids) == len(server.requests)


@pytest.mark.parametrize(
    ("status", "body", "exc_type", "code"),
    [
        (202, {**ACCEPTED, "requestId": None}, ThinQTransportError, "0000"),
        (202, {k: v for k, v in ACCEPTED.items() if k != "requestId"}, ThinQTransportError, "0000"),
        (202, {**ACCEPTED, "requestId": "   "}, ThinQTransportError, "0000"),
        (202, {**ACCEPTED, "requestId": "x" * 129}, ThinQTransportError, "0000"),
        (202, b"not json", ThinQTransportError, "0000"),
        (202, [ACCEPTED], ThinQTransportError, "0000"),
        (202, {**ACCEPTED, "responseCode": "1102"}, ThinQBadRequest, "1102"),
        (
            400,
            {"responseCode": "1102", "response": {"error": {"code": "1102", "message": "x"}}},
            ThinQBadRequest,
            "1102",
        ),
        (401, {"error": {"code": "1301", "message": "bad key"}}, ThinQAuthError, "1301"),
        (500, b"<html>oops</html>", ThinQServerError, "2000"),
        (503, {"error": {"code": "2000", "message": "down"}}, ThinQServerError, "2000"),
        (418, b"", ThinQTransportError, "0000"),
    ],
)
async def test_odd_answers_become_typed_errors(
    scripted: tuple[Scripted, str], status: int, body: Any, exc_type: type, code: str
) -> None:
    server, url = scripted
    server.answers = [(status, body, 0.0)]
    client = PlacementClient(url, "sid", "skey")
    try:
        with pytest.raises(exc_type) as raised:
            await client.statuses(ThinQAuth("t", "US"))
        assert raised.value.code == code
    finally:
        await client.aclose()
    assert len(server.requests) == 1  # never retried


async def test_server_errors_and_timeouts_are_not_retried(scripted: tuple[Scripted, str]) -> None:
    server, url = scripted
    server.answers = [(503, {"error": {"code": "2000", "message": "down"}}, 0.0)]
    client = PlacementClient(url, "sid", "skey", timeout_seconds=0.2)
    try:
        with pytest.raises(ThinQServerError):
            await client.profiles(ThinQAuth("t", "US"))
        server.answers = [(202, ACCEPTED, 1.0)]
        with pytest.raises(ThinQTransportError, match="timed out"):
            await client.control(ThinQAuth("t", "US"), "DEVICE_WASHER", {"operation": {"x": 1}})
    finally:
        await client.aclose()
    assert len(server.requests) == 2


async def test_connection_refused_is_a_transport_error() -> None:
    client = PlacementClient("http://127.0.0.1:9", "sid", "key")
    try:
        with pytest.raises(ThinQTransportError, match="connection failed"):
            await client.profiles(ThinQAuth("t", "US"))
    finally:
        await client.aclose()


def test_secrets_stay_out_of_the_repr() -> None:
    client = PlacementClient("http://x", "sid", "super-secret-key")
    assert "super-secret" not in repr(client)


# --- the parser -------------------------------------------------------------------------------


def callback(**changes: Any) -> dict[str, Any]:
    """LG's documented control callback, with top-level or response-level changes."""
    body: dict[str, Any] = {
        "messageId": "9VrtBGvykATMJ2HUrVYyfF",
        "requestId": "DsSwmHjsHHKVaFvPsPsP2i",
        "response": {
            "deviceId": "TQS-B2E5FF4D-FC14-4E6F-928C-EFC8536B60EA",
            "deviceType": "DEVICE_STYLER",
            "pushType": "DEVICE_CONTROL",
            "serviceId": "470ae4c5a0b25f1e34f7e2d7",
            "userNumber": "KR2008011234567",
            "result": {},
        },
        "responseCode": "0000",
        "statusCode": 200,
        "timestamp": "2020-08-26T07:39:57.075405",
    }
    for key, value in changes.items():
        target = body["response"] if key.startswith("r_") else body
        name = key[2:] if key.startswith("r_") else key
        if value is DELETE:
            target.pop(name, None)
        else:
            target[name] = value
    return body


DELETE = object()


def test_documented_callback_parses() -> None:
    parsed = parse_placement_callback(callback())
    assert parsed == PlacementResult(
        request_id="DsSwmHjsHHKVaFvPsPsP2i",
        device_id="TQS-B2E5FF4D-FC14-4E6F-928C-EFC8536B60EA",
        device_type="DEVICE_STYLER",
        push_type="DEVICE_CONTROL",
        user_number="KR2008011234567",
        ok=True,
        error_code=None,
        result={},
        message_id="9VrtBGvykATMJ2HUrVYyfF",
        service_id="470ae4c5a0b25f1e34f7e2d7",
        timestamp="2020-08-26T07:39:57.075405",
        status_code=200,
    )


def test_bytes_str_and_dict_parse_alike() -> None:
    body = callback(r_pushType="DEVICE_STATUS", r_result={"runState": {"currentState": "RUNNING"}})
    raw = json.dumps(body)
    assert (
        parse_placement_callback(body)
        == parse_placement_callback(raw)
        == parse_placement_callback(raw.encode())
    )


@pytest.mark.parametrize(
    "push_type",
    [
        "DEVICE_PROFILE",
        "DEVICE_STATUS",
        "DEVICE_CONTROL",
        "DEVICE_EVENT_SUBSCRIBED",
        "DEVICE_EVENT_UNSUBSCRIBED",
        "DEVICE_PUSH_SUBSCRIBED",
        "DEVICE_PUSH_UNSUBSCRIBED",
    ],
)
def test_every_placement_push_type(push_type: str) -> None:
    parsed = parse_placement_callback(callback(r_pushType=push_type))
    assert parsed is not None and parsed.push_type == push_type


def test_the_pages_user_push_spelling_is_read_as_device_push() -> None:
    for spelling, read in [
        ("USER_PUSH_SUBSCRIBED", "DEVICE_PUSH_SUBSCRIBED"),
        ("USER_PUSH_UNSUBSCRIBED", "DEVICE_PUSH_UNSUBSCRIBED"),
    ]:
        parsed = parse_placement_callback(callback(r_pushType=spelling))
        assert parsed is not None and parsed.push_type == read


def test_profile_and_status_results_may_be_arrays() -> None:
    for push_type in ("DEVICE_PROFILE", "DEVICE_STATUS"):
        parsed = parse_placement_callback(callback(r_pushType=push_type, r_result=[{"a": 1}]))
        assert parsed is not None and parsed.result == [{"a": 1}]


def test_a_failed_device() -> None:
    body = callback(
        responseCode="2301",
        statusCode=400,
        r_result=DELETE,
        r_error={"code": "2301", "message": "Command not supported in remote off"},
    )
    parsed = parse_placement_callback(body)
    assert parsed is not None
    assert (parsed.ok, parsed.error_code, parsed.result) == (False, "2301", None)
    assert parsed.error_message == "Command not supported in remote off"
    assert isinstance(parsed.error(), CommandRefused)
    # the code alone is enough
    bare = parse_placement_callback(callback(responseCode="1222", r_result=DELETE))
    assert bare is not None and (bare.ok, bare.error_code) == (False, "1222")


def test_unknown_fields_are_tolerated() -> None:
    parsed = parse_placement_callback(callback(extra=1, r_extra={"x": 1}))
    assert parsed is not None and parsed.ok


@pytest.mark.parametrize(
    "body",
    [
        # v1 DEVICE_PUSH (lg-api/notification-api.txt) and PCC_EVENT
        {
            "messageId": "fR8dHw2KTQ2Bw_MRTHvnGA",
            "timestamp": "2019-06-20T01:05:21.811029",
            "push": {
                "pushType": "DEVICE_PUSH",
                "serviceId": "470ae4c5a0b25f1e34f7e2d7",
                "deviceId": "d" * 64,
                "pushCode": "WASHING_IS_COMPLETE",
                "deviceType": "DEVICE_WASHER",
                "userList": ["demo"],
            },
        },
        {
            "messageId": "m",
            "timestamp": "t",
            "event": {
                "pushType": "PCC_EVENT",
                "deviceId": "d",
                "deviceType": "DEVICE_WASHER",
                "diagnosisType": "X",
                "contentUrl": "https://example.com",
            },
        },
        # a status event (no requestId, no placement pushType under response)
        {"pushType": "DEVICE_STATUS", "deviceId": "d", "deviceType": "DEVICE_WASHER", "report": {}},
        {"messageId": "m", "response": {"pushType": "DEVICE_STATUS_CHANGED"}},
        {},
    ],
    ids=["device push", "pcc event", "status event", "other response", "empty object"],
)
def test_other_callbacks_are_none(body: dict[str, Any]) -> None:
    assert parse_placement_callback(body) is None
    assert parse_placement_callback(json.dumps(body).encode()) is None


def test_a_v1_push_still_parses_with_the_v1_parser() -> None:
    body = {
        "messageId": "m",
        "push": {
            "pushType": "DEVICE_PUSH",
            "deviceId": "d",
            "pushCode": "WASHING_IS_COMPLETE",
            "userList": ["demo"],
        },
    }
    assert parse_placement_callback(body) is None
    assert parse_callback(body).push_code == "WASHING_IS_COMPLETE"


REJECTED = [
    ("not json", b"{", "not valid JSON"),
    ("not utf-8", b"\xff\xfe", "not valid JSON"),
    ("nan", b'{"requestId": NaN}', "not valid JSON"),
    ("deep", b"[" * 100_000, "not valid JSON"),
    ("huge", b" " * (2 * 1024 * 1024 + 1), "larger"),
    ("a list", [callback()], "JSON object"),
    ("a string body", b'"text"', "JSON object"),
    ("null", b"null", "JSON object"),
    ("a number", 5, "JSON object"),
    ("missing requestId", callback(requestId=DELETE), "requestId is missing"),
    ("requestId null", callback(requestId=None), "requestId is missing"),
    ("requestId number", callback(requestId=5), "requestId must be"),
    ("requestId empty", callback(requestId=" "), "requestId must be"),
    ("requestId long", callback(requestId="x" * 129), "requestId is longer"),
    ("missing messageId", callback(messageId=DELETE), "messageId is missing"),
    ("responseCode number", callback(responseCode=0), "responseCode"),
    ("responseCode short", callback(responseCode="00"), "responseCode"),
    ("responseCode missing", callback(responseCode=DELETE), "responseCode"),
    ("statusCode text", callback(statusCode="200"), "statusCode"),
    ("statusCode bool", callback(statusCode=True), "statusCode"),
    ("statusCode range", callback(statusCode=42), "statusCode"),
    ("response missing", callback(response=DELETE), "response must be an object"),
    ("response a list", callback(response=[]), "response must be an object"),
    ("pushType missing", callback(r_pushType=DELETE), "pushType is missing"),
    ("pushType unknown", callback(r_pushType="DEVICE_PUSH"), "not a placement pushType"),
    ("pushType number", callback(r_pushType=3), "pushType must be"),
    ("deviceId missing", callback(r_deviceId=DELETE), "deviceId is missing"),
    ("deviceId number", callback(r_deviceId=7), "deviceId must be"),
    ("deviceType missing", callback(r_deviceType=DELETE), "deviceType is missing"),
    ("userNumber missing", callback(r_userNumber=DELETE), "userNumber is missing"),
    ("userNumber list", callback(r_userNumber=["demo"]), "userNumber must be"),
    ("serviceId missing", callback(r_serviceId=DELETE), "serviceId is missing"),
    ("result missing", callback(r_result=DELETE), "result is missing"),
    ("control result list", callback(r_result=[]), "must be an object"),
    ("status result text", callback(r_pushType="DEVICE_STATUS", r_result="x"), "object or"),
    ("ok with error", callback(r_error={"code": "0000"}), "must not carry"),
    (
        "error code disagrees",
        callback(responseCode="2301", r_error={"code": "2302", "message": "x"}),
        "disagrees",
    ),
    ("error not an object", callback(responseCode="2301", r_error="boom"), "error must be"),
    (
        "error message number",
        callback(responseCode="2301", r_error={"code": "2301", "message": 5}),
        "message must be",
    ),
    (
        "placement pushType without requestId",
        {"messageId": "m", "response": {"pushType": "DEVICE_CONTROL", "deviceId": "d"}},
        "requestId is missing",
    ),
]


@pytest.mark.parametrize(("case", "body", "reason"), REJECTED, ids=[r[0] for r in REJECTED])
def test_rejections_say_why(case: str, body: Any, reason: str) -> None:
    with pytest.raises(PlacementCallbackRejected) as raised:
        parse_placement_callback(body)
    assert reason in raised.value.reason, case
    assert isinstance(raised.value, CallbackRejected) and isinstance(raised.value, ValueError)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["messageId", "requestId", "response", "responseCode", "statusCode", "timestamp", "x"]
)
INNER_KEYS = st.sampled_from(
    ["deviceId", "deviceType", "pushType", "serviceId", "userNumber", "result", "error", "x"]
)
NEAR_CALLBACKS = st.builds(
    lambda top, inner: {**top, "response": inner} if "response" in top else top,
    st.dictionaries(KEYS, JSON | st.just("DEVICE_CONTROL") | st.just("0000"), max_size=7),
    st.dictionaries(INNER_KEYS, JSON | st.just("DEVICE_STATUS"), max_size=8),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(JSON, NEAR_CALLBACKS, st.binary(max_size=64)))
def test_garbage_never_raises_anything_else(body: Any) -> None:
    try:
        parsed = parse_placement_callback(body)
    except PlacementCallbackRejected as exc:
        assert exc.reason
        return
    assert parsed is None or isinstance(parsed, PlacementResult)
