"""The chat widget (connector/widget_static/) in real Chromium against a fake widget server.

The fake server speaks the widget protocol (hello/ready, message, busy, read, error,
refused + close codes, ping/pong) with switches a test flips: refuse tokens, reply with or
without buttons, hold the reply back, push proactive messages, close the sockets. It
records every frame the browser sends.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from playwright.async_api import Browser, Page, async_playwright, expect

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "connector" / "widget_static"
SCREENSHOTS = ROOT / "reports" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
WAIT = 5.0  # seconds: the bound on every wait in this file
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 375, "height": 667}

expect.set_options(timeout=WAIT * 1000)

TEST_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Partner page</title>
</head>
<body>
<main>
  <h1>A partner page</h1>
  <p>Some of the partner's own content, and no focusable element before the widget.</p>
</main>
<script src="/webhooks/widget/widget.js"></script>
<script>
  window.tokenCalls = 0;
  window.widget = LGAssistantWidget.mount({
    getToken: async function () {
      window.tokenCalls++;
      const response = await fetch("/token", { method: "POST" });
      if (!response.ok) throw new Error("token endpoint answered " + response.status);
      return (await response.json()).token;
    },
  });
</script>
</body>
</html>
"""

WASHER = '/choose{"device":"washer"}'
DRYER = '/choose{"device":"dryer"}'


@dataclass
class Reply:
    text: str
    buttons: list[dict[str, str]] = field(default_factory=list)


def echo(text: str) -> list[Reply]:
    return [Reply(f"You said: {text}")]


