"""LG's ThinQ Connect v2 Placement API: one call for all of a user's devices, answered
by one callback per device (lg-api/thinq-connect-v2-async-placement-api.ko.txt).

Every endpoint checks the same common headers as v1 (``thinq_api.authenticate``,
same order, same refusals), decides every device's outcome at once, answers HTTP
202 ``{"messageId", "requestId", "response": {}, "responseCode": "0000",
"statusCode": 202, "timestamp"}`` and then POSTs, in the background, one callback
per device of *that* user to the callback URL pushes use::

    {"messageId", "requestId",
     "response": {"deviceId", "deviceType", "pushType", "serviceId", "userNumber",
                  "result"},
     "responseCode": "0000", "statusCode": 200, "timestamp"}

Our choices where LG's page is silent or inconsistent (also in simulator/README.md):

* A device that fails (control refused, offline, not subscribed...) gets a callback
  with ``responseCode`` = the ThinQ code, ``statusCode`` = that code's HTTP status, and
  ``response.error = {"code", "message"}`` instead of ``result``: the page documents
  only the success callback; "details under response > error" is its rule for
  failed synchronous answers.
* A refused request (headers, body) gets no requestId and no callbacks; its body
  carries v2's ``responseCode``/``statusCode``/``response.error`` *and* v1's top-level
  ``error``, so either reading works (LG shows no v2 failure example).
* Outcomes (profile, status snapshot, control result, subscription change) are
  decided when the request is accepted; only delivery happens later. A callback may
  reach the partner before the 202 does: match by requestId.
* Per-device results reuse the v1 rules: control is validated against each device's
  own profile and applied atomically per device; push subscribe/unsubscribe give
  1207/1206 per device, event unsubscribe 1204 for a device without a live
  subscription; status of an offline device is 1222. ``control-async`` for a type
  the user has none of is refused with 1205 (no callback would ever come).
* The page writes the event DELETE path once as ``/v2/users/event-async`` and the
  push-subscribe pushType once as ``USER_PUSH_SUBSCRIBED``; we serve
  ``/v2/devices/event-async`` and send ``DEVICE_PUSH_SUBSCRIBED`` (its other mentions).
* Callbacks are not retried when the partner fails to take them.

Fault knobs for tests live under ``/sim/placement`` (see ``add_sim_routes``).
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator import thinq_api
from simulator.cloud import CLOUD, SimulatedCloud
from simulator.errors import ThinQError
from simulator.household import Device
from simulator.inspection import SimInputError, sim_endpoint
from simulator.jsonbody import NO_BODY, BadJson, read_json
from simulator.messages import new_message_id, utc_timestamp
from simulator.oauth import MEMBERSHIP
from simulator.profile import as_decimal

PREFIX = "/v2/devices"

DEVICE_PROFILE = "DEVICE_PROFILE"
DEVICE_STATUS = "DEVICE_STATUS"
DEVICE_CONTROL = "DEVICE_CONTROL"
DEVICE_EVENT_SUBSCRIBED = "DEVICE_EVENT_SUBSCRIBED"
DEVICE_EVENT_UNSUBSCRIBED = "DEVICE_EVENT_UNSUBSCRIBED"
DEVICE_PUSH_SUBSCRIBED = "DEVICE_PUSH_SUBSCRIBED"
DEVICE_PUSH_UNSUBSCRIBED = "DEVICE_PUSH_UNSUBSCRIBED"

MAX_REQUESTS_KEPT = 500  # /sim/placement/requests keeps the most recent ones
MAX_DELAY_SECONDS = 600  # a sanity bound on the delay knob (real seconds)
FAULT_FIELDS = frozenset({"delaySeconds", "drop", "duplicate", "shuffle"})
CONTROL_FIELDS = frozenset({"deviceType", "command"})
DROPPED = "dropped by /sim/placement/faults"

Outcome = tuple[Device, Any, ThinQError | None]  # device, result, or its error


# --- what one request decided, and how its callbacks fare ----------------------------------


@dataclass(frozen=True)
class Faults:
    """The test knobs in force when a request is accepted (kept with it)."""

    delay_seconds: dict[str, float] = field(default_factory=dict)
    drop: frozenset[str] = frozenset()
    duplicate: frozenset[str] = frozenset()
    shuffle: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "delaySeconds": dict(self.delay_seconds),
            "drop": sorted(self.drop),
            "duplicate": sorted(self.duplicate),
            "shuffle": self.shuffle,
        }


@dataclass
class DeviceCallback:
    """One device's outcome and the fate of its callback."""

    device_id: str
    device_type: str
    result: Any = None  # the payload on success
    error: ThinQError | None = None
    delay_seconds: float = 0.0
    dropped: bool = False
    copies: int = 1  # 2 when the duplicate knob is on
    status: str = "pending"  # pending -> sent | failed | dropped
    deliveries: int = 0  # POSTs the partner accepted (2xx)
    reason: str | None = None

    @property
    def response_code(self) -> str:
        return "0000" if self.error is None else self.error.code

    def describe(self) -> dict[str, Any]:
        return {
            "deviceId": self.device_id,
            "deviceType": self.device_type,
            "responseCode": self.response_code,
            "status": self.status,
            "sent": self.deliveries > 0,
            "deliveries": self.deliveries,
            "delaySeconds": self.delay_seconds,
            "duplicate": self.copies > 1,
            "reason": self.reason,
        }


