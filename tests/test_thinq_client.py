"""lgcloud.thinq against the simulator over real HTTP: headers, envelope, errors, retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from lgcloud.errors import (
    CommandRefused,
    DeviceNotFound,
    DeviceOffline,
    ThinQAuthError,
    ThinQBadRequest,
    ThinQServerError,
    ThinQTransportError,
    error_for,
)
from lgcloud.message_id import is_valid_message_id, new_message_id
from lgcloud.thinq import ThinQAuth, ThinQClient


def test_message_id_follows_lgs_rule():
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 22 and is_valid_message_id(i) for i in ids)


def test_unknown_codes_fall_back_by_http_status():
    assert isinstance(error_for("9999", "x", 503), ThinQServerError)
    assert isinstance(error_for("9999", "x", 401), ThinQAuthError)
    assert error_for("1222", "x").name == "NOT_CONNECTED_DEVICE"


async def test_device_list_profile_status_and_control(simulator):
    client = simulator.client()
    try:
        devices = await client.list_devices(simulator.demo_auth)
        by_alias = {d.alias: d for d in devices}
        assert {"Fridge", "Washer", "Living Room AC", "Oven"} <= set(by_alias)
        fridge = by_alias["Fridge"]
        assert fridge.device_type == "DEVICE_REFRIGERATOR"
        profile = await client.get_profile(simulator.demo_auth, fridge.device_id)
        assert "refrigeration" in profile["property"]
        status = await client.get_status(simulator.demo_auth, fridge.device_id)
        assert status["refrigeration"]["expressMode"] is False
        await client.control(
            simulator.demo_auth, fridge.device_id, {"refrigeration": {"expressMode": True}}
        )
        state = (await simulator.devices())["Fridge"]["state"]
        assert state["refrigeration.expressMode"] is True
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("mutate", "exc_type", "code"),
    [
        ({"token": "not-a-known-token"}, ThinQAuthError, "1302"),
        ({"service_key": "wrong-key"}, ThinQAuthError, "1301"),
        ({"service_id": "000000000000000000000000"}, ThinQAuthError, "1203"),
        ({"country": "usa"}, ThinQBadRequest, "1102"),
    ],
)
async def test_credential_errors_are_typed(simulator, mutate, exc_type, code):
    client = ThinQClient(
        simulator.url,
        mutate.get("service_id", simulator.service_id),
        mutate.get("service_key", simulator.service_key),
    )
    auth = ThinQAuth(mutate.get("token", simulator.demo_token), mutate.get("country", "US"))
    try:
        with pytest.raises(exc_type) as raised:
            await client.list_devices(auth)
        assert raised.value.code == code
    finally:
        await client.aclose()


async def test_device_errors_are_typed(simulator):
    client = simulator.client()
    auth = simulator.demo_auth
    devices = await simulator.devices()
    try:
        with pytest.raises(DeviceNotFound) as unknown:
            await client.get_status(auth, "no-such-device")
        assert unknown.value.code == "1205"

        neighbour = ThinQAuth(simulator.neighbour_token, "US")
        neighbours_ac = (await client.list_devices(neighbour))[0].device_id
        with pytest.raises(DeviceNotFound) as foreign:
            await client.control(
                auth, neighbours_ac, {"operation": {"airConOperationMode": "POWER_ON"}}
            )
        assert foreign.value.code == "1212"

        dryer = devices["Dryer"]["deviceId"]
        with pytest.raises(CommandRefused) as remote_off:
            await client.control(auth, dryer, {"operation": {"dryerOperationMode": "START"}})
        assert remote_off.value.code == "2301"
        assert (await simulator.devices())["Dryer"]["state"]["runState.currentState"] == "POWER_OFF"

        ac = devices["Living Room AC"]["deviceId"]
        with pytest.raises(ThinQBadRequest) as out_of_range:
            await client.control(auth, ac, {"temperatureInUnits": {"targetTemperatureC": 45}})
        assert out_of_range.value.code == "1102"

        washer = devices["Washer"]["deviceId"]
        await simulator.sim("POST", f"/sim/devices/{washer}/online", json={"online": False})
        with pytest.raises(DeviceOffline):
            await client.get_status(auth, washer)
    finally:
        await client.aclose()


async def test_device_ids_are_one_path_segment(simulator):
    client = simulator.client()
    try:
        with pytest.raises(DeviceNotFound):
            await client.get_status(simulator.demo_auth, "../devices")
        with pytest.raises(ValueError):
            await client.get_status(simulator.demo_auth, "..")
    finally:
        await client.aclose()


async def test_push_subscriptions_are_idempotent(simulator):
    client = simulator.client()
    washer = (await simulator.devices())["Washer"]["deviceId"]
    try:
        assert await client.list_push_subscriptions(simulator.demo_auth) == []
        await client.subscribe_push(simulator.demo_auth, washer)
        await client.subscribe_push(simulator.demo_auth, washer)  # "already subscribed" is fine
        assert await client.list_push_subscriptions(simulator.demo_auth) == [washer]
        assert (await simulator.sim("GET", "/sim/subscriptions")).json()["push"] == [washer]
        await client.unsubscribe_push(simulator.demo_auth, washer)
        await client.unsubscribe_push(simulator.demo_auth, washer)
        assert await client.list_push_subscriptions(simulator.demo_auth) == []
    finally:
        await client.aclose()


class FlakyServer:
    """A real HTTP server that fails the first N requests, then answers like LG."""

    def __init__(self, failures: int, status: int = 500, delay: float = 0.0) -> None:
        self.failures = failures
        self.status = status
        self.delay = delay
        self.requests: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.method)
        await asyncio.sleep(self.delay)
        if len(self.requests) <= self.failures:
            return web.json_response(
                {"messageId": "m", "timestamp": "t", "error": {"code": "2000", "message": "boom"}},
                status=self.status,
            )
        return web.json_response({"messageId": "m", "timestamp": "t", "response": []})


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[FlakyServer, str]]:
    server = FlakyServer(failures=0)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield server, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _no_sleep(_: float) -> None:
    return None


async def test_reads_are_retried_on_server_errors(flaky):
    server, url = flaky
    server.failures = 2
    client = ThinQClient(url, "sid", "key", sleep=_no_sleep)
    try:
        assert await client.list_devices(ThinQAuth("t", "US")) == []
        assert server.requests == ["GET", "GET", "GET"]
    finally:
        await client.aclose()


async def test_reads_give_up_after_the_retry_budget(flaky):
    server, url = flaky
    server.failures = 10
    client = ThinQClient(url, "sid", "key", read_retries=2, sleep=_no_sleep)
    try:
        with pytest.raises(ThinQServerError):
            await client.list_devices(ThinQAuth("t", "US"))
        assert len(server.requests) == 3
    finally:
        await client.aclose()


async def test_control_is_never_retried(flaky):
    server, url = flaky
    server.failures = 1
    client = ThinQClient(url, "sid", "key", sleep=_no_sleep)
    try:
        with pytest.raises(ThinQServerError):
            await client.control(ThinQAuth("t", "US"), "dev", {"operation": {"x": "START"}})
        assert server.requests == ["POST"]
    finally:
        await client.aclose()


async def test_timeouts_become_transport_errors(flaky):
    server, url = flaky
    server.delay = 1.0
    client = ThinQClient(url, "sid", "key", timeout_seconds=0.2, read_retries=0)
    try:
        with pytest.raises(ThinQTransportError, match="timed out"):
            await client.list_devices(ThinQAuth("t", "US"))
    finally:
        await client.aclose()


async def test_connection_refused_is_a_transport_error():
    client = ThinQClient("http://127.0.0.1:9", "sid", "key", read_retries=1, sleep=_no_sleep)
    try:
        with pytest.raises(ThinQTransportError, match="connection failed"):
            await client.list_devices(ThinQAuth("t", "US"))
    finally:
        await client.aclose()


def test_secrets_stay_out_of_reprs():
    auth = ThinQAuth("super-secret-token", "US")
    client = ThinQClient("http://x", "sid", "super-secret-key")
    assert "super-secret" not in repr(auth) and "super-secret" not in repr(client)
