"""The chat widget channel for Rasa: a WebSocket at ``/webhooks/widget/ws``.

A partner's page embeds ``/webhooks/widget/widget.js`` (``connector/widget_static/``).
The partner's server signs a short-lived token naming its signed-in user
(``connector/widget_token.py``); the widget presents it first thing, and the sender id
of the conversation comes from the verified token alone (``widget:<iss>:<sub>``).

Protocol (JSON text frames)::

    client  {"type": "hello", "token": "<jwt>"}             first, within 10 s
    server  {"type": "ready", "history": [msg…], "last_read": id}
    client  {"type": "message", "text": "<typed text or button payload>", "title": "<button title>"}
    server  {"type": "message", "message": msg}              the user's message, then replies
            {"type": "busy", "on": true|false}               around a turn
    client  {"type": "read", "up_to": id}
    server  {"type": "read", "last_read": id}                to all of the user's sockets
    client  {"type": "ping"}  →  server {"type": "pong"}
    server  {"type": "error", "reason": "…"}                 a message refused (socket stays open)
    server  {"type": "refused", "reason": "…"} + close 4401 token invalid or expired,
            4403 page origin not allowed, 4400 protocol error, 4408 no hello in time,
            4503 channel not configured or its store unavailable

``msg`` is ``{"id", "role": "user"|"bot", "text", "buttons": [{"title", "payload"}],
"proactive", "created_at"}``. Every message is stored (``widget_messages``) before it is
sent, so a widget that was closed, or a page that was gone, shows what it missed when it
reconnects. Proactive notifications come from the connector through
``POST /webhooks/widget/notify`` (bearer ``WIDGET_NOTIFY_SECRET``), idempotent by the
outbox id. With ``REDIS_URL`` set, frames reach sockets held by other Rasa processes.

Configured from the environment (``assistant.settings.load_widget_settings``); in demo
mode the secrets derive from the machine's demo credentials.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from websockets.datastructures import Headers
from websockets.http11 import Request as HandshakeRequest
from websockets.server import ServerConnection

from assistant.settings import WidgetSettings, load_database_url, load_widget_settings
from assistant.storage.widget_messages import MAX_TEXT_CHARS
from connector.text_parts import text_parts
from connector.validation import MAX_MESSAGE_CHARS, storable
from connector.widget_live import Broadcaster, LiveSockets
from connector.widget_token import SENDER_PREFIX, TokenRejected, verify_token

log = logging.getLogger(__name__)

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]

STATIC_DIR = Path(__file__).with_name("widget_static")
STATIC_FILES = {
    "widget.js": "application/javascript; charset=utf-8",
    "widget.css": "text/css; charset=utf-8",
}
HELLO_SECONDS = 10.0
HISTORY_LIMIT = 50
MAX_FRAME_BYTES = 16 * 1024
MAX_TITLE_CHARS = 80
# Per socket: turns waiting behind the running one, and the rate a person could type.
MAX_QUEUED_TURNS = 5
RATE_WINDOW_SECONDS = 10.0
RATE_MAX_MESSAGES = 15
TURN_FAILED = "Sorry, something went wrong on my side. Please try again."
TOO_FAST = "You're sending messages faster than I can answer. Please wait a moment."
NOT_TEXT = "a message must be text without NUL or unpaired surrogate characters"

CLOSE_PROTOCOL = 4400
CLOSE_TOKEN = 4401
CLOSE_ORIGIN = 4403
CLOSE_NO_HELLO = 4408
CLOSE_UNAVAILABLE = 4503


class Refused(Exception):
    """Ends a socket: the client is told why and the socket closed with ``code``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class WidgetHub:
    """What the sockets, the output channel and the notify endpoint share in one process:
    the message log (opened on first use) and the broadcaster."""

    def __init__(self, settings: WidgetSettings, messages: Any = None) -> None:
        self.settings = settings
        self.broadcaster = Broadcaster(
            LiveSockets(), settings.redis_url, f"{settings.redis_prefix}:widget-live"
        )
        self._messages = messages  # a WidgetMessageRepository
        self._engine: Any = None
        self._opening = asyncio.Lock()

    def __repr__(self) -> str:
        return f"WidgetHub({self.broadcaster!r})"

    @property
    def sockets(self) -> LiveSockets:
        return self.broadcaster.sockets

    async def messages(self) -> Any:
        """The message log; raises if the database cannot be opened (the caller refuses)."""
        if self._messages is not None:
            return self._messages
        async with self._opening:
            if self._messages is None:
                # Imported here: the database layer loads once a widget connects.
                from assistant.storage.db import create_engine, create_schema
                from assistant.storage.widget_messages import WidgetMessageRepository

                engine = create_engine(load_database_url())
                try:
                    await create_schema(engine)
                except BaseException:
                    await engine.dispose()
                    raise
                self._engine = engine
                self._messages = WidgetMessageRepository(engine)
        return self._messages

    async def close(self) -> None:
        await self.broadcaster.close()
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._messages = None

    async def post(
        self,
        sender_id: str,
        role: str,
        text: str,
        buttons: list[dict[str, str]] | None = None,
        *,
        key: str | None = None,
        proactive: bool = False,
    ) -> Any:
        """Store a message, then send it to every open socket of the sender."""
        store = await self.messages()
        message = await store.append(
            sender_id, role, text, buttons or [], key=key, proactive=proactive
        )
        await self.broadcaster.send(sender_id, {"type": "message", "message": message.to_json()})
        return message


