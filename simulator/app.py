"""The simulator's aiohttp application: LG's ThinQ and BECON paths and /sim on one port."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from simulator import (
    becon_api,
    events,
    faults,
    inspection,
    oauth,
    placement_api,
    rate_limit,
    thinq_api,
)
from simulator.clock import SimClock
from simulator.cloud import CLOUD, SimulatedCloud
from simulator.config import SimulatorConfig
from simulator.errors import ThinQError

log = logging.getLogger(__name__)

SIM_PREFIX = "/sim"
TICKER = web.AppKey("ticker", asyncio.Task)


def _is_sim(request: web.Request) -> bool:
    return request.path == SIM_PREFIX or request.path.startswith(SIM_PREFIX + "/")


def _is_oauth(request: web.Request) -> bool:
    return request.path.startswith("/oauth/")


@web.middleware
async def bookkeeping(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Catch the devices up with the clock, then log the ThinQ call (never its headers)."""
    cloud = request.app[CLOUD]
    # Reads then see the present, not the last background tick.
    cloud.tick_in_background()
    response = await handler(request)
    if not (_is_sim(request) or _is_oauth(request)):
        cloud.calls.append(
            {
                "method": request.method,
                "path": request.path,
                "status": response.status,
                "code": response.get(thinq_api.LG_CODE),
            }
        )
    return response


@web.middleware
async def json_errors(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Unknown routes, wrong methods, oversize bodies and bugs answer JSON, never HTML."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = f"{exc.reason}: {request.method} {request.path}"
        if _is_sim(request) or _is_oauth(request):
            return web.json_response({"error": "http_error", "reason": reason}, status=exc.status)
        if becon_api.is_becon(request):
            return becon_api.http_error(exc.status, reason)
        error = ThinQError("1000", reason, status=exc.status)
        return thinq_api.envelope_error(thinq_api.request_message_id(request), error)
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        if _is_sim(request):
            return web.json_response(
                {"error": "internal", "reason": "simulator bug, see its log"}, status=500
            )
        if becon_api.is_becon(request):
            return becon_api.internal_error()
        return thinq_api.envelope_error(thinq_api.request_message_id(request), ThinQError("0000"))


async def run_ticker(cloud: SimulatedCloud, interval: float) -> None:
    """Advance running appliances every ``interval`` real seconds until cancelled."""
    while True:
        await asyncio.sleep(interval)
        try:
            cloud.tick_in_background()
        except Exception:  # a bug in one tick must not stop time for good
            log.exception("simulator tick failed")


async def _on_startup(app: web.Application) -> None:
    cloud = app[CLOUD]
    await cloud.start()
    app[TICKER] = asyncio.create_task(run_ticker(cloud, cloud.config.tick_seconds))


async def _on_cleanup(app: web.Application) -> None:
    ticker = app.get(TICKER)
    if ticker is not None:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
    await app[CLOUD].close()


def create_app(config: SimulatorConfig, clock: SimClock | None = None) -> web.Application:
    app = web.Application(middlewares=[bookkeeping, json_errors])
    app[CLOUD] = SimulatedCloud(config, clock)
    # Stand-in for LG's membership login; its access tokens open the ThinQ endpoints.
    app[oauth.MEMBERSHIP] = oauth.MembershipStandIn(
        config.oauth_clients,
        app[CLOUD].household.users,
        access_seconds=config.oauth_access_seconds,
    )
    thinq_api.add_routes(app.router)
    becon_api.add_routes(app.router)
    oauth.add_routes(app.router)
    inspection.add_routes(app.router)
    # /sim/events: the DEVICE_STATUS events sent to subscribed partners (ours, for tests).
    app[events.EVENTS] = app[CLOUD].events
    events.add_sim_routes(app.router)
    # v2 Placement API and its /sim/placement knobs; before _on_cleanup, so callbacks
    # still in flight stop before the callback sender closes.
    placement_api.setup(app)
    # /sim/rate-limit: answers LG's 1306 beyond N calls per user per simulated minute.
    rate_limit.setup(app)
    # /sim/faults: latency, LG error codes, 5xx, timeouts and lost callbacks on purpose.
    faults.setup(app, app[CLOUD].sender)
    app.on_startup.append(_on_startup)
    app.on_cleanup.append(_on_cleanup)
    return app
