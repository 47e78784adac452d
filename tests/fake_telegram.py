"""A local fake of the Telegram Bot API on loopback, for the Telegram channel's tests.

Serves ``POST /bot<token>/sendMessage`` and ``/bot<token>/answerCallbackQuery`` with the
Bot API's envelope (``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code",
"description"}``), checks what Telegram checks (the token, a non-empty text of at most
4096 characters, callback_data of at most 64 bytes), records every accepted call, and can
be switched to answer 429 / 403 / 400 / 500 as Telegram does.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

TOKEN = "123456789:AAFakeTokenDoNotLogMe-0123456789abcd"

# What Telegram answers in each switched-on failure.
FAILURES: dict[int, dict[str, Any]] = {
    400: {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"},
    403: {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    429: {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    },
    500: {"ok": False, "error_code": 500, "description": "Internal Server Error"},
}


class FakeTelegram:
    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.status: int | None = None  # None: answer as a healthy Bot API
        self.calls: list[tuple[str, dict[str, Any]]] = []  # (method, body), accepted ones
        self.refused: list[tuple[str, dict[str, Any]]] = []
        self.url = ""
        self._message_ids = itertools.count(1000)
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_post("/bot{token}/{method}", self._call)

    def sent(self) -> list[dict[str, Any]]:
        return [body for method, body in self.calls if method == "sendMessage"]

    def answered(self) -> list[dict[str, Any]]:
        return [body for method, body in self.calls if method == "answerCallbackQuery"]

    async def _call(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        method = request.match_info["method"]
        body = await request.json()
        if self.status is not None:
            self.refused.append((method, body))
            return web.json_response(FAILURES[self.status], status=self.status)
        problem = _problem(method, body)
        if problem is not None:
            self.refused.append((method, body))
            return web.json_response(
                {"ok": False, "error_code": 400, "description": f"Bad Request: {problem}"},
                status=400,
            )
        self.calls.append((method, body))
        if method == "answerCallbackQuery":
            return web.json_response({"ok": True, "result": True})
        result = {
            "message_id": next(self._message_ids),
            "chat": {"id": body["chat_id"], "type": "private"},
            "date": 1_700_000_000,
            "text": body["text"],
        }
        return web.json_response({"ok": True, "result": result})

    async def start(self) -> None:
        # No access log: it would print the request path, which holds the token, and the
        # tests check that *our* code never logs it.
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def _problem(method: str, body: dict[str, Any]) -> str | None:
    if method == "answerCallbackQuery":
        return None if isinstance(body.get("callback_query_id"), str) else "query id missing"
    if method != "sendMessage":
        return f"method {method} not found"
    if not isinstance(body.get("chat_id"), int):
        return "chat_id must be an integer"
    text = body.get("text")
    if not isinstance(text, str) or not text.strip():
        return "message text is empty"
    if len(text) > 4096:
        return "message is too long"
    markup = body.get("reply_markup")
    if markup is not None:
        rows = markup.get("inline_keyboard")
        if not isinstance(rows, list):
            return "inline keyboard expected"
        for button in (button for row in rows for button in row):
            if not 1 <= len(button.get("callback_data", "").encode()) <= 64:
                return "BUTTON_DATA_INVALID"
    return None


@pytest.fixture(name="telegram")
async def running_fake_telegram() -> AsyncIterator[FakeTelegram]:
    """A running :class:`FakeTelegram`; import this to get the ``telegram`` fixture."""
    fake = FakeTelegram()
    await fake.start()
    yield fake
    await fake.stop()
