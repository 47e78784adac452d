"""Messages as people really send them, through the whole running stack: typos, voice
transcripts (all lower case, no punctuation, numbers in words, filler words), shouting,
very long input and junk. Controls are checked by their effect on the simulated device,
not by the wording of the reply; nothing may fail or hang, and junk changes nothing."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from devstack.processes import Stack
from tests.stack_fixtures import full_stack, telegram_api  # noqa: F401

pytestmark = pytest.mark.stack


def say(stack: Stack, text: str, sender: str | None = None) -> tuple[str, float]:
    started = time.monotonic()
    answer = httpx.post(
        f"http://127.0.0.1:{stack.ports.rasa}/webhooks/rest/webhook",
        json={"sender": sender or f"robust-{uuid.uuid4().hex[:8]}", "message": text},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    return " ".join(m.get("text", "") for m in answer.json()), time.monotonic() - started


def devices(stack: Stack) -> dict[str, dict[str, Any]]:
    listed = httpx.get(f"http://127.0.0.1:{stack.ports.simulator}/sim/devices", timeout=10)
    return {d["alias"]: d["state"] for d in listed.json()}


@pytest.fixture
def home(full_stack: Stack) -> Stack:  # noqa: F811
    httpx.post(f"http://127.0.0.1:{full_stack.ports.simulator}/sim/reset", timeout=10)
    return full_stack


TARGET = "temperatureInUnits.targetTemperatureC"
FRIDGE = "temperatureInUnits.FRIDGE.targetTemperatureC"


@pytest.mark.parametrize(
    ("text", "alias", "key", "value"),
    [
        # typos
        ("set the bedrom ac to 22", "Bedroom AC", TARGET, 22),
        ("turn on expres mode on my frige", "Fridge", "refrigeration.expressMode", True),
        # voice transcripts: lower case, no punctuation, numbers in words, filler
        ("set the bedroom air conditioner to twenty three point five", "Bedroom AC", TARGET, 23.5),
        (
            "hey um could you please set the bedroom ac to twenty one thanks",
            "Bedroom AC",
            TARGET,
            21,
        ),
        ("set the fridge to four degrees", "Fridge", FRIDGE, 4),
        ("turn the bedroom air conditioner down to nineteen", "Bedroom AC", TARGET, 19),
        # shouting
        ("SET THE FRIDGE TO 5 DEGREES!!!", "Fridge", FRIDGE, 5),
    ],
)
def test_controls_as_people_say_them(
    home: Stack, text: str, alias: str, key: str, value: object
) -> None:
    reply, _ = say(home, text)
    assert devices(home)[alias][key] == value, reply
    assert reply.startswith("Done"), reply


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("is the washr running", "Washer"),
        ("how much time is left on the dish washer", "Dishwasher"),
        ("what devices do i have", "You have 9 appliances"),
    ],
)
def test_questions_as_people_say_them(home: Stack, text: str, expected: str) -> None:
    reply, _ = say(home, text)
    assert expected in reply, reply


def test_long_input_is_answered_promptly_and_changes_nothing(home: Stack) -> None:
    before = devices(home)
    rambling = ("so I was thinking about the weather and my day at work " * 70)[:3990]
    reply, seconds = say(home, rambling)
    assert reply
    assert seconds < 20
    assert devices(home) == before


def test_too_long_input_is_refused_with_a_reason(home: Stack) -> None:
    before = devices(home)
    answer = httpx.post(
        f"http://127.0.0.1:{home.ports.rasa}/webhooks/rest/webhook",
        json={"sender": f"robust-{uuid.uuid4().hex[:8]}", "message": "set the fridge to 4 " * 1000},
        timeout=60,
    )
    assert answer.status_code == 413
    assert "longer than" in answer.json()["reason"]
    assert devices(home) == before


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "?!?!",
        "🙂🙂🙂",
        "\x00\x01\x02",
        "/restart",  # a Rasa command: may reset the conversation, must not break it
        '{"intent": "turn_off"}',
        "<script>alert(1)</script>",
        "asdfghjkl qwertyuiop",
    ],
)
def test_junk_changes_nothing_and_the_conversation_goes_on(home: Stack, text: str) -> None:
    sender = f"junk-{uuid.uuid4().hex[:8]}"
    before = devices(home)
    say(home, text, sender)
    assert devices(home) == before
    reply, _ = say(home, "set the bedroom ac to 22", sender)
    assert devices(home)["Bedroom AC"][TARGET] == 22, reply
