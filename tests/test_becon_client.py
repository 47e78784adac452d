"""lgcloud.becon against the simulator over real HTTP: auth, token cache, errors, control.

Token requests are counted in the simulator's call log (``/sim/calls``). Transport
failures the simulator never produces on purpose (5xx, a body that is not JSON, a
timeout, a refused connection) come from a tiny stub server started in the test.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from assistant.settings import (
    BeconSettings,
    SettingsError,
    load_becon_settings,
    load_settings,
)
from devstack.credentials import demo_becon_credentials, load_or_create_demo_credentials
from lgcloud import becon_fields as f
from lgcloud.becon import BeconClient, Facility, FacilityState, Gateway, Site
from lgcloud.becon_errors import (
    BeconAuthError,
    BeconBadRequest,
    BeconError,
    BeconForbidden,
    BeconHeaderMissing,
    BeconNotFound,
    BeconServerError,
    BeconTimeout,
    BeconTransportError,
    error_for,
)
from lgcloud.becon_signer import hmac_sha256_signer
from lgcloud.call_budget import CallBudget
from lgcloud.circuit import LgCircuit
from tests.test_simulator_becon import CONTRACT, TOKEN_PATH, BeconSim
from tests.test_simulator_becon import becon as becon  # the fixture, found by name

DAY = 24 * 3600


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_client(becon: BeconSim, **kwargs: Any) -> BeconClient:
    credentials = {
        "service_id": becon.service_id,
        "service_key": becon.service_key,
        "symmetric_key": becon.symmetric_key,
    }
    credentials.update({k: kwargs.pop(k) for k in list(kwargs) if k in credentials})
    return BeconClient(becon.url, **credentials, **kwargs)


@pytest.fixture
async def client_for(becon: BeconSim) -> AsyncIterator[Callable[..., BeconClient]]:
    """Clients on the test's simulator, closed at the end."""
    made: list[BeconClient] = []

    def factory(**kwargs: Any) -> BeconClient:
        made.append(make_client(becon, **kwargs))
        return made[-1]

    try:
        yield factory
    finally:
        for client in made:
            await client.aclose()


async def calls(becon: BeconSim, path: str) -> list[tuple[str, int]]:
    logged = (await becon.http.get("/sim/calls")).json()
    return [(c["method"], c["status"]) for c in logged if c["path"] == f.BASE_PATH + path]


# --- authentication and the token cache ---------------------------------------------------------


async def test_auth_flow_then_sites_gateways_and_facilities(becon: BeconSim, client_for) -> None:
    client = client_for()
    server_time = await client.server_time()
    assert len(server_time) == len("20261123T211500Z") and server_time.endswith("Z")
    token = await client.token()
    assert token and await client.token() == token
    logged = [(c["method"], c["path"]) for c in (await becon.http.get("/sim/calls")).json()]
    assert logged == [
        ("GET", f.BASE_PATH + f.PATH_SERVER_TIME),
        ("GET", f.BASE_PATH + f.PATH_SERVER_TIME),
        ("POST", TOKEN_PATH),
    ]
    assert await client.sites() == [Site("HQ", "Headquarters")]
    assert await client.gateways("HQ") == [Gateway("GW01", "HQ")]
    assert await client.facilities("HQ", "GW01") == [
        Facility(row["facilityType"], row["facilityId"], row["name"]) for row in CONTRACT
    ]


async def test_the_token_is_cached_across_calls(becon: BeconSim, client_for) -> None:
    client = client_for()
    await client.sites()
    await client.gateways("HQ")
    await client.facilities("HQ", "GW01")
    await client.state("HQ", "GW01", "IDU", "IDU-301")
    await client.states("HQ", "GW01")
    await client.control("HQ", "GW01", "VENT", ["VENT-001"], {"fanSpeed": "MID"})
    assert await becon.token_requests() == 1


async def test_concurrent_calls_share_one_token_request(becon: BeconSim, client_for) -> None:
    client = client_for()
    results = await asyncio.gather(*(client.sites() for _ in range(10)))
    assert all(r == [Site("HQ", "Headquarters")] for r in results)
    assert await becon.token_requests() == 1
    await becon.http.post("/sim/becon/expire-tokens")
    await asyncio.gather(*(client.gateways("HQ") for _ in range(10)))
    assert await becon.token_requests() == 2