@dataclass
class PlacementRequest:
    request_id: str
    method: str
    path: str
    push_type: str
    user: str
    faults: Faults
    callbacks: list[DeviceCallback]  # in the order they are sent (shuffled or not)

    def describe(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "method": self.method,
            "path": self.path,
            "pushType": self.push_type,
            "userNumber": self.user,
            "faults": self.faults.describe(),
            "devices": [callback.describe() for callback in self.callbacks],
        }


def callback_message(
    *, request_id: str, service_id: str, user_id: str, push_type: str, callback: DeviceCallback
) -> dict[str, Any]:
    """One callback body, keys in the order of LG's examples."""
    response: dict[str, Any] = {
        "deviceId": callback.device_id,
        "deviceType": callback.device_type,
        "pushType": push_type,
        "serviceId": service_id,
        "userNumber": user_id,
    }
    if callback.error is None:
        response["result"] = callback.result
        code, status = "0000", 200
    else:  # our shape: LG documents only the success callback
        response["error"] = {"code": callback.error.code, "message": callback.error.message}
        code, status = callback.error.code, callback.error.status
    return {
        "messageId": new_message_id(),
        "requestId": request_id,
        "response": response,
        "responseCode": code,
        "statusCode": status,
        "timestamp": utc_timestamp(),
    }


