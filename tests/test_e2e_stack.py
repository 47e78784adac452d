"""The whole demo stack as a user meets it: real processes, real ports, the trained model.

Starts simulator, callback sink, action server and Rasa on free ports (so it can run
beside a `make demo`), talks to it over HTTP, checks effects through /sim, stops it all.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from assistant.settings import demo_callback_secret
from devstack.credentials import load_or_create_demo_credentials
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
        # Another channel's authenticated sender id: nobody may speak as that user here.
        b'{"sender": "telegram:42", "message": "turn off the fridge"}',
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


# --- proactive messages: subscribe by chat, LG calls back, the sink gets the message -----------


def on_callback_channel(stack: Stack, sender: str, text: str) -> None:
    response = httpx.post(
        f"http://127.0.0.1:{stack.ports.rasa}/webhooks/callback/webhook",
        json={"sender": sender, "message": text},
        timeout=60,
    )
    assert response.status_code == 200, response.text


def sink_texts(stack: Stack, sender: str) -> list[str]:
    delivered = httpx.get(
        f"http://127.0.0.1:{stack.ports.sink}/messages", params={"sender": sender}, timeout=10
    ).json()
    return [m.get("text", "") for m in delivered]


def wait_for_text(stack: Stack, sender: str, needle: str, timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen = sink_texts(stack, sender)
        if any(needle in t for t in seen):
            return seen
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never reached {sender}; got {sink_texts(stack, sender)}")


def sim(stack: Stack, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(
        method, f"http://127.0.0.1:{stack.ports.simulator}{path}", timeout=30, **kwargs
    )


def test_washer_finished_reaches_the_user_who_asked(stack):
    sim(stack, "POST", "/sim/reset")
    sender, bystander = f"e2e-push-{uuid.uuid4().hex[:8]}", f"e2e-quiet-{uuid.uuid4().hex[:8]}"
    on_callback_channel(stack, bystander, "what devices do I have")
    on_callback_channel(stack, sender, "notify me when the washer is done")
    assert "message you here about the Washer" in " ".join(sink_texts(stack, sender))
    washer = sim_devices(stack)["Washer"]["deviceId"]
    assert washer in sim(stack, "GET", "/sim/subscriptions").json()["push"]

    on_callback_channel(stack, sender, "start the washer")
    assert sim_devices(stack)["Washer"]["state"]["runState.currentState"] == "RUNNING"
    before = len(sink_texts(stack, sender))
    # A 45-minute wash, in simulated time; the simulator then calls LG's callback.
    advanced = sim(stack, "POST", "/sim/clock/advance", json={"seconds": 46 * 60}).json()
    assert {"deviceId": washer, "pushCode": "WASHING_IS_COMPLETE", "sent": True} in [
        {k: p[k] for k in ("deviceId", "pushCode", "sent")} for p in advanced["pushes"]
    ]
    seen = wait_for_text(stack, sender, "Your Washer has finished washing.")
    assert len(seen) == before + 1
    assert not any("finished washing" in t for t in sink_texts(stack, bystander))
    # The conversation itself records what the user was told, and the washer is in context.
    event = wait_for_history(stack, sender, "Your Washer has finished washing.")
    assert event["metadata"]["proactive"] is True
    tracker = httpx.get(
        f"http://127.0.0.1:{stack.ports.rasa}/conversations/{sender}/tracker", timeout=10
    ).json()
    assert tracker["slots"]["context_devices"] == [washer]


def wait_for_history(stack: Stack, sender: str, text: str, timeout: float = 20.0) -> dict:
    """The bot event with ``text`` in the sender's Rasa tracker, once it is there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tracker = httpx.get(
            f"http://127.0.0.1:{stack.ports.rasa}/conversations/{sender}/tracker", timeout=10
        ).json()
        for event in tracker.get("events", []):
            if event.get("event") == "bot" and event.get("text") == text:
                return event
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never entered {sender}'s conversation history")


