"""LG's ThinQ Connect partner API (v1, "ext" host) under its real paths.

Every endpoint checks the common headers first (facts sheet §1.4), then answers
in LG's envelope: ``{"messageId", "timestamp", "response"}`` on success,
``{"messageId", "timestamp", "error": {"code", "message"}}`` on failure.
"""

from __future__ import annotations

import functools
import hmac
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from simulator.cloud import CLOUD, PCC_DEVICE_TYPES, SimulatedCloud
from simulator.config import SimulatorConfig
from simulator.errors import ThinQError
from simulator.household import Device
from simulator.jsonbody import NO_BODY, BadJson, read_json
from simulator.messages import new_message_id, utc_timestamp
from simulator.oauth import MEMBERSHIP

REQUIRED_HEADERS = (
    "Authorization",
    "x-country-code",
    "x-message-id",
    "x-service-id",
    "x-service-key",
)
MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{22}")
COUNTRY_CODE = re.compile(r"[A-Z]{2}")
BEARER = re.compile(r"Bearer ([^\s]+)")
LG_CODE = "lg_code"  # response key read by the call log middleware
EVENT_MAX_HOURS = 24

Handler = Callable[[web.Request, SimulatedCloud, str], Awaitable[Any]]


def _secret_equal(given: str, expected: str) -> bool:
    # compare_digest on bytes: str arguments must be ASCII, and headers need not be.
    return hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    )


def authenticate(
    headers: Mapping[str, str],
    config: SimulatorConfig,
    issued: Callable[[str], str | None] | None = None,
) -> str:
    """The user id behind the request, checking headers in LG's order; first failure wins.

    ``issued`` maps a token from the membership-login stand-in (simulator/oauth.py) to
    its user; it is asked only when no configured token matches.
    """
    for name in REQUIRED_HEADERS:
        if not headers.get(name):
            raise ThinQError("1101", f"header {name} is missing")
    if not MESSAGE_ID.fullmatch(headers["x-message-id"]):
        raise ThinQError("1104", "x-message-id must be 22 URL-safe base64 characters")
    bearer = BEARER.fullmatch(headers["Authorization"])
    if bearer is None:
        raise ThinQError("1103", "Authorization must be 'Bearer <token>'")
    if not _secret_equal(headers["x-service-id"], config.service_id):
        raise ThinQError("1203", "unknown x-service-id")
    if not _secret_equal(headers["x-service-key"], config.service_key):
        raise ThinQError("1301", "x-service-key does not match the service")
    user = None
    for token, user_id in config.tokens.items():  # look at every token: no early exit
        if _secret_equal(bearer.group(1), token):
            user = user_id
    if user is None and issued is not None:
        user = issued(bearer.group(1))
    if user is None:
        raise ThinQError("1302", "unknown token")
    if not COUNTRY_CODE.fullmatch(headers["x-country-code"]):
        raise ThinQError("1102", "x-country-code must be two capital letters")
    return user


def envelope_ok(message_id: str, payload: Any) -> web.Response:
    body = {"messageId": message_id, "timestamp": utc_timestamp(), "response": payload}
    return web.json_response(body)


def envelope_error(message_id: str, error: ThinQError) -> web.Response:
    body = {
        "messageId": message_id,
        "timestamp": utc_timestamp(),
        "error": {"code": error.code, "message": error.message},
    }
    response = web.json_response(body, status=error.status)
    response[LG_CODE] = error.code
    return response


def request_message_id(request: web.Request) -> str:
    """Echo the caller's x-message-id when it is valid; otherwise make one up."""
    given = request.headers.get("x-message-id", "")
    return given if MESSAGE_ID.fullmatch(given) else new_message_id()


