"""The ``/sim`` inspection API (contract §5) plus test helpers of our own.

Contract routes: health, reset, devices, subscriptions, push and PCC triggers,
BECON facilities. Ours (tests only, all under /sim): clock, forced state,
online switch, the log of ThinQ calls received, adding / removing / renaming
devices (with LG's registry pushes), the callback URL, and expiring BECON tokens.

Bad input gets 400 ``{"error": "bad_request", "reason": ...}``; never a 500.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from simulator.callbacks import Delivery, callback_url_problem, redacted
from simulator.cloud import CLOUD, RegistryChange, RegistryError, SimulatedCloud
from simulator.config import DEMO_USER
from simulator.household import Device
from simulator.jsonbody import NO_BODY, BadJson, read_json
from simulator.messages import DEVICE_ALIAS_CHANGED, DEVICE_REGISTERED, DEVICE_UNREGISTERED
from simulator.profile import as_decimal

MAX_ADVANCE_SECONDS = 10 * 365 * 24 * 3600  # a sanity bound, not a real limit
MAX_NAME_LENGTH = 64  # alias and model name: our bound (LG publishes none), keeps replies short
ADD_FIELDS = frozenset({"deviceType", "alias", "modelName", "owner"})


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
    """Contract reset, plus the registry pushes that keep a connected partner in step."""
    cloud = _cloud(request)
    callbacks = [await _announce(cloud, change) for change in cloud.reset()]
    await cloud.flush_events()  # the status events of subscribed devices that changed
    return web.json_response({"reset": True, "callbacks": callbacks})


async def _announce(cloud: SimulatedCloud, change: RegistryChange) -> dict[str, Any]:
    delivery = await cloud.announce(change)
    return {
        "pushType": change.push_type,
        "deviceId": change.device.device_id,
        **_callback(delivery),
    }


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
    if not cloud.callback_url:
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
    if not cloud.callback_url:
        return _error(409, "no_callback_url", "no callback URL is configured", sent=False)
    delivery = await cloud.send_pcc(device, diagnosis_type, content_url)
    return _delivery_response(delivery.sent, delivery.reason)


@sim_endpoint
async def becon_facilities(request: web.Request) -> web.Response:
    return web.json_response(_cloud(request).becon.facilities())


@sim_endpoint
async def becon_expire_tokens(request: web.Request) -> web.Response:
    """Ours: every BECON token issued so far expires now (clients must renew)."""
    becon = _cloud(request).becon
    return web.json_response({"expired": becon.tokens.expire_all(becon.now())})


# --- our extras -----------------------------------------------------------------------------


@sim_endpoint
async def get_clock(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    return web.json_response({"now": cloud.clock.now(), "timeScale": cloud.clock.time_scale})


@sim_endpoint
async def advance_clock(request: web.Request) -> web.Response:
    """Jump simulated time and run the same tick as the background ticker.

    Answers after the pushes and status events this produced were delivered, so tests
    need not poll.
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
    await cloud.flush_events()
    return web.json_response({"now": cloud.clock.now(), "pushes": pushes})


