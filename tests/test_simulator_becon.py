"""The simulator's BECON Connect API over real HTTP, with headers built by hand.

The contract's demo site (demo-stack.md §4) is written out again below, on purpose, so
the simulator is checked against the contract and not against itself. Wire names come
from ``lgcloud.becon_fields`` (our assumptions), so correcting one there keeps these
tests meaningful.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from aiohttp import web

from devstack.credentials import demo_becon_credentials
from lgcloud import becon_fields as f
from lgcloud.becon_signer import hmac_sha256_signer
from simulator.app import create_app
from simulator.becon import BeconSite
from simulator.cloud import CLOUD
from simulator.config import SimulatorConfig, config_from_env

TOKEN_PATH = f.BASE_PATH + f.PATH_TOKEN


def _idu(fid: str, name: str, power: str, setpoint: float, current: float, fan: str) -> dict:
    return {
        "siteCode": "HQ",
        "gwId": "GW01",
        "facilityType": "IDU",
        "facilityId": fid,
        "name": name,
        "state": {
            "power": power,
            "operationMode": "COOL",
            "setTemperature": setpoint,
            "currentTemperature": current,
            "fanSpeed": fan,
        },
    }


def _fan(ftype: str, fid: str, name: str, power: str, fan: str) -> dict:
    return {
        "siteCode": "HQ",
        "gwId": "GW01",
        "facilityType": ftype,
        "facilityId": fid,
        "name": name,
        "state": {"power": power, "fanSpeed": fan},
    }


# demo-stack.md §4, row by row ("-" = the key does not exist for that facility).
CONTRACT = [
    _idu("IDU-301", "Meeting Room 3F", "OFF", 24, 26.5, "AUTO"),
    _idu("IDU-101", "Lobby", "ON", 22, 23, "MID"),
    _idu("IDU-201", "Office 2F", "ON", 23, 24.5, "LOW"),
    _fan("VENT", "VENT-001", "Ventilation 1", "ON", "LOW"),
    _fan("AIRCARE", "AIRCARE-001", "Lobby Purifier", "ON", "AUTO"),
]


@dataclass
class BeconSim:
    """A running simulator, an HTTP client for it, and its BECON model (to move its clock)."""

    url: str
    http: httpx.AsyncClient
    config: SimulatorConfig
    site: BeconSite

    @property
    def service_id(self) -> str:
        return str(self.config.becon_service_id)

    @property
    def service_key(self) -> str:
        return str(self.config.becon_service_key)

    @property
    def symmetric_key(self) -> str:
        return str(self.config.becon_symmetric_key)

    def headers(self, token: str | None = None, **overrides: str | None) -> dict[str, str]:
        headers: dict[str, str | None] = {
            f.HEADER_SERVICE_ID: self.service_id,
            f.HEADER_SERVICE_KEY: self.service_key,
            f.HEADER_TOKEN: token,
        }
        headers.update(overrides)
        return {k: v for k, v in headers.items() if v is not None}

    async def server_time(self) -> str:
        response = await self.http.get(f.BASE_PATH + f.PATH_SERVER_TIME, headers=self.headers())
        assert response.status_code == 200, response.text
        return response.json()[f.SERVER_TIME]

    async def request_token(self, server_time: str, signature: str | None = None) -> httpx.Response:
        if signature is None:
            signature = hmac_sha256_signer(server_time, self.symmetric_key.encode())
        body = {f.TOKEN_SERVER_TIME: server_time, f.TOKEN_SIGNATURE: signature}
        return await self.http.post(TOKEN_PATH, headers=self.headers(), json=body)

    async def token(self) -> str:
        response = await self.request_token(await self.server_time())
        assert response.status_code == 200, response.text
        return response.json()[f.TOKEN]

    async def api(self, method: str, path: str, token: str, **kwargs: Any) -> httpx.Response:
        return await self.http.request(
            method, f.BASE_PATH + path, headers=self.headers(token), **kwargs
        )

    async def facilities(self) -> list[dict[str, Any]]:
        response = await self.http.get("/sim/becon/facilities")
        assert response.status_code == 200
        return response.json()

    async def token_requests(self) -> int:
        calls = (await self.http.get("/sim/calls")).json()
        return sum(1 for c in calls if c["method"] == "POST" and c["path"] == TOKEN_PATH)


@pytest.fixture
async def becon() -> AsyncIterator[BeconSim]:
    """The simulator on a free loopback port; its BECON credentials derive from the
    service key as in the demo."""
    config = SimulatorConfig(
        port=0,
        time_scale=0,
        service_id=secrets.token_hex(12),
        service_key=secrets.token_urlsafe(40),
        tokens={secrets.token_hex(48): "demo"},
    )
    app = create_app(config)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield BeconSim(url, http, config, app[CLOUD].becon)
    finally:
        await runner.cleanup()


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()[f.ERROR]
    assert error[f.ERROR_CODE] == code, error
    return error[f.ERROR_MESSAGE]


def _wire(entry: dict[str, Any]) -> dict[str, Any]:
    """A contract row as the real API shows it in a state list."""
    return {
        f.FACILITY_TYPE: entry["facilityType"],
        f.FACILITY_ID: entry["facilityId"],
        f.STATE: f.state_to_wire(entry["state"]),
    }


# --- the contract -----------------------------------------------------------------------------


async def test_sim_facilities_are_the_contract_site(becon: BeconSim) -> None:
    assert await becon.facilities() == CONTRACT


async def test_site_gateway_and_facility_lists(becon: BeconSim) -> None:
    token = await becon.token()
    sites = await becon.api("GET", "/site", token)
    assert sites.json() == {f.SITES: [{f.SITE_CODE: "HQ", f.SITE_NAME: "Headquarters"}]}
    gateways = await becon.api("GET", "/site/HQ/gw", token)
    assert gateways.json() == {f.GATEWAYS: [{f.GW_ID: "GW01", f.SITE_CODE: "HQ"}]}
    facilities = await becon.api("GET", "/site/HQ/gw/GW01/facilities", token)
    assert facilities.json() == {
        f.FACILITIES: [
            {
                f.FACILITY_TYPE: row["facilityType"],
                f.FACILITY_ID: row["facilityId"],
                f.FACILITY_NAME: row["name"],
            }
            for row in CONTRACT
        ]
    }


async def test_one_state_and_all_states_with_a_type_filter(becon: BeconSim) -> None:
    token = await becon.token()
    one = await becon.api("GET", "/site/HQ/gw/GW01/facility/IDU/IDU-201/state", token)
    assert one.json() == {
        f.SITE_CODE: "HQ",
        f.GW_ID: "GW01",
        f.FACILITY_TYPE: "IDU",
        f.FACILITY_ID: "IDU-201",
        f.STATE: f.state_to_wire(CONTRACT[2]["state"]),
    }
    vent = await becon.api("GET", "/site/HQ/gw/GW01/facility/VENT/VENT-001/state", token)
    assert vent.json()[f.STATE] == {"power": "ON", "fanSpeed": "LOW"}  # no "-" keys

    path = "/site/HQ/gw/GW01/facilities/state"
    every = await becon.api("GET", path, token)
    assert every.json() == {f.FACILITIES: [_wire(row) for row in CONTRACT]}
    expected = {f.FACILITIES: [_wire(row) for row in CONTRACT[3:]]}
    comma = await becon.api("GET", path, token, params={f.QUERY_FACILITY_TYPES: "VENT,AIRCARE"})
    assert comma.json() == expected
    repeated = await becon.api(
        "GET", path, token, params=[(f.QUERY_FACILITY_TYPES, "VENT"), ("facility_types", "AIRCARE")]
    )
    assert repeated.json() == expected
    # A documented type the demo site has none of: valid, and an empty list.
    chillers = await becon.api("GET", path, token, params={f.QUERY_FACILITY_TYPES: "CHILLER"})
    assert chillers.json() == {f.FACILITIES: []}


# --- authentication ---------------------------------------------------------------------------


async def test_server_time_and_a_token_valid_for_a_day(becon: BeconSim) -> None:
    server_time = await becon.server_time()
    parsed = datetime.strptime(server_time, f.SERVER_TIME_FORMAT).replace(tzinfo=timezone.utc)
    assert abs(parsed.timestamp() - becon.site.now()) < 2
    response = await becon.request_token(server_time)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {f.TOKEN, f.TOKEN_EXPIRES_IN}
    assert body[f.TOKEN_EXPIRES_IN] == 24 * 3600
    assert (await becon.api("GET", "/site", body[f.TOKEN])).status_code == 200


async def test_token_requests_are_refused_with_a_reason(becon: BeconSim) -> None:
    server_time = await becon.server_time()
    wrong_key = hmac_sha256_signer(server_time, b"not the symmetric key")
    message = _error(await becon.request_token(server_time, wrong_key), 401, f.INVALID_SIGNATURE)
    assert "signature" in message
    _error(await becon.request_token(server_time, "00"), 401, f.INVALID_SIGNATURE)

    def at(seconds_from_now: float) -> str:
        moment = datetime.fromtimestamp(int(becon.site.now() + seconds_from_now), tz=timezone.utc)
        return moment.strftime(f.SERVER_TIME_FORMAT)

    stale = _error(await becon.request_token(at(-6 * 60)), 401, f.SERVER_TIME_EXPIRED)
    assert "older than 5 minutes" in stale
    assert (await becon.request_token(at(-4 * 60))).status_code == 200
    future = _error(await becon.request_token(at(600)), 401, f.SERVER_TIME_EXPIRED)
    assert "future" in future
    bad_time = _error(await becon.request_token("yesterday", "00"), 400, f.INVALID_BODY)
    assert f.TOKEN_SERVER_TIME in bad_time

    for body in [b"not json", b"[]", b"{}", b'{"serverTime": "20260101T000000Z"}']:
        response = await becon.http.post(TOKEN_PATH, headers=becon.headers(), content=body)
        _error(response, 400, f.INVALID_BODY)
    extra = {f.TOKEN_SERVER_TIME: server_time, f.TOKEN_SIGNATURE: "00", "more": 1}
    response = await becon.http.post(TOKEN_PATH, headers=becon.headers(), json=extra)
    _error(response, 400, f.INVALID_BODY)

    body = {f.TOKEN_SERVER_TIME: server_time, f.TOKEN_SIGNATURE: "00"}
    missing = await becon.http.post(
        TOKEN_PATH, headers=becon.headers(**{f.HEADER_SERVICE_KEY: None}), json=body
    )
    assert f.HEADER_SERVICE_KEY in _error(missing, 412, f.MISSING_HEADER)
    wrong = await becon.http.post(
        TOKEN_PATH, headers=becon.headers(**{f.HEADER_SERVICE_KEY: "wrong"}), json=body
    )
    _error(wrong, 401, f.UNAUTHORIZED_SERVICE)
    # The server-time lookup needs the service headers too.
    response = await becon.http.get(f.BASE_PATH + f.PATH_SERVER_TIME)
    assert f.HEADER_SERVICE_ID in _error(response, 412, f.MISSING_HEADER)


async def test_a_token_expires_after_24_hours(becon: BeconSim) -> None:
    token = await becon.token()
    real_now = becon.site.now
    becon.site.now = lambda: real_now() + 24 * 3600 - 5
    assert (await becon.api("GET", "/site", token)).status_code == 200
    becon.site.now = lambda: real_now() + 24 * 3600 + 1
    message = _error(await becon.api("GET", "/site", token), 401, f.TOKEN_EXPIRED)
    assert f.HEADER_TOKEN in message and "expired" in message
    # A new token, signed over the (moved) server time, works.
    assert (await becon.api("GET", "/site", await becon.token())).status_code == 200


async def test_sim_expire_tokens_ends_every_issued_token(becon: BeconSim) -> None:
    first, second = await becon.token(), await becon.token()
    response = await becon.http.post("/sim/becon/expire-tokens")
    assert response.json() == {"expired": 2}
    for token in (first, second):
        _error(await becon.api("GET", "/site", token), 401, f.TOKEN_EXPIRED)
    assert (await becon.http.post("/sim/becon/expire-tokens")).json() == {"expired": 0}
    assert (await becon.api("GET", "/site", await becon.token())).status_code == 200


# --- errors by status -------------------------------------------------------------------------


async def test_missing_headers_answer_412_naming_the_header(becon: BeconSim) -> None:
    token = await becon.token()
    for header in (f.HEADER_SERVICE_ID, f.HEADER_SERVICE_KEY, f.HEADER_TOKEN):
        response = await becon.http.get(
            f.BASE_PATH + "/site", headers=becon.headers(token, **{header: None})
        )
        assert header in _error(response, 412, f.MISSING_HEADER)
    # An empty header counts as missing.
    response = await becon.http.get(
        f.BASE_PATH + "/site", headers=becon.headers(token, **{f.HEADER_TOKEN: ""})
    )
    _error(response, 412, f.MISSING_HEADER)
    # Every header's presence is checked before any value: 412 before 401.
    response = await becon.http.get(
        f.BASE_PATH + "/site",
        headers=becon.headers(None, **{f.HEADER_SERVICE_KEY: "wrong"}),
    )
    _error(response, 412, f.MISSING_HEADER)


async def test_bad_credentials_answer_401(becon: BeconSim) -> None:
    token = await becon.token()
    cases = [
        ({f.HEADER_SERVICE_ID: "000000000000000000000000"}, f.UNAUTHORIZED_SERVICE),
        ({f.HEADER_SERVICE_KEY: "wrong-key"}, f.UNAUTHORIZED_SERVICE),
        ({f.HEADER_TOKEN: "not-a-token"}, f.INVALID_TOKEN),
    ]
    for override, code in cases:
        response = await becon.http.get(
            f.BASE_PATH + "/site", headers=becon.headers(token, **override)
        )
        _error(response, 401, code)


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "named"),
    [
        ("GET", "/site/BRANCH/gw", 403, f.SITE_FORBIDDEN, "BRANCH"),
        ("GET", "/site/BRANCH/gw/GW01/facilities", 403, f.SITE_FORBIDDEN, "BRANCH"),
        ("GET", "/site/BRANCH/gw/GW01/facilities/state", 403, f.SITE_FORBIDDEN, "BRANCH"),
        ("GET", "/site/BRANCH/gw/GW01/facility/IDU/X/state", 403, f.SITE_FORBIDDEN, "BRANCH"),
        ("PUT", "/site/BRANCH/gw/GW01/facility/IDU", 403, f.SITE_FORBIDDEN, "BRANCH"),
        ("GET", "/site/NOPE/gw", 404, f.SITE_NOT_FOUND, "NOPE"),
        ("GET", "/site/HQ/gw/GW99/facilities", 404, f.GATEWAY_NOT_FOUND, "GW99"),
        ("GET", "/site/HQ/gw/GW99/facilities/state", 404, f.GATEWAY_NOT_FOUND, "GW99"),
        (
            "GET",
            "/site/HQ/gw/GW01/facility/IDU/IDU-999/state",
            404,
            f.FACILITY_NOT_FOUND,
            "IDU-999",
        ),
        # The id exists, but not as that type.
        (
            "GET",
            "/site/HQ/gw/GW01/facility/IDU/VENT-001/state",
            404,
            f.FACILITY_NOT_FOUND,
            "VENT-001",
        ),
        ("GET", "/site/HQ/gw/GW01/facility/FOO/IDU-301/state", 400, f.INVALID_FACILITY_TYPE, "FOO"),
        ("GET", "/site/HQ/gw/GW01/facility/idu/IDU-301/state", 400, f.INVALID_FACILITY_TYPE, "idu"),
        (
            "GET",
            "/site/HQ/gw/GW01/facilities/state?facility_types=IDU,HEATER",
            400,
            f.INVALID_FACILITY_TYPE,
            "HEATER",
        ),
        (
            "GET",
            "/site/HQ/gw/GW01/facilities/state?facility_types=",
            400,
            f.INVALID_FACILITY_TYPE,
            "",
        ),
        ("PUT", "/site/HQ/gw/GW01/facility/HEATER", 400, f.INVALID_FACILITY_TYPE, "HEATER"),
        ("GET", "/site/HQ/gw/GW01/nothing", 404, f.NOT_FOUND, "/nothing"),
        ("DELETE", "/site", 405, f.METHOD_NOT_ALLOWED, "DELETE"),
        ("GET", "/site/HQ/gw/GW01/facility/IDU", 405, f.METHOD_NOT_ALLOWED, "GET"),
    ],
)
async def test_lookups_fail_with_the_documented_status(
    becon: BeconSim, method: str, path: str, status: int, code: str, named: str
) -> None:
    token = await becon.token()
    body = {f.CONTROL_FACILITY_IDS: ["IDU-301"], f.CONTROL_VALUES: {"power": "ON"}}
    response = await becon.api(method, path, token, json=body if method == "PUT" else None)
    assert named in _error(response, status, code)
    assert await becon.facilities() == CONTRACT


# --- control ----------------------------------------------------------------------------------


async def test_control_sets_every_listed_facility(becon: BeconSim) -> None:
    token = await becon.token()
    body = {
        f.CONTROL_FACILITY_IDS: ["IDU-301", "IDU-201"],
        f.CONTROL_VALUES: f.state_to_wire(
            {"power": "ON", "setTemperature": 21.5, "operationMode": "HEAT", "fanSpeed": "HIGH"}
        ),
    }
    response = await becon.api("PUT", "/site/HQ/gw/GW01/facility/IDU", token, json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        f.CONTROL_RESULTS: [
            {f.RESULT_FACILITY_ID: "IDU-301", f.RESULT_SUCCESS: True},
            {f.RESULT_FACILITY_ID: "IDU-201", f.RESULT_SUCCESS: True},
        ]
    }
    changed = {"power": "ON", "setTemperature": 21.5, "operationMode": "HEAT", "fanSpeed": "HIGH"}
    expected = [dict(row) for row in CONTRACT]
    expected[0] = {**CONTRACT[0], "state": {**CONTRACT[0]["state"], **changed}}
    expected[2] = {**CONTRACT[2], "state": {**CONTRACT[2]["state"], **changed}}
    assert await becon.facilities() == expected
    state = await becon.api("GET", "/site/HQ/gw/GW01/facility/IDU/IDU-301/state", token)
    assert state.json()[f.STATE]["setTemperature"] == 21.5

    # Whole numbers stay whole; the edges of the range are allowed.
    for value in (16, 30, 30.0):
        body = {f.CONTROL_FACILITY_IDS: ["IDU-101"], f.CONTROL_VALUES: {"setTemperature": value}}
        response = await becon.api("PUT", "/site/HQ/gw/GW01/facility/IDU", token, json=body)
        assert response.status_code == 200, response.text
    stored = (await becon.facilities())[1]["state"]["setTemperature"]
    assert stored == 30 and isinstance(stored, int)

    fan = {f.CONTROL_FACILITY_IDS: ["VENT-001"], f.CONTROL_VALUES: {"power": "OFF"}}
    response = await becon.api("PUT", "/site/HQ/gw/GW01/facility/VENT", token, json=fan)
    assert response.status_code == 200
    assert (await becon.facilities())[3]["state"] == {"power": "OFF", "fanSpeed": "LOW"}


def _control(ids: list[str], values: dict[str, Any]) -> dict[str, Any]:
    return {f.CONTROL_FACILITY_IDS: ids, f.CONTROL_VALUES: values}


@pytest.mark.parametrize(
    ("facility_type", "body", "code", "message"),
    [
        (
            "IDU",
            _control(["IDU-301"], {"setTemperature": 35}),
            f.INVALID_VALUE,
            "setTemperature 35 is outside 16..30",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"setTemperature": 15.5}),
            f.INVALID_VALUE,
            "setTemperature 15.5 is outside 16..30",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"setTemperature": 23.3}),
            f.INVALID_VALUE,
            "setTemperature 23.3 is not a multiple of 0.5",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"setTemperature": "23"}),
            f.INVALID_VALUE,
            "setTemperature must be a number",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"setTemperature": True}),
            f.INVALID_VALUE,
            "setTemperature must be a number",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"operationMode": "TURBO"}),
            f.INVALID_VALUE,
            "operationMode 'TURBO' is not one of COOL, HEAT, FAN, DRY, AUTO",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"fanSpeed": "low"}),
            f.INVALID_VALUE,
            "fanSpeed 'low' is not one of LOW, MID, HIGH, AUTO",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"power": True}),
            f.INVALID_VALUE,
            "power True is not one of ON, OFF",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"currentTemperature": 20}),
            f.READ_ONLY_KEY,
            "currentTemperature is read-only",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"swing": "ON"}),
            f.UNKNOWN_KEY,
            "'swing' is not a facility state key",
        ),
        (
            "VENT",
            _control(["VENT-001"], {"setTemperature": 20}),
            f.UNKNOWN_KEY,
            "VENT has no state key 'setTemperature'",
        ),
        (
            "AIRCARE",
            _control(["AIRCARE-001"], {"operationMode": "COOL"}),
            f.UNKNOWN_KEY,
            "AIRCARE has no state key 'operationMode'",
        ),
        (
            "IDU",
            _control(["IDU-301", "IDU-999"], {"power": "ON"}),
            f.UNKNOWN_FACILITY,
            "no IDU 'IDU-999' at gateway 'GW01'",
        ),
        ("IDU", _control(["VENT-001"], {"power": "ON"}), f.UNKNOWN_FACILITY, "no IDU 'VENT-001'"),
        (
            "CHILLER",
            _control(["IDU-301"], {"power": "ON"}),
            f.UNKNOWN_FACILITY,
            "no CHILLER 'IDU-301'",
        ),
        # All-or-nothing: the valid parts of a body with one bad value change nothing.
        (
            "IDU",
            _control(["IDU-301", "IDU-101"], {"power": "ON", "setTemperature": 35}),
            f.INVALID_VALUE,
            "setTemperature 35",
        ),
        (
            "IDU",
            _control(["IDU-301"], {"power": "ON", "fanSpeed": "TURBO"}),
            f.INVALID_VALUE,
            "fanSpeed 'TURBO'",
        ),
        ("IDU", _control([], {"power": "ON"}), f.INVALID_BODY, f.CONTROL_FACILITY_IDS),
        ("IDU", _control(["IDU-301", "IDU-301"], {"power": "ON"}), f.INVALID_BODY, "twice"),
        ("IDU", _control(["IDU-301", 7], {"power": "ON"}), f.INVALID_BODY, f.CONTROL_FACILITY_IDS),
        ("IDU", _control(["IDU-301"], {}), f.INVALID_BODY, f.CONTROL_VALUES),
        ("IDU", _control(["IDU-301"], ["power"]), f.INVALID_BODY, f.CONTROL_VALUES),
        ("IDU", {f.CONTROL_FACILITY_IDS: ["IDU-301"]}, f.INVALID_BODY, "the body must be"),
        (
            "IDU",
            {**_control(["IDU-301"], {"power": "ON"}), "x": 1},
            f.INVALID_BODY,
            "the body must be",
        ),
        ("IDU", [], f.INVALID_BODY, "JSON object"),
        ("IDU", None, f.INVALID_BODY, "JSON object"),
    ],
)
async def test_control_refuses_bad_input_and_changes_nothing(
    becon: BeconSim, facility_type: str, body: Any, code: str, message: str
) -> None:
    token = await becon.token()
    response = await becon.api(
        "PUT",
        f"/site/HQ/gw/GW01/facility/{facility_type}",
        token,
        **({} if body is None else {"json": body}),
    )
    assert message in _error(response, 400, code)
    assert await becon.facilities() == CONTRACT


async def test_control_body_that_is_not_json(becon: BeconSim) -> None:
    token = await becon.token()
    for raw in (b"{", b'{"facilityIds": ["IDU-301"], "control": {"setTemperature": NaN}}'):
        response = await becon.api("PUT", "/site/HQ/gw/GW01/facility/IDU", token, content=raw)
        _error(response, 400, f.INVALID_BODY)
    assert await becon.facilities() == CONTRACT


# --- /sim: reset, call log; config; logs ---------------------------------------------------------


async def test_sim_reset_restores_the_site_and_keeps_tokens(becon: BeconSim) -> None:
    token = await becon.token()
    body = _control(["IDU-301", "IDU-101"], {"power": "OFF", "setTemperature": 18})
    assert (await becon.api("PUT", "/site/HQ/gw/GW01/facility/IDU", token, json=body)).is_success
    assert await becon.facilities() != CONTRACT
    response = await becon.http.post("/sim/reset")
    assert response.status_code == 200 and response.json()["reset"] is True
    assert await becon.facilities() == CONTRACT
    assert (await becon.api("GET", "/site", token)).status_code == 200


async def test_becon_calls_are_in_the_call_log(becon: BeconSim) -> None:
    await becon.http.delete("/sim/calls")
    token = await becon.token()
    await becon.api("GET", "/site/NOPE/gw", token)
    calls = (await becon.http.get("/sim/calls")).json()
    assert calls == [
        {"method": "GET", "path": f.BASE_PATH + f.PATH_SERVER_TIME, "status": 200, "code": None},
        {"method": "POST", "path": TOKEN_PATH, "status": 200, "code": None},
        {
            "method": "GET",
            "path": f.BASE_PATH + "/site/NOPE/gw",
            "status": 404,
            "code": f.SITE_NOT_FOUND,
        },
    ]
    assert await becon.token_requests() == 1


def test_config_reads_sim_becon_variables(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    for name in ("SIM_SERVICE_ID", "SIM_SERVICE_KEY", "SIM_DEMO_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("SIM_BECON_SERVICE_ID", "SIM_BECON_SERVICE_KEY", "SIM_BECON_SYMMETRIC_KEY"):
        monkeypatch.delenv(name, raising=False)
    config = config_from_env()
    demo = demo_becon_credentials(config.service_key)
    assert (config.becon_service_id, config.becon_service_key, config.becon_symmetric_key) == (
        demo.service_id,
        demo.service_key,
        demo.symmetric_key,
    )
    assert demo.service_key not in repr(config) and demo.symmetric_key not in repr(config)
    assert demo.service_key not in repr(demo) and demo.symmetric_key not in repr(demo)

    monkeypatch.setenv("SIM_BECON_SERVICE_ID", "becon-id")
    monkeypatch.setenv("SIM_BECON_SERVICE_KEY", "becon-key-value")
    monkeypatch.setenv("SIM_BECON_SYMMETRIC_KEY", "becon-symmetric-value")
    config = config_from_env()
    assert config.becon_service_id == "becon-id"
    assert config.becon_service_key == "becon-key-value"
    assert config.becon_symmetric_key == "becon-symmetric-value"
    assert "becon-key-value" not in repr(config) and "becon-symmetric-value" not in repr(config)


async def test_the_simulator_never_logs_becon_secrets(becon: BeconSim, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    token = await becon.token()
    await becon.api("GET", "/site", token)
    await becon.api("GET", "/site", "not-a-token")
    await becon.request_token(await becon.server_time(), "00")
    await becon.http.post("/sim/becon/expire-tokens")
    await becon.api("GET", "/site", token)
    assert "BECON token issued" in caplog.text  # something was logged at all
    for secret in (token, becon.service_key, becon.symmetric_key):
        assert secret not in caplog.text
