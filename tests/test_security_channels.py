"""Security, end to end: one user never sees or controls another user's appliances, through
any channel, whatever ids they send.

One real stack (``tests/stack_fixtures.py``) with every channel on. The victim is the
``demo`` household (nine appliances). On each channel (rest, callback, telegram, alexa,
widget) an attacker is linked to the simulator's other user, ``neighbour`` (one "Neighbour
AC"), through the real account-linking flow over HTTP: "link my LG account" on that
channel, the sign-in URL from the reply, the login form at the simulator's stand-in
submitted as ``neighbour``, the redirect followed to the connector's ``/link/callback``.
(Alexa speaks no URLs, so there the link is read from the conversation through Rasa's HTTP
API: the only way the product offers.)

Every check looks at both the reply and the simulated cloud (``GET /sim/devices``: no
command reached a demo appliance). Ids are unique per run, so reruns never collide.
"""

from __future__ import annotations

import asyncio
import base64
import html
import itertools
import json
import re
import secrets
import socket
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from assistant.settings import load_widget_settings
from connector.widget_token import AUDIENCE, issue_token
from devstack.processes import Stack
from tests.alexa_support import launch, said
from tests.stack_fixtures import (  # noqa: F401 - fixtures are found by name
    TELEGRAM_SECRET,
    ThreadedFakeTelegram,
    full_stack,
    telegram_api,
)

pytestmark = pytest.mark.stack

RUN = uuid.uuid4().hex[:8]
TURN_SECONDS = 60.0  # one chat turn, bounded (the first ones load the model's caches)
PUSH_SECONDS = 30.0  # an LG callback reaching a chat

NEIGHBOUR_AC = "Neighbour AC"
DEMO_ALIASES = (
    "Fridge",
    "Washer",
    "Dryer",
    "Living Room AC",
    "Bedroom AC",
    "Styler",
    "Air Purifier",
    "Dishwasher",
    "Oven",
)
# What a reply to the attacker must never contain (outside the attacker's own quoted words).
DEMO_WORDS = ("fridge", "washer", "dryer", "living room", "bedroom", "styler", "purifier", "oven")
# What a reply says when it did (or is about to do) something to an appliance.
CONFIRMATIONS = ("done", "is now", "now on", "now off", "just to be safe", "i've asked", "i sent")
CHANNELS = ("rest", "callback", "telegram", "alexa", "widget")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")
_URL = re.compile(r"https?://[^\s\"'<>]+/oauth/authorize\?[^\s\"'<>]+")
_update_ids = itertools.count(secrets.randbelow(10**9) + 10**9)


# --- the stack over HTTP ----------------------------------------------------------------------


def rasa(stack: Stack, path: str) -> str:
    return f"http://127.0.0.1:{stack.ports.rasa}{path}"


def sim(stack: Stack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"http://127.0.0.1:{stack.ports.simulator}{path}", timeout=30, **kwargs
    )


def demo_devices(stack: Stack) -> dict[str, dict[str, Any]]:
    """The demo household as the simulated cloud holds it, by device id."""
    listed = sim(stack, "GET", "/sim/devices").json()
    return {d["deviceId"]: d for d in listed}


# Changes the simulator makes by itself as (simulated) time passes, not by any command.
_NATURAL = {
    ("RUNNING", "END"),
    ("RESERVED", "RUNNING"),
    ("RESERVED", "END"),
    ("PREHEATING", "PREHEATING_IS_DONE"),
}
_CLOCK_KEYS = {"timer.remainHour", "timer.remainMinute", "timer.relativeHourToStart"}


def commanded_changes(
    before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]
) -> list[str]:
    """What changed in the demo household other than by the passing of time."""
    changes = []
    if set(before) != set(after):
        changes.append(f"devices {sorted(set(before) ^ set(after))} appeared or vanished")
    for device_id in set(before) & set(after):
        old, new = before[device_id], after[device_id]
        if old["alias"] != new["alias"] or old["online"] != new["online"]:
            changes.append(f"{old['alias']}: alias/online changed")
        for key in set(old["state"]) | set(new["state"]):
            was, now = old["state"].get(key), new["state"].get(key)
            if was == now or key in _CLOCK_KEYS:
                continue
            if key == "runState.currentState" and (was, now) in _NATURAL:
                continue
            changes.append(f"{old['alias']}: {key} {was!r} -> {now!r}")
    return sorted(changes)