async def test_the_token_is_renewed_when_less_than_an_hour_remains(
    becon: BeconSim, client_for
) -> None:
    clock = FakeClock()
    client = client_for(clock=clock)
    first = await client.token()
    clock.now += DAY - 3600 - 1  # 1 h and 1 s left: still used
    await client.sites()
    assert await client.token() == first
    assert await becon.token_requests() == 1
    clock.now += 2  # under 1 h left: renewed before use
    await client.sites()
    second = await client.token()
    assert second != first
    assert await becon.token_requests() == 2
    # The simulator had not expired the old one: the renewal came from our clock alone.
    assert await calls(becon, "/site") == [("GET", 200), ("GET", 200)]
    clock.now += DAY - 3600 - 1
    assert await client.token() == second


async def test_an_early_expired_token_is_renewed_once(becon: BeconSim, client_for) -> None:
    client = client_for()
    await client.sites()
    assert (await becon.http.post("/sim/becon/expire-tokens")).json() == {"expired": 1}
    assert await client.sites() == [Site("HQ", "Headquarters")]
    assert await becon.token_requests() == 2
    assert await calls(becon, "/site") == [("GET", 200), ("GET", 401), ("GET", 200)]
    # A control refused for its token is sent again too (a 401 changed nothing).
    await becon.http.post("/sim/becon/expire-tokens")
    done = await client.control("HQ", "GW01", "IDU", ["IDU-301"], {"power": "ON"})
    assert done == {"IDU-301": True}
    assert await calls(becon, "/site/HQ/gw/GW01/facility/IDU") == [("PUT", 401), ("PUT", 200)]
    assert (await becon.facilities())[0]["state"]["power"] == "ON"


async def test_a_renewed_token_refused_again_is_a_clear_auth_error(
    becon: BeconSim, client_for
) -> None:
    becon.site.tokens.lifetime_seconds = 0  # every token is born expired
    client = client_for()
    with pytest.raises(BeconAuthError) as refused:
        await client.sites()
    assert refused.value.code == f.TOKEN_EXPIRED
    assert refused.value.http_status == 401
    assert "refused again with a freshly issued token" in str(refused.value)
    assert await becon.token_requests() == 2  # one renewal, no loop
    assert await calls(becon, "/site") == [("GET", 401), ("GET", 401)]


# --- errors -----------------------------------------------------------------------------------


async def test_typed_errors_from_the_simulator(becon: BeconSim, client_for) -> None:
    client = client_for()
    with pytest.raises(BeconBadRequest) as bad_type:
        await client.state("HQ", "GW01", "HEATER", "IDU-301")
    assert bad_type.value.code == f.INVALID_FACILITY_TYPE and "HEATER" in bad_type.value.message
    with pytest.raises(BeconBadRequest) as bad_filter:
        await client.states("HQ", "GW01", ["IDU", "HEATER"])
    assert bad_filter.value.code == f.INVALID_FACILITY_TYPE
    with pytest.raises(BeconBadRequest) as bad_value:
        await client.control(
            "HQ", "GW01", "IDU", ["IDU-301"], {"power": "ON", "setTemperature": 35}
        )
    assert bad_value.value.code == f.INVALID_VALUE
    assert bad_value.value.message == "setTemperature 35 is outside 16..30"
    assert await becon.facilities() == CONTRACT  # all-or-nothing
    with pytest.raises(BeconBadRequest) as read_only:
        await client.control("HQ", "GW01", "IDU", ["IDU-301"], {"currentTemperature": 20})
    assert read_only.value.code == f.READ_ONLY_KEY
    with pytest.raises(BeconForbidden) as forbidden:
        await client.gateways("BRANCH")
    assert forbidden.value.code == f.SITE_FORBIDDEN and forbidden.value.http_status == 403
    with pytest.raises(BeconNotFound) as no_site:
        await client.gateways("NOPE")
    assert no_site.value.code == f.SITE_NOT_FOUND
    with pytest.raises(BeconNotFound) as no_gateway:
        await client.facilities("HQ", "GW99")
    assert no_gateway.value.code == f.GATEWAY_NOT_FOUND
    with pytest.raises(BeconNotFound) as no_facility:
        await client.state("HQ", "GW01", "IDU", "IDU-999")
    assert no_facility.value.code == f.FACILITY_NOT_FOUND
    # Identifiers are one path segment each, whatever they hold.
    with pytest.raises(BeconNotFound):
        await client.gateways("HQ/gw/GW01")
    with pytest.raises(ValueError):
        await client.gateways("..")
    with pytest.raises(ValueError):
        await client.control("HQ", "GW01", "IDU", [], {"power": "ON"})


