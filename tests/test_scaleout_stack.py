"""The stack scaled out (devstack/scaleout.py): two Rasa servers and two action servers on
the shared PostgreSQL tracker store and Redis lock store, two connectors whose workers
share one Redis stream. A conversation whose turns alternate between the two Rasa
processes stays consistent (its pending question and last request travel with it), two
messages of one conversation arriving at both at once are both answered and recorded, and
a push with two delivery workers reaches its user exactly once, also while a Rasa server
and a delivery worker are killed and restarted under load."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.loadtest import LoadPlan, LoadRun
from devstack.processes import Ports
from devstack.scaleout import ScaleOutStack, ScalePorts
from devstack.training import ensure_model

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def scaled(
    tmp_path_factory: pytest.TempPathFactory, postgres_database_url: str, redis_server_url: str
) -> Iterator[ScaleOutStack]:
    ports = Ports.free()
    running = ScaleOutStack(
        model_path=ensure_model(),
        ports=ports,
        state_dir=Path(tmp_path_factory.mktemp("scaleout-state")),
        env={"CALLBACK_URL": f"http://127.0.0.1:{ports.sink}/callback"},
        scale=ScalePorts.free(),
        database_url=postgres_database_url,
        redis_url=redis_server_url,
        redis_prefix=f"scaleout{uuid.uuid4().hex[:8]}",
    )
    running.start(timeout_seconds=420)
    try:
        yield running
    finally:
        running.stop()


def rasa_ports(stack: ScaleOutStack) -> tuple[int, int]:
    return stack.ports.rasa, stack.scale.rasa


def say(port: int, sender: str, text: str, channel: str = "rest") -> str:
    answer = httpx.post(
        f"http://127.0.0.1:{port}/webhooks/{channel}/webhook",
        json={"sender": sender, "message": text},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return " ".join(m.get("text", "") for m in answer.json()) if channel == "rest" else ""


def devices(stack: ScaleOutStack) -> dict[str, dict]:
    listed = httpx.get(f"http://127.0.0.1:{stack.ports.simulator}/sim/devices", timeout=10)
    return {d["alias"]: d for d in listed.json()}


def test_turns_alternating_between_the_two_rasa_servers(scaled: ScaleOutStack) -> None:
    httpx.post(f"http://127.0.0.1:{scaled.ports.simulator}/sim/reset", timeout=10)
    a, b = rasa_ports(scaled)
    sender = f"scale-{uuid.uuid4().hex[:8]}"
    assert "Which one" in say(a, sender, "set the AC to 22")
    reply = say(b, sender, "the bedroom one")  # the question asked by A, answered at B
    assert "Bedroom AC" in reply, reply
    reply = say(a, sender, "and the living room too")  # B's request, repeated at A
    # The Living Room AC is off (the contract): the repeated request reached it and was
    # refused for that, which only A knowing B's last request can produce.
    assert reply.startswith("The Living Room AC is switched off"), reply
    state = devices(scaled)
    assert state["Bedroom AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 22
    assert state["Living Room AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 24


def test_two_messages_of_one_conversation_at_once(scaled: ScaleOutStack) -> None:
    a, b = rasa_ports(scaled)
    sender = f"scale-{uuid.uuid4().hex[:8]}"
    say(a, sender, "hello")
    sent = []
    # Several rounds: the race between two servers issuing the first ticket is narrow.
    for round_ in range(4):
        pair = (f"what devices do I have #{round_}", f"is the washer running? #{round_}")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(say, a, sender, pair[0])
            second = pool.submit(say, b, sender, pair[1])
            replies = [first.result(), second.result()]
        assert all(replies), replies
        sent.extend(pair)
    tracker = httpx.get(f"http://127.0.0.1:{b}/conversations/{sender}/tracker", timeout=10).json()
    said = [e["text"] for e in tracker["events"] if e.get("event") == "user"]
    # Every message is in the tracker once, each round's pair in one order or the other.
    assert said[0] == "hello"
    assert sorted(said[1:]) == sorted(sent)


def test_a_push_reaches_its_user_once_with_two_workers(scaled: ScaleOutStack) -> None:
    _, b = rasa_ports(scaled)
    sender = f"scale-push-{uuid.uuid4().hex[:8]}"
    say(b, sender, "notify me when the washer is done", channel="callback")
    washer = devices(scaled)["Washer"]["deviceId"]
    sim = f"http://127.0.0.1:{scaled.ports.simulator}"
    for _ in range(3):
        pushed = httpx.post(
            f"{sim}/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}, timeout=10
        )
        assert pushed.status_code == 200, pushed.text
    deadline = time.monotonic() + 30
    sink = f"http://127.0.0.1:{scaled.ports.sink}/messages"
    while time.monotonic() < deadline:
        texts = [m.get("text", "") for m in httpx.get(sink, params={"sender": sender}).json()]
        if sum("finished washing" in t for t in texts) >= 3:
            break
        time.sleep(0.2)
    time.sleep(2)  # a duplicate would arrive by now
    texts = [m.get("text", "") for m in httpx.get(sink, params={"sender": sender}).json()]
    # Three pushes (three LG message ids), each told exactly once.
    assert sum("finished washing" in t for t in texts) == 3, texts


def test_load_with_a_rasa_server_and_a_worker_killed_and_restarted(
    scaled: ScaleOutStack,
) -> None:
    """The load test's kill run at a small size (``python -m devstack.loadtest`` runs it at
    200 conversations): every subscriber gets every push exactly once although a delivery
    worker died, and the only failed turns are the ones cut off inside the killed server.
    Last in this module: it leaves the restarted processes behind."""
    httpx.post(f"http://127.0.0.1:{scaled.ports.simulator}/sim/reset", timeout=10)
    plan = LoadPlan(
        conversations=8,
        turns=6,
        subscriber_every=2,
        push_rate=2,
        kill=True,
        think_seconds=0.1,
        ramp_seconds=1,
    )
    report = asyncio.run(LoadRun(scaled, plan).run())
    assert report.pushes > 0 and report.subscribers == 4
    assert (report.lost, report.duplicated) == (0, 0), report.rows()
    assert report.delivered == report.subscribers * report.pushes
    assert set(report.errors) <= {"cut off by the kill"}, report.errors
    assert report.turns + sum(report.errors.values()) == 8 * 6 - 4  # subscribers' 1st turn
    assert report.killed == ["rasa-2", "connector-2"]
    # Both restarted processes serve again.
    assert "Done" in say(
        scaled.scale.rasa, f"after-{uuid.uuid4().hex[:6]}", "set the bedroom AC to 23"
    )
    assert (
        httpx.get(f"http://127.0.0.1:{scaled.scale.connector}/health", timeout=5).status_code == 200
    )
