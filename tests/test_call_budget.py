"""lgcloud.call_budget: counting LG calls, backing off after 1306, Redis, and /metrics.

Against the real simulator over HTTP; its ``/sim/rate-limit`` knob makes it answer
LG's 1306 EXCEEDED_API_CALLS, and ``/sim/calls`` proves what reached it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from assistant.storage import Storage, TokenCipher
from connector.service import ConnectorService, Roles
from lgcloud.call_budget import (
    CallBudget,
    Snapshot,
    endpoint_template,
    user_label,
)
from lgcloud.errors import DeviceNotFound, RateLimited, ThinQTransportError
from lgcloud.placement import PlacementClient
from lgcloud.thinq import ThinQAuth, ThinQClient
from tests.connector_support import ChannelSink, connector_env, connector_settings

DEMO = user_label("demo")


class Clock:
    """Wall-clock seconds that tests move forward by hand."""

    def __init__(self) -> None:
        self.now = float(int(time.time() // 60) * 60 + 1)  # just after a minute starts

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


async def _no_sleep(_: float) -> None:
    return None


def demo(simulator) -> ThinQAuth:
    return ThinQAuth(simulator.demo_token, "US", user="demo")


async def sim_calls(simulator) -> list[dict]:
    return (await simulator.sim("GET", "/sim/calls")).json()


async def set_limit(simulator, calls_per_minute: int | None) -> None:
    answer = await simulator.sim(
        "PUT", "/sim/rate-limit", json={"maxCallsPerMinute": calls_per_minute}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["maxCallsPerMinute"] == calls_per_minute


async def advance_sim_minute(simulator) -> None:
    answer = await simulator.sim("POST", "/sim/clock/advance", json={"seconds": 60})
    assert answer.status_code == 200


def remaining(snapshot: Snapshot, user: str, service: str) -> float:
    return snapshot.backoffs[(service, user)] - snapshot.now


# --- labels --------------------------------------------------------------------------------------


def test_endpoint_templates_hide_ids():
    device = "7f3a" * 16
    assert endpoint_template("get", "/devices") == "GET /devices"
    assert endpoint_template("GET", f"/devices/{device}") == "GET /devices/{id}"
    assert endpoint_template("GET", f"/devices/profile/{device}") == "GET /devices/profile/{id}"
    assert endpoint_template("POST", "/push/a%2Fb") == "POST /push/{id}"
    assert endpoint_template("POST", "/v2/devices/status-async") == "POST /v2/devices/status-async"
    assert endpoint_template("DELETE", f"/event/{device}") == "DELETE /event/{id}"


def test_user_labels_are_short_digests():
    token = "super-secret-token-" + "x" * 40
    assert user_label("demo") == user_label("demo") != user_label("neighbour")
    assert re.fullmatch(r"u-[0-9a-f]{12}", user_label("demo"))
    by_token = user_label(None, token)
    assert re.fullmatch(r"t-[0-9a-f]{12}", by_token)
    assert "secret" not in by_token and "demo" not in user_label("demo")


# --- counting ------------------------------------------------------------------------------------


async def test_counts_by_service_user_endpoint_and_code(simulator):
    budget = CallBudget(clock=Clock())
    client = simulator.client(budget=budget)
    placement = PlacementClient(
        simulator.url, simulator.service_id, simulator.service_key, budget=budget
    )
    neighbour = ThinQAuth(simulator.neighbour_token, "US")  # no user number: token digest
    try:
        fridge = (await simulator.devices())["Fridge"]["deviceId"]
        await client.list_devices(demo(simulator))
        await client.list_devices(demo(simulator))
        await client.get_status(demo(simulator), fridge)
        await client.control(demo(simulator), fridge, {"refrigeration": {"expressMode": True}})
        with pytest.raises(DeviceNotFound):
            await client.get_status(demo(simulator), "no-such-device")
        await client.list_devices(neighbour)
        await placement.statuses(demo(simulator))
        snapshot = await budget.snapshot()
    finally:
        await client.aclose()
        await placement.aclose()
    service = simulator.service_id
    by_token = user_label(None, simulator.neighbour_token)
    assert snapshot.calls == {
        (service, DEMO, "GET /devices", "ok"): 2,
        (service, DEMO, "GET /devices/{id}", "ok"): 1,
        (service, DEMO, "POST /devices/{id}", "ok"): 1,
        (service, DEMO, "GET /devices/{id}", "1205"): 1,
        (service, DEMO, "POST /v2/devices/status-async", "ok"): 1,
        (service, by_token, "GET /devices", "ok"): 1,
    }
    assert len(await sim_calls(simulator)) == 7  # one count per request LG saw
    assert snapshot.last_minute[(service, DEMO)] == 6
    assert snapshot.backoffs == {} and snapshot.held_back == {}


async def test_retries_are_counted_as_calls():
    answers = [500, 500, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        status = answers.pop(0)
        if status == 200:
            return httpx.Response(200, json={"messageId": "m", "response": []})
        return httpx.Response(status, text="down")

    budget = CallBudget()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ThinQClient("http://lg", "sid", "key", http=http, sleep=_no_sleep, budget=budget)
    try:
        assert await client.list_devices(ThinQAuth("tok", "US", user="u1")) == []
        snapshot = await budget.snapshot()
    finally:
        await http.aclose()
    u1 = user_label("u1")
    assert snapshot.calls == {
        ("sid", u1, "GET /devices", "http_500"): 2,
        ("sid", u1, "GET /devices", "ok"): 1,
    }


async def test_http_429_backs_off_like_1306():
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(429, text="slow down")

    budget = CallBudget()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = ThinQClient("http://lg", "sid", "key", http=http, sleep=_no_sleep, budget=budget)
    auth = ThinQAuth("tok", "US", user="u1")
    try:
        with pytest.raises(RateLimited):
            await client.list_devices(auth)
        with pytest.raises(RateLimited):
            await client.get_status(auth, "dev")
        snapshot = await budget.snapshot()
    finally:
        await http.aclose()
    assert seen == ["/devices"]  # the second call was held back
    u1 = user_label("u1")
    assert snapshot.calls == {("sid", u1, "GET /devices", "http_429"): 1}
    assert snapshot.held_back == {("sid", u1): 1}
    assert remaining(snapshot, u1, "sid") == pytest.approx(30, abs=1)


async def test_transport_failures_are_counted_without_a_backoff():
    budget = CallBudget()
    client = ThinQClient(
        "http://127.0.0.1:9", "sid", "key", read_retries=1, sleep=_no_sleep, budget=budget
    )
    try:
        with pytest.raises(ThinQTransportError):
            await client.list_devices(ThinQAuth("tok", "US", user="u1"))
        snapshot = await budget.snapshot()
    finally:
        await client.aclose()
    assert snapshot.calls == {("sid", user_label("u1"), "GET /devices", "transport"): 2}
    assert snapshot.backoffs == {}


# --- backoff against the simulator's 1306 --------------------------------------------------------


async def test_1306_backs_the_user_off_without_calling_lg(simulator):
    clock = Clock()
    budget = CallBudget(clock=clock)
    client = simulator.client(budget=budget)
    service = simulator.service_id
    await set_limit(simulator, 2)
    try:
        await client.list_devices(demo(simulator))
        await client.list_devices(demo(simulator))
        with pytest.raises(RateLimited) as limited:
            await client.list_devices(demo(simulator))
        assert limited.value.code == "1306"
        calls = await sim_calls(simulator)
        assert [c["code"] for c in calls] == [None, None, "1306"]

        # Backed off: RateLimited at once, and LG hears nothing.
        clock.advance(29)
        with pytest.raises(RateLimited, match="backed off"):
            await client.list_devices(demo(simulator))
        fridge = (await simulator.devices())["Fridge"]["deviceId"]
        with pytest.raises(RateLimited):
            await client.get_status(demo(simulator), fridge)
        assert len(await sim_calls(simulator)) == 3
        snapshot = await budget.snapshot()
        assert snapshot.held_back == {(service, DEMO): 2}
        assert remaining(snapshot, DEMO, service) == pytest.approx(1)

        # Another user is not held back (the neighbour is under the limit on their own).
        await client.list_devices(ThinQAuth(simulator.neighbour_token, "US", user="neighbour"))

        # After 30 s the call goes out; LG still refuses (same simulated minute): 60 s now.
        clock.advance(2)
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
        assert len(await sim_calls(simulator)) == 5
        assert remaining(await budget.snapshot(), DEMO, service) == pytest.approx(60)

        # Once LG takes calls again, a success resets the backoff: the next 1306 means 30 s.
        clock.advance(61)
        await advance_sim_minute(simulator)
        await client.list_devices(demo(simulator))
        assert (await budget.snapshot()).backoffs == {}
        await client.list_devices(demo(simulator))
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
        assert remaining(await budget.snapshot(), DEMO, service) == pytest.approx(30)
        snapshot = await budget.snapshot()
        assert snapshot.calls[(service, DEMO, "GET /devices", "1306")] == 3
        assert snapshot.calls[(service, DEMO, "GET /devices", "ok")] == 4
    finally:
        await client.aclose()


async def test_backoff_doubles_up_to_fifteen_minutes(simulator):
    clock = Clock()
    budget = CallBudget(clock=clock)
    client = simulator.client(budget=budget)
    await set_limit(simulator, 0)
    seen = []
    try:
        for _ in range(7):
            with pytest.raises(RateLimited):
                await client.list_devices(demo(simulator))
            wait = remaining(await budget.snapshot(), DEMO, simulator.service_id)
            seen.append(round(wait))
            clock.advance(wait + 0.5)
    finally:
        await client.aclose()
    assert seen == [30, 60, 120, 240, 480, 900, 900]


async def test_placement_calls_are_limited_too(simulator):
    clock = Clock()
    budget = CallBudget(clock=clock)
    placement = PlacementClient(
        simulator.url, simulator.service_id, simulator.service_key, budget=budget
    )
    client = simulator.client(budget=budget)
    await set_limit(simulator, 1)
    try:
        await placement.statuses(demo(simulator))
        with pytest.raises(RateLimited):
            await placement.statuses(demo(simulator))
        with pytest.raises(RateLimited):  # v1 and v2 share the user's backoff
            await client.list_devices(demo(simulator))
        assert [c["code"] for c in await sim_calls(simulator)] == [None, "1306"]
    finally:
        await placement.aclose()
        await client.aclose()


async def test_the_knob_answers_and_validates(simulator):
    assert (await simulator.sim("GET", "/sim/rate-limit")).json()["maxCallsPerMinute"] is None
    bad = await simulator.sim("PUT", "/sim/rate-limit", json={"maxCallsPerMinute": -1})
    assert bad.status_code == 400
    bad = await simulator.sim("PUT", "/sim/rate-limit", json={"limit": 3})
    assert bad.status_code == 400
    await set_limit(simulator, 1)
    client = simulator.client()
    try:
        await client.list_devices(demo(simulator))
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
        state = (await simulator.sim("GET", "/sim/rate-limit")).json()
        assert state["calls"] == {"demo": 2} and state["refused"] == 1
        cleared = await simulator.sim("DELETE", "/sim/rate-limit")
        assert cleared.json()["maxCallsPerMinute"] is None
        await client.list_devices(demo(simulator))
    finally:
        await client.aclose()


# --- Redis: shared between processes; down: still works -----------------------------------------


async def test_redis_shares_counts_and_backoffs(simulator, redis_url, redis_key_prefix):
    clock = Clock()
    first = CallBudget(redis_url, redis_key_prefix, clock=clock)
    second = CallBudget(redis_url, redis_key_prefix, clock=clock)  # "another process"
    one = simulator.client(budget=first)
    two = simulator.client(budget=second)
    service = simulator.service_id
    try:
        await one.list_devices(demo(simulator))
        await two.list_devices(demo(simulator))
        await two.list_devices(demo(simulator))
        for budget in (first, second):
            snapshot = await budget.snapshot()
            assert snapshot.redis_up is True
            assert snapshot.calls == {(service, DEMO, "GET /devices", "ok"): 3}
            assert snapshot.last_minute == {(service, DEMO): 3}

        await set_limit(simulator, 0)
        with pytest.raises(RateLimited):
            await one.list_devices(demo(simulator))
        before = len(await sim_calls(simulator))
        with pytest.raises(RateLimited, match="backed off"):
            await two.list_devices(demo(simulator))  # the other process holds back too
        assert len(await sim_calls(simulator)) == before
        snapshot = await first.snapshot()
        assert snapshot.held_back == {(service, DEMO): 1}
        assert remaining(snapshot, DEMO, service) == pytest.approx(30)

        # After the backoff the second process succeeds, which resets the shared level.
        clock.advance(31)
        await set_limit(simulator, None)
        await two.list_devices(demo(simulator))
        await set_limit(simulator, 0)
        with pytest.raises(RateLimited):
            await one.list_devices(demo(simulator))
        assert remaining(await second.snapshot(), DEMO, service) == pytest.approx(30)
    finally:
        await one.aclose()
        await two.aclose()
        await first.aclose()
        await second.aclose()


async def test_redis_down_counts_in_process_and_logs_once(simulator, caplog):
    caplog.set_level(logging.WARNING, logger="lgcloud.call_budget")
    clock = Clock()
    budget = CallBudget("redis://127.0.0.1:9/0", "down", clock=clock, redis_retry_seconds=0)
    client = simulator.client(budget=budget)
    try:
        for _ in range(3):
            await client.list_devices(demo(simulator))
        await set_limit(simulator, 0)
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
        with pytest.raises(RateLimited, match="backed off"):
            await client.list_devices(demo(simulator))
        assert len(await sim_calls(simulator)) == 4
        snapshot = await budget.snapshot()
    finally:
        await client.aclose()
        await budget.aclose()
    service = simulator.service_id
    assert snapshot.redis_up is False
    assert snapshot.calls == {
        (service, DEMO, "GET /devices", "ok"): 3,
        (service, DEMO, "GET /devices", "1306"): 1,
    }
    assert (service, DEMO) in snapshot.backoffs
    redis_warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(redis_warnings) == 1


# --- /metrics on the connector -------------------------------------------------------------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text 0.0.4 → {name: [(labels, value)]}; checks HELP/TYPE precede samples."""
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge")
            typed.add(name)
            families.setdefault(name, [])
            continue
        if line.startswith("#"):
            assert line.startswith("# HELP ")
            continue
        match = SAMPLE.match(line)
        assert match, line
        name, labels, value = match.groups()
        assert name in typed, f"{name} sampled before its TYPE line"
        families[name].append((dict(LABEL.findall(labels or "")), float(value)))
    return families