class WidgetOutput(OutputChannel):
    """Rasa's replies to a widget conversation: stored, then sent to its open sockets."""

    def __init__(self, hub: WidgetHub) -> None:
        self._hub = hub

    @classmethod
    def name(cls) -> str:
        return "widget"

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._post(recipient_id, text, None)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._post(recipient_id, text, buttons)

    async def send_quick_replies(
        self, recipient_id: str, text: str, quick_replies: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._post(recipient_id, text, quick_replies)

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        # The assistant sends no images today; the link still reaches the user.
        await self._post(recipient_id, image, None)

    async def send_attachment(self, recipient_id: str, attachment: str, **kwargs: Any) -> None:
        await self._post(recipient_id, attachment, None)

    async def _post(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]] | None
    ) -> None:
        if not recipient_id.startswith(SENDER_PREFIX):
            log.warning("widget reply not sent: %r is not a widget sender id", recipient_id)
            return
        if not text or not text.strip():
            return
        # The log holds messages of up to MAX_TEXT_CHARS; a longer answer (a long device
        # list) arrives as several messages, the buttons under the last one.
        parts = text_parts(text, MAX_TEXT_CHARS)
        for part in parts[:-1]:
            await self._hub.post(recipient_id, "bot", part)
        await self._hub.post(recipient_id, "bot", parts[-1], _buttons(buttons))


def _buttons(buttons: list[dict[str, Any]] | None) -> list[dict[str, str]]:
    """Rasa's buttons as the widget draws them (title and payload, both strings)."""
    shaped = []
    for button in buttons or []:
        title = str(button.get("title") or "").strip()
        payload = str(button.get("payload") or title)
        if title:
            shaped.append({"title": title[:MAX_TITLE_CHARS], "payload": payload})
    return shaped[:10]