def test_pcc_guidance_reaches_the_user_with_the_guide_link(stack):
    sender = f"e2e-pcc-{uuid.uuid4().hex[:8]}"
    on_callback_channel(stack, sender, "tell me if anything goes wrong with the fridge")
    fridge = sim_devices(stack)["Fridge"]["deviceId"]
    assert fridge in sim(stack, "GET", "/sim/subscriptions").json()["pcc"]
    url = "https://www.lg.com/us/support/guide/door-open"
    sent = sim(
        stack,
        "POST",
        f"/sim/devices/{fridge}/pcc",
        json={"diagnosisType": "DOOR_OPEN_TOO_LONG", "contentUrl": url},
    )
    assert sent.status_code == 200, sent.text
    wait_for_text(
        stack, sender, "Your Fridge may have a problem: a door that was open too long. LG's guide"
    )
    assert any(url in t for t in sink_texts(stack, sender))


def test_a_new_device_is_announced_and_usable_at_once(stack):
    sender = f"e2e-reg-{uuid.uuid4().hex[:8]}"
    on_callback_channel(stack, sender, "what devices do I have")
    added = sim(
        stack,
        "POST",
        "/sim/devices",
        json={"deviceType": "DEVICE_DISH_WASHER", "alias": "Kitchen Dishwasher"},
    )
    assert added.status_code == 201, added.text
    device_id = added.json()["device"]["deviceId"]
    try:
        wait_for_text(stack, sender, 'A new dishwasher, "Kitchen Dishwasher", was added')
        # Usable without a restart: the cache already holds it (its profile is fetched now).
        on_callback_channel(stack, sender, "is the kitchen dishwasher running")
        answer = sink_texts(stack, sender)[-1]
        assert "Kitchen Dishwasher" in answer and "can't find" not in answer, answer
    finally:
        sim(stack, "DELETE", f"/sim/devices/{device_id}")
    wait_for_text(stack, sender, '"Kitchen Dishwasher" (dishwasher) was removed')