class Placement:
    """The placement API's own state: fault knobs, recent requests, callbacks in flight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.faults = Faults()
        self.requests: deque[PlacementRequest] = deque(maxlen=MAX_REQUESTS_KEPT)
        self._random = rng or random.Random()
        self._tasks: set[asyncio.Task[Any]] = set()

    def accept(
        self,
        *,
        method: str,
        path: str,
        push_type: str,
        user: str,
        outcomes: list[Outcome],
    ) -> PlacementRequest:
        faults = self.faults
        callbacks = [
            DeviceCallback(
                device_id=device.device_id,
                device_type=device.device_type,
                result=result,
                error=error,
                delay_seconds=faults.delay_seconds.get(device.device_id, 0.0),
                dropped=device.device_id in faults.drop,
                copies=2 if device.device_id in faults.duplicate else 1,
            )
            for device, result, error in outcomes
        ]
        if faults.shuffle:
            self._random.shuffle(callbacks)
        request = PlacementRequest(
            new_message_id(), method, path, push_type, user, faults, callbacks
        )
        self.requests.append(request)
        return request

    def dispatch(self, cloud: SimulatedCloud, request: PlacementRequest) -> None:
        self._spawn(self._deliver(cloud, request))

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, cloud: SimulatedCloud, request: PlacementRequest) -> None:
        """Undelayed callbacks one after another, in order; delayed ones each on its own."""
        later = []
        for callback in request.callbacks:
            if callback.dropped:
                callback.status, callback.reason = "dropped", DROPPED
            elif callback.delay_seconds > 0:
                later.append(self._spawn(self._send_later(cloud, request, callback)))
            else:
                await self._send(cloud, request, callback)
        if later:
            await asyncio.gather(*later, return_exceptions=True)

    async def _send_later(
        self, cloud: SimulatedCloud, request: PlacementRequest, callback: DeviceCallback
    ) -> None:
        await asyncio.sleep(callback.delay_seconds)
        await self._send(cloud, request, callback)

    async def _send(
        self, cloud: SimulatedCloud, request: PlacementRequest, callback: DeviceCallback
    ) -> None:
        message = callback_message(
            request_id=request.request_id,
            service_id=cloud.config.service_id,
            user_id=request.user,
            push_type=request.push_type,
            callback=callback,
        )
        for _ in range(callback.copies):  # a duplicate is the very same body again
            delivery = await cloud.sender.send(message)
            if delivery.sent:
                callback.deliveries += 1
            else:
                callback.reason = delivery.reason
        callback.status = "sent" if callback.deliveries else "failed"

    async def close(self) -> None:
        """Stop what is still in flight (a delayed callback must not outlive the app)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


PLACEMENT = web.AppKey("placement", Placement)


# --- LG's endpoints ----------------------------------------------------------------------------

Handler = Callable[[web.Request, SimulatedCloud, str], Awaitable[list[Outcome]]]


def envelope_accepted(message_id: str, request_id: str) -> web.Response:
    body = {
        "messageId": message_id,
        "requestId": request_id,
        "response": {},
        "responseCode": "0000",
        "statusCode": 202,
        "timestamp": utc_timestamp(),
    }
    return web.json_response(body, status=202)


def envelope_error(message_id: str, error: ThinQError) -> web.Response:
    detail = {"code": error.code, "message": error.message}
    body = {
        "messageId": message_id,
        "responseCode": error.code,
        "statusCode": error.status,
        "response": {"error": detail},
        "error": dict(detail),  # v1's place, so a v1 reading works too
        "timestamp": utc_timestamp(),
    }
    response = web.json_response(body, status=error.status)
    response[thinq_api.LG_CODE] = error.code
    return response


def placement_endpoint(
    push_type: str,
) -> Callable[[Handler], Callable[[web.Request], Awaitable[web.Response]]]:
    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(handler)
        async def endpoint(request: web.Request) -> web.Response:
            message_id = thinq_api.request_message_id(request)
            cloud = request.app[CLOUD]
            try:
                membership = request.app.get(MEMBERSHIP)
                issued = membership.user_for_token if membership is not None else None
                user = thinq_api.authenticate(request.headers, cloud.config, issued)
                outcomes = await handler(request, cloud, user)
            except ThinQError as error:
                return envelope_error(message_id, error)
            placement = request.app[PLACEMENT]
            accepted = placement.accept(
                method=request.method,
                path=request.path,
                push_type=push_type,
                user=user,
                outcomes=outcomes,
            )
            placement.dispatch(cloud, accepted)
            return envelope_accepted(message_id, accepted.request_id)

        return endpoint

    return wrap


def _each(devices: list[Device], outcome: Callable[[Device], Any]) -> list[Outcome]:
    """Run ``outcome`` per device; a ThinQError becomes that device's error."""
    results: list[Outcome] = []
    for device in devices:
        try:
            results.append((device, outcome(device), None))
        except ThinQError as error:
            results.append((device, None, error))
    return results


@placement_endpoint(DEVICE_PROFILE)
async def profiles(request: web.Request, cloud: SimulatedCloud, user: str) -> list[Outcome]:
    return _each(cloud.household.owned_by(user), lambda d: d.profile.document())