class WidgetInput(InputChannel):
    """Rasa input channel for the partner-embedded chat widget."""

    @classmethod
    def name(cls) -> str:
        return "widget"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> WidgetInput:
        if credentials:
            log.warning("widget: keys in credentials.yml are ignored; set WIDGET_* variables")
        return cls(load_widget_settings())

    def __init__(self, settings: WidgetSettings, hub: WidgetHub | None = None) -> None:
        self.settings = settings
        self._hub = hub
        # Turns still running after their socket closed; their replies are stored.
        self.background: set[asyncio.Task[Any]] = set()

    def __repr__(self) -> str:
        return f"WidgetInput({self.settings!r})"  # the settings' repr hides both secrets

    @property
    def hub(self) -> WidgetHub:
        # Made on first use, inside the server's running loop.
        if self._hub is None:
            self._hub = WidgetHub(self.settings)
        return self._hub

    def get_output_channel(self) -> OutputChannel | None:
        """For Rasa's own proactive API (``trigger_intent?output_channel=widget``)."""
        return WidgetOutput(self.hub) if self.settings.missing() is None else None

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        hook = Blueprint("widget_webhook", __name__)
        missing = self.settings.missing()
        if missing:
            log.warning("widget channel is off (%s): its socket refuses with 4503", missing)

        @hook.listener("before_server_start")
        async def start(app: Any, _: Any) -> None:
            # Frames are small JSON; a larger one is refused by the websocket layer itself.
            app.config.WEBSOCKET_MAX_SIZE = MAX_FRAME_BYTES
            if missing is None:
                await self.hub.broadcaster.start()

        @hook.listener("after_server_stop")
        async def stop(*_: Any) -> None:
            if self._hub is not None:
                await self._hub.close()

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok" if missing is None else "not_configured"})

        @hook.route("/<name:str>", methods=["GET"])
        async def static(_: Request, name: str) -> HTTPResponse:
            content_type = STATIC_FILES.get(name)
            if content_type is None:
                return response.json({"error": "not_found"}, status=404)
            return await response.file(
                STATIC_DIR / name,
                mime_type=content_type,
                headers={"Cache-Control": "public, max-age=300"},
            )

        @hook.route("/notify", methods=["POST"])
        async def notify(request: Request) -> HTTPResponse:
            return await self._notify(request, missing)

        @hook.middleware("request")
        async def not_a_handshake(request: Request) -> HTTPResponse | None:
            # Sanic 21.12 answers a request to a WebSocket route that is no valid opening
            # handshake (a plain GET, say) with a logged 500: its rejection breaks on
            # websockets 10. Checked here with websockets' own rules, it is a 4xx.
            route = request.route
            if route is None or not getattr(route.ctx, "websocket", False):
                return None
            problem = _handshake_problem(request)
            return None if problem is None else _problem(problem[0], "bad_handshake", problem[1])

        @hook.websocket("/ws")
        async def socket(request: Request, ws: Any) -> None:
            await self._session(request, ws, on_new_message, missing)

        return hook

    # -- the socket -------------------------------------------------------------------

    async def _session(
        self, request: Request, ws: Any, on_new_message: OnNewMessage, missing: str | None
    ) -> None:
        try:
            sender_id, expires_at, ready = await self._open(request, ws, missing)
        except Refused as refusal:
            log.info("widget socket refused (%s): %s", refusal.code, refusal.reason)
            await _refuse(ws, refusal)
            return
        hub = self.hub
        await ws.send(json.dumps(ready))
        hub.sockets.add(sender_id, ws)
        turns: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        self._spawn(self._run_turns(sender_id, ws, turns, on_new_message))
        expiry = asyncio.ensure_future(_close_at_expiry(ws, expires_at))
        recent: list[float] = []
        try:
            while True:
                raw = await ws.recv()
                if raw is None:
                    continue
                await self._frame(sender_id, ws, raw, turns, recent)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the socket closed (any way it can)
            log.debug("widget socket of %s ended (%s)", sender_id, type(error).__name__)
        finally:
            hub.sockets.remove(sender_id, ws)
            expiry.cancel()
            # Queued turns still run (the user sent them; their replies are stored), then
            # the turn worker ends.
            turns.put_nowait(("", ""))

    async def _open(
        self, request: Request, ws: Any, missing: str | None
    ) -> tuple[str, float, dict[str, Any]]:
        """Checks origin, hello and token; returns the sender, expiry and ready frame."""
        if missing:
            raise Refused(CLOSE_UNAVAILABLE, "the chat is not configured on this server")
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.settings.allowed_origins:
            raise Refused(CLOSE_ORIGIN, "this page is not allowed to open the chat")
        try:
            first = await ws.recv(timeout=HELLO_SECONDS)
        except Exception:  # closed before saying hello
            raise Refused(CLOSE_PROTOCOL, "the connection closed before it said hello") from None
        if first is None:
            raise Refused(CLOSE_NO_HELLO, "no hello within 10 seconds")
        if _oversized(first):
            raise Refused(CLOSE_PROTOCOL, f"a frame must be at most {MAX_FRAME_BYTES} bytes")
        hello = _json_object(first)
        if hello is None or hello.get("type") != "hello":
            raise Refused(CLOSE_PROTOCOL, 'the first message must be {"type": "hello", ...}')
        try:
            identity = verify_token(
                hello.get("token"),
                self.settings.token_secret or "",
                self.settings.issuer,
                self.settings.max_token_seconds,
            )
        except TokenRejected as rejected:
            raise Refused(CLOSE_TOKEN, rejected.reason) from None
        sender_id = identity.sender_id
        try:
            store = await self.hub.messages()
            history = await store.recent(sender_id, HISTORY_LIMIT)
            last_read = await store.last_read(sender_id)
        except Exception as error:  # the database is down or unreachable
            log.warning("widget: message store unavailable (%s)", type(error).__name__)
            raise Refused(
                CLOSE_UNAVAILABLE, "the chat is unavailable right now; retrying shortly"
            ) from None
        ready = {
            "type": "ready",
            "history": [m.to_json() for m in history],
            "last_read": last_read,
        }
        return sender_id, identity.expires_at, ready

    async def _frame(
        self,
        sender_id: str,
        ws: Any,
        raw: str | bytes,
        turns: asyncio.Queue[tuple[str, str]],
        recent: list[float],
    ) -> None:
        if _oversized(raw):
            await _error(ws, f"a frame must be at most {MAX_FRAME_BYTES} bytes")
            return
        frame = _json_object(raw)
        kind = frame.get("type") if frame else None
        if kind == "ping":
            await ws.send(json.dumps({"type": "pong"}))
        elif kind == "read":
            up_to = frame.get("up_to") if frame else None
            if not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 0:
                await _error(ws, "read needs a non-negative integer up_to")
                return
            store = await self.hub.messages()
            last_read = await store.mark_read(sender_id, up_to)
            await self.hub.broadcaster.send(sender_id, {"type": "read", "last_read": last_read})
        elif kind == "message":
            problem, text, title = _message(frame or {})
            if problem:
                await _error(ws, problem)
                return
            now = time.monotonic()
            recent[:] = [t for t in recent if now - t < RATE_WINDOW_SECONDS]
            if len(recent) >= RATE_MAX_MESSAGES or turns.qsize() >= MAX_QUEUED_TURNS:
                await _error(ws, TOO_FAST)
                return
            recent.append(now)
            turns.put_nowait((text, title))
        else:
            await _error(ws, "unknown frame; expected message, read or ping")

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    async def _run_turns(
        self,
        sender_id: str,
        ws: Any,
        turns: asyncio.Queue[tuple[str, str]],
        on_new_message: OnNewMessage,
    ) -> None:
        """One turn at a time per socket, in the order the user sent them."""
        hub = self.hub
        while True:
            text, title = await turns.get()
            if not text:  # the socket closed and nothing else is queued
                return
            try:
                await hub.post(sender_id, "user", title or text)
                await hub.broadcaster.send(sender_id, {"type": "busy", "on": True})
                await on_new_message(
                    UserMessage(
                        text,
                        WidgetOutput(hub),
                        sender_id,
                        input_channel=self.name(),
                        metadata={"widget": {"button_title": title} if title else {}},
                    )
                )
            except Exception:
                log.exception("widget turn of %s failed", sender_id)
                try:
                    await _error(ws, TURN_FAILED)
                except Exception:  # the socket is gone too
                    pass
            finally:
                try:
                    await hub.broadcaster.send(sender_id, {"type": "busy", "on": False})
                except Exception:  # best effort
                    pass

    # -- proactive messages from the connector -------------------------------------

    async def _notify(self, request: Request, missing: str | None) -> HTTPResponse:
        if missing:
            return _problem(503, "not_configured", f"the widget channel is off: {missing}")
        presented = request.headers.get("authorization", "")
        expected = f"Bearer {self.settings.notify_secret}"
        # Header bytes that are not UTF-8 come decoded as lone surrogates (surrogateescape).
        if not hmac.compare_digest(presented.encode(errors="surrogateescape"), expected.encode()):
            log.info("widget notify refused a request without the right secret")
            return _problem(401, "unauthorized", "missing or wrong bearer secret")
        body = _json_object(request.body or b"")
        if body is None:
            return _problem(400, "bad_request", "the body must be a JSON object")
        sender_id, text, key = body.get("sender_id"), body.get("text"), body.get("key")
        if not isinstance(sender_id, str) or not sender_id.startswith(SENDER_PREFIX):
            return _problem(400, "bad_request", "sender_id must be a widget sender id")
        if not isinstance(text, str) or not text.strip():
            return _problem(400, "bad_request", "text must be a non-empty string")
        if not isinstance(key, str) or not key:
            return _problem(400, "bad_request", "key (the idempotency key) is required")
        buttons = body.get("buttons") or []
        if not isinstance(buttons, list) or not all(isinstance(b, dict) for b in buttons):
            return _problem(400, "bad_request", "buttons must be a list of objects")
        shaped = _buttons(buttons)
        strings = [sender_id, text, key, *(v for b in shaped for v in b.values())]
        if not all(storable(s) for s in strings):
            return _problem(
                400,
                "bad_request",
                "sender_id, text, key and buttons must be text without NUL or unpaired "
                "surrogate characters",
            )
        try:
            message = await self.hub.post(sender_id, "bot", text, shaped, key=key, proactive=True)
        except ValueError as error:
            return _problem(400, "bad_request", str(error))
        except Exception as error:  # store down: the connector retries
            log.warning("widget notify could not store the message (%s)", type(error).__name__)
            return _problem(503, "unavailable", "the message store is unavailable")
        return response.json(
            {"status": "stored", "id": message.id, "live": self.hub.sockets.count(sender_id)}
        )


