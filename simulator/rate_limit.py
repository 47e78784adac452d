"""``/sim/rate-limit``: make the simulator answer LG's 1306 EXCEEDED_API_CALLS (ours, for tests).

LG does not publish its limits. This knob stands in for them: with
``{"maxCallsPerMinute": N}`` in force, a user's ThinQ calls (v1 and v2, after their
headers passed ``thinq_api.authenticate``) beyond the N-th within one *simulated*
minute (``floor(clock.now() / 60)``) are answered LG's 1306 envelope instead of being
served; refused calls count too (LG sees them). Requests refused for their headers,
``/sim``, ``/oauth`` and BECON calls are not limited. ``null`` (the default) turns it
off. The knob and its counts are not cleared by ``POST /sim/reset``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator import becon_api, placement_api, thinq_api
from simulator.cloud import CLOUD
from simulator.errors import ThinQError
from simulator.inspection import SimInputError, sim_endpoint
from simulator.jsonbody import BadJson, read_json
from simulator.oauth import MEMBERSHIP

EXCEEDED_API_CALLS = "1306"
FIELDS = frozenset({"maxCallsPerMinute"})
MAX_LIMIT = 1_000_000


@dataclass
class RateLimit:
    max_calls_per_minute: int | None = None
    # user -> (simulated minute, calls in it); only the current minute matters
    calls: dict[str, tuple[int, int]] = field(default_factory=dict)
    refused: int = 0

    def admit(self, user: str, minute: int) -> bool:
        """Count one call of ``user``; False when it is over the limit."""
        seen_minute, count = self.calls.get(user, (minute, 0))
        count = count + 1 if seen_minute == minute else 1
        self.calls[user] = (minute, count)
        if self.max_calls_per_minute is not None and count > self.max_calls_per_minute:
            self.refused += 1
            return False
        return True

    def describe(self, minute: int) -> dict[str, Any]:
        return {
            "maxCallsPerMinute": self.max_calls_per_minute,
            "minute": minute,
            "calls": {user: n for user, (m, n) in sorted(self.calls.items()) if m == minute},
            "refused": self.refused,
        }


RATE_LIMIT = web.AppKey("rate_limit", RateLimit)


def _limited(request: web.Request) -> bool:
    """ThinQ v1/v2 calls: everything but /sim, /oauth and BECON."""
    path = request.path
    return not (
        path == "/sim"
        or path.startswith("/sim/")
        or path.startswith("/oauth/")
        or becon_api.is_becon(request)
    )


def _minute(request: web.Request) -> int:
    return int(request.app[CLOUD].clock.now() // 60)


@web.middleware
async def rate_limit(request: web.Request, handler: Any) -> web.StreamResponse:
    limit = request.app[RATE_LIMIT]
    if limit.max_calls_per_minute is None or not _limited(request):
        return await handler(request)
    cloud = request.app[CLOUD]
    membership = request.app.get(MEMBERSHIP)
    try:
        user = thinq_api.authenticate(
            request.headers,
            cloud.config,
            membership.user_for_token if membership is not None else None,
        )
    except ThinQError:
        return await handler(request)  # the endpoint answers the header problem itself
    if limit.admit(user, _minute(request)):
        return await handler(request)
    error = ThinQError(EXCEEDED_API_CALLS, f"more than {limit.max_calls_per_minute} calls a minute")
    message_id = thinq_api.request_message_id(request)
    if request.path.startswith(placement_api.PREFIX + "/"):
        return placement_api.envelope_error(message_id, error)
    return thinq_api.envelope_error(message_id, error)


def _answer(request: web.Request) -> web.Response:
    return web.json_response(request.app[RATE_LIMIT].describe(_minute(request)))


@sim_endpoint
async def get_limit(request: web.Request) -> web.Response:
    return _answer(request)


@sim_endpoint
async def put_limit(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise SimInputError(400, "bad_request", str(exc)) from None
    if not isinstance(body, dict) or set(body) != FIELDS:
        raise SimInputError(400, "bad_request", 'the body must be {"maxCallsPerMinute": N | null}')
    value = body["maxCallsPerMinute"]
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LIMIT
    ):
        raise SimInputError(
            400, "bad_request", f"maxCallsPerMinute must be a whole number 0..{MAX_LIMIT} or null"
        )
    request.app[RATE_LIMIT].max_calls_per_minute = value
    return _answer(request)


@sim_endpoint
async def clear_limit(request: web.Request) -> web.Response:
    limit = request.app[RATE_LIMIT]
    limit.max_calls_per_minute = None
    limit.calls.clear()
    limit.refused = 0
    return _answer(request)


def setup(app: web.Application) -> None:
    """State, the limiting middleware (innermost: its 1306 answers are in /sim/calls)
    and the /sim/rate-limit routes."""
    app[RATE_LIMIT] = RateLimit()
    app.middlewares.append(rate_limit)
    app.router.add_get("/sim/rate-limit", get_limit)
    app.router.add_put("/sim/rate-limit", put_limit)
    app.router.add_delete("/sim/rate-limit", clear_limit)