def test_bad_lg_callbacks_are_refused_and_stored_nowhere(stack):
    url = f"http://127.0.0.1:{stack.ports.connector}/lg/callbacks"
    body = {
        "messageId": "e2e-bad-1",
        "timestamp": "2026-11-23T12:00:00.000000",
        "push": {"pushType": "DEVICE_PUSH", "deviceId": "nope", "pushCode": "X", "userList": []},
    }
    assert httpx.post(url, json=body, timeout=10).status_code == 401  # no secret
    assert httpx.post(url, params={"secret": "wrong"}, json=body, timeout=10).status_code == 401
    secret = demo_callback_secret(load_or_create_demo_credentials(stack.state_dir).service_key)
    unknown = httpx.post(url, params={"secret": secret}, json=body, timeout=10)
    assert unknown.status_code in (404, 422) and unknown.json()["reason"]
    malformed = httpx.post(
        url,
        params={"secret": secret},
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert malformed.status_code == 400 and malformed.json()["reason"]


def test_how_is_everything_at_home_in_one_lg_call(stack):
    sim(stack, "POST", "/sim/reset")
    sender = f"e2e-home-{uuid.uuid4().hex[:8]}"
    say(stack, "what devices do I have", sender)  # links the demo household, lists devices
    sim(stack, "DELETE", "/sim/calls")
    reply = texts(say(stack, "how is everything at home?", sender))
    assert reply.startswith("Here's everything at home."), reply
    for part in ("Laundry:", "Kitchen:", "Styler (running", "Living Room AC (off)"):
        assert part in reply, (part, reply)
    paths = [c["path"] for c in sim(stack, "GET", "/sim/calls").json()]
    assert paths == ["/v2/devices/status-async"], paths


def test_turn_off_all_the_air_conditioners(stack):
    sim(stack, "POST", "/sim/reset")
    sender = f"e2e-acs-{uuid.uuid4().hex[:8]}"
    reply = texts(say(stack, "turn off all the air conditioners", sender))
    assert "Bedroom AC" in reply and "Living Room AC" in reply, reply
    assert "confirmed" in reply, reply
    power = {
        alias: d["state"]["operation.airConOperationMode"]
        for alias, d in sim_devices(stack).items()
        if d["deviceType"] == "DEVICE_AIR_CONDITIONER"
    }
    assert power == {"Bedroom AC": "POWER_OFF", "Living Room AC": "POWER_OFF"}


def becon_facilities(stack: Stack) -> dict[str, dict]:
    listed = sim(stack, "GET", "/sim/becon/facilities").json()
    return {entry["name"]: entry["state"] for entry in listed}


def test_a_building_manager_by_chat(stack):
    sim(stack, "POST", "/sim/reset")
    sender = f"e2e-becon-{uuid.uuid4().hex[:8]}"
    reply = texts(say(stack, "turn on the meeting room 3F unit", sender))
    assert reply == "Turned on Meeting Room 3F.", reply
    reply = texts(say(stack, "set the lobby to 23 degrees", sender))
    assert reply == "Done: Lobby is now set to 23 °C.", reply
    reply = texts(say(stack, "switch office 2F to heating", sender))
    assert reply == "Done: Office 2F is now heating.", reply
    reply = texts(say(stack, "set the ventilation fan to high", sender))
    assert reply == "Done: Ventilation 1 is now on fan speed high.", reply
    reply = texts(say(stack, "what's the temperature in office 2F", sender))
    assert reply == "Office 2F is at 24.5 °C, set to 23 °C.", reply
    reply = texts(say(stack, "is the lobby purifier on?", sender))
    assert reply == "Lobby Purifier is on, fan speed auto.", reply
    state = becon_facilities(stack)
    assert state["Meeting Room 3F"]["power"] == "ON"
    assert state["Lobby"]["setTemperature"] == 23
    assert state["Office 2F"]["operationMode"] == "HEAT"
    assert state["Ventilation 1"]["fanSpeed"] == "HIGH"
    assert state["Lobby Purifier"] == {"power": "ON", "fanSpeed": "AUTO"}


def test_all_indoor_units_at_headquarters_after_a_yes(stack):
    sim(stack, "POST", "/sim/reset")
    sender = f"e2e-becon-all-{uuid.uuid4().hex[:8]}"
    before = becon_facilities(stack)
    reply = texts(say(stack, "turn off all indoor units at headquarters", sender))
    assert reply == (
        "This will turn off 2 facilities at Headquarters: Lobby (on → off); "
        "Office 2F (on → off). Already off: Meeting Room 3F. Go ahead?"
    ), reply
    assert becon_facilities(stack) == before
    reply = texts(say(stack, "yes", sender))
    assert reply == "Turned off Lobby and Office 2F. Both confirmed.", reply
    state = becon_facilities(stack)
    assert {n: state[n]["power"] for n in ("Lobby", "Office 2F", "Meeting Room 3F")} == {
        "Lobby": "OFF",
        "Office 2F": "OFF",
        "Meeting Room 3F": "OFF",
    }
    assert state["Lobby Purifier"]["power"] == "ON"


def test_a_building_value_out_of_range_is_explained(stack):
    sim(stack, "POST", "/sim/reset")
    before = becon_facilities(stack)
    reply = texts(say(stack, "set the lobby to 35 degrees", f"e2e-becon-{uuid.uuid4().hex[:8]}"))
    assert reply == (
        "The building system refused to set Lobby's set temperature 35 °C: "
        "set temperature 35 is outside 16 to 30. Nothing was changed."
    ), reply
    assert becon_facilities(stack) == before


def test_the_action_server_is_ready_and_shows_its_metrics(stack):
    base = f"http://127.0.0.1:{stack.ports.actions}"
    assert httpx.get(f"{base}/ready", timeout=10).json() == {"status": "ready"}
    say(stack, "turn on express mode on my fridge")
    answer = httpx.get(f"{base}/metrics", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = answer.text.splitlines()
    runs = [
        line
        for line in lines
        if line.startswith('assistant_action_runs_total{action="action_control_device"')
    ]
    assert runs and 'outcome="ok"' in runs[0], runs
    assert any(
        line.startswith('assistant_action_seconds_bucket{action="action_control_device"')
        for line in lines
    )
    assert any(line.startswith("lg_calls_total{") for line in lines)
    assert any(line.startswith('lg_circuit_open{circuit="thinq"} 0') for line in lines)


@pytest.mark.parametrize(
    ("text", "start"),
    [
        ("세탁기 언제 끝나?", "죄송합니다."),
        ("включи кондиционер", "Sorry, I only understand English"),
    ],
)
def test_another_language_gets_a_polite_english_only(stack, text, start):
    reply = texts(say(stack, text))
    assert reply.startswith(start), reply