def _status(device: Device) -> Any:
    if not device.online:
        raise ThinQError("1222")
    return device.state.copy().status


@placement_endpoint(DEVICE_STATUS)
async def statuses(request: web.Request, cloud: SimulatedCloud, user: str) -> list[Outcome]:
    return _each(cloud.household.owned_by(user), _status)


async def _control_body(request: web.Request) -> tuple[str, Any]:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise ThinQError("1311", str(exc)) from None
    if body is NO_BODY:
        raise ThinQError("1101", "the body needs deviceType and command")
    if not isinstance(body, dict):
        raise ThinQError("1311", "the body must be a JSON object")
    if set(body) - CONTROL_FIELDS:
        raise ThinQError("1102", "only deviceType and command may be given")
    device_type, command = body.get("deviceType"), body.get("command")
    if device_type is None:
        raise ThinQError("1101", "deviceType is missing")
    if not isinstance(device_type, str) or not device_type:
        raise ThinQError("1102", "deviceType must be a non-empty string")
    if command is None:
        raise ThinQError("1101", "command is missing")
    if not isinstance(command, (dict, list)):
        raise ThinQError("1102", "command must be an object or an array")
    return device_type, command


@placement_endpoint(DEVICE_CONTROL)
async def control(request: web.Request, cloud: SimulatedCloud, user: str) -> list[Outcome]:
    device_type, command = await _control_body(request)
    devices = [d for d in cloud.household.owned_by(user) if d.device_type == device_type]
    if not devices:
        raise ThinQError("1205", f"the user has no device of type {device_type}")

    def apply(device: Device) -> Any:
        if not device.online:
            raise ThinQError("1222")
        cloud.control(device, command)  # validated against this device's own profile
        return {}

    return _each(devices, apply)


async def _body(request: web.Request) -> Any:
    try:
        return await read_json(request)
    except BadJson as exc:
        raise ThinQError("1311", str(exc)) from None


@placement_endpoint(DEVICE_EVENT_SUBSCRIBED)
async def subscribe_events(request: web.Request, cloud: SimulatedCloud, user: str) -> list[Outcome]:
    hours = thinq_api.event_hours(await _body(request))  # 1..24 HOUR, else 1102/1311
    expiry = cloud.clock.now() + hours * 3600

    def subscribe(device: Device) -> Any:
        # The same store as v1's /event: subscribing again renews from now.
        cloud.subscribe_events(device, expiry)
        return {}

    return _each(cloud.household.owned_by(user), subscribe)


@placement_endpoint(DEVICE_EVENT_UNSUBSCRIBED)
async def unsubscribe_events(
    request: web.Request, cloud: SimulatedCloud, user: str
) -> list[Outcome]:
    active = set(cloud.subscriptions.events_active(cloud.clock.now()))

    def unsubscribe(device: Device) -> Any:
        cloud.subscriptions.event.pop(device.device_id, None)  # a lapsed one goes too
        if device.device_id not in active:
            raise ThinQError("1204")
        return {}

    return _each(cloud.household.owned_by(user), unsubscribe)


@placement_endpoint(DEVICE_PUSH_SUBSCRIBED)
async def subscribe_pushes(request: web.Request, cloud: SimulatedCloud, user: str) -> list[Outcome]:
    table = cloud.subscriptions.push

    def subscribe(device: Device) -> Any:
        if device.device_id in table:
            raise ThinQError("1207")
        table[device.device_id] = None
        return {}

    return _each(cloud.household.owned_by(user), subscribe)


@placement_endpoint(DEVICE_PUSH_UNSUBSCRIBED)
async def unsubscribe_pushes(
    request: web.Request, cloud: SimulatedCloud, user: str
) -> list[Outcome]:
    table = cloud.subscriptions.push

    def unsubscribe(device: Device) -> Any:
        if device.device_id not in table:
            raise ThinQError("1206")
        del table[device.device_id]
        return {}

    return _each(cloud.household.owned_by(user), unsubscribe)


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post(f"{PREFIX}/profile-async", profiles)
    router.add_post(f"{PREFIX}/status-async", statuses)
    router.add_post(f"{PREFIX}/control-async", control)
    router.add_post(f"{PREFIX}/event-async", subscribe_events)
    router.add_delete(f"{PREFIX}/event-async", unsubscribe_events)
    router.add_post(f"{PREFIX}/push-async", subscribe_pushes)
    router.add_delete(f"{PREFIX}/push-async", unsubscribe_pushes)