class FakeWidgetServer:
    """The assistant's widget channel, as far as the browser can tell."""

    def __init__(self) -> None:
        self.port = 0
        self.messages: list[dict[str, Any]] = []
        self.last_read = 0
        self.frames: list[dict[str, Any]] = []  # every frame any browser sent, in order
        self.sockets: list[web.WebSocketResponse] = []  # said hello and got "ready"
        self.tokens_issued: list[str] = []
        self.token_status = 200
        # token -> (close code, reason) to refuse it, or None to accept it
        self.refuse: Callable[[str], tuple[int, str] | None] = lambda token: None
        self.replies: Callable[[str], list[Reply]] = echo
        self.message_error: str | None = None  # answer messages with this error instead
        self.reply_gate = asyncio.Event()  # cleared: replies wait (the typing indicator shows)
        self.reply_gate.set()
        self._next_id = 1
        self._closing: dict[web.WebSocketResponse, asyncio.Event] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/", self._page)
        app.router.add_get("/webhooks/widget/widget.js", self._static("widget.js"))
        app.router.add_get("/webhooks/widget/widget.css", self._static("widget.css"))
        app.router.add_get("/webhooks/widget/ws", self._socket)
        app.router.add_post("/token", self._token)
        return app

    # --- what tests look at ---

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame.get("type") == kind]

    @property
    def hello_tokens(self) -> list[str]:
        return [frame.get("token") for frame in self.sent("hello")]

    async def wait_for(self, condition: Callable[[], object], what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.02)

    async def connected(self, count: int = 1) -> None:
        await self.wait_for(lambda: len(self.sockets) >= count, f"{count} open socket(s)")

    # --- what tests do ---

    def store(
        self,
        role: str,
        text: str,
        buttons: list[dict[str, str]] | None = None,
        proactive: bool = False,
    ) -> dict[str, Any]:
        message = {
            "id": self._next_id,
            "role": role,
            "text": text,
            "buttons": buttons or [],
            "proactive": proactive,
            "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self._next_id += 1
        self.messages.append(message)
        return message

    async def push(
        self, text: str, proactive: bool = True, buttons: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        """A bot message out of the blue (a notification): stored, sent to open sockets."""
        message = self.store("bot", text, buttons, proactive=proactive)
        await self.broadcast({"type": "message", "message": message})
        return message

    async def broadcast(self, frame: dict[str, Any]) -> None:
        for ws in list(self.sockets):
            if not ws.closed:
                await ws.send_json(frame)

    async def close_all(self, code: int, reason: str | None = None) -> None:
        sockets, self.sockets = list(self.sockets), []
        for ws in sockets:
            # The socket's handler must not return before close() is done: aiohttp would
            # close it first, with 1000.
            done = self._closing[ws] = asyncio.Event()
            try:
                if reason is not None:
                    await ws.send_json({"type": "refused", "reason": reason})
                await ws.close(code=code)
            finally:
                done.set()

    # --- handlers ---

    async def _page(self, _: web.Request) -> web.Response:
        return web.Response(text=TEST_PAGE, content_type="text/html")

    @staticmethod
    def _static(name: str) -> Callable[[web.Request], Any]:
        async def handler(_: web.Request) -> web.FileResponse:
            return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

        return handler

    async def _token(self, _: web.Request) -> web.Response:
        if self.token_status != 200:
            return web.json_response({"error": "nope"}, status=self.token_status)
        token = f"tok-{len(self.tokens_issued) + 1}"
        self.tokens_issued.append(token)
        return web.json_response({"token": token, "expires_in": 600})

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        try:
            first = await asyncio.wait_for(ws.receive(), timeout=10)
        except asyncio.TimeoutError:
            await ws.send_json({"type": "refused", "reason": "no hello in time"})
            await ws.close(code=4408)
            return ws
        if first.type != WSMsgType.TEXT:
            return ws
        hello = json.loads(first.data)
        self.frames.append(hello)
        if hello.get("type") != "hello":
            await ws.send_json({"type": "refused", "reason": "expected hello"})
            await ws.close(code=4400)
            return ws
        refusal = self.refuse(str(hello.get("token")))
        if refusal is not None:
            code, reason = refusal
            await ws.send_json({"type": "refused", "reason": reason})
            await ws.close(code=code)
            return ws
        self.sockets.append(ws)
        try:
            await ws.send_json(
                {"type": "ready", "history": self.messages[-50:], "last_read": self.last_read}
            )
            async for raw in ws:
                if raw.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(raw.data)
                self.frames.append(frame)
                kind = frame.get("type")
                if kind == "message":
                    await self._conversation_turn(ws, frame)
                elif kind == "read":
                    self.last_read = max(self.last_read, int(frame["up_to"]))
                    await self.broadcast({"type": "read", "last_read": self.last_read})
                elif kind == "ping":
                    await ws.send_json({"type": "pong"})
        finally:
            if ws in self.sockets:
                self.sockets.remove(ws)
            closing = self._closing.pop(ws, None)
            if closing is not None:
                await asyncio.wait_for(closing.wait(), timeout=WAIT)
        return ws

    async def _conversation_turn(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        if self.message_error is not None:
            await ws.send_json({"type": "error", "reason": self.message_error})
            return
        text = str(frame.get("text", ""))
        user = self.store("user", str(frame.get("title") or text))
        await self.broadcast({"type": "message", "message": user})
        await self.broadcast({"type": "busy", "on": True})
        await asyncio.wait_for(self.reply_gate.wait(), timeout=WAIT * 2)
        for reply in self.replies(text):
            message = self.store("bot", reply.text, reply.buttons)
            await self.broadcast({"type": "message", "message": message})
        await self.broadcast({"type": "busy", "on": False})


@pytest.fixture
async def server() -> AsyncIterator[FakeWidgetServer]:
    fake = FakeWidgetServer()
    runner = web.AppRunner(fake.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    fake.port = runner.addresses[0][1]
    try:
        yield fake
    finally:
        fake.reply_gate.set()
        await asyncio.wait_for(fake.close_all(1001), timeout=WAIT)
        await asyncio.wait_for(runner.cleanup(), timeout=WAIT * 2)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # A missing browser fails the run (never skips): scripts/browser.sh installs it.
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: run scripts/browser.sh"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], timeout=WAIT * 6 * 1000
        )
        try:
            yield browser
        finally:
            await browser.close()


class PageProblems:
    """JavaScript errors and dialogs (alert & co.) seen on a page."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def watch(self, page: Page) -> Page:
        page.set_default_timeout(WAIT * 1000)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

        async def dismiss(dialog: Any) -> None:
            self.dialogs.append(dialog.message)
            await dialog.dismiss()

        page.on("dialog", dismiss)
        return page


@pytest.fixture
def problems() -> PageProblems:
    return PageProblems()


async def new_page(
    browser: Browser, problems: PageProblems, viewport: dict[str, int] = DESKTOP, **kwargs: Any
) -> Page:
    context = await browser.new_context(viewport=viewport, **kwargs)  # type: ignore[arg-type]
    return problems.watch(await context.new_page())


@pytest.fixture
async def page(browser: Browser, problems: PageProblems) -> AsyncIterator[Page]:
    page = await new_page(browser, problems)
    try:
        yield page
    finally:
        await page.context.close()
    assert problems.errors == [], "JavaScript errors on the page"
    assert problems.dialogs == [], "the page opened a dialog"


async def load(page: Page, server: FakeWidgetServer, sockets: int = 1) -> None:
    await page.goto(server.url + "/", timeout=WAIT * 1000)
    await server.connected(sockets)


class Widget:
    """The widget's parts, found the way assistive technology finds them."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.launcher = page.get_by_role("button", name="Open LG assistant chat")
        self.dialog = page.get_by_role("dialog", name="LG ThinQ assistant")
        self.log = page.get_by_role("log")
        self.status = page.get_by_role("status")
        self.input = page.get_by_role("textbox", name="Message")
        self.send = page.get_by_role("button", name="Send", exact=True)
        self.close = page.get_by_role("button", name="Close chat")
        self.try_again = page.get_by_role("button", name="Try again")
        self.badge = page.locator(".lgw-badge")
        self.separator = page.locator(".lgw-separator")

    def messages(self, kind: str = "") -> Any:
        return self.page.locator(f".lgw-msg{kind}")

    async def ids(self) -> list[int]:
        values = await self.messages().evaluate_all("nodes => nodes.map(n => n.dataset.id)")
        return [int(v) for v in values]

    async def open(self) -> None:
        await self.launcher.click()
        await expect(self.dialog).to_be_visible()
        await self.settled()

    async def settled(self) -> None:
        """Wait for the panel's opening animation (if any) to end."""
        await self.dialog.evaluate(
            "n => Promise.all(n.getAnimations().map(a => a.finished))", timeout=WAIT * 1000
        )


def screenshot_path(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name


async def test_keyboard_flow(page: Page, server: FakeWidgetServer) -> None:
    server.replies = lambda text: [Reply("The washer has 12 minutes left.")]
    await load(page, server)
    widget = Widget(page)

    await page.keyboard.press("Tab")
    await expect(widget.launcher).to_be_focused()
    await expect(widget.launcher).to_have_attribute("aria-expanded", "false")
    outline = await widget.launcher.evaluate("n => getComputedStyle(n).outlineStyle")
    assert outline != "none", "keyboard focus must be visible"

    await page.keyboard.press("Enter")
    await expect(widget.dialog).to_be_visible()
    await expect(widget.launcher).to_have_attribute("aria-expanded", "true")
    await expect(widget.input).to_be_focused()

    # Enter on an empty input sends nothing.
    await page.keyboard.press("Enter")
    await page.keyboard.type("Is my washer done?")
    await page.keyboard.press("Enter")
    await server.wait_for(lambda: server.sent("message"), "the message frame")
    assert [f["type"] for f in server.frames] == ["hello", "message"]
    assert server.frames[0]["token"] == "tok-1"
    assert server.frames[1] == {"type": "message", "text": "Is my washer done?"}
    await expect(widget.input).to_have_value("")
    await expect(widget.messages(".lgw-user")).to_have_text(["You: Is my washer done?"])
    await expect(widget.messages(".lgw-bot")).to_have_text(
        ["Assistant: The washer has 12 minutes left."]
    )
    await expect(widget.input).to_be_focused()

    await page.keyboard.press("Tab")
    await expect(widget.send).to_be_focused()

    await page.keyboard.press("Escape")
    await expect(widget.dialog).to_be_hidden()
    await expect(widget.launcher).to_be_focused()
    await expect(widget.launcher).to_have_attribute("aria-expanded", "false")

    # The close button works from the keyboard too.
    await page.keyboard.press("Enter")
    await expect(widget.input).to_be_focused()
    await page.keyboard.press("Shift+Tab")  # the log (scrollable, so focusable)
    await expect(widget.log).to_be_focused()
    await page.keyboard.press("Shift+Tab")
    await expect(widget.close).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(widget.dialog).to_be_hidden()
    await expect(widget.launcher).to_be_focused()
    assert len(server.sent("message")) == 1


async def test_roles_and_labels(page: Page, server: FakeWidgetServer) -> None:
    server.replies = lambda text: [
        Reply("Which appliance?", [{"title": "Washer", "payload": WASHER}])
    ]
    await load(page, server)
    widget = Widget(page)
    panel_id = await page.locator(".lgw-panel").get_attribute("id")
    await expect(widget.launcher).to_have_attribute("aria-controls", panel_id or "?")
    await widget.open()

    title_id = await widget.dialog.get_attribute("aria-labelledby")
    await expect(page.locator(f"#{title_id}")).to_have_text("LG ThinQ assistant")
    await expect(page.locator(f"#{title_id}")).to_be_visible()
    await expect(widget.log).to_have_attribute("aria-live", "polite")
    await expect(widget.status).to_have_text("Connected")
    await expect(widget.close).to_be_visible()
    await expect(widget.send).to_be_enabled()
    await expect(widget.input).to_have_attribute("type", "text")
    await expect(widget.input).to_have_attribute("maxlength", "1000")
    await expect(widget.input).to_have_attribute("autocomplete", "off")
    label = page.locator(f"label[for='{await widget.input.get_attribute('id')}']")
    await expect(label).to_have_text("Message")
    assert await label.evaluate("n => n.getBoundingClientRect().width") <= 1  # visually hidden

    # The typing indicator shows while the assistant is busy.
    server.reply_gate.clear()
    await widget.input.fill("status")
    await widget.input.press("Enter")
    typing = page.locator(".lgw-typing")
    await expect(typing).to_be_visible()
    await expect(typing).to_contain_text("Assistant is typing")
    server.reply_gate.set()
    await expect(typing).to_be_hidden()

    group = page.get_by_role("group", name="Quick replies")
    await expect(group).to_have_count(1)
    await expect(group.get_by_role("button", name="Washer")).to_be_enabled()
    await expect(page.locator(".lgw-user .lgw-sr")).to_have_text(["You: "])
    await expect(page.locator(".lgw-bot .lgw-sr")).to_have_text(["Assistant: "])
    for locator in (widget.messages(".lgw-user"), widget.messages(".lgw-bot")):
        assert await locator.get_attribute("data-id")


async def test_quick_replies(page: Page, server: FakeWidgetServer) -> None:
    def replies(text: str) -> list[Reply]:
        if text == WASHER:
            return [
                Reply(
                    "The washer has 12 minutes left.",
                    [{"title": "Pause it", "payload": "/pause"}],
                )
            ]
        return [
            Reply(
                "Which appliance?",
                [{"title": "Washer", "payload": WASHER}, {"title": "Dryer", "payload": DRYER}],
            )
        ]

    server.replies = replies
    await load(page, server)
    widget = Widget(page)
    await widget.open()
    await widget.input.fill("how long is left?")
    await widget.input.press("Enter")
    first = page.get_by_role("group", name="Quick replies").first
    await expect(first.get_by_role("button")).to_have_text(["Washer", "Dryer"])
    await first.get_by_role("button", name="Washer").click()

    await server.wait_for(lambda: len(server.sent("message")) == 2, "the quick reply")
    assert server.sent("message")[1] == {"type": "message", "text": WASHER, "title": "Washer"}
    for button in await first.get_by_role("button").all():
        await expect(button).to_be_disabled()
    await expect(widget.input).to_be_focused()
    # The server stores the title as the user's message.
    await expect(widget.messages(".lgw-user").last).to_have_text("You: Washer")

    # The newer bot message's group is live; the older one stays disabled.
    latest = page.get_by_role("group", name="Quick replies").last
    await expect(page.get_by_role("group", name="Quick replies")).to_have_count(2)
    await expect(latest.get_by_role("button", name="Pause it")).to_be_enabled()
    await expect(first.get_by_role("button", name="Dryer")).to_be_disabled()
    await page.screenshot(path=screenshot_path("widget-ui-desktop.png"))
    box = await widget.dialog.bounding_box()
    assert box is not None and box["width"] < DESKTOP["width"] / 2  # a panel, not a page

    # A newer bot message (here a notification) retires the buttons too.
    await server.push("Your Washer has finished.")
    await expect(latest.get_by_role("button", name="Pause it")).to_be_disabled()


async def test_unread_badge_separator_and_read(page: Page, server: FakeWidgetServer) -> None:
    server.store("user", "hi")
    server.store("bot", "Hello! How can I help?")
    server.last_read = 2
    await load(page, server)
    widget = Widget(page)
    await expect(widget.messages()).to_have_count(2)
    await expect(widget.badge).to_be_hidden()

    await server.push("Your Washer has finished.")
    await server.push("Your Dryer has finished.")
    await expect(widget.badge).to_be_visible()
    await expect(widget.badge).to_contain_text("2")
    await expect(page.locator(".lgw-badge .lgw-sr")).to_have_text("2 new messages")
    await expect(widget.launcher).to_have_accessible_description("2 new messages")
    await expect(widget.messages(".lgw-proactive")).to_have_count(2)
    assert server.sent("read") == []  # nothing is read while the panel is closed

    await widget.open()
    await expect(widget.separator).to_have_text("New messages")
    after = await widget.separator.evaluate("n => n.nextElementSibling.dataset.id")
    assert after == "3"
    before = await widget.separator.evaluate("n => n.previousElementSibling.dataset.id")
    assert before == "2"
    await server.wait_for(lambda: server.sent("read"), "the read frame")
    assert server.sent("read") == [{"type": "read", "up_to": 4}]
    await expect(widget.badge).to_be_hidden()

    await widget.close.click()
    await expect(widget.separator).to_have_count(0)
    await expect(widget.badge).to_be_hidden()

    # Read elsewhere (another tab): the server's read frame clears the badge.
    await server.push("Your Fridge door is open.")
    await expect(widget.badge).to_contain_text("1")
    await expect(widget.launcher).to_have_accessible_description("1 new message")
    await server.broadcast({"type": "read", "last_read": 5})
    await expect(widget.badge).to_be_hidden()

    # Opening with nothing unread shows no separator and sends no read.
    await widget.open()
    await expect(widget.messages()).to_have_count(5)
    await expect(widget.separator).to_have_count(0)
    assert len(server.sent("read")) == 1


async def test_read_in_one_tab_clears_the_badge_in_another(
    browser: Browser, server: FakeWidgetServer, problems: PageProblems
) -> None:
    first = await new_page(browser, problems)
    second = await first.context.new_page()
    problems.watch(second)
    try:
        await load(first, server, sockets=1)
        await second.goto(server.url + "/", timeout=WAIT * 1000)
        await server.connected(2)
        await server.push("Your Washer has finished.")
        one, two = Widget(first), Widget(second)
        await expect(one.badge).to_contain_text("1")
        await expect(two.badge).to_contain_text("1")
        await one.open()
        await expect(two.badge).to_be_hidden()
        await expect(one.badge).to_be_hidden()
    finally:
        await first.context.close()
    assert problems.errors == []


async def test_history_is_merged_after_a_reconnect(page: Page, server: FakeWidgetServer) -> None:
    server.store("user", "hi")
    server.store("bot", "Hello!")
    server.store("bot", "Your Washer has finished.", proactive=True)
    server.last_read = 3
    await load(page, server)
    widget = Widget(page)
    await widget.open()
    await expect(widget.messages()).to_have_count(3)

    await server.close_all(1001)  # the assistant restarts
    await expect(widget.status).to_contain_text("Offline — retrying in")
    await expect(widget.send).to_be_disabled()
    await expect(widget.input).to_have_attribute(
        "aria-describedby", await widget.status.get_attribute("id") or "?"
    )
    await server.push("Your Dryer has finished.")  # while the page is disconnected

    await server.connected(1)
    await expect(widget.status).to_have_text("Connected")
    await expect(widget.send).to_be_enabled()
    await expect(widget.messages()).to_have_count(4)
    # The same message again (a late duplicate frame) changes nothing.
    await server.broadcast({"type": "message", "message": server.messages[1]})
    await server.broadcast({"type": "message", "message": server.messages[3]})
    await page.wait_for_timeout(200)
    assert await widget.ids() == [1, 2, 3, 4]
    await expect(widget.messages().last).to_contain_text("Your Dryer has finished.")
    # The token is still good: one sign-in, two hellos with it.
    assert server.hello_tokens == ["tok-1", "tok-1"]


async def test_expired_token_is_replaced_and_the_socket_reopened(
    page: Page, server: FakeWidgetServer
) -> None:
    await load(page, server)
    widget = Widget(page)
    await widget.open()
    await expect(widget.status).to_have_text("Connected")

    closed_at = time.monotonic()
    await server.close_all(4401, "the sign-in token has expired")
    await server.wait_for(lambda: len(server.sockets) == 1, "the reconnect")
    # At once: well inside the first back-off step (at least 0.8 s).
    assert time.monotonic() - closed_at < 0.8
    assert server.tokens_issued == ["tok-1", "tok-2"]
    assert server.hello_tokens == ["tok-1", "tok-2"]
    await expect(widget.status).to_have_text("Connected")

    # Later expiries are handled the same way (the refusal counter was reset).
    await server.close_all(4401, "the sign-in token has expired")
    await server.wait_for(lambda: len(server.hello_tokens) == 3 and server.sockets, "again")
    assert server.hello_tokens[-1] == "tok-3"
    await expect(widget.status).to_have_text("Connected")
    await expect(widget.try_again).to_be_hidden()


async def test_refused_twice_stops_and_offers_try_again(
    page: Page, server: FakeWidgetServer
) -> None:
    server.refuse = lambda token: (4401, "the sign-in token has expired")
    await page.goto(server.url + "/")
    widget = Widget(page)
    await widget.open()
    await expect(widget.status).to_have_text("Sign-in refused: the sign-in token has expired")
    await expect(widget.try_again).to_be_visible()
    await expect(widget.send).to_be_disabled()
    await page.wait_for_timeout(1500)  # longer than the first back-off: nothing more happens
    assert server.hello_tokens == ["tok-1", "tok-2"]
    assert await page.evaluate("window.tokenCalls") == 2

    server.refuse = lambda token: None
    await widget.try_again.click()
    await expect(widget.status).to_have_text("Connected")
    await expect(widget.try_again).to_be_hidden()
    await expect(widget.send).to_be_enabled()
    assert server.hello_tokens == ["tok-1", "tok-2", "tok-3"]


@pytest.mark.parametrize(
    ("code", "reason", "shown"),
    [
        (4403, "this page may not open the chat", "Sign-in refused: this page may not open"),
        (4503, "the widget channel is not configured", "Chat unavailable: the widget channel"),
        (4400, "expected a hello frame", "Chat unavailable: expected a hello frame"),
    ],
)
async def test_permanent_refusals_stop_at_once(
    page: Page, server: FakeWidgetServer, code: int, reason: str, shown: str
) -> None:
    server.refuse = lambda token: (code, reason)
    await page.goto(server.url + "/")
    widget = Widget(page)
    await widget.open()
    await expect(widget.status).to_contain_text(shown)
    await expect(widget.try_again).to_be_visible()
    await page.wait_for_timeout(1500)
    assert len(server.hello_tokens) == 1


async def test_a_failing_get_token_shows_could_not_sign_in(
    page: Page, server: FakeWidgetServer
) -> None:
    server.token_status = 500
    await page.goto(server.url + "/")
    widget = Widget(page)
    await widget.open()
    await expect(widget.status).to_have_text("Could not sign in")
    await expect(widget.try_again).to_be_visible()
    assert server.frames == []

    server.token_status = 200
    await widget.try_again.click()
    await expect(widget.status).to_have_text("Connected")
    await expect(widget.input).to_be_focused()


async def test_a_refused_message_is_reported_and_kept(page: Page, server: FakeWidgetServer) -> None:
    await load(page, server)
    widget = Widget(page)
    await widget.open()
    server.message_error = "You are sending messages too fast."
    await widget.input.fill("turn on the dryer")
    await widget.input.press("Enter")
    alert = page.get_by_role("alert")
    await expect(alert).to_have_text("You are sending messages too fast.")
    await expect(widget.input).to_have_value("turn on the dryer")  # not lost
    server.message_error = None
    await widget.input.press("Enter")
    await expect(alert).to_be_hidden()
    await expect(widget.messages(".lgw-user")).to_have_text(["You: turn on the dryer"])


async def test_server_text_is_never_markup(page: Page, server: FakeWidgetServer) -> None:
    server.store("bot", "<img src=x onerror=alert(1)>")
    server.store("bot", '"><script>window.injected = 1</script><b>bold</b>')
    server.store(
        "bot",
        "Manual: https://www.lg.com/us/support/manuals. Not a link: javascript:alert(1) "
        "(see https://example.com/a_(b))",
        buttons=[{"title": "<i>Yes</i>", "payload": "/affirm"}],
    )
    server.store("user", "my link https://example.org/user stays text")
    await load(page, server)
    widget = Widget(page)
    await widget.open()
    await expect(widget.messages()).to_have_count(4)

    first = widget.messages().nth(0)
    await expect(first).to_have_text("Assistant: <img src=x onerror=alert(1)>")
    await expect(widget.log.locator("img, script, b, i")).to_have_count(0)
    await expect(widget.messages().nth(1)).to_contain_text("<script>window.injected = 1</script>")
    assert await page.evaluate("window.injected") is None
    await expect(page.get_by_role("button", name="<i>Yes</i>")).to_be_visible()

    links = widget.log.locator("a")
    await expect(links).to_have_count(2)
    manual = links.nth(0)
    await expect(manual).to_have_attribute("href", "https://www.lg.com/us/support/manuals")
    await expect(manual).to_have_attribute("target", "_blank")
    await expect(manual).to_have_attribute("rel", "noopener noreferrer")
    assert (await manual.evaluate("n => n.firstChild.textContent")).endswith("/manuals")
    await expect(links.nth(1)).to_have_attribute("href", "https://example.com/a_(b)")
    await expect(widget.messages().nth(2)).to_contain_text("javascript:alert(1)")
    await expect(widget.messages(".lgw-user").locator("a")).to_have_count(0)
    await page.wait_for_timeout(200)  # let a would-be onerror fire


async def test_phone_width_fills_the_screen(
    browser: Browser, server: FakeWidgetServer, problems: PageProblems
) -> None:
    server.store("bot", "Your Washer has finished.", proactive=True)
    server.store("user", "Start the dryer")
    server.store(
        "bot",
        "Which program? Details: https://www.lg.com/us/support",
        buttons=[
            {"title": "Cotton", "payload": "/cotton"},
            {"title": "Quick dry", "payload": "/q"},
        ],
    )
    page = await new_page(browser, problems, viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        await load(page, server)
        widget = Widget(page)
        launcher = await widget.launcher.bounding_box()
        assert launcher and launcher["width"] >= 44 and launcher["height"] >= 44
        await widget.open()
        box = await widget.dialog.bounding_box()
        assert box is not None
        assert (box["x"], box["y"]) == pytest.approx((0, 0), abs=0.5)
        assert (box["width"], box["height"]) == pytest.approx(
            (PHONE["width"], PHONE["height"]), abs=0.5
        )
        await expect(widget.launcher).to_be_hidden()  # under the full-screen panel
        font = await widget.input.evaluate("n => parseFloat(getComputedStyle(n).fontSize)")
        assert font >= 16
        targets = [widget.close, widget.send, widget.input]
        targets += await page.get_by_role("group", name="Quick replies").get_by_role("button").all()
        for target in targets:
            size = await target.bounding_box()
            assert size and size["width"] >= 44 and size["height"] >= 44, target
        await page.screenshot(path=screenshot_path("widget-ui-phone.png"))
    finally:
        await page.context.close()
    assert problems.errors == []


async def test_reduced_motion_turns_animation_off(
    browser: Browser, server: FakeWidgetServer, problems: PageProblems
) -> None:
    page = await new_page(browser, problems, reduced_motion="reduce")
    try:
        await load(page, server)
        widget = Widget(page)
        await widget.open()
        animation = await page.locator(".lgw-panel").evaluate(
            "n => getComputedStyle(n).animationName"
        )
        assert animation == "none"
    finally:
        await page.context.close()


async def test_mount_api_stylesheet_once_and_destroy(page: Page, server: FakeWidgetServer) -> None:
    await load(page, server)
    await expect(page.locator("link[data-lgw-stylesheet]")).to_have_count(1)
    href = await page.locator("link[data-lgw-stylesheet]").get_attribute("href")
    assert href == f"{server.url}/webhooks/widget/widget.css"
    # A second widget (custom title) on the same page: still one stylesheet, own ids.
    await page.evaluate(
        """() => {
            window.second = LGAssistantWidget.mount({
                title: "Second",
                getToken: async () => "tok-second",
            });
        }"""
    )
    await server.connected(2)
    await expect(page.locator("link[data-lgw-stylesheet]")).to_have_count(1)
    await expect(page.locator(".lgw-root")).to_have_count(2)
    ids = await page.locator("[id^='lgw-']").evaluate_all("nodes => nodes.map(n => n.id)")
    assert len(ids) == len(set(ids))

    await page.evaluate("window.second.open()")
    await expect(page.get_by_role("dialog", name="Second")).to_be_visible()
    await page.evaluate("window.second.close()")
    await expect(page.get_by_role("dialog", name="Second")).to_be_hidden()
    await page.evaluate("window.second.destroy()")
    await expect(page.locator(".lgw-root")).to_have_count(1)
    await server.wait_for(lambda: len(server.sockets) == 1, "the destroyed widget's socket closed")
    # getToken is required.
    error = await page.evaluate(
        "() => { try { LGAssistantWidget.mount({}); } catch (e) { return e.name; } }"
    )
    assert error == "TypeError"


async def test_the_sample_partner_page_mounts_the_widget_under_its_csp(
    page: Page, server: FakeWidgetServer
) -> None:
    """devstack/partner_site.py's page, with the fake server as the assistant: its CSP
    lets the widget load, style itself and connect; its token endpoint signs the user in."""
    from assistant.settings import WidgetSettings
    from connector.widget_token import verify_token
    from devstack.partner_site import build_app

    secret = secrets.token_urlsafe(32)
    settings = WidgetSettings(
        token_secret=secret,
        issuer="example-home",
        max_token_seconds=900.0,
        allowed_origins=(),
        notify_secret=None,
        redis_url=None,
        redis_prefix="test",
        assistant_public_url=server.url,
        partner_host="127.0.0.1",
        partner_port=0,
    )
    runner = web.AppRunner(build_app(settings))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    partner = f"http://127.0.0.1:{runner.addresses[0][1]}"
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    try:
        await page.goto(f"{partner}/?user=alice@example.com", timeout=WAIT * 1000)
        await expect(page.get_by_text("Signed in as alice@example.com")).to_be_visible()
        await server.connected(1)
        identity = verify_token(server.hello_tokens[0], secret, "example-home", 900)
        assert identity.sender_id == "widget:example-home:alice@example.com"
        widget = Widget(page)
        await widget.open()
        await expect(widget.status).to_have_text("Connected")
        # Styled by widget.css (allowed by the CSP): the launcher is a fixed 60 px circle.
        position = await widget.launcher.evaluate("n => getComputedStyle(n).position")
        assert position == "fixed"
        await widget.input.fill("hello")
        await widget.input.press("Enter")
        await expect(widget.messages(".lgw-bot")).to_have_text(["Assistant: You said: hello"])
    finally:
        await asyncio.wait_for(runner.cleanup(), timeout=WAIT * 2)
    assert not [line for line in console if "Content Security Policy" in line], console