class NoDemoChange:
    """``with NoDemoChange(stack): ...`` fails if a command reached a demo appliance."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def __enter__(self) -> NoDemoChange:
        self.before = demo_devices(self.stack)
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            changes = commanded_changes(self.before, demo_devices(self.stack))
            assert not changes, f"demo appliances changed: {changes}"


def user_turns(stack: Stack, sender: str) -> int:
    """How many user messages Rasa's tracker holds for ``sender`` (Rasa's HTTP API)."""
    response = httpx.get(rasa(stack, f"/conversations/{sender}/tracker"), timeout=10)
    assert response.status_code == 200, response.text
    return sum(1 for e in response.json().get("events", []) if e.get("event") == "user")


def sink_messages(stack: Stack, sender: str) -> list[dict[str, Any]]:
    return httpx.get(
        f"http://127.0.0.1:{stack.ports.sink}/messages", params={"sender": sender}, timeout=10
    ).json()


def database(stack: Stack) -> Path | None:
    """The stack's SQLite database, or None when it runs on another database."""
    url = stack.child_env().get("DATABASE_URL")
    if url:
        return Path(url.split(":///", 1)[1]) if url.startswith("sqlite") else None
    return stack.state_dir / "assistant.db"


def db_rows(stack: Stack, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    path = database(stack)
    # The shared stack runs on its own SQLite file unless DATABASE_URL says otherwise.
    assert path is not None, "the security suite reads the stack's SQLite database"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return conn.execute(sql, params).fetchall()


# --- what a reply may say ---------------------------------------------------------------------


@dataclass
class Reply:
    texts: list[str]
    buttons: list[dict[str, str]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(self.texts)


def assert_names_no_demo_appliance(reply: Reply) -> None:
    # The attacker's own words may come back quoted ("I couldn't find "the fridge""): only
    # the rest of the reply counts.
    unquoted = _QUOTED.sub("", reply.text).lower()
    named = [word for word in DEMO_WORDS if word in unquoted]
    assert not named, f"reply names demo appliances {named}: {reply.text!r}"
    titles = " ".join(b.get("title", "") for b in reply.buttons).lower()
    assert not [w for w in DEMO_WORDS if w in titles], reply.buttons


def assert_refused(reply: Reply) -> None:
    assert reply.text.strip(), "no reply at all"
    assert_names_no_demo_appliance(reply)
    lowered = reply.text.lower()
    confirmed = [c for c in CONFIRMATIONS if c in lowered]
    assert not confirmed, f"reply confirms something ({confirmed}): {reply.text!r}"


# --- the channels -----------------------------------------------------------------------------


class Channel(ABC):
    name: str
    sender: str  # Rasa's sender id for this user

    @abstractmethod
    def say(self, text: str) -> Reply:
        """One turn on this channel as this user; the bot's replies."""


@dataclass
class RestChannel(Channel):
    stack: Stack
    sender: str
    name: str = "rest"

    def post(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(
            rasa(self.stack, "/webhooks/rest/webhook"), json=body, timeout=TURN_SECONDS
        )

    def say(self, text: str, **extra: Any) -> Reply:
        response = self.post({"sender": self.sender, "message": text, **extra})
        assert response.status_code == 200, response.text
        messages = response.json()
        return Reply(
            [m["text"] for m in messages if m.get("text")],
            [b for m in messages for b in m.get("buttons") or []],
        )


@dataclass
class CallbackChannel(Channel):
    stack: Stack
    sender: str
    name: str = "callback"

    def say(self, text: str, **extra: Any) -> Reply:
        seen = len(sink_messages(self.stack, self.sender))
        response = httpx.post(
            rasa(self.stack, "/webhooks/callback/webhook"),
            json={"sender": self.sender, "message": text, **extra},
            timeout=TURN_SECONDS,
        )
        assert response.status_code == 200, response.text
        # Rasa's callback channel POSTs the replies to the sink within the request.
        new = sink_messages(self.stack, self.sender)[seen:]
        return Reply(
            [m["text"] for m in new if m.get("text")],
            [b for m in new for b in m.get("buttons") or []],
        )


@dataclass
class TelegramChannel(Channel):
    stack: Stack
    api: ThreadedFakeTelegram
    chat_id: int
    name: str = "telegram"

    @property
    def sender(self) -> str:  # type: ignore[override]
        return f"telegram:{self.chat_id}"

    def sent_here(self) -> list[dict[str, Any]]:
        return [m for m in self.api.sent() if m.get("chat_id") == self.chat_id]

    def post(self, update: dict[str, Any], secret: str | None = TELEGRAM_SECRET) -> httpx.Response:
        headers = {} if secret is None else {"X-Telegram-Bot-Api-Secret-Token": secret}
        return httpx.post(
            rasa(self.stack, "/webhooks/telegram/webhook"),
            json=update,
            headers=headers,
            timeout=TURN_SECONDS,
        )

    def update(self, text: str) -> dict[str, Any]:
        update_id = next(_update_ids)
        return {
            "update_id": update_id,
            "message": {
                "message_id": update_id % 10**6,
                "date": int(time.time()),
                "chat": {"id": self.chat_id, "type": "private"},
                "from": {"id": self.chat_id, "is_bot": False, "first_name": "T"},
                "text": text,
            },
        }

    def _turn(self, update: dict[str, Any]) -> Reply:
        seen = len(self.sent_here())
        response = self.post(update)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "ok", response.text
        # The webhook answers once the turn is done and its replies are sent.
        new = self.sent_here()[seen:]
        buttons = [
            {"title": b["text"], "payload": b["callback_data"]}
            for m in new
            for row in (m.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
        ]
        return Reply([m["text"] for m in new], buttons)

    def say(self, text: str) -> Reply:
        return self._turn(self.update(text))

    def press(self, data: str) -> Reply:
        """A tap on an inline button carrying ``data``, in this chat."""
        update_id = next(_update_ids)
        return self._turn(
            {
                "update_id": update_id,
                "callback_query": {
                    "id": f"cq-{update_id}",
                    "from": {"id": self.chat_id, "is_bot": False, "first_name": "T"},
                    "message": {
                        "message_id": 1,
                        "date": int(time.time()),
                        "chat": {"id": self.chat_id, "type": "private"},
                    },
                    "chat_instance": "1",
                    "data": data,
                },
            }
        )


def alexa_speech(answer: dict[str, Any]) -> str:
    ssml = answer["response"].get("outputSpeech", {}).get("ssml", "")
    return html.unescape(re.sub(r"</?speak>", "", ssml))


@dataclass
class AlexaChannel(Channel):
    stack: Stack
    user_id: str
    name: str = "alexa"

    @property
    def sender(self) -> str:  # type: ignore[override]
        return f"alexa:{self.user_id}"

    def post(self, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(
            rasa(self.stack, "/webhooks/alexa/webhook"), json=body, timeout=TURN_SECONDS
        )
        assert response.status_code == 200, response.text
        return response.json()

    def say(self, text: str, attributes: dict[str, Any] | None = None) -> Reply:
        answer = self.post(said(text, user=self.user_id, attributes=attributes))
        speech = alexa_speech(answer)
        assert "I've asked your appliance" not in speech, "turn over Alexa's time box"
        choices = (answer.get("sessionAttributes") or {}).get("choices") or []
        # A link goes to a card in the user's Alexa app; it is part of what they get.
        card = answer["response"].get("card", {}).get("content")
        return Reply(
            [speech, *([card] if card else [])], [{"title": t, "payload": p} for t, p in choices]
        )


@dataclass
class WidgetChannel(Channel):
    stack: Stack
    subject: str
    name: str = "widget"

    def __post_init__(self) -> None:
        settings = load_widget_settings({"STATE_DIR": str(self.stack.state_dir), "DEMO_MODE": "1"})
        assert settings.token_secret
        self.secret: str = settings.token_secret
        self.issuer = settings.issuer

    @property
    def sender(self) -> str:  # type: ignore[override]
        return f"widget:{self.issuer}:{self.subject}"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.stack.ports.rasa}/webhooks/widget/ws"

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.stack.ports.partner}"

    def token(self, **kwargs: Any) -> str:
        return issue_token(self.secret, self.issuer, self.subject, **kwargs)

    def say(self, text: str, **extra: Any) -> Reply:
        return asyncio.run(self._turn({"type": "message", "text": text, **extra}))

    def history(self) -> list[dict[str, Any]]:
        return asyncio.run(self._history())

    async def _open(self, token: str, hello_extra: dict[str, Any] | None = None) -> Any:
        ws = await websockets.connect(self.url, origin=self.origin, open_timeout=10)
        await ws.send(json.dumps({"type": "hello", "token": token, **(hello_extra or {})}))
        return ws

    async def _history(self) -> list[dict[str, Any]]:
        ws = await self._open(self.token())
        try:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ready["type"] == "ready", ready
            return ready["history"]
        finally:
            await ws.close()

    async def _turn(
        self, frame: dict[str, Any], hello_extra: dict[str, Any] | None = None
    ) -> Reply:
        ws = await self._open(self.token(), hello_extra)
        try:
            ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert ready["type"] == "ready", ready
            await ws.send(json.dumps(frame))
            texts: list[str] = []
            buttons: list[dict[str, str]] = []
            deadline = time.monotonic() + TURN_SECONDS
            busy = False
            while True:
                left = deadline - time.monotonic()
                assert left > 0, f"widget turn not over in {TURN_SECONDS} s"
                got = json.loads(await asyncio.wait_for(ws.recv(), left))
                if got["type"] == "message" and got["message"]["role"] == "bot":
                    texts.append(got["message"]["text"])
                    buttons.extend(got["message"].get("buttons") or [])
                elif got["type"] == "busy":
                    if got["on"]:
                        busy = True
                    elif busy:
                        return Reply(texts, buttons)
                elif got["type"] == "error":
                    raise AssertionError(f"widget refused the message: {got}")
        finally:
            await ws.close()

    async def refused(
        self, token: str, then: list[dict[str, Any]] | None = None
    ) -> tuple[int | None, list[dict[str, Any]]]:
        """Hello with ``token`` (then ``then`` frames at once); the close code and frames."""
        frames: list[dict[str, Any]] = []
        async with websockets.connect(self.url, origin=self.origin, open_timeout=10) as ws:
            await ws.send(json.dumps({"type": "hello", "token": token}))
            for frame in then or []:
                try:
                    await ws.send(json.dumps(frame))
                except websockets.ConnectionClosed:
                    break
            try:
                while True:
                    frames.append(json.loads(await asyncio.wait_for(ws.recv(), 15)))
            except websockets.ConnectionClosed:
                pass
            return ws.close_code, frames


class WidgetListener:
    """One widget socket held open in its own thread, recording every frame it gets."""

    def __init__(self, channel: WidgetChannel) -> None:
        self.channel = channel
        self.frames: list[dict[str, Any]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._ws: Any = None
        self._reader: Any = None

    def __enter__(self) -> WidgetListener:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self._loop).result(15)
        return self

    async def _connect(self) -> None:
        self._ws = await self.channel._open(self.channel.token())
        ready = json.loads(await asyncio.wait_for(self._ws.recv(), 10))
        assert ready["type"] == "ready", ready
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                self.frames.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass

    async def _close(self) -> None:
        await self._ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, 10)

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(15)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def messages(self) -> list[str]:
        return [f["message"]["text"] for f in self.frames if f.get("type") == "message"]


# --- account linking, as a user does it -------------------------------------------------------


def sign_in_url(channel: Channel, reply: Reply, stack: Stack) -> str:
    # On Alexa the link comes on a card in the Alexa app (speech drops URLs).
    found = _URL.search(reply.text)
    assert found is not None, f"no sign-in link on {channel.name}: {reply.text!r}"
    return html.unescape(found.group(0)).rstrip(".,)")


def link_via_oauth(stack: Stack, channel: Channel, user: str) -> None:
    """ "link my LG account" on ``channel``, then the browser's part as ``user``."""
    reply = channel.say("link my LG account")
    url = sign_in_url(channel, reply, stack)
    with httpx.Client(timeout=15) as browser:
        form = browser.get(url)
        assert form.status_code == 200, form.text
        assert f'value="{user}"' in form.text, f"{user} is not offered at the login stand-in"
        hidden = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', form.text))
        action = re.search(r'<form method="post" action="([^"]+)"', form.text)
        assert action and set(hidden) == {"client_id", "redirect_uri", "state"}, form.text
        submitted = browser.post(
            str(form.url.join(action.group(1))),
            data={
                **{k: html.unescape(v) for k, v in hidden.items()},
                "user": user,
                "decision": "allow",
            },
            follow_redirects=False,
        )
        assert submitted.status_code == 302, submitted.text
        location = submitted.headers["Location"]
        assert location.startswith(f"http://127.0.0.1:{stack.ports.connector}/link/callback?")
        page = browser.get(location)
        assert page.status_code == 200, page.text
        code = re.search(r'id="link-code">([0-9 ]+)<', page.text)
        assert code is not None, page.text
    # The code from the page, typed back in the chat that asked, finishes the link.
    confirmed = channel.say(f"the code is {code.group(1)}")
    assert "now linked to your LG account" in confirmed.text, confirmed.text


def linked_user(stack: Stack, sender: str) -> str | None:
    rows = db_rows(stack, "SELECT thinq_user FROM linked_accounts WHERE sender_id = ?", sender)
    return rows[0][0] if rows else None


# --- the world: a victim household, an attacker per channel -----------------------------------


@dataclass
class World:
    stack: Stack
    telegram: ThreadedFakeTelegram
    ids: dict[str, str]  # demo alias -> device id
    victims: dict[str, Channel]
    attackers: dict[str, Channel]
    victim_buttons: list[dict[str, str]]  # from a victim's "which one?" question

    def attacker(self, name: str) -> Channel:
        return self.attackers[name]


def channels_for(stack: Stack, telegram: ThreadedFakeTelegram, who: str) -> dict[str, Channel]:
    base = 7_000_000_000 + secrets.randbelow(10**9)
    return {
        "rest": RestChannel(stack, f"{who}-rest-{RUN}"),
        "callback": CallbackChannel(stack, f"{who}-callback-{RUN}"),
        "telegram": TelegramChannel(stack, telegram, base + (1 if who == "victim" else 2)),
        "alexa": AlexaChannel(stack, f"amzn1.ask.account.{who.upper()}{RUN}"),
        "widget": WidgetChannel(stack, f"{who}-{RUN}"),
    }


@pytest.fixture(scope="module")
def world(full_stack: Stack, telegram_api: ThreadedFakeTelegram) -> World:  # noqa: F811
    stack = full_stack
    assert sim(stack, "POST", "/sim/reset").status_code == 200
    ids = {d["alias"]: d["deviceId"] for d in demo_devices(stack).values()}
    assert set(ids) == set(DEMO_ALIASES)

    victims = channels_for(stack, telegram_api, "victim")
    for channel in victims.values():
        # Demo mode: a new sender on any channel joins the demo household.
        listed = channel.say("what devices do I have")
        assert "Fridge" in listed.text and "Living Room AC" in listed.text, (
            channel.name,
            listed.text,
        )
    question = victims["rest"].say("set the AC to 22")
    assert question.text.startswith("Which one"), question.text
    assert {b["title"] for b in question.buttons} >= {"Bedroom AC", "Living Room AC"}

    attackers = channels_for(stack, telegram_api, "attacker")
    for channel in attackers.values():
        link_via_oauth(stack, channel, "neighbour")
    return World(stack, telegram_api, ids, victims, attackers, question.buttons)


# --- 0. the checks can see what they look for -------------------------------------------------


def test_a_victims_own_command_is_seen_by_the_state_check(world: World):
    """The victim (demo) changes something: the same check that guards the tests below
    reports it, so its silence there means something."""
    stack = world.stack
    before = demo_devices(stack)
    reply = world.victims["rest"].say("turn on express mode on my fridge")
    assert "express mode is now on" in reply.text, reply.text
    changes = commanded_changes(before, demo_devices(stack))
    assert changes == ["Fridge: refrigeration.expressMode False -> True"], changes
    assert sim(stack, "POST", "/sim/reset").status_code == 200


# --- 1. what the attacker sees ----------------------------------------------------------------


@pytest.mark.parametrize("name", CHANNELS)
def test_the_attacker_sees_only_the_neighbours_appliance(world: World, name: str):
    attacker = world.attacker(name)
    assert linked_user(world.stack, attacker.sender) == "neighbour"
    with NoDemoChange(world.stack):
        for question in (
            "what devices do I have",
            "is the washer running",
            "what's the air quality",
        ):
            reply = attacker.say(question)
            assert_names_no_demo_appliance(reply)
            if question == "what devices do I have":
                assert NEIGHBOUR_AC in reply.text, reply.text


# --- 2. commands in words ---------------------------------------------------------------------


@pytest.mark.parametrize("name", CHANNELS)
def test_commands_in_words_reach_no_demo_appliance(world: World, name: str):
    attacker = world.attacker(name)
    with NoDemoChange(world.stack):
        for command in (
            "turn on express mode on my fridge",
            "set the living room AC to 18",
            "start the oven",
            "turn off the bedroom AC",
            "stop the styler",
            "start the washer in 3 hours",
        ):
            reply = attacker.say(command)
            assert_refused(reply)
            assert (
                "couldn't find" in reply.text
                or NEIGHBOUR_AC in reply.text
                or ("none of your appliances" in reply.text.lower())
            ), (command, reply.text)
        # A yes after all that confirms nothing of anyone's.
        assert_refused(attacker.say("yes"))


# --- 3. injected intents, raw device ids, copied buttons --------------------------------------


def injected(ids: dict[str, str]) -> list[str]:
    """Rasa intent payloads (domain.yml intents, data/nlu entities) naming the victim's
    appliances by alias and by LG device id."""
    ac, fridge, oven = ids["Living Room AC"], ids["Fridge"], ids["Oven"]
    return [
        f'/set_value{{"device": "{ac}", "feature": "temperature", "number": 18}}',
        '/set_value{"device": "Living Room AC", "feature": "temperature", "number": 18}',
        f'/turn_on{{"device": "{fridge}", "feature": "express mode"}}',
        '/turn_on{"device": "Fridge", "feature": "express mode"}',
        f'/start_appliance{{"device": "{oven}"}}',
        '/start_appliance{"device": "Oven"}',
        f'/turn_off{{"device": "{ids["Bedroom AC"]}"}}',
        f'/stop_appliance{{"device": "{ids["Styler"]}"}}',
        f'/schedule_start{{"device": "{ids["Washer"]}", "number": 3}}',
        f'/adjust_value{{"device": "{ids["Bedroom AC"]}", "direction": "down", "number": 2}}',
        f'/inform_device{{"device": "{ac}"}}',
        f'/ask_status{{"device": "{fridge}"}}',
        f'/subscribe_push{{"device": "{ids["Washer"]}"}}',
        "/affirm",
    ]


@pytest.mark.parametrize("name", CHANNELS)
def test_injected_intents_and_copied_buttons_reach_no_demo_appliance(world: World, name: str):
    attacker = world.attacker(name)
    payloads = injected(world.ids) + [b["payload"] for b in world.victim_buttons] + ["/affirm"]
    with NoDemoChange(world.stack):
        for payload in payloads:
            reply = attacker.say(payload)
            assert_refused(reply)
        if isinstance(attacker, WidgetChannel):
            # A button tap as the widget sends it: the payload plus the title shown.
            for button in world.victim_buttons:
                assert_refused(attacker.say(button["payload"], title=button["title"]))
        if isinstance(attacker, TelegramChannel):
            # A tap on an inline button whose data was copied from the victim's keyboard.
            for button in world.victim_buttons:
                assert_refused(attacker.press(button["payload"]))
        if isinstance(attacker, AlexaChannel):
            # Saying a choice sends the payload kept in the session attributes; here they
            # are made up to name the victim's appliances.
            choices = [[b["title"], b["payload"]] for b in world.victim_buttons]
            for button in world.victim_buttons:
                assert_refused(attacker.say(button["title"], attributes={"choices": choices}))
        if isinstance(attacker, RestChannel | CallbackChannel):
            # Rasa's REST body may name an input channel; it must not change who acts.
            for claimed in ("telegram", "alexa", "widget"):
                reply = attacker.say("what devices do I have", input_channel=claimed)
                assert NEIGHBOUR_AC in reply.text, (claimed, reply.text)
                assert_names_no_demo_appliance(reply)
                assert_refused(attacker.say("start the oven", input_channel=claimed))
            # Nor where its notifications go: the channel is the one the message came in on.
            stored = db_rows(
                world.stack,
                "SELECT channel FROM linked_accounts WHERE sender_id = ?",
                attacker.sender,
            )
            assert stored == [(attacker.name,)], stored
    subscriptions = db_rows(
        world.stack,
        "SELECT device_id FROM notification_subscriptions WHERE sender_id = ?",
        attacker.sender,
    )
    assert not set(world.ids.values()) & {row[0] for row in subscriptions}


# --- 4. identity forgery ----------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["rest", "callback"])
def test_rest_and_callback_refuse_other_channels_sender_ids(world: World, endpoint: str):
    victims = world.victims
    forged = [
        victims["telegram"].sender,
        victims["alexa"].sender,
        victims["widget"].sender,
        victims["telegram"].sender.upper(),
        "Alexa:" + victims["alexa"].sender.split(":", 1)[1],
        "WIDGET:" + victims["widget"].sender.split(":", 1)[1],
    ]
    with NoDemoChange(world.stack):
        for sender in forged:
            before = user_turns(world.stack, sender)
            response = httpx.post(
                rasa(world.stack, f"/webhooks/{endpoint}/webhook"),
                json={"sender": sender, "message": "turn on express mode on my fridge"},
                timeout=TURN_SECONDS,
            )
            assert response.status_code == 403, (sender, response.status_code, response.text)
            assert "another channel" in response.json()["reason"]
            assert user_turns(world.stack, sender) == before, f"a turn ran as {sender}"
            assert sink_messages(world.stack, sender) == []


def test_telegram_webhook_without_the_right_secret_runs_nothing(world: World):
    victim = world.victims["telegram"]
    assert isinstance(victim, TelegramChannel)
    turns, sent = user_turns(world.stack, victim.sender), len(victim.sent_here())
    with NoDemoChange(world.stack):
        for secret in (None, "", "wrong-secret", TELEGRAM_SECRET + "x", TELEGRAM_SECRET.upper()):
            response = victim.post(victim.update("turn on express mode on my fridge"), secret)
            assert response.status_code == 401, (secret, response.status_code, response.text)
    assert user_turns(world.stack, victim.sender) == turns
    assert len(victim.sent_here()) == sent


def forged_tokens(channel: WidgetChannel, subject: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"iss": channel.issuer, "sub": subject, "aud": AUDIENCE, "iat": now, "exp": now + 600}

    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return {
        "another secret": issue_token("x" * 64, channel.issuer, subject),
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}.",
        "another issuer": issue_token(channel.secret, "evil-partner", subject),
        "expired": issue_token(channel.secret, channel.issuer, subject, 300, now=now - 3600),
        "lives too long": issue_token(channel.secret, channel.issuer, subject, 24 * 3600),
        "garbage": "not-a-token",
    }


def test_widget_refuses_forged_tokens_and_runs_nothing(world: World):
    victim = world.victims["widget"]
    assert isinstance(victim, WidgetChannel)
    victim_id = victim.subject
    turns = user_turns(world.stack, victim.sender)
    history = victim.history()
    message = {"type": "message", "text": "turn on express mode on my fridge"}
    with NoDemoChange(world.stack):
        for what, token in forged_tokens(victim, victim_id).items():
            code, frames = asyncio.run(victim.refused(token, then=[message]))
            assert code == 4401, (what, code, frames)
            assert [f["type"] for f in frames] == ["refused"], (what, frames)
    assert user_turns(world.stack, victim.sender) == turns
    assert victim.history() == history  # nothing stored for the victim either


def test_widget_ignores_a_sender_named_in_frames(world: World):
    attacker, victim = world.attackers["widget"], world.victims["widget"]
    assert isinstance(attacker, WidgetChannel)
    turns = user_turns(world.stack, victim.sender)
    forged = {"sender": victim.sender, "sender_id": victim.sender, "sub": victim.sender}
    with NoDemoChange(world.stack):
        reply = asyncio.run(
            attacker._turn(
                {"type": "message", "text": "what devices do I have", **forged}, hello_extra=forged
            )
        )
        assert NEIGHBOUR_AC in reply.text
        assert_names_no_demo_appliance(reply)
        reply = attacker.say("turn on express mode on my fridge", **forged)
        assert_refused(reply)
    assert user_turns(world.stack, victim.sender) == turns


def test_widget_refuses_a_page_of_another_origin(world: World):
    attacker = world.attackers["widget"]
    assert isinstance(attacker, WidgetChannel)

    async def from_elsewhere() -> int | None:
        async with websockets.connect(
            attacker.url, origin="http://evil.example", open_timeout=10
        ) as ws:
            try:
                # The server may refuse before the hello is even read.
                await ws.send(json.dumps({"type": "hello", "token": attacker.token()}))
                while True:
                    await asyncio.wait_for(ws.recv(), 15)
            except websockets.ConnectionClosed:
                return ws.close_code

    assert asyncio.run(from_elsewhere()) == 4403


def test_alexa_acts_for_the_system_user_not_the_session_user(world: World):
    """Alexa sends the user twice (``session.user`` and ``context.System.user``); the
    channel takes ``context.System.user.userId`` (README: "The sender id is
    ``alexa:<context.System.user.userId>``"), for turns and launches alike. Both are in the
    body Amazon signs; with the demo switch off (as here) the body alone says who it is."""
    attacker, victim = world.attackers["alexa"], world.victims["alexa"]
    assert isinstance(attacker, AlexaChannel) and isinstance(victim, AlexaChannel)
    victim_turns, attacker_turns = (
        user_turns(world.stack, victim.sender),
        user_turns(world.stack, attacker.sender),
    )

    def mixed(body: dict[str, Any], session_user: str, system_user: str) -> dict[str, Any]:
        body["session"]["user"]["userId"] = session_user
        body["context"]["System"]["user"]["userId"] = system_user
        return body

    with NoDemoChange(world.stack):
        # The session names the victim, the system the attacker: it acts as the attacker.
        answer = attacker.post(
            mixed(said("what devices do I have"), victim.user_id, attacker.user_id)
        )
        assert NEIGHBOUR_AC in alexa_speech(answer)
        assert_names_no_demo_appliance(Reply([alexa_speech(answer)]))
        answer = attacker.post(
            mixed(said("turn on express mode on my fridge"), victim.user_id, attacker.user_id)
        )
        assert_refused(Reply([alexa_speech(answer)]))
    assert user_turns(world.stack, victim.sender) == victim_turns
    assert user_turns(world.stack, attacker.sender) == attacker_turns + 2

    # The other way round it is the victim's conversation, consistently (read only here).
    answer = victim.post(mixed(said("what devices do I have"), attacker.user_id, victim.user_id))
    assert "Fridge" in alexa_speech(answer)
    assert user_turns(world.stack, victim.sender) == victim_turns + 1
    assert user_turns(world.stack, attacker.sender) == attacker_turns + 2
    # A request with only the session user falls back to it.
    body = said("what devices do I have", user=attacker.user_id)
    del body["context"]["System"]["user"]
    assert NEIGHBOUR_AC in alexa_speech(attacker.post(body))


# --- 5. Rasa's HTTP API -----------------------------------------------------------------------


def _listening(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (Linux /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def test_the_unauthenticated_rasa_api_and_action_server_listen_on_loopback_only(world: World):
    """Contract: the demo's Rasa runs with its HTTP API on and no token, so anyone who can
    reach the port can read any conversation (``GET /conversations/{id}/tracker``) and act
    as any sender (``POST /conversations/{id}/trigger_intent``, ``/tracker/events``); the
    action server likewise runs actions for whatever sender id its caller names. In the
    demo both, and every other process, listen on 127.0.0.1 only."""
    stack = world.stack
    victim = world.victims["telegram"]
    # Documenting, not endorsing: the API answers about another user's conversation.
    tracker = httpx.get(rasa(stack, f"/conversations/{victim.sender}/tracker"), timeout=10)
    assert tracker.status_code == 200
    assert Path("/proc/net/tcp").exists(), "listening sockets are read from /proc (Linux)"
    ports = stack.ports
    for name, port in (
        ("rasa", ports.rasa),
        ("actions", ports.actions),
        ("simulator", ports.simulator),
        ("sink", ports.sink),
        ("connector", ports.connector),
        ("partner", ports.partner),
    ):
        addresses = _listening(port)
        assert addresses, f"nothing listens on the {name} port {port}"
        assert addresses <= {"127.0.0.1", "::1", "::ffff:127.0.0.1"}, (name, addresses)
    rasa_process = next(p for p in stack.processes if p.name == "rasa")
    command = rasa_process.command
    assert command[command.index("--interface") + 1] == "127.0.0.1"
    assert "--auth-token" not in command  # what the contract asks for; see the docstring


# --- 6. proactive messages --------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, timeout: float = PUSH_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def outbox_senders(stack: Stack, device_id: str) -> set[str]:
    """Every conversation the connector ever planned a message about ``device_id`` for."""
    rows = db_rows(stack, "SELECT sender_id FROM outbox WHERE device_id = ?", device_id)
    return {row[0] for row in rows}


def push_washer_done(world: World) -> str:
    """The victim's washer finishes; returns when the victim's callback chat has it."""
    victim = world.victims["callback"]
    washer = world.ids["Washer"]
    before = len(sink_messages(world.stack, victim.sender))
    sent = sim(
        world.stack, "POST", f"/sim/devices/{washer}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
    )
    assert sent.status_code == 200, sent.text
    return wait_for(
        lambda: next(
            (
                m["text"]
                for m in sink_messages(world.stack, victim.sender)[before:]
                if "Washer has finished" in m.get("text", "")
            ),
            None,
        ),
        "the washer push reaching the victim",
    )


def test_proactive_messages_reach_the_victim_and_no_attacker(world: World):
    stack = world.stack
    victim = world.victims["callback"]
    subscribed = victim.say("notify me when the washer is done")
    assert "message you here about the Washer" in subscribed.text, subscribed.text
    washer = world.ids["Washer"]
    assert washer in sim(stack, "GET", "/sim/subscriptions").json()["push"]

    for attacker in world.attackers.values():
        for ask in ("notify me when my washer is done", f'/subscribe_push{{"device": "{washer}"}}'):
            assert_refused(attacker.say(ask))
        # Their own appliance, so the attackers have a subscription of their own.
        mine = attacker.say("turn on notifications for the neighbour AC")
        assert NEIGHBOUR_AC in mine.text, mine.text
        assert_names_no_demo_appliance(mine)

    telegram = world.attackers["telegram"]
    alexa = world.attackers["alexa"]
    widget = world.attackers["widget"]
    assert isinstance(telegram, TelegramChannel) and isinstance(widget, WidgetChannel)
    assert isinstance(alexa, AlexaChannel)
    telegram_before = len(telegram.sent_here())
    widget_history = len(widget.history())
    with WidgetListener(widget) as live:
        text = push_washer_done(world)
        assert text == "Your Washer has finished washing."
        # Planning is one step per LG callback: once the victim has it, every notice of
        # that callback exists; a short grace lets any wrong one arrive too.
        time.sleep(2.0)
        senders = outbox_senders(stack, washer)
        assert victim.sender in senders
        assert not senders & {a.sender for a in world.attackers.values()}, senders
        assert live.messages() == [], live.frames
    assert len(telegram.sent_here()) == telegram_before, telegram.sent_here()[telegram_before:]
    to_callback_attacker = sink_messages(stack, world.attackers["callback"].sender)
    assert not [m for m in to_callback_attacker if "Washer" in m.get("text", "")]
    assert len(widget.history()) == widget_history
    # Alexa keeps notifications for the next launch: the attacker's launch has none.
    welcome = alexa_speech(alexa.post(launch(user=alexa.user_id)))
    assert "notification" not in welcome.lower() and "washer" not in welcome.lower(), welcome


def test_a_conversation_relinked_to_another_user_stops_hearing_about_the_old_ones(world: World):
    """A sender that asked about the demo washer while linked to ``demo`` and then linked
    itself to ``neighbour`` acts for the neighbour now: the demo washer's pushes must stop."""
    stack = world.stack
    victim = world.victims["callback"]
    assert "about the Washer" in victim.say("notify me when the washer is done").text
    switcher = CallbackChannel(stack, f"switcher-callback-{RUN}")
    subscribed = switcher.say("notify me when the washer is done")  # demo mode: demo's washer
    assert "message you here about the Washer" in subscribed.text, subscribed.text
    link_via_oauth(stack, switcher, "neighbour")
    listed = switcher.say("what devices do I have")
    assert NEIGHBOUR_AC in listed.text
    assert_names_no_demo_appliance(listed)

    seen = len(sink_messages(stack, switcher.sender))
    push_washer_done(world)
    time.sleep(2.0)
    late = [m.get("text") for m in sink_messages(stack, switcher.sender)[seen:]]
    assert late == [], f"the relinked conversation still hears about the demo washer: {late}"
    assert switcher.sender not in outbox_senders(stack, world.ids["Washer"])