def _handshake_problem(request: Request) -> tuple[int, str] | None:
    """(status, reason) when ``request`` is no valid WebSocket opening handshake."""
    handshake = HandshakeRequest(request.path, Headers(request.headers.items()))
    answer = ServerConnection(logger=log).accept(handshake)
    if answer.status_code == 101:
        return None
    reason = (answer.body or b"").decode(errors="replace").strip().splitlines()
    return answer.status_code, reason[0] if reason else "not a WebSocket handshake"


def _message(frame: dict[str, Any]) -> tuple[str | None, str, str]:
    """(problem, text, title) of a message frame."""
    text, title = frame.get("text"), frame.get("title")
    if not isinstance(text, str) or not text.strip():
        return "a message needs some text", "", ""
    if not storable(text) or (isinstance(title, str) and not storable(title)):
        return NOT_TEXT, "", ""
    if len(text) > MAX_MESSAGE_CHARS:
        return (
            f"That message is too long for me. Please keep it under {MAX_MESSAGE_CHARS} "
            "characters.",
            "",
            "",
        )
    if title is not None and (not isinstance(title, str) or len(title) > MAX_TITLE_CHARS):
        return f"title must be a string of at most {MAX_TITLE_CHARS} characters", "", ""
    return None, text.strip(), (title or "").strip()


def _oversized(raw: str | bytes) -> bool:
    # Checked here as well as by WEBSOCKET_MAX_SIZE: Sanic 21.12 reads that setting before
    # our before_server_start listener sets it, so its own limit stays at 1 MiB.
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    return size > MAX_FRAME_BYTES


def _json_object(raw: str | bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python parses
        return None
    return value if isinstance(value, dict) else None


async def _error(ws: Any, reason: str) -> None:
    await ws.send(json.dumps({"type": "error", "reason": reason}))


async def _refuse(ws: Any, refusal: Refused) -> None:
    try:
        await ws.send(json.dumps({"type": "refused", "reason": refusal.reason}))
        # A close reason is at most 123 bytes.
        await ws.close(refusal.code, refusal.reason.encode()[:123].decode(errors="ignore"))
    except Exception:  # the client left first
        pass


async def _close_at_expiry(ws: Any, expires_at: float) -> None:
    """The token's end is the conversation's end: the widget fetches a new token."""
    await asyncio.sleep(max(expires_at - time.time(), 0))
    await _refuse(ws, Refused(CLOSE_TOKEN, "the sign-in token has expired"))


def _problem(status: int, error: str, reason: str) -> HTTPResponse:
    return response.json({"error": error, "reason": reason}, status=status)
