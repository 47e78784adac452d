"""``/sim/faults``: make the simulated LG cloud slow, broken or forgetful on purpose (ours,
for tests and load runs; documented in simulator/README.md, "Fault injection").

A fault is a rule; the first rule matching a request decides what happens to it:

* ``{"method": "POST", "path": "/devices/*", "latencyMs": 800}`` answers late;
* ``{"path": "/devices/*", "error": "1222"}`` answers LG's error envelope with that code
  (and the HTTP status of LG's table; v2 paths get the v2 envelope): 1222 offline, 2209
  response delay, 1306 too many calls, 2205 invalid status, 1103 invalid token…;
* ``{"path": "/devices", "httpStatus": 503}`` answers a bare 5xx without LG's envelope,
  as a failing gateway in front of LG would;
* ``{"method": "POST", "path": "/devices/*", "timeout": true, "applied": true}`` holds the
  request ``timeoutSeconds`` (default 30, longer than any client waits) and then answers
  504. With ``applied`` the request takes effect first (the device did it; only the answer
  is lost): the case where resending a command blindly would do it twice;
* ``{"callback": "DEVICE_PUSH", "drop": true}`` never sends matching callbacks (``"*"``:
  any push type), as if LG lost them.

``path`` is a shell-style pattern over the request path (``*`` also crosses ``/``);
``method`` defaults to any. ``count`` limits a rule to the next N matches (then it stays,
spent, for ``GET``'s bookkeeping); without it the rule applies until cleared. ``/sim``
and ``/oauth`` are never faulted. Rules are not cleared by ``POST /sim/reset``.

``PUT /sim/faults {"rules": [...]}`` replaces the rules (400 with a reason and nothing
changed when any is malformed), ``GET`` shows them with their hit counts, ``DELETE``
clears them.
"""

from __future__ import annotations

import asyncio
import fnmatch
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator import becon_api, placement_api, thinq_api
from simulator.errors import ERRORS, ThinQError
from simulator.inspection import SimInputError, sim_endpoint
from simulator.jsonbody import BadJson, read_json

METHODS = frozenset({"*", "GET", "POST", "PUT", "DELETE"})
RULE_FIELDS = frozenset(
    {
        "method",
        "path",
        "latencyMs",
        "error",
        "httpStatus",
        "timeout",
        "timeoutSeconds",
        "applied",
        "count",
        "callback",
        "drop",
    }
)
MAX_RULES = 50
MAX_LATENCY_MS = 60_000
MAX_TIMEOUT_SECONDS = 120
DEFAULT_TIMEOUT_SECONDS = 30
MAX_PATTERN = 200
DROPPED_BY_FAULT = "dropped by /sim/faults"


@dataclass
class Rule:
    method: str = "*"
    path: str | None = None
    latency_ms: int = 0
    error: str | None = None
    http_status: int | None = None
    timeout: bool = False
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    applied: bool = False
    count: int | None = None
    callback: str | None = None
    drop: bool = False
    hits: int = 0

    @property
    def spent(self) -> bool:
        return self.count is not None and self.hits >= self.count

    def matches_request(self, method: str, path: str) -> bool:
        if self.path is None or self.spent:
            return False
        if self.method not in ("*", method):
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def matches_callback(self, push_type: str | None) -> bool:
        if self.callback is None or self.spent or not self.drop:
            return False
        return self.callback == "*" or self.callback == push_type

    def describe(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"hits": self.hits, "count": self.count}
        if self.callback is not None:
            shown.update(callback=self.callback, drop=self.drop)
            return shown
        shown.update(method=self.method, path=self.path)
        if self.latency_ms:
            shown["latencyMs"] = self.latency_ms
        if self.error is not None:
            shown["error"] = self.error
        if self.http_status is not None:
            shown["httpStatus"] = self.http_status
        if self.timeout:
            shown.update(timeout=True, timeoutSeconds=self.timeout_seconds)
        if self.error is not None or self.http_status is not None or self.timeout:
            shown["applied"] = self.applied
        return shown


