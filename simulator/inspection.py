"""The ``/sim`` inspection API (contract §5) plus test helpers of our own.

Contract routes: health, reset, devices, subscriptions, push and PCC triggers,
BECON facilities. Ours (tests only, all under /sim): clock, forced state,
online switch, and the log of ThinQ calls received.

Bad input gets 400 ``{"error": "bad_request", "reason": ...}``; never a 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.cloud import CLOUD, SimulatedCloud
from simulator.household import Device
from simulator.jsonbody import NO_BODY, BadJson, read_json
from simulator.profile import as_decimal

MAX_ADVANCE_SECONDS = 10 * 365 * 24 * 3600  # a sanity bound, not a real limit


def _error(status: int, error: str, reason: str, **extra: Any) -> web.Response:
    return web.json_response({"error": error, "reason": reason, **extra}, status=status)


class SimInputError(Exception):
    def __init__(self, status: int, error: str, reason: str, **extra: Any) -> None:
        super().__init__(reason)
        self.response = _error(status, error, reason, **extra)


def _cloud(request: web.Request) -> SimulatedCloud:
    return request.app[CLOUD]


def _device(request: web.Request, **extra: Any) -> Device:
    device = _cloud(request).household.get(request.match_info["device_id"])
    if device is None:
        raise SimInputError(404, "not_found", "no device with that id", **extra)
    return device


async def _object_body(request: web.Request, **extra: Any) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise SimInputError(400, "bad_request", str(exc), **extra) from None
    if body is NO_BODY or not isinstance(body, dict):
        raise SimInputError(400, "bad_request", "the body must be a JSON object", **extra)
    return body


def sim_endpoint(handler: Any) -> Any:
    async def endpoint(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SimInputError as exc:
            return exc.response

    return endpoint


def describe(device: Device) -> dict[str, Any]:
    return {
        "deviceId": device.device_id,
        "deviceType": device.device_type,
        "alias": device.alias,
        "modelName": device.model_name,
        "online": device.online,
        "state": device.state.flat(),
    }


# --- contract routes ----------------------------------------------------------------------


@sim_endpoint
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@sim_endpoint
async def reset(request: web.Request) -> web.Response:
    _cloud(request).reset()
    return web.json_response({"reset": True})


@sim_endpoint
async def list_devices(request: web.Request) -> web.Response:
    # Contract: one entry per demo ThinQ device (the neighbour's are not listed).
    return web.json_response([describe(d) for d in _cloud(request).household.demo_devices()])


@sim_endpoint
async def get_device(request: web.Request) -> web.Response:
    return web.json_response(describe(_device(request)))


@sim_endpoint
async def subscriptions(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    return web.json_response(cloud.subscriptions.snapshot(cloud.clock.now()))


def _required_text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise SimInputError(400, "bad_request", f"{name} must be a non-empty string", sent=False)
    return value


def _delivery_response(delivered: bool, reason: str | None) -> web.Response:
    if delivered:
        return web.json_response({"sent": True})
    return _error(502, "callback_failed", reason or "callback failed", sent=False)


@sim_endpoint
async def trigger_push(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    device = _device(request, sent=False)
    push_code = _required_text(await _object_body(request, sent=False), "pushCode")
    if device.device_id not in cloud.subscriptions.push:
        return _error(409, "not_subscribed", "device is not subscribed to push", sent=False)
    if not cloud.config.callback_url:
        return _error(409, "no_callback_url", "no callback URL is configured", sent=False)
    delivery = await cloud.send_push(device, push_code)
    return _delivery_response(delivery.sent, delivery.reason)


@sim_endpoint
async def trigger_pcc(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    device = _device(request, sent=False)
    body = await _object_body(request, sent=False)
    diagnosis_type = _required_text(body, "diagnosisType")
    content_url = _required_text(body, "contentUrl")
    if device.device_id not in cloud.subscriptions.pcc:
        return _error(409, "not_subscribed", "device is not subscribed to PCC", sent=False)
    if not cloud.config.callback_url:
        return _error(409, "no_callback_url", "no callback URL is configured", sent=False)
    delivery = await cloud.send_pcc(device, diagnosis_type, content_url)
    return _delivery_response(delivery.sent, delivery.reason)


@sim_endpoint
async def becon_facilities(request: web.Request) -> web.Response:
    return web.json_response(_cloud(request).becon.facilities())


# --- our extras -----------------------------------------------------------------------------


@sim_endpoint
async def get_clock(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    return web.json_response({"now": cloud.clock.now(), "timeScale": cloud.clock.time_scale})


@sim_endpoint
async def advance_clock(request: web.Request) -> web.Response:
    """Jump simulated time and run the same tick as the background ticker.

    Answers after the pushes this produced were delivered, so tests need not poll.
    """
    cloud = _cloud(request)
    body = await _object_body(request)
    seconds = as_decimal(body.get("seconds"))
    if seconds is None or seconds < 0 or seconds > MAX_ADVANCE_SECONDS:
        raise SimInputError(
            400, "bad_request", f"seconds must be a number from 0 to {MAX_ADVANCE_SECONDS}"
        )
    cloud.clock.advance(float(seconds))
    pushes = await cloud.deliver(cloud.tick())
    return web.json_response({"now": cloud.clock.now(), "pushes": pushes})


@sim_endpoint
async def set_state(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    device = _device(request)
    problem = cloud.set_state(device, await _object_body(request))
    if problem:
        raise SimInputError(400, "bad_request", problem)
    return web.json_response(describe(device))


@sim_endpoint
async def set_online(request: web.Request) -> web.Response:
    device = _device(request)
    body = await _object_body(request)
    if set(body) != {"online"} or not isinstance(body["online"], bool):
        raise SimInputError(400, "bad_request", 'the body must be {"online": true|false}')
    device.online = body["online"]
    return web.json_response(describe(device))


@sim_endpoint
async def list_calls(request: web.Request) -> web.Response:
    return web.json_response(list(_cloud(request).calls))


@sim_endpoint
async def clear_calls(request: web.Request) -> web.Response:
    _cloud(request).calls.clear()
    return web.json_response({"cleared": True})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sim/health", health)
    router.add_post("/sim/reset", reset)
    router.add_get("/sim/devices", list_devices)
    router.add_get("/sim/devices/{device_id}", get_device)
    router.add_get("/sim/subscriptions", subscriptions)
    router.add_post("/sim/devices/{device_id}/push", trigger_push)
    router.add_post("/sim/devices/{device_id}/pcc", trigger_pcc)
    router.add_get("/sim/becon/facilities", becon_facilities)
    router.add_get("/sim/clock", get_clock)
    router.add_post("/sim/clock/advance", advance_clock)
    router.add_post("/sim/devices/{device_id}/state", set_state)
    router.add_post("/sim/devices/{device_id}/online", set_online)
    router.add_get("/sim/calls", list_calls)
    router.add_delete("/sim/calls", clear_calls)