@sim_endpoint
async def set_state(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    device = _device(request)
    problem = cloud.set_state(device, await _object_body(request))
    if problem:
        raise SimInputError(400, "bad_request", problem)
    await cloud.flush_events()
    return web.json_response(describe(device))


@sim_endpoint
async def set_online(request: web.Request) -> web.Response:
    device = _device(request)
    body = await _object_body(request)
    if set(body) != {"online"} or not isinstance(body["online"], bool):
        raise SimInputError(400, "bad_request", 'the body must be {"online": true|false}')
    device.online = body["online"]
    cloud = _cloud(request)
    cloud.report_changes()  # back online: what changed meanwhile goes out now
    await cloud.flush_events()
    return web.json_response(describe(device))


@sim_endpoint
async def list_calls(request: web.Request) -> web.Response:
    return web.json_response(list(_cloud(request).calls))


@sim_endpoint
async def clear_calls(request: web.Request) -> web.Response:
    _cloud(request).calls.clear()
    return web.json_response({"cleared": True})


# --- the device registry: add, remove, rename (with LG's registry pushes) ----------------------


def _callback(delivery: Delivery) -> dict[str, Any]:
    return {"sent": delivery.sent, "reason": delivery.reason}


def _name(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise SimInputError(400, "bad_request", f"{field} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise SimInputError(
            400, "bad_request", f"{field} must be at most {MAX_NAME_LENGTH} characters"
        )
    return value


@sim_endpoint
async def add_device(request: web.Request) -> web.Response:
    """A new device copying the first household.json device of its type; DEVICE_REGISTERED."""
    cloud = _cloud(request)
    body = await _object_body(request)
    if set(body) - ADD_FIELDS:
        raise SimInputError(
            400, "bad_request", "only deviceType, alias, modelName and owner may be given"
        )
    device_type = body.get("deviceType")
    if not isinstance(device_type, str) or not device_type:
        raise SimInputError(400, "bad_request", "deviceType must be a non-empty string")
    alias = _name(body, "alias")
    model_name = None if body.get("modelName") is None else _name(body, "modelName")
    owner = DEMO_USER if body.get("owner") is None else body["owner"]
    if not isinstance(owner, str):
        raise SimInputError(400, "bad_request", "owner must be a user id")
    try:
        device = cloud.add_device(device_type, alias, model_name, owner)
    except RegistryError as exc:
        raise SimInputError(400, "bad_request", str(exc)) from None
    delivery = await cloud.announce(RegistryChange(DEVICE_REGISTERED, device))
    return web.json_response(
        {"device": describe(device), "callback": _callback(delivery)}, status=201
    )


@sim_endpoint
async def remove_device(request: web.Request) -> web.Response:
    """The device leaves LG (its subscriptions with it); DEVICE_UNREGISTERED."""
    cloud = _cloud(request)
    device = _device(request)
    cloud.remove_device(device)
    delivery = await cloud.announce(RegistryChange(DEVICE_UNREGISTERED, device))
    return web.json_response({"removed": device.device_id, "callback": _callback(delivery)})


@sim_endpoint
async def rename_device(request: web.Request) -> web.Response:
    """A new alias; DEVICE_ALIAS_CHANGED unless the alias stayed the same."""
    cloud = _cloud(request)
    device = _device(request)
    body = await _object_body(request)
    if set(body) != {"alias"}:
        raise SimInputError(400, "bad_request", 'the body must be {"alias": "..."}')
    if cloud.rename_device(device, _name(body, "alias")):
        delivery = await cloud.announce(RegistryChange(DEVICE_ALIAS_CHANGED, device))
    else:
        delivery = Delivery(False, "the alias did not change")
    return web.json_response({"device": describe(device), "callback": _callback(delivery)})


# --- the callback URL (LG registers a partner's out of band) ------------------------------------


def _callback_url_answer(cloud: SimulatedCloud) -> web.Response:
    url = cloud.callback_url
    # Redacted: the query string may carry the partner's secret.
    return web.json_response({"url": redacted(url) if url else None, "registered": bool(url)})


@sim_endpoint
async def get_callback_url(request: web.Request) -> web.Response:
    return _callback_url_answer(_cloud(request))


@sim_endpoint
async def put_callback_url(request: web.Request) -> web.Response:
    cloud = _cloud(request)
    body = await _object_body(request)
    if set(body) != {"url"}:
        raise SimInputError(400, "bad_request", 'the body must be {"url": "http(s)://..." | null}')
    url = body["url"]
    if url is not None:
        problem = callback_url_problem(url)
        if problem:
            raise SimInputError(400, "bad_request", problem)
    cloud.set_callback_url(url)
    return _callback_url_answer(cloud)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sim/health", health)
    router.add_post("/sim/reset", reset)
    router.add_get("/sim/devices", list_devices)
    router.add_post("/sim/devices", add_device)
    router.add_get("/sim/devices/{device_id}", get_device)
    router.add_delete("/sim/devices/{device_id}", remove_device)
    router.add_patch("/sim/devices/{device_id}", rename_device)
    router.add_get("/sim/subscriptions", subscriptions)
    router.add_post("/sim/devices/{device_id}/push", trigger_push)
    router.add_post("/sim/devices/{device_id}/pcc", trigger_pcc)
    router.add_get("/sim/becon/facilities", becon_facilities)
    router.add_post("/sim/becon/expire-tokens", becon_expire_tokens)
    router.add_get("/sim/clock", get_clock)
    router.add_post("/sim/clock/advance", advance_clock)
    router.add_post("/sim/devices/{device_id}/state", set_state)
    router.add_post("/sim/devices/{device_id}/online", set_online)
    router.add_get("/sim/calls", list_calls)
    router.add_delete("/sim/calls", clear_calls)
    router.add_get("/sim/callback-url", get_callback_url)
    router.add_put("/sim/callback-url", put_callback_url)
