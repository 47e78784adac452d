"""The chat widget channel over real WebSockets: sign-in, turns, buttons, history, read
state, proactive messages from the connector, and every refusal.

The channel runs in a Sanic app as Rasa mounts it (``/webhooks/widget``), with the real
message log on SQLite or PostgreSQL; Rasa's agent is a stub that answers through the
channel's output, like the Telegram tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import httpx
import pytest
import websockets
from rasa.core.channels.channel import UserMessage

from assistant.settings import WidgetSettings
from assistant.storage.db import create_engine, create_schema
from assistant.storage.widget_messages import WidgetMessageRepository
from connector import widget as widget_module
from connector.outputs import OutgoingMessage, build_outputs
from connector.widget import TOO_FAST, TURN_FAILED, WidgetHub, WidgetInput
from connector.widget_token import issue_token
from devstack.processes import free_port
from tests.db_fixtures import (  # noqa: F401 - fixtures are found by name
    database_url,
    make_settings,
    postgres_database_url,
    postgres_server_url,
    redis_key_prefix,
    redis_server_url,
    redis_url,
)
from tests.sanic_support import serve_blueprint

TOKEN_SECRET = "widget-token-secret-for-tests-0123456789"
NOTIFY_SECRET = "widget-notify-secret-for-tests-0123456789"
ISSUER = "sample-partner"
PAGE = "http://127.0.0.1:8080"
BUTTONS = [{"title": "Living Room AC", "payload": '/choose{"device": "Living Room AC"}'}]


def widget_settings(**overrides: Any) -> WidgetSettings:
    values: dict[str, Any] = {
        "token_secret": TOKEN_SECRET,
        "issuer": ISSUER,
        "max_token_seconds": 900.0,
        "allowed_origins": (PAGE,),
        "notify_secret": NOTIFY_SECRET,
        "redis_url": None,
        "redis_prefix": "lgconn",
        "assistant_public_url": "http://127.0.0.1:5005",
        "partner_host": "127.0.0.1",
        "partner_port": 8080,
    }
    values.update(overrides)
    return WidgetSettings(**values)


def token(user: str = "alice", ttl: float = 600, secret: str = TOKEN_SECRET) -> str:
    return issue_token(secret, ISSUER, user, ttl_seconds=ttl)


@dataclass
class RasaStub:
    """Rasa's agent reduced to: record the message, answer through the output channel."""

    received: list[UserMessage] = field(default_factory=list)
    fail: bool = False
    delay: float = 0.0
    # The answer's text instead of "You said: …".
    reply: str | None = None

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise RuntimeError("the agent broke")
        text = self.reply if self.reply is not None else f"You said: {message.text}"
        await message.output_channel.send_response(
            message.sender_id, {"text": text, "buttons": BUTTONS}
        )


@dataclass
class Server:
    base: str
    rasa: RasaStub
    channel: WidgetInput
    messages: WidgetMessageRepository

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/webhooks/widget/ws"

    async def notify(self, body: Any, secret: str | None = NOTIFY_SECRET) -> httpx.Response:
        headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                f"{self.base}/webhooks/widget/notify", json=body, headers=headers
            )


async def serve(channel: WidgetInput, rasa: RasaStub) -> AsyncIterator[str]:
    async with serve_blueprint(
        channel.blueprint(rasa), "/webhooks/widget", name="widget-test"
    ) as base:
        yield base


@pytest.fixture
async def messages(database_url: str) -> AsyncIterator[WidgetMessageRepository]:  # noqa: F811
    engine = create_engine(database_url)
    await create_schema(engine)
    try:
        yield WidgetMessageRepository(engine)
    finally:
        await engine.dispose()


async def start(
    messages: WidgetMessageRepository, settings: WidgetSettings | None = None
) -> AsyncIterator[Server]:
    settings = settings or widget_settings()
    rasa = RasaStub()
    channel = WidgetInput(settings, WidgetHub(settings, messages))
    async for base in serve(channel, rasa):
        yield Server(base, rasa, channel, messages)
    for task in list(channel.background):
        task.cancel()