@dataclass
class Faults:
    rules: list[Rule]

    def for_request(self, method: str, path: str) -> Rule | None:
        for rule in self.rules:
            if rule.matches_request(method, path):
                rule.hits += 1
                return rule
        return None

    def drops(self, message: dict[str, Any]) -> str | None:
        """Why the callback ``message`` is not to be sent (None: send it)."""
        push_type = push_type_of(message)
        for rule in self.rules:
            if rule.matches_callback(push_type):
                rule.hits += 1
                return DROPPED_BY_FAULT
        return None


FAULTS = web.AppKey("faults", Faults)


def push_type_of(message: dict[str, Any]) -> str | None:
    """The pushType of a callback message, wherever its shape keeps it."""
    if isinstance(message.get("pushType"), str):
        return message["pushType"]
    for value in message.values():
        if isinstance(value, dict) and isinstance(value.get("pushType"), str):
            return value["pushType"]
    return None


# --- parsing ----------------------------------------------------------------------------------


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SimInputError(400, "bad_request", f"{name} must be a whole number {low}..{high}")
    return value


def _flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise SimInputError(400, "bad_request", f"{name} must be true or false")
    return value


def parse_rule(raw: Any, index: int) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(raw, dict):
        raise SimInputError(400, "bad_request", f"{where} must be an object")
    unknown = set(raw) - RULE_FIELDS
    if unknown:
        raise SimInputError(400, "bad_request", f"{where} has unknown fields: {sorted(unknown)}")
    rule = Rule()
    if raw.get("count") is not None:
        rule.count = _whole(raw["count"], f"{where}.count", 1, 1_000_000)
    if "callback" in raw:
        if "path" in raw or "method" in raw:
            raise SimInputError(400, "bad_request", f"{where}: a callback rule has no path")
        callback = raw["callback"]
        if not isinstance(callback, str) or not callback or len(callback) > 64:
            raise SimInputError(400, "bad_request", f"{where}.callback must be a push type or *")
        if not _flag(raw.get("drop"), f"{where}.drop"):
            raise SimInputError(400, "bad_request", f"{where}: a callback rule needs drop: true")
        if set(raw) - {"callback", "drop", "count"}:
            raise SimInputError(400, "bad_request", f"{where}: a callback rule only drops")
        rule.callback, rule.drop = callback, True
        return rule
    path = raw.get("path")
    if not isinstance(path, str) or not path.startswith("/") or len(path) > MAX_PATTERN:
        raise SimInputError(400, "bad_request", f"{where}.path must be a pattern starting with /")
    if path.startswith(("/sim", "/oauth")):
        raise SimInputError(400, "bad_request", f"{where}.path: /sim and /oauth are not faulted")
    rule.path = path
    method = raw.get("method", "*")
    if method not in METHODS:
        raise SimInputError(400, "bad_request", f"{where}.method must be one of {sorted(METHODS)}")
    rule.method = method
    if "latencyMs" in raw:
        rule.latency_ms = _whole(raw["latencyMs"], f"{where}.latencyMs", 0, MAX_LATENCY_MS)
    outcomes = [k for k in ("error", "httpStatus", "timeout") if raw.get(k) not in (None, False)]
    if len(outcomes) > 1:
        raise SimInputError(
            400, "bad_request", f"{where}: error, httpStatus and timeout exclude each other"
        )
    if raw.get("error") is not None:
        code = raw["error"]
        if not isinstance(code, str) or code not in ERRORS:
            raise SimInputError(400, "bad_request", f"{where}.error must be a ThinQ error code")
        rule.error = code
    if raw.get("httpStatus") is not None:
        rule.http_status = _whole(raw["httpStatus"], f"{where}.httpStatus", 500, 599)
    if "timeout" in raw:
        rule.timeout = _flag(raw["timeout"], f"{where}.timeout")
    if "timeoutSeconds" in raw:
        if not rule.timeout:
            raise SimInputError(400, "bad_request", f"{where}.timeoutSeconds needs timeout")
        rule.timeout_seconds = _whole(
            raw["timeoutSeconds"], f"{where}.timeoutSeconds", 1, MAX_TIMEOUT_SECONDS
        )
    if "applied" in raw:
        rule.applied = _flag(raw["applied"], f"{where}.applied")
        if not outcomes:
            raise SimInputError(
                400, "bad_request", f"{where}.applied needs error, httpStatus or timeout"
            )
    if not outcomes and not rule.latency_ms:
        raise SimInputError(
            400,
            "bad_request",
            f"{where} does nothing: give latencyMs, error, httpStatus or timeout",
        )
    return rule


