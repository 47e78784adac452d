"""What a Telegram ``Update`` posted to our webhook means for the assistant.

Pure functions, no Rasa, like connector/validation.py. An update is either malformed
(a :class:`Problem`, answered 400), something we act on (:class:`TextMessage`,
:class:`ButtonPress`), or something we do not handle (:class:`Ignored`: edited messages,
stickers, photos, channel posts... answered 200 so Telegram does not send it again).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connector.validation import MAX_MESSAGE_CHARS, Problem, json_object

# Telegram's own commands mean something to every Telegram user; the rest of "/..." is
# left to Rasa, which reads it as an intent payload exactly as a typed one on any channel.
COMMANDS = {"/start": "/greet", "/help": "/help"}


@dataclass(frozen=True)
class TextMessage:
    update_id: int
    chat_id: int
    text: str
    message_id: int | None
    user_id: int | None


@dataclass(frozen=True)
class ButtonPress:
    update_id: int
    chat_id: int
    query_id: str
    data: str
    user_id: int | None


@dataclass(frozen=True)
class TooLong:
    """A text longer than the assistant takes; the user is told, Rasa is not called."""

    update_id: int
    chat_id: int


@dataclass(frozen=True)
class Ignored:
    update_id: int
    what: str  # for the log: which kind of update it was


Update = TextMessage | ButtonPress | TooLong | Ignored


def _int(value: Any) -> int | None:
    # bool is an int in Python; Telegram never sends one for an id.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _chat_id(message: Any) -> int | None:
    chat = message.get("chat") if isinstance(message, dict) else None
    return _int(chat.get("id")) if isinstance(chat, dict) else None


def _user_id(holder: dict[str, Any]) -> int | None:
    user = holder.get("from")
    return _int(user.get("id")) if isinstance(user, dict) else None


def command_text(text: str) -> str:
    """``/start`` (also ``/start@OurBot``, with or without a deep-link argument) as Rasa text."""
    if not text.startswith("/"):
        return text
    word = text.split(maxsplit=1)[0].split("@", 1)[0].lower()
    return COMMANDS.get(word, text)


def parse_update(raw: bytes) -> Update | Problem:
    try:
        body = json_object(raw)
    except (ValueError, RecursionError):
        # What json_object lets through: an integer over Python's 4300 digits (ValueError)
        # and nesting deeper than its recursion limit.
        return Problem(400, "body is not valid JSON")
    if isinstance(body, Problem):
        return body
    update_id = _int(body.get("update_id"))
    if update_id is None:
        return Problem(400, "'update_id' must be an integer")

    if "message" in body:
        message = body["message"]
        chat_id = _chat_id(message)
        if chat_id is None:
            return Problem(400, "'message.chat.id' must be an integer")
        text = message.get("text")
        if text is None:
            return Ignored(update_id, "message without text")
        if not isinstance(text, str):
            return Problem(400, "'message.text' must be a string")
        if len(text) > MAX_MESSAGE_CHARS:
            return TooLong(update_id, chat_id)
        if not text.strip():
            return Ignored(update_id, "empty message")
        return TextMessage(
            update_id,
            chat_id,
            command_text(text),
            _int(message.get("message_id")),
            _user_id(message),
        )

    if "callback_query" in body:
        query = body["callback_query"]
        if not isinstance(query, dict) or not isinstance(query.get("id"), str):
            return Problem(400, "'callback_query.id' must be a string")
        data = query.get("data")
        chat_id = _chat_id(query.get("message"))
        if not isinstance(data, str) or chat_id is None:
            # A game button, or a press on a message sent in inline mode (no chat):
            # nothing our keyboards produce.
            return Ignored(update_id, "callback query without data or chat")
        return ButtonPress(update_id, chat_id, query["id"], data, _user_id(query))

    kinds = [key for key in body if key != "update_id"]
    return Ignored(update_id, kinds[0] if kinds else "empty update")