@pytest.fixture
async def connector(
    tmp_path: Path, sink: ChannelSink, request: pytest.FixtureRequest
) -> AsyncIterator[ConnectorService]:
    """A connector on SQLite; with Redis when the test asks for ``redis_url``."""
    extra = {}
    if "redis_url" in request.fixturenames:
        extra = {
            "REDIS_URL": request.getfixturevalue("redis_url"),
            "CONNECTOR_REDIS_PREFIX": request.getfixturevalue("redis_key_prefix"),
        }
    key = TokenCipher.generate_key()
    url = f"sqlite+aiosqlite:///{tmp_path / 'db' / 'assistant.db'}"
    (tmp_path / "db").mkdir()
    storage = await Storage.open_url(url, TokenCipher([key]))
    env = connector_env(tmp_path, url, key, sink.url, **extra)
    service = ConnectorService(connector_settings(env), Roles(), port=0, storage=storage)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
        await storage.close()


async def get_metrics(service: ConnectorService) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(f"http://127.0.0.1:{service.bound_port}/metrics")


async def test_metrics_show_every_processs_calls_through_redis(
    simulator, redis_url, redis_key_prefix, connector, caplog
):
    caplog.set_level(logging.DEBUG)
    # The action server's budget: another process, sharing the connector's Redis.
    budget = CallBudget(redis_url, redis_key_prefix)
    client = simulator.client(budget=budget)
    service = simulator.service_id
    try:
        fridge = (await simulator.devices())["Fridge"]["deviceId"]
        await client.list_devices(demo(simulator))
        await client.get_status(demo(simulator), fridge)
        await client.get_status(demo(simulator), fridge)
        await client.list_devices(ThinQAuth(simulator.neighbour_token, "US"))
        await set_limit(simulator, 0)
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
        with pytest.raises(RateLimited):
            await client.list_devices(demo(simulator))
    finally:
        await client.aclose()
        await budget.aclose()

    answer = await get_metrics(connector)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    metrics = parse_metrics(answer.text)
    calls = {
        (s["service"], s["user"], s["endpoint"], s["code"]): v for s, v in metrics["lg_calls_total"]
    }
    neighbour = user_label(None, simulator.neighbour_token)
    assert calls == {
        (service, DEMO, "GET /devices", "ok"): 1,
        (service, DEMO, "GET /devices", "1306"): 1,
        (service, DEMO, "GET /devices/{id}", "ok"): 2,
        (service, neighbour, "GET /devices", "ok"): 1,
    }
    assert metrics["lg_backoff_active"] == [({"service": service, "user": DEMO}, 1.0)]
    assert metrics["lg_calls_held_back_total"] == [({"service": service, "user": DEMO}, 1.0)]
    [(_, left)] = metrics["lg_backoff_remaining_seconds"]
    assert 25 < left <= 30
    assert metrics["lg_call_budget_redis_up"] == [({}, 1.0)]
    outbox = {s["state"]: v for s, v in metrics["connector_outbox_messages"]}
    assert outbox and set(outbox.values()) == {0.0}
    assert metrics["connector_database_up"] == [({}, 1.0)]

    # Neither the metrics nor any log line carries a token.
    for secret in (simulator.demo_token, simulator.neighbour_token):
        assert secret not in answer.text
        assert secret not in caplog.text
    assert "Bearer" not in caplog.text


async def test_metrics_without_redis_are_the_connectors_own(simulator, connector):
    assert connector.budget is not None
    client = simulator.client(budget=connector.budget)
    try:
        await client.list_devices(demo(simulator))
    finally:
        await client.aclose()
    metrics = parse_metrics((await get_metrics(connector)).text)
    assert metrics["lg_calls_total"] == [
        (
            {
                "service": simulator.service_id,
                "user": DEMO,
                "endpoint": "GET /devices",
                "code": "ok",
            },
            1.0,
        )
    ]
    assert metrics["lg_backoff_active"] == []
    assert "lg_call_budget_redis_up" not in metrics
    # Nothing waiting: no lag.
    assert metrics["connector_delivery_lag_seconds"] == [({}, 0.0)]
    assert metrics["connector_callback_lag_seconds"] == [({}, 0.0)]
