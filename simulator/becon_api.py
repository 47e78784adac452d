"""LG's BECON Connect API under its real paths (``/tms/v1.0/connect/…``).

Paths, headers, facility types and HTTP statuses are LG's (facts sheet §5); body
field names come from ``lgcloud.becon_fields`` (our documented assumptions) and the
signature rule from ``lgcloud.becon_signer`` (our assumption: HMAC-SHA256 over the
server time string with the service's symmetric key, hex).

Checks, first failure wins:

1. ``x-lgtms-service-id`` and ``x-lgtms-service-key`` present (412), then
   ``x-lgtms-service-token`` on every non-auth path (412);
2. the service id known and the key matching (401), the token one we issued to that
   service and not expired (401);
3. the site known (404) and granted to the service (403), the gateway (404), the
   facility type one of the seven (400), the facility (404);
4. the body (400, all-or-nothing).

Errors answer ``{"error": {"code", "message"}}``; the message names the problem and
never a secret. No endpoint fails with 500 on purpose.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from lgcloud import becon_fields as f
from lgcloud.becon_signer import hmac_sha256_signer
from simulator.becon import SERVER_TIME_MAX_AGE, BeconProblem, BeconSite, Facility, Gateway
from simulator.cloud import CLOUD, SimulatedCloud
from simulator.config import SimulatorConfig
from simulator.jsonbody import NO_BODY, BadJson, read_json
from simulator.profile import normalize
from simulator.thinq_api import LG_CODE

log = logging.getLogger(__name__)

Handler = Callable[[web.Request, BeconSite], Awaitable[Any]]


def is_becon(request: web.Request) -> bool:
    return request.path == f.BASE_PATH or request.path.startswith(f.BASE_PATH + "/")


def error_response(status: int, code: str, message: str) -> web.Response:
    response = web.json_response(
        {f.ERROR: {f.ERROR_CODE: code, f.ERROR_MESSAGE: message}}, status=status
    )
    response[LG_CODE] = code  # shown in /sim/calls
    return response


def http_error(status: int, reason: str) -> web.Response:
    """Unknown paths and wrong methods under BECON's prefix, in BECON's error shape."""
    code = {404: f.NOT_FOUND, 405: f.METHOD_NOT_ALLOWED}.get(status, f.INVALID_BODY)
    return error_response(status, code, reason)


def internal_error() -> web.Response:
    return error_response(500, f.INTERNAL_ERROR, "simulator bug, see its log")


# --- authentication ---------------------------------------------------------------------------


def _secret_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(
        given.encode("utf-8", "replace"), expected.encode("utf-8", "replace")
    )


def _header(request: web.Request, name: str) -> str:
    value = request.headers.get(name, "")
    if not value:
        raise BeconProblem(412, f.MISSING_HEADER, f"header {name} is missing")
    return value


def authenticate_service(request: web.Request, config: SimulatorConfig) -> str:
    """The service id, once its id and key headers are present and right."""
    service_id = _header(request, f.HEADER_SERVICE_ID)
    service_key = _header(request, f.HEADER_SERVICE_KEY)
    if not _secret_equal(service_id, config.becon_service_id or ""):
        raise BeconProblem(401, f.UNAUTHORIZED_SERVICE, f"unknown {f.HEADER_SERVICE_ID}")
    if not _secret_equal(service_key, config.becon_service_key or ""):
        raise BeconProblem(
            401, f.UNAUTHORIZED_SERVICE, f"{f.HEADER_SERVICE_KEY} does not match the service"
        )
    return service_id


def becon_endpoint(*, token: bool = True) -> Callable[[Handler], Any]:
    """Headers and credentials first (in that order), then the handler; JSON either way."""

    def wrap(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        @functools.wraps(handler)
        async def endpoint(request: web.Request) -> web.Response:
            cloud: SimulatedCloud = request.app[CLOUD]
            site = cloud.becon
            try:
                if token:
                    # Every header present before any is judged: 412 before 401.
                    for name in (f.HEADER_SERVICE_ID, f.HEADER_SERVICE_KEY, f.HEADER_TOKEN):
                        _header(request, name)
                service_id = authenticate_service(request, cloud.config)
                if token:
                    site.tokens.check(request.headers[f.HEADER_TOKEN], service_id, site.now())
                payload = await handler(request, site)
            except BeconProblem as problem:
                return error_response(problem.status, problem.code, problem.message)
            return web.json_response(payload)

        return endpoint

    return wrap


def server_time_text(now: float) -> str:
    return datetime.fromtimestamp(int(now), tz=timezone.utc).strftime(f.SERVER_TIME_FORMAT)


def _parse_server_time(text: str) -> float:
    try:
        parsed = datetime.strptime(text, f.SERVER_TIME_FORMAT)
    except ValueError:
        raise BeconProblem(
            400,
            f.INVALID_BODY,
            f"{f.TOKEN_SERVER_TIME} must look like {server_time_text(0)} (UTC)",
        ) from None
    return parsed.replace(tzinfo=timezone.utc).timestamp()


@becon_endpoint(token=False)
async def server_time(request: web.Request, site: BeconSite) -> Any:
    return {f.SERVER_TIME: server_time_text(site.now())}


@becon_endpoint(token=False)
async def issue_token(request: web.Request, site: BeconSite) -> Any:
    config: SimulatorConfig = request.app[CLOUD].config
    body = await _object_body(request)
    missing = [
        n for n in (f.TOKEN_SERVER_TIME, f.TOKEN_SIGNATURE) if not isinstance(body.get(n), str)
    ]
    if missing or set(body) - {f.TOKEN_SERVER_TIME, f.TOKEN_SIGNATURE}:
        raise BeconProblem(
            400,
            f.INVALID_BODY,
            f"the body must be {{{f.TOKEN_SERVER_TIME!r}: str, {f.TOKEN_SIGNATURE!r}: str}}",
        )
    signed_time = body[f.TOKEN_SERVER_TIME]
    signed_at = _parse_server_time(signed_time)
    expected = hmac_sha256_signer(signed_time, (config.becon_symmetric_key or "").encode())
    if not _secret_equal(body[f.TOKEN_SIGNATURE], expected):
        raise BeconProblem(401, f.INVALID_SIGNATURE, "the signature does not match")
    now = site.now()
    if now - signed_at > SERVER_TIME_MAX_AGE:
        raise BeconProblem(
            401,
            f.SERVER_TIME_EXPIRED,
            f"{f.TOKEN_SERVER_TIME} is older than {SERVER_TIME_MAX_AGE // 60} minutes",
        )
    if signed_at > now:
        raise BeconProblem(401, f.SERVER_TIME_EXPIRED, f"{f.TOKEN_SERVER_TIME} is in the future")
    token, lifetime = site.tokens.issue(request.headers[f.HEADER_SERVICE_ID], now)
    log.info("BECON token issued (valid %d s)", lifetime)  # never the token itself
    return {f.TOKEN: token, f.TOKEN_EXPIRES_IN: lifetime}


# --- sites, gateways, facilities, states ------------------------------------------------------


def _state(facility: Facility) -> dict[str, Any]:
    return f.state_to_wire(facility.state)


def _gateway(request: web.Request, site: BeconSite) -> Gateway:
    return site.gateway(request.match_info["site_code"], request.match_info["gw_id"])


@becon_endpoint()
async def list_sites(request: web.Request, site: BeconSite) -> Any:
    return {f.SITES: [{f.SITE_CODE: s.code, f.SITE_NAME: s.name} for s in site.granted_sites()]}


@becon_endpoint()
async def list_gateways(request: web.Request, site: BeconSite) -> Any:
    found = site.site(request.match_info["site_code"])
    return {
        f.GATEWAYS: [{f.GW_ID: gw.gw_id, f.SITE_CODE: found.code} for gw in found.gateways.values()]
    }


@becon_endpoint()
async def list_facilities(request: web.Request, site: BeconSite) -> Any:
    return {
        f.FACILITIES: [
            {
                f.FACILITY_TYPE: facility.facility_type,
                f.FACILITY_ID: facility.facility_id,
                f.FACILITY_NAME: facility.spec.name,
            }
            for facility in site.listed(_gateway(request, site))
        ]
    }


@becon_endpoint()
async def facility_state(request: web.Request, site: BeconSite) -> Any:
    match = request.match_info
    facility = site.facility(
        match["site_code"], match["gw_id"], match["facility_type"], match["facility_id"]
    )
    return {
        f.SITE_CODE: match["site_code"],
        f.GW_ID: match["gw_id"],
        f.FACILITY_TYPE: facility.facility_type,
        f.FACILITY_ID: facility.facility_id,
        f.STATE: _state(facility),
    }


def _facility_types(request: web.Request) -> list[str] | None:
    """``facility_types`` given repeated and/or comma-separated; None when absent."""
    given = request.query.getall(f.QUERY_FACILITY_TYPES, [])
    if not given:
        return None
    types = [t.strip() for value in given for t in value.split(",")]
    if not all(types):
        raise BeconProblem(
            400, f.INVALID_FACILITY_TYPE, f"{f.QUERY_FACILITY_TYPES} has an empty entry"
        )
    return types


@becon_endpoint()
async def facilities_state(request: web.Request, site: BeconSite) -> Any:
    gateway = _gateway(request, site)
    return {
        f.FACILITIES: [
            {
                f.FACILITY_TYPE: facility.facility_type,
                f.FACILITY_ID: facility.facility_id,
                f.STATE: _state(facility),
            }
            for facility in site.listed(gateway, _facility_types(request))
        ]
    }


# --- control -----------------------------------------------------------------------------------


async def _object_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await read_json(request)
    except BadJson as exc:
        raise BeconProblem(400, f.INVALID_BODY, str(exc)) from None
    if body is NO_BODY or not isinstance(body, dict):
        raise BeconProblem(400, f.INVALID_BODY, "the body must be a JSON object")
    return body


def _control_body(body: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """The facility ids and the canonical changes of a control body, or BeconProblem."""
    shape = (
        f"the body must be {{{f.CONTROL_FACILITY_IDS!r}: [ids], "
        f"{f.CONTROL_VALUES!r}: {{key: value}}}}"
    )
    if set(body) != {f.CONTROL_FACILITY_IDS, f.CONTROL_VALUES}:
        raise BeconProblem(400, f.INVALID_BODY, shape)
    ids = body[f.CONTROL_FACILITY_IDS]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise BeconProblem(
            400, f.INVALID_BODY, f"{f.CONTROL_FACILITY_IDS} must be a non-empty list of ids"
        )
    if len(set(ids)) != len(ids):
        raise BeconProblem(400, f.INVALID_BODY, f"{f.CONTROL_FACILITY_IDS} lists an id twice")
    values = body[f.CONTROL_VALUES]
    if not isinstance(values, dict) or not values:
        raise BeconProblem(
            400, f.INVALID_BODY, f"{f.CONTROL_VALUES} must be a non-empty object of state keys"
        )
    changes: dict[str, Any] = {}
    for name, wire in values.items():
        key = f.canonical_key(name)
        if key is None:
            raise BeconProblem(400, f.UNKNOWN_KEY, f"{name!r} is not a facility state key")
        # Numbers stay exact Decimals here: the model checks range and step on them.
        known, value = f.canonical_value(key, wire)
        if not known:
            allowed = ", ".join(str(v) for v in f.wire_values(key))
            shown = normalize(wire)
            raise BeconProblem(400, f.INVALID_VALUE, f"{name} {shown!r} is not one of {allowed}")
        changes[key] = value
    return ids, changes


@becon_endpoint()
async def control(request: web.Request, site: BeconSite) -> Any:
    gateway = _gateway(request, site)
    facility_type = request.match_info["facility_type"]
    # Path first (400 invalid type before any body problem), then the whole body.
    site.listed(gateway, [facility_type])
    ids, changes = _control_body(await _object_body(request))
    done = site.control(gateway, facility_type, ids, changes)
    return {
        f.CONTROL_RESULTS: [
            {f.RESULT_FACILITY_ID: facility.facility_id, f.RESULT_SUCCESS: True}
            for facility in done
        ]
    }


def add_routes(router: web.UrlDispatcher) -> None:
    base = f.BASE_PATH
    router.add_get(base + f.PATH_SERVER_TIME, server_time)
    router.add_post(base + f.PATH_TOKEN, issue_token)
    router.add_get(base + f.PATH_SITES, list_sites)
    router.add_get(base + f.PATH_GATEWAYS, list_gateways)
    router.add_get(base + f.PATH_FACILITIES, list_facilities)
    router.add_get(base + f.PATH_FACILITIES_STATE, facilities_state)
    router.add_get(base + f.PATH_FACILITY_STATE, facility_state)
    router.add_put(base + f.PATH_CONTROL, control)