def thinq_endpoint(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    @functools.wraps(handler)
    async def endpoint(request: web.Request) -> web.Response:
        message_id = request_message_id(request)
        cloud = request.app[CLOUD]
        try:
            membership = request.app.get(MEMBERSHIP)
            issued = membership.user_for_token if membership is not None else None
            user = authenticate(request.headers, cloud.config, issued)
            payload = await handler(request, cloud, user)
        except ThinQError as error:
            return envelope_error(message_id, error)
        return envelope_ok(message_id, payload)

    return endpoint


def _device(request: web.Request, cloud: SimulatedCloud, user: str) -> Device:
    device = cloud.household.get(request.match_info["device_id"])
    if device is None:
        raise ThinQError("1205", "no device with that id")
    if device.owner != user:
        raise ThinQError("1212", "the device belongs to another user")
    return device


def _connected(device: Device) -> Device:
    if not device.online:
        raise ThinQError("1222")
    return device


async def _body(request: web.Request) -> Any:
    try:
        return await read_json(request)
    except BadJson as exc:
        raise ThinQError("1311", str(exc)) from None


# --- Device API ---------------------------------------------------------------------------


@thinq_endpoint
async def list_devices(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return [
        {
            "deviceId": d.device_id,
            "deviceInfo": {
                "deviceType": d.device_type,
                "modelName": d.model_name,
                "alias": d.alias,
                "reportable": True,
            },
        }
        for d in cloud.household.owned_by(user)
    ]


@thinq_endpoint
async def get_profile(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _device(request, cloud, user).profile.document()


@thinq_endpoint
async def get_status(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    device = _connected(_device(request, cloud, user))
    return device.state.copy().status


@thinq_endpoint
async def control(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    device = _connected(_device(request, cloud, user))
    body = await _body(request)
    if body is NO_BODY:
        raise ThinQError("1101", "the control body is empty")
    cloud.control(device, body)
    return {}


# --- Notification (push) and PCC APIs -------------------------------------------------------


def _subscription_list(cloud: SimulatedCloud, user: str, subscribed: Mapping[str, Any]) -> Any:
    owned = [{"deviceId": d.device_id} for d in cloud.household.owned_by(user)]
    listed = [entry for entry in owned if entry["deviceId"] in subscribed]
    return listed or None  # LG answers null, not [], when nothing is subscribed


@thinq_endpoint
async def list_push(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _subscription_list(cloud, user, cloud.subscriptions.push)


def _subscribe(table: dict[str, Any], device: Device) -> dict[str, Any]:
    # LG has no PCC-specific codes; PCC reuses the push ones (1207 / 1206).
    if device.device_id in table:
        raise ThinQError("1207")
    table[device.device_id] = None
    return {}


def _unsubscribe(table: dict[str, Any], device: Device) -> dict[str, Any]:
    if device.device_id not in table:
        raise ThinQError("1206")
    del table[device.device_id]
    return {}


@thinq_endpoint
async def subscribe_push(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _subscribe(cloud.subscriptions.push, _device(request, cloud, user))


@thinq_endpoint
async def unsubscribe_push(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _unsubscribe(cloud.subscriptions.push, _device(request, cloud, user))


def _pcc_device(request: web.Request, cloud: SimulatedCloud, user: str) -> Device:
    device = _device(request, cloud, user)
    if device.device_type not in PCC_DEVICE_TYPES:
        raise ThinQError("1214", f"PCC does not support {device.device_type}")
    return device


@thinq_endpoint
async def list_pcc(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _subscription_list(cloud, user, cloud.subscriptions.pcc)


@thinq_endpoint
async def subscribe_pcc(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _subscribe(cloud.subscriptions.pcc, _pcc_device(request, cloud, user))


@thinq_endpoint
async def unsubscribe_pcc(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    return _unsubscribe(cloud.subscriptions.pcc, _pcc_device(request, cloud, user))


# --- Event API ------------------------------------------------------------------------------


def event_hours(body: Any) -> int:
    """Hours an event subscription lasts: ``{"expire": {"unit": "HOUR", "timer": 1..24}}``.

    Both fields are optional (default 1 hour); anything else is refused.
    """
    if body is NO_BODY:
        return 1
    if not isinstance(body, dict):
        raise ThinQError("1311", "the body must be a JSON object")
    if set(body) - {"expire"}:
        raise ThinQError("1102", "only 'expire' may be given")
    expire = body.get("expire", {})
    if not isinstance(expire, dict) or set(expire) - {"unit", "timer"}:
        raise ThinQError("1102", "expire takes only 'unit' and 'timer'")
    if expire.get("unit", "HOUR") != "HOUR":
        raise ThinQError("1102", "expire.unit must be HOUR")
    timer = expire.get("timer", 1)
    if isinstance(timer, bool) or not isinstance(timer, int) or not 1 <= timer <= EVENT_MAX_HOURS:
        raise ThinQError("1102", f"expire.timer must be a whole number 1 to {EVENT_MAX_HOURS}")
    return timer


@thinq_endpoint
async def subscribe_event(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    device = _device(request, cloud, user)
    hours = event_hours(await _body(request))
    # Subscribing again renews: LG says to renew when the expiry passes.
    cloud.subscribe_events(device, cloud.clock.now() + hours * 3600)
    return {}


@thinq_endpoint
async def unsubscribe_event(request: web.Request, cloud: SimulatedCloud, user: str) -> Any:
    device = _device(request, cloud, user)
    active = device.device_id in cloud.subscriptions.events_active(cloud.clock.now())
    cloud.subscriptions.event.pop(device.device_id, None)  # an expired one goes too
    if not active:
        raise ThinQError("1204")
    return {}


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/devices", list_devices)
    router.add_get("/devices/profile/{device_id}", get_profile)
    router.add_get("/devices/{device_id}", get_status)
    router.add_post("/devices/{device_id}", control)
    router.add_get("/push", list_push)
    router.add_post("/push/{device_id}", subscribe_push)
    router.add_delete("/push/{device_id}", unsubscribe_push)
    router.add_get("/pcc", list_pcc)
    router.add_post("/pcc/{device_id}", subscribe_pcc)
    router.add_delete("/pcc/{device_id}", unsubscribe_pcc)
    router.add_post("/event/{device_id}", subscribe_event)
    router.add_delete("/event/{device_id}", unsubscribe_event)
