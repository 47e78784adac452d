"""What a message posted to one of our chat endpoints must look like.

Pure functions, no Rasa: the channels call them before handing a message to
Rasa, so malformed input gets a 4xx with a reason instead of a 500.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

MAX_MESSAGE_CHARS = 4000  # longer than any real chat turn or voice transcript
MAX_SENDER_CHARS = 128
MAX_BODY_BYTES = 64 * 1024
# Sender ids the authenticated channels give their users ("telegram:<chat id>",
# "alexa:<user id>", "widget:<user>"). The REST and callback channels take the sender from
# the request body, so they must not accept these: otherwise anyone could speak as (and
# control the appliances of) a Telegram or Alexa user.
RESERVED_SENDER_PREFIXES = ("telegram:", "alexa:", "widget:")


@dataclass(frozen=True)
class Problem:
    status: int
    reason: str


# What no store can hold: NUL (PostgreSQL's text refuses it) and unpaired surrogates (JSON
# may carry them escaped; they are not UTF-8, so neither database takes them).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether ``text`` can be stored as it is (no NUL, no unpaired surrogate)."""
    return UNSTORABLE.search(text) is None


def storable_text(text: str) -> str:
    """``text`` with what no store can hold replaced by U+FFFD (a turn whose text holds a
    NUL could not be saved in a PostgreSQL tracker store)."""
    return UNSTORABLE.sub("\ufffd", text)


def json_object(raw: bytes) -> dict[str, Any] | Problem:
    """The request body as a JSON object, or why it is not one (size, syntax, type)."""
    if len(raw) > MAX_BODY_BYTES:
        return Problem(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError: also bad UTF-8 and an integer over Python's 4300 digits;
        # RecursionError: nesting deeper than the parser goes.
        return Problem(400, "body is not valid JSON")
    if not isinstance(body, dict):
        return Problem(400, "body must be a JSON object")
    return body


def message_body_problem(raw: bytes) -> Problem | None:
    """None when ``raw`` is a valid ``{"sender": str, "message": str}`` body, else what is wrong."""
    body = json_object(raw)
    if isinstance(body, Problem):
        return body
    sender = body.get("sender")
    if not isinstance(sender, str) or not sender.strip():
        return Problem(400, "'sender' must be a non-empty string")
    if len(sender) > MAX_SENDER_CHARS or not sender.isprintable():
        return Problem(400, f"'sender' must be printable and at most {MAX_SENDER_CHARS} characters")
    if sender.lower().startswith(RESERVED_SENDER_PREFIXES):
        prefix = sender.split(":", 1)[0]
        return Problem(403, f"'sender' ids starting with '{prefix}:' belong to another channel")
    message = body.get("message")
    if not isinstance(message, str):
        return Problem(400, "'message' must be a string")
    if len(message) > MAX_MESSAGE_CHARS:
        return Problem(413, f"'message' is longer than {MAX_MESSAGE_CHARS} characters")
    if "metadata" in body and not isinstance(body["metadata"], dict | None):
        return Problem(400, "'metadata' must be an object")
    return None