# --- the middleware -----------------------------------------------------------------------------


def _faultable(request: web.Request) -> bool:
    path = request.path
    return not (path == "/sim" or path.startswith(("/sim/", "/oauth/")))


def _error_answer(request: web.Request, code: str) -> web.Response:
    error = ThinQError(code, "injected by /sim/faults")
    message_id = thinq_api.request_message_id(request)
    if request.path.startswith(placement_api.PREFIX + "/"):
        return placement_api.envelope_error(message_id, error)
    if becon_api.is_becon(request):
        return becon_api.error_response(error.status, error.name, error.message)
    return thinq_api.envelope_error(message_id, error)


@web.middleware
async def inject_faults(request: web.Request, handler: Any) -> web.StreamResponse:
    faults = request.app[FAULTS]
    rule = faults.for_request(request.method, request.path) if _faultable(request) else None
    if rule is None:
        return await handler(request)
    if rule.latency_ms:
        await asyncio.sleep(rule.latency_ms / 1000)
    failing = rule.error is not None or rule.http_status is not None or rule.timeout
    if not failing:
        return await handler(request)
    if rule.applied:
        await handler(request)  # it happened; only the answer goes wrong
    if rule.timeout:
        await asyncio.sleep(rule.timeout_seconds)
        return web.json_response({"error": "gateway_timeout"}, status=504)
    if rule.http_status is not None:
        return web.json_response({"error": "injected"}, status=rule.http_status)
    assert rule.error is not None
    return _error_answer(request, rule.error)


# --- /sim/faults ------------------------------------------------------------------------------


def _answer(request: web.Request) -> web.Response:
    return web.json_response({"rules": [r.describe() for r in request.app[FAULTS].rules]})


@sim_endpoint
async def get_faults(request: web.Request) -> web.Response:
    return _answer(request)


@sim_endpoint
async def put_faults(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise SimInputError(400, "bad_request", str(exc)) from None
    if not isinstance(body, dict) or set(body) != {"rules"} or not isinstance(body["rules"], list):
        raise SimInputError(400, "bad_request", 'the body must be {"rules": [...]}')
    if len(body["rules"]) > MAX_RULES:
        raise SimInputError(400, "bad_request", f"at most {MAX_RULES} rules")
    rules = [parse_rule(raw, i) for i, raw in enumerate(body["rules"])]
    request.app[FAULTS].rules = rules
    return _answer(request)


@sim_endpoint
async def clear_faults(request: web.Request) -> web.Response:
    request.app[FAULTS].rules = []
    return _answer(request)


def setup(app: web.Application, sender: Any) -> None:
    """State, the middleware (after the bookkeeping one, so faulted calls are in /sim/calls
    with the status they got) and the /sim/faults routes; ``sender`` (the cloud's callback
    sender) asks the rules before every callback."""
    app[FAULTS] = Faults([])
    app.middlewares.append(inject_faults)
    sender.dropper = app[FAULTS].drops
    app.router.add_get("/sim/faults", get_faults)
    app.router.add_put("/sim/faults", put_faults)
    app.router.add_delete("/sim/faults", clear_faults)