# --- /sim/placement: fault knobs and the request log (ours, for tests) ---------------------------


def _bad(reason: str) -> SimInputError:
    return SimInputError(400, "bad_request", reason)


def _known_ids(cloud: SimulatedCloud, value: Any, name: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise _bad(f"{name} must be a list of device ids")
    unknown = [i for i in value if cloud.household.get(i) is None]
    if unknown:
        raise _bad(f"{name} names unknown device ids: {', '.join(unknown[:5])}")
    return frozenset(value)


def parse_faults(cloud: SimulatedCloud, body: Any) -> Faults:
    """``{"delaySeconds": {id: s}, "drop": [id], "duplicate": [id], "shuffle": bool}``,
    every field optional; the result replaces the knobs in force."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    if set(body) - FAULT_FIELDS:
        raise _bad("only delaySeconds, drop, duplicate and shuffle may be given")
    delays_in = body.get("delaySeconds", {})
    if not isinstance(delays_in, dict):
        raise _bad("delaySeconds must be an object of device id -> seconds")
    _known_ids(cloud, list(delays_in), "delaySeconds")
    delays: dict[str, float] = {}
    for device_id, seconds in delays_in.items():
        number = as_decimal(seconds)
        if number is None or not 0 <= number <= MAX_DELAY_SECONDS:
            raise _bad(f"delaySeconds values must be numbers from 0 to {MAX_DELAY_SECONDS}")
        delays[device_id] = float(number)
    drop = _known_ids(cloud, body.get("drop", []), "drop")
    duplicate = _known_ids(cloud, body.get("duplicate", []), "duplicate")
    if drop & duplicate:
        raise _bad("a device cannot be both dropped and duplicated")
    shuffle = body.get("shuffle", False)
    if not isinstance(shuffle, bool):
        raise _bad("shuffle must be true or false")
    return Faults(delays, drop, duplicate, shuffle)


def _faults_answer(placement: Placement) -> web.Response:
    return web.json_response(placement.faults.describe())


@sim_endpoint
async def get_faults(request: web.Request) -> web.Response:
    return _faults_answer(request.app[PLACEMENT])


@sim_endpoint
async def put_faults(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise _bad(str(exc)) from None
    placement = request.app[PLACEMENT]
    placement.faults = parse_faults(request.app[CLOUD], body)
    return _faults_answer(placement)


@sim_endpoint
async def clear_faults(request: web.Request) -> web.Response:
    placement = request.app[PLACEMENT]
    placement.faults = Faults()
    return _faults_answer(placement)


@sim_endpoint
async def list_requests(request: web.Request) -> web.Response:
    """Recent placement requests, oldest first; ``?requestId=`` picks one."""
    wanted = request.query.get("requestId")
    listed = [
        r.describe()
        for r in request.app[PLACEMENT].requests
        if wanted is None or r.request_id == wanted
    ]
    return web.json_response(listed)


def add_sim_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sim/placement/faults", get_faults)
    router.add_put("/sim/placement/faults", put_faults)
    router.add_delete("/sim/placement/faults", clear_faults)
    router.add_get("/sim/placement/requests", list_requests)


async def _close(app: web.Application) -> None:
    await app[PLACEMENT].close()


def setup(app: web.Application) -> None:
    """Routes, state and shutdown for the placement API.

    Call before the cloud's own cleanup is registered: in-flight callbacks must stop
    before the callback sender's session closes.
    """
    app[PLACEMENT] = Placement()
    add_routes(app.router)
    add_sim_routes(app.router)
    app.on_cleanup.append(_close)
