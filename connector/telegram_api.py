"""A small Telegram Bot API client: sendMessage and answerCallbackQuery, nothing else.

No Rasa here: the Rasa channel (connector/telegram.py) and the connector's proactive
sender (connector/telegram_sender.py) both use it. Calls never raise for a failing Bot
API; they return an :class:`ApiResult` saying whether trying again could help.

The bot token is part of every Bot API URL (``{api}/bot{token}/{method}``), so no URL is
ever logged or put in a reason, and an exception's text (which may contain the URL) is
reduced to its type name.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from connector.text_parts import text_parts

log = logging.getLogger(__name__)

SENDER_PREFIX = "telegram:"
MAX_TEXT_CHARS = 4096  # Telegram's limit for one message's text
MAX_CALLBACK_DATA_BYTES = 64  # Telegram's limit for an inline button's callback_data
_DESCRIPTION_CHARS = 200


def sender_id(chat_id: int) -> str:
    """Rasa's sender id for a Telegram chat: namespaced, so no other channel's id matches."""
    return f"{SENDER_PREFIX}{chat_id}"


def chat_id_of(sender: str) -> int | None:
    """The chat id in a ``telegram:<chat id>`` sender id, or None if it is not one."""
    if not sender.startswith(SENDER_PREFIX):
        return None
    raw = sender[len(SENDER_PREFIX) :]
    # Chat ids are integers (negative for groups); nothing else may pass.
    digits = raw[1:] if raw.startswith("-") else raw
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        return None
    return int(raw)


@dataclass(frozen=True)
class ApiResult:
    ok: bool
    status: int | None = None  # HTTP status; None when no answer came
    retryable: bool = False
    reason: str | None = None
    retry_after: int | None = None  # seconds, from a 429's ``parameters.retry_after``


class CallbackPayloads:
    """Rasa button payloads as Telegram ``callback_data`` (at most 64 bytes).

    A payload that fits is sent as it is, so a press works in any process and after a
    restart. A longer one (``/inform_device{"device": "..."}`` with a long appliance
    name) is replaced by ``#`` + a digest of it, remembered here, in this process's
    memory, for the last ``capacity`` payloads. A press on such a button after a restart,
    or handled by another Rasa process, cannot be resolved: the user is asked to type
    the answer instead (see connector/telegram.py).
    """

    PREFIX = "#"  # Rasa payloads start with "/" or are plain words; "#..." is ours

    def __init__(self, capacity: int = 10_000) -> None:
        self._capacity = capacity
        self._by_key: OrderedDict[str, str] = OrderedDict()

    def encode(self, payload: str) -> str:
        if (
            len(payload.encode()) <= MAX_CALLBACK_DATA_BYTES
            and not payload.startswith(self.PREFIX)
            and payload
        ):
            return payload
        # The same payload always gets the same key, so repeats do not fill the map.
        digest = hashlib.sha256(payload.encode()).digest()[:18]
        key = self.PREFIX + base64.urlsafe_b64encode(digest).decode()
        self._by_key[key] = payload
        self._by_key.move_to_end(key)
        while len(self._by_key) > self._capacity:
            self._by_key.popitem(last=False)
        return key

    def decode(self, data: str) -> str | None:
        """The payload a press carries, or None when this process no longer knows it."""
        if not data.startswith(self.PREFIX):
            return data
        return self._by_key.get(data)


def inline_keyboard(
    buttons: Sequence[Mapping[str, Any]], payloads: CallbackPayloads
) -> dict[str, Any]:
    """Rasa buttons as a Telegram ``reply_markup``: one button per row."""
    rows = []
    for button in buttons:
        title = str(button.get("title") or button.get("payload") or "")
        payload = str(button.get("payload") or title)
        rows.append([{"text": title, "callback_data": payloads.encode(payload)}])
    return {"inline_keyboard": rows}


def text_chunks(text: str) -> list[str]:
    """``text`` in pieces Telegram accepts (a longer text is refused with 400), cut at a
    line break or space where there is one."""
    return text_parts(text, MAX_TEXT_CHARS) if text else []


def _printable(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()[:_DESCRIPTION_CHARS]


class TelegramBotApi:
    """Calls to one bot over a shared aiohttp session (keep-alive), with a timeout."""

    def __init__(
        self,
        api_url: str,
        token: str,
        session: aiohttp.ClientSession,
        timeout_seconds: float,
    ) -> None:
        self._api_url = api_url.rstrip("/")
        self._token = token
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"TelegramBotApi({self._api_url})"  # never the token

    async def send_message(
        self, chat_id: int, text: str, reply_markup: Mapping[str, Any] | None = None
    ) -> ApiResult:
        body: dict[str, Any] = {"chat_id": chat_id, "text": text}
        if reply_markup is not None:
            body["reply_markup"] = reply_markup
        return await self.call("sendMessage", body)

    async def answer_callback_query(self, query_id: str, text: str | None = None) -> ApiResult:
        body: dict[str, Any] = {"callback_query_id": query_id}
        if text:
            body["text"] = text
        return await self.call("answerCallbackQuery", body)

    async def call(self, method: str, body: Mapping[str, Any]) -> ApiResult:
        url = f"{self._api_url}/bot{self._token}/{method}"
        try:
            async with self._session.post(url, json=body, timeout=self._timeout) as response:
                status = response.status
                raw = await response.read()
        except asyncio.TimeoutError:
            return ApiResult(
                False,
                retryable=True,
                reason=f"Telegram {method} did not answer within {self._timeout_seconds:g} s",
            )
        except aiohttp.ClientError as error:
            # The exception's text may hold the URL, and so the token: only its type.
            return ApiResult(
                False,
                retryable=True,
                reason=f"Telegram {method} is unreachable ({type(error).__name__})",
            )
        return _result(method, status, raw)


def _result(method: str, status: int, raw: bytes) -> ApiResult:
    """Classify a Bot API answer: ``{"ok": true, ...}`` or ``{"ok": false, ...}``."""
    try:
        answer = json.loads(raw) if raw else {}
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if 200 <= status < 300 and answer.get("ok") is True:
        return ApiResult(True, status)
    description = _printable(str(answer.get("description") or ""))
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    retry_after = retry_after if isinstance(retry_after, int) else None
    detail = f": {description}" if description else ""
    if status == 429 or status >= 500 or status in (408, 425):
        wait = f" (retry after {retry_after} s)" if retry_after is not None else ""
        return ApiResult(
            False,
            status,
            retryable=True,
            reason=f"Telegram {method} answered HTTP {status}{detail}{wait}",
            retry_after=retry_after,
        )
    if 200 <= status < 300:
        # 2xx without ok: true is not what the Bot API promises: treat as a refusal.
        return ApiResult(False, status, reason=f"Telegram {method} did not say ok{detail}")
    return ApiResult(
        False, status, reason=f"Telegram {method} refused it with HTTP {status}{detail}"
    )
