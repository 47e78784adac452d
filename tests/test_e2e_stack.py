"""The whole demo stack as a user meets it: real processes, real ports, the trained model.

Starts simulator, callback sink, action server and Rasa on free ports (so it can run
beside a `make demo`), talks to it over HTTP, checks effects through /sim, stops it all.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import Ports, Stack
from devstack.training import ensure_model

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ports = Ports.free()
    running = Stack(
        model_path=ensure_model(),
        ports=ports,
        state_dir=Path(tmp_path_factory.mktemp("stack-state")),
        # This stack's own sink, whatever CALLBACK_URL the calling shell has.
        env={"CALLBACK_URL": f"http://127.0.0.1:{ports.sink}/callback"},
    )
    running.start(timeout_seconds=300)
    try:
        yield running
    finally:
        running.stop()


def say(stack: Stack, text: str, sender: str | None = None) -> list[dict]:
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.rasa}/webhooks/rest/webhook",
        json={"sender": sender or f"e2e-{uuid.uuid4().hex[:8]}", "message": text},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def sim_devices(stack: Stack) -> dict[str, dict]:
    listed = httpx.get(f"http://127.0.0.1:{stack.ports.simulator}/sim/devices", timeout=10).json()
    return {d["alias"]: d for d in listed}


def texts(messages: list[dict]) -> str:
    return " ".join(m.get("text", "") for m in messages)


def test_readiness_endpoints_answer(stack):
    assert httpx.get(f"http://127.0.0.1:{stack.ports.rasa}/").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{stack.ports.actions}/health").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{stack.ports.simulator}/sim/health").status_code == 200


def test_express_mode_turns_on_in_the_simulated_cloud(stack):
    httpx.post(f"http://127.0.0.1:{stack.ports.simulator}/sim/reset")
    assert sim_devices(stack)["Fridge"]["state"]["refrigeration.expressMode"] is False
    reply = texts(say(stack, "turn on express mode on my fridge"))
    assert "express mode is now on" in reply
    assert sim_devices(stack)["Fridge"]["state"]["refrigeration.expressMode"] is True


def test_out_of_range_temperature_changes_nothing_and_says_why(stack):
    httpx.post(f"http://127.0.0.1:{stack.ports.simulator}/sim/reset")
    before = sim_devices(stack)["Living Room AC"]["state"]
    reply = texts(say(stack, "set the living room AC to 45 degrees"))
    assert "45" in reply and "18" in reply and "30" in reply and "Nothing was changed" in reply
    assert sim_devices(stack)["Living Room AC"]["state"] == before


def test_clarification_round_trip_with_buttons(stack):
    httpx.post(f"http://127.0.0.1:{stack.ports.simulator}/sim/reset")
    sender = f"e2e-{uuid.uuid4().hex[:8]}"
    question = say(stack, "set the AC to 22", sender)
    assert question and question[0]["text"].startswith("Which one")
    payloads = {b["title"]: b["payload"] for b in question[0]["buttons"]}
    say(stack, payloads["Bedroom AC"], sender)  # the button's payload, as a widget would send it
    devices = sim_devices(stack)
    assert devices["Bedroom AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 22
    assert devices["Living Room AC"]["state"]["temperatureInUnits.targetTemperatureC"] == 24


def test_callback_channel_delivers_replies_to_the_callback_url(stack):
    sender = f"e2e-callback-{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.rasa}/webhooks/callback/webhook",
        json={"sender": sender, "message": "what devices do I have"},
        timeout=60,
    )
    assert response.status_code == 200
    delivered = httpx.get(
        f"http://127.0.0.1:{stack.ports.sink}/messages", params={"sender": sender}
    ).json()
    assert delivered and "appliances" in delivered[0]["text"]


@pytest.mark.parametrize("channel", ["rest", "callback"])
@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"sender": "x"}',
        b'{"message": "hi"}',
        b'{"message": 5, "sender": "x"}',
        b'{"message": "hi", "sender": ""}',
        b"",
        ('{"sender": "x", "message": "' + "x" * 20000 + '"}').encode(),
    ],
)
def test_malformed_requests_get_a_4xx_with_a_reason(stack, channel, body):
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.rasa}/webhooks/{channel}/webhook",
        content=body,
        headers={"content-type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    assert response.json()["reason"]


@pytest.mark.parametrize("text", ["", "   ", "x" * 3000, "🤖" * 500, "<script>alert(1)</script>"])
def test_odd_messages_get_a_clear_reply(stack, text):
    messages = say(stack, text)
    assert messages and all(m.get("text") for m in messages)
    assert all(p.popen.poll() is None for p in stack.processes)