@pytest.fixture
async def server(
    messages: WidgetMessageRepository, caplog: pytest.LogCaptureFixture
) -> AsyncIterator[Server]:
    caplog.set_level(logging.DEBUG)
    async for running in start(messages):
        yield running
    # Whatever the test did, no secret reached a log line.
    assert NOTIFY_SECRET not in caplog.text and TOKEN_SECRET not in caplog.text


class Client:
    """A widget's socket: hello, frames in and out, bounded waits."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws

    async def send(self, frame: Any) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def until(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(deadline - time.monotonic(), 0.01))
            if frame["type"] == kind:
                return frame

    async def turn(self, text: str, title: str | None = None) -> list[dict[str, Any]]:
        """Send a message; the frames up to the end of the turn (busy off)."""
        frame: dict[str, Any] = {"type": "message", "text": text}
        if title is not None:
            frame["title"] = title
        await self.send(frame)
        frames = []
        while True:
            frames.append(await self.next())
            if frames[-1] == {"type": "busy", "on": False}:
                return frames

    async def closed(self, timeout: float = 5.0) -> tuple[int, list[dict[str, Any]]]:
        """Frames until the server closes; the close code."""
        frames = []
        try:
            while True:
                frames.append(json.loads(await asyncio.wait_for(self.ws.recv(), timeout)))
        except websockets.ConnectionClosed as closed:
            return closed.code, frames


async def connect(
    server: Server, hello: Any = None, origin: str | None = PAGE, user: str = "alice"
) -> Client:
    ws = await websockets.connect(server.ws_url, origin=origin, open_timeout=5)
    client = Client(ws)
    try:
        await client.send(hello if hello is not None else {"type": "hello", "token": token(user)})
    except websockets.ConnectionClosed:
        pass  # refused before the hello (origin, not configured): closed() reports it
    return client


async def ready(server: Server, user: str = "alice") -> tuple[Client, dict[str, Any]]:
    client = await connect(server, user=user)
    frame = await client.next()
    assert frame["type"] == "ready", frame
    return client, frame


async def test_a_signed_in_user_gets_an_empty_history_first(server: Server) -> None:
    client, frame = await ready(server)
    assert frame == {"type": "ready", "history": [], "last_read": 0}
    await client.ws.close()


async def test_a_turn_reaches_rasa_as_the_token_user_and_replies_with_buttons(
    server: Server,
) -> None:
    client, _ = await ready(server)
    # A sender the browser names itself is ignored: the token decides who speaks.
    await client.send({"type": "message", "text": "set the AC to 22", "sender": "widget:x:bob"})
    frames = []
    while not frames or frames[-1] != {"type": "busy", "on": False}:
        frames.append(await client.next())
    user, busy, reply, _ = frames
    assert user["message"]["role"] == "user" and user["message"]["text"] == "set the AC to 22"
    assert busy == {"type": "busy", "on": True}
    assert reply["message"]["role"] == "bot"
    assert reply["message"]["text"] == "You said: set the AC to 22"
    assert reply["message"]["buttons"] == BUTTONS
    assert reply["message"]["proactive"] is False
    assert reply["message"]["id"] > user["message"]["id"]
    [received] = server.rasa.received
    assert received.sender_id == "widget:sample-partner:alice"
    assert received.input_channel == "widget"
    await client.ws.close()


async def test_an_answer_longer_than_a_message_arrives_whole_in_several(server: Server) -> None:
    lines = [f"Appliance {n}: running, {n} minutes left" for n in range(300)]
    server.rasa.reply = "\n".join(lines)  # about 12,000 characters
    client, _ = await ready(server)
    await client.send({"type": "message", "text": "what devices do I have"})
    frames = []
    while not frames or frames[-1] != {"type": "busy", "on": False}:
        frames.append(await client.next())
    replies = [
        f["message"] for f in frames if f["type"] == "message" and f["message"]["role"] == "bot"
    ]
    assert len(replies) == 4 and not [f for f in frames if f["type"] == "error"]
    assert all(len(r["text"]) <= 4000 for r in replies)
    assert "\n".join(r["text"] for r in replies).splitlines() == lines  # cut between lines
    assert [r["buttons"] for r in replies] == [[], [], [], BUTTONS]
    history = await server.messages.recent("widget:sample-partner:alice")
    assert [m.text for m in history if m.role == "bot"] == [r["text"] for r in replies]
    await client.ws.close()


async def test_a_button_press_shows_its_title_and_sends_its_payload(server: Server) -> None:
    client, _ = await ready(server)
    frames = await client.turn(BUTTONS[0]["payload"], title="Living Room AC")
    assert frames[0]["message"]["text"] == "Living Room AC"
    assert server.rasa.received[0].text == BUTTONS[0]["payload"]
    await client.ws.close()


async def test_every_tab_of_the_user_sees_the_turn_and_no_one_else_does(server: Server) -> None:
    first, _ = await ready(server)
    second, _ = await ready(server)
    other, _ = await ready(server, user="bob")
    await first.turn("hello")
    seen = [await second.next() for _ in range(4)]
    assert [f["type"] for f in seen] == ["message", "busy", "message", "busy"]
    with pytest.raises(asyncio.TimeoutError):
        await other.next(timeout=0.5)
    for client in (first, second, other):
        await client.ws.close()


@pytest.mark.parametrize(
    ("hello", "reason"),
    [
        ({"type": "hello", "token": "forged"}, "malformed"),
        ({"type": "hello"}, "required"),
        ({"type": "message", "text": "hi"}, "hello"),
        ("not json", "hello"),
    ],
)
async def test_bad_hellos_are_refused_and_reach_no_one(
    server: Server, hello: Any, reason: str
) -> None:
    client = await connect(server, hello=hello)
    code, frames = await client.closed()
    assert code in (4400, 4401)
    assert frames[0]["type"] == "refused" and reason in frames[0]["reason"]
    assert server.rasa.received == []


async def test_a_token_signed_with_another_secret_is_refused_with_4401(server: Server) -> None:
    forged = token("alice", secret="an-attackers-secret-0123456789-abcdef")
    client = await connect(server, hello={"type": "hello", "token": forged})
    code, frames = await client.closed()
    assert code == 4401 and "signature" in frames[0]["reason"]
    assert server.rasa.received == []


async def test_an_expired_token_is_refused(server: Server) -> None:
    old = issue_token(TOKEN_SECRET, ISSUER, "alice", ttl_seconds=60, now=time.time() - 600)
    client = await connect(server, hello={"type": "hello", "token": old})
    code, frames = await client.closed()
    assert code == 4401 and "expired" in frames[0]["reason"]


async def test_the_socket_closes_when_the_token_expires(server: Server) -> None:
    short = issue_token(TOKEN_SECRET, ISSUER, "alice", ttl_seconds=31, now=time.time() - 30)
    client = await connect(server, hello={"type": "hello", "token": short})
    code, frames = await client.closed(timeout=40)
    assert frames[0]["type"] == "ready"
    assert code == 4401 and frames[-1] == {
        "type": "refused",
        "reason": "the sign-in token has expired",
    }


async def test_a_page_of_another_origin_is_refused_with_4403(server: Server) -> None:
    client = await connect(server, origin="https://evil.example")
    code, frames = await client.closed()
    assert code == 4403 and "not allowed" in frames[0]["reason"]


async def test_a_client_without_an_origin_relies_on_the_token(server: Server) -> None:
    client = await connect(server, origin=None)
    assert (await client.next())["type"] == "ready"
    await client.ws.close()


async def test_no_hello_in_time_is_closed_with_4408(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(widget_module, "HELLO_SECONDS", 0.3)
    ws = await websockets.connect(server.ws_url, origin=PAGE)
    code, _ = await Client(ws).closed()
    assert code == 4408


async def test_bad_frames_get_a_reason_and_the_socket_stays_open(server: Server) -> None:
    client, _ = await ready(server)
    for frame, reason in [
        ({"type": "message", "text": "   "}, "some text"),
        ({"type": "message", "text": "x" * 5000}, "too long"),
        ({"type": "message", "text": "hi", "title": 5}, "title"),
        ({"type": "read", "up_to": "all"}, "integer"),
        ({"type": "dance"}, "unknown frame"),
        ("[1, 2]", "unknown frame"),
        # Over 16 KB: refused by the channel itself (Sanic's own limit is 1 MiB).
        ({"type": "message", "text": "hi", "pad": "x" * 20_000}, "at most 16384 bytes"),
    ]:
        await client.send(frame)
        answer = await client.next()
        assert answer["type"] == "error" and reason in answer["reason"], (frame, answer)
    await client.send({"type": "ping"})
    assert await client.next() == {"type": "pong"}
    assert server.rasa.received == []
    await client.ws.close()


async def test_messages_faster_than_a_person_types_are_refused(server: Server) -> None:
    server.rasa.delay = 0.5
    client, _ = await ready(server)
    for n in range(8):
        await client.send({"type": "message", "text": f"message {n}"})
    errors = []
    deadline = time.monotonic() + 10
    while len(server.rasa.received) + len(errors) < 8 and time.monotonic() < deadline:
        frame = await client.next()
        if frame["type"] == "error":
            errors.append(frame["reason"])
    assert errors and set(errors) == {TOO_FAST}
    await client.ws.close()


async def test_a_failing_turn_is_explained_and_the_busy_indicator_ends(server: Server) -> None:
    server.rasa.fail = True
    client, _ = await ready(server)
    frames = await client.turn("hello")
    assert {"type": "error", "reason": TURN_FAILED} in frames
    await client.ws.close()


async def test_notify_needs_the_secret(server: Server) -> None:
    body = {"sender_id": "widget:sample-partner:alice", "text": "Your Washer is done.", "key": "k1"}
    assert (await server.notify(body, secret=None)).status_code == 401
    assert (await server.notify(body, secret="wrong")).status_code == 401
    assert await server.messages.recent("widget:sample-partner:alice") == []


@pytest.mark.parametrize(
    "body",
    [
        {"sender_id": "rest-user", "text": "x", "key": "k"},
        {"sender_id": "widget:sample-partner:alice", "text": "", "key": "k"},
        {"sender_id": "widget:sample-partner:alice", "text": "x"},
        {"sender_id": "widget:sample-partner:alice", "text": "x", "key": "k", "buttons": "no"},
        [],
    ],
)
async def test_notify_refuses_malformed_bodies_with_a_reason(server: Server, body: Any) -> None:
    answer = await server.notify(body)
    assert answer.status_code == 400 and answer.json()["reason"]


async def test_a_notification_reaches_the_open_widget_once(server: Server) -> None:
    client, _ = await ready(server)
    body = {"sender_id": "widget:sample-partner:alice", "text": "Your Washer is done.", "key": "o1"}
    first = await server.notify(body)
    again = await server.notify(body)
    assert first.status_code == again.status_code == 200
    assert first.json()["live"] == 1 and first.json()["id"] == again.json()["id"]
    frame = await client.next()
    assert frame["message"]["text"] == "Your Washer is done."
    assert frame["message"]["proactive"] is True
    assert len(await server.messages.recent("widget:sample-partner:alice")) == 1
    await client.ws.close()


async def test_what_arrived_while_closed_is_in_the_history_at_reopen(server: Server) -> None:
    client, _ = await ready(server)
    await client.turn("hello")
    await client.ws.close()
    for n in (1, 2):
        body = {"sender_id": "widget:sample-partner:alice", "text": f"Note {n}", "key": f"n{n}"}
        assert (await server.notify(body)).json()["live"] == 0
    again, frame = await ready(server)
    texts = [m["text"] for m in frame["history"]]
    assert texts == ["hello", "You said: hello", "Note 1", "Note 2"]
    assert frame["last_read"] < frame["history"][-2]["id"]
    # Reading them is remembered and told to every tab.
    other, _ = await ready(server)
    await again.send({"type": "read", "up_to": frame["history"][-1]["id"]})
    assert (await other.until("read"))["last_read"] == frame["history"][-1]["id"]
    third, later = await ready(server)
    assert later["last_read"] == frame["history"][-1]["id"]
    for c in (again, other, third):
        await c.ws.close()


async def test_widget_script_and_style_are_served(server: Server) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        script = await http.get(f"{server.base}/webhooks/widget/widget.js")
        style = await http.get(f"{server.base}/webhooks/widget/widget.css")
        missing = await http.get(f"{server.base}/webhooks/widget/secrets.txt")
        escape = await http.get(f"{server.base}/webhooks/widget/..%2Fwidget.py")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "LGAssistantWidget" in script.text
    assert style.status_code == 200 and "text/css" in style.headers["content-type"]
    assert missing.status_code == 404 and escape.status_code == 404


async def test_an_unconfigured_channel_refuses_with_4503(messages: WidgetMessageRepository) -> None:
    settings = widget_settings(token_secret=None, notify_secret=None)
    async for server in start(messages, settings):
        client = await connect(server)
        code, frames = await client.closed()
        assert code == 4503 and "not configured" in frames[0]["reason"]
        body = {"sender_id": "widget:sample-partner:alice", "text": "x", "key": "k"}
        assert (await server.notify(body)).status_code == 503


class BrokenMessages:
    async def recent(self, *_: Any) -> list[Any]:
        raise OSError("database down")

    async def append(self, *_: Any, **__: Any) -> Any:
        raise OSError("database down")


async def test_a_store_that_is_down_refuses_with_4503_and_notify_asks_for_a_retry() -> None:
    settings = widget_settings()
    channel = WidgetInput(settings, WidgetHub(settings, BrokenMessages()))
    async for base in serve(channel, RasaStub()):
        server = Server(base, RasaStub(), channel, BrokenMessages())  # type: ignore[arg-type]
        client = await connect(server)
        code, frames = await client.closed()
        assert code == 4503 and "unavailable" in frames[0]["reason"]
        body = {"sender_id": "widget:sample-partner:alice", "text": "x", "key": "k"}
        assert (await server.notify(body)).status_code == 503


@pytest.mark.redis
async def test_with_redis_a_notification_reaches_a_socket_held_by_another_process(
    messages: WidgetMessageRepository,
    redis_url: str,  # noqa: F811
    redis_key_prefix: str,  # noqa: F811
) -> None:
    settings = widget_settings(redis_url=redis_url, redis_prefix=redis_key_prefix)
    async for holding in start(messages, settings):
        async for other in start(messages, settings):
            client, _ = await ready(holding)
            body = {"sender_id": "widget:sample-partner:alice", "text": "From B", "key": "r1"}
            answer = await other.notify(body)
            assert answer.status_code == 200 and answer.json()["live"] == 0
            frame = await client.next()
            assert frame["message"]["text"] == "From B"
            await client.ws.close()


async def test_the_connector_delivers_through_the_channel(server: Server, tmp_path) -> None:
    client, _ = await ready(server)
    settings = make_settings(tmp_path)
    connector = replace(settings.connector, rasa_url=server.base)
    async with aiohttp.ClientSession() as http:
        outputs = build_outputs(connector, http, widget=widget_settings())
        message = OutgoingMessage(
            outbox_id="outbox-1",
            message_id="lg-1",
            sender_id="widget:sample-partner:alice",
            channel="widget",
            text="Your Washer has finished.",
            response="utter_push",
        )
        result = await outputs.send(message)
        assert result.delivered, result.reason
        assert (await outputs.send(message)).delivered  # a redelivery is stored once
        frame = await client.next()
        assert frame["message"]["text"] == "Your Washer has finished."
        assert len(await server.messages.recent("widget:sample-partner:alice")) == 1

        wrong = build_outputs(connector, http, widget=widget_settings(notify_secret="x" * 40))
        refused = await wrong.send(replace(message, outbox_id="outbox-2"))
        assert not refused.delivered and not refused.retryable and "401" in (refused.reason or "")

        other = await outputs.send(replace(message, sender_id="telegram:5"))
        assert not other.delivered and not other.retryable

        down = build_outputs(
            replace(connector, rasa_url=f"http://127.0.0.1:{free_port()}"),
            http,
            widget=widget_settings(),
        )
        later = await down.send(message)
        assert not later.delivered and later.retryable
        assert "unreachable" in (later.reason or "")

        off = build_outputs(connector, http)
        assert "WIDGET_NOTIFY_SECRET" in ((await off.send(message)).reason or "")
    await client.ws.close()