@pytest.mark.parametrize(
    ("credentials", "exc_type", "code"),
    [
        ({"service_key": "wrong-key"}, BeconAuthError, f.UNAUTHORIZED_SERVICE),
        ({"service_id": "000000000000000000000000"}, BeconAuthError, f.UNAUTHORIZED_SERVICE),
        ({"symmetric_key": "wrong-symmetric-key"}, BeconAuthError, f.INVALID_SIGNATURE),
        ({"service_id": ""}, BeconHeaderMissing, f.MISSING_HEADER),
    ],
)
async def test_credential_errors_are_typed(
    becon: BeconSim, client_for, credentials: dict[str, str], exc_type: type, code: str
) -> None:
    client = client_for(**credentials)
    with pytest.raises(exc_type) as raised:
        await client.sites()
    assert raised.value.code == code
    assert await calls(becon, "/site") == []  # never got past authentication


class StubServer:
    """Answers BECON's server-time path as told: status, body, delay."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b"{}"
        self.content_type = "application/json"
        self.delay = 0.0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if self.delay:
            await asyncio.sleep(self.delay)
        return web.Response(status=self.status, body=self.body, content_type=self.content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(f.BASE_PATH + f.PATH_SERVER_TIME, self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"


@pytest.fixture
async def stub() -> AsyncIterator[StubServer]:
    server = StubServer()
    await server.start()
    try:
        yield server
    finally:
        assert server.runner is not None
        await server.runner.cleanup()


@pytest.mark.parametrize(
    ("status", "body", "content_type", "exc_type", "code"),
    [
        (
            500,
            b'{"error": {"code": "INTERNAL_ERROR", "message": "x"}}',
            "application/json",
            BeconServerError,
            "INTERNAL_ERROR",
        ),
        (503, b"<html>down</html>", "text/html", BeconServerError, "HTTP_503"),
        (
            412,
            b'{"error": {"code": "MISSING_HEADER", "message": "x"}}',
            "application/json",
            BeconHeaderMissing,
            "MISSING_HEADER",
        ),
        (418, b"", "text/plain", BeconError, "HTTP_418"),
        (200, b"not json", "text/plain", BeconTransportError, "BAD_RESPONSE"),
        (200, b'{"other": 1}', "application/json", BeconTransportError, "BAD_RESPONSE"),
    ],
)
async def test_server_and_transport_failures_are_typed(
    stub: StubServer, status: int, body: bytes, content_type: str, exc_type: type, code: str
) -> None:
    stub.status, stub.body, stub.content_type = status, body, content_type
    client = BeconClient(stub.url, "id", "key", "symmetric")
    try:
        with pytest.raises(exc_type) as raised:
            await client.server_time()
        assert type(raised.value) is exc_type
        assert raised.value.code == code
    finally:
        await client.aclose()


async def test_timeouts_and_refused_connections_are_typed(stub: StubServer) -> None:
    stub.delay = 1.0
    client = BeconClient(stub.url, "id", "key", "symmetric", timeout_seconds=0.2)
    try:
        with pytest.raises(BeconTimeout):
            await client.server_time()
    finally:
        await client.aclose()
    assert stub.runner is not None
    await stub.runner.cleanup()  # nothing listens there any more
    closed = BeconClient(stub.url, "id", "key", "symmetric", timeout_seconds=1)
    try:
        with pytest.raises(BeconTransportError) as refused:
            await closed.server_time()
        assert not isinstance(refused.value, BeconTimeout)
        assert refused.value.code == "CONNECTION"
    finally:
        await closed.aclose()


def test_error_families_by_status() -> None:
    assert isinstance(error_for(400, "X", "m"), BeconBadRequest)
    assert isinstance(error_for(401, "X", "m"), BeconAuthError)
    assert isinstance(error_for(403, "X", "m"), BeconForbidden)
    assert isinstance(error_for(404, "X", "m"), BeconNotFound)
    assert isinstance(error_for(412, "X", "m"), BeconHeaderMissing)
    assert isinstance(error_for(502, "X", "m"), BeconServerError)
    assert type(error_for(409, "X", "m")) is BeconError


# --- control and state ---------------------------------------------------------------------------


async def test_control_then_read_the_state_back(becon: BeconSim, client_for) -> None:
    client = client_for()
    before = await client.state("HQ", "GW01", "IDU", "IDU-301")
    assert before == FacilityState("IDU", "IDU-301", CONTRACT[0]["state"])
    changes = {"power": "ON", "setTemperature": 22.5, "fanSpeed": "HIGH"}
    done = await client.control("HQ", "GW01", "IDU", ("IDU-301", "IDU-201"), changes)
    assert done == {"IDU-301": True, "IDU-201": True}
    after = await client.state("HQ", "GW01", "IDU", "IDU-301")
    assert after.state == {**CONTRACT[0]["state"], **changes}
    idus = await client.states("HQ", "GW01", types=["IDU"])
    assert [s.facility_id for s in idus] == ["IDU-301", "IDU-101", "IDU-201"]
    assert idus[2].state == {**CONTRACT[2]["state"], **changes}
    assert idus[1].state == CONTRACT[1]["state"]
    fans = await client.states("HQ", "GW01", types=["VENT", "AIRCARE"])
    assert fans == [
        FacilityState("VENT", "VENT-001", {"power": "ON", "fanSpeed": "LOW"}),
        FacilityState("AIRCARE", "AIRCARE-001", {"power": "ON", "fanSpeed": "AUTO"}),
    ]
    assert len(await client.states("HQ", "GW01")) == 5
    assert await client.states("HQ", "GW01", types=[]) == []
    sim = await becon.facilities()
    assert sim[0]["state"] == after.state


async def test_a_custom_signer_is_used(becon: BeconSim, client_for) -> None:
    signed: list[tuple[str, bytes]] = []

    def recording_signer(server_time: str, key: bytes) -> str:
        signed.append((server_time, key))
        return hmac_sha256_signer(server_time, key)

    client = client_for(signer=recording_signer)
    await client.sites()
    assert len(signed) == 1
    server_time, key = signed[0]
    assert key == becon.symmetric_key.encode()
    assert len(server_time) == len("20261123T211500Z")

    wrong = client_for(signer=lambda server_time, key: "0" * 64)
    with pytest.raises(BeconAuthError) as refused:
        await wrong.sites()
    assert refused.value.code == f.INVALID_SIGNATURE


async def test_secrets_stay_out_of_logs_reprs_and_errors(
    becon: BeconSim, client_for, caplog, tmp_path
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_for()
    await client.sites()
    first = await client.token()
    await becon.http.post("/sim/becon/expire-tokens")
    await client.sites()  # 401, renewal, retry: all logged
    second = await client.token()
    errors: list[BeconError] = []
    for call in (
        client.gateways("BRANCH"),
        client.control("HQ", "GW01", "IDU", ["IDU-301"], {"setTemperature": 99}),
        client_for(symmetric_key="wrong").sites(),
        client_for(service_key="wrong").sites(),
    ):
        try:
            await call
        except BeconError as exc:
            errors.append(exc)
    assert len(errors) == 4
    settings = load_becon_settings(
        {
            "STATE_DIR": str(tmp_path),
            "THINQ_SERVICE_ID": "x",
            "BECON_BASE_URL": becon.url,
            "BECON_SERVICE_ID": becon.service_id,
            "BECON_SERVICE_KEY": becon.service_key,
            "BECON_SYMMETRIC_KEY": becon.symmetric_key,
        }
    )
    assert "BECON token issued" in caplog.text and "renewing the token once" in caplog.text
    shown = [caplog.text, repr(client), repr(settings), *(str(e) for e in errors)]
    shown += [repr(e) for e in errors]
    for secret in (becon.service_key, becon.symmetric_key, first, second):
        for text in shown:
            assert secret not in text
    assert becon.service_id in repr(client)


# --- settings -------------------------------------------------------------------------------------


async def test_demo_settings_reach_the_simulator(becon: BeconSim, tmp_path) -> None:
    settings = load_settings(
        {
            "STATE_DIR": str(tmp_path),
            "DEMO_MODE": "1",
            "THINQ_SERVICE_ID": becon.config.service_id,
            "THINQ_SERVICE_KEY": becon.config.service_key,
            "SIMULATOR_URL": becon.url,
            "BECON_TIMEOUT_SECONDS": "3",
        }
    )
    assert settings.becon is not None
    assert settings.becon.base_url == becon.url
    assert settings.becon.timeout_seconds == 3
    # The same derived credentials as the simulator's.
    assert settings.becon.service_id == becon.service_id
    assert settings.becon.service_key == becon.service_key
    assert settings.becon.symmetric_key == becon.symmetric_key
    client = BeconClient(
        settings.becon.base_url,
        settings.becon.service_id,
        settings.becon.service_key,
        settings.becon.symmetric_key,
        timeout_seconds=settings.becon.timeout_seconds,
    )
    try:
        assert await client.sites() == [Site("HQ", "Headquarters")]
    finally:
        await client.aclose()


def test_demo_settings_with_nothing_set(tmp_path) -> None:
    settings = load_settings({"STATE_DIR": str(tmp_path)})
    assert settings.becon is not None
    demo = demo_becon_credentials(load_or_create_demo_credentials(tmp_path).service_key)
    assert settings.becon == BeconSettings(
        base_url="http://127.0.0.1:8700",
        service_id=demo.service_id,
        service_key=demo.service_key,
        symmetric_key=demo.symmetric_key,
        timeout_seconds=5.0,
    )
    assert demo.service_key not in repr(settings) and demo.symmetric_key not in repr(settings)


def test_real_mode_settings(tmp_path) -> None:
    real = {"STATE_DIR": str(tmp_path), "THINQ_SERVICE_ID": "id", "THINQ_SERVICE_KEY": "key"}
    assert load_settings(real).becon is None  # BECON not configured: off
    full = {
        **real,
        "BECON_BASE_URL": "https://becon.example/",
        "BECON_SERVICE_ID": "becon-id",
        "BECON_SERVICE_KEY": "becon-key-value",
        "BECON_SYMMETRIC_KEY": "becon-symmetric-value",
    }
    settings = load_settings(full).becon
    assert settings == BeconSettings(
        "https://becon.example", "becon-id", "becon-key-value", "becon-symmetric-value", 5.0
    )
    assert "becon-key-value" not in repr(settings)
    assert "becon-symmetric-value" not in repr(settings)
    half = {k: v for k, v in full.items() if k != "BECON_SYMMETRIC_KEY"}
    with pytest.raises(SettingsError, match="BECON_SYMMETRIC_KEY"):
        load_settings(half)
    with pytest.raises(SettingsError, match="BECON_BASE_URL"):
        load_settings({**full, "BECON_BASE_URL": "becon.example"})
    with pytest.raises(SettingsError, match="BECON_TIMEOUT_SECONDS"):
        load_settings({**full, "BECON_TIMEOUT_SECONDS": "0"})


async def test_every_call_is_counted_per_endpoint_and_outcome(becon: BeconSim, client_for) -> None:
    budget = CallBudget()
    client = client_for(budget=budget)
    await client.sites()
    with pytest.raises(BeconForbidden):
        await client.gateways("BRANCH")
    counted = (await budget.snapshot()).calls
    service = becon.service_id
    base = "/tms/v1.0/connect"
    assert counted == {
        (service, "service", f"GET {base}/auth/servertime", "ok"): 1,
        (service, "service", f"POST {base}/auth/token", "ok"): 1,
        (service, "service", f"GET {base}/site", "ok"): 1,
        (service, "service", f"GET {base}/site/{{id}}/gw", f.SITE_FORBIDDEN): 1,
    }


async def test_a_failing_becon_opens_its_circuit(becon: BeconSim, client_for) -> None:
    client = client_for(circuit=LgCircuit(threshold=2, open_seconds=30))
    await client.sites()  # a token first
    rule = {"path": f.BASE_PATH + "/site*", "httpStatus": 503}
    assert (await becon.http.put("/sim/faults", json={"rules": [rule]})).status_code == 200
    try:
        for _ in range(2):
            with pytest.raises(BeconServerError):
                await client.sites()
        with pytest.raises(BeconTransportError) as refused:
            await client.sites()
        assert refused.value.code == "CIRCUIT_OPEN"
        assert [s for _, s in await calls(becon, f.PATH_SITES)] == [200, 503, 503]
    finally:
        await becon.http.delete("/sim/faults")
