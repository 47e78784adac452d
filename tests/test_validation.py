"""connector.validation: what the REST and callback channels accept from a request body."""

from __future__ import annotations

import json

import pytest

from connector.alexa import utterance
from connector.validation import MAX_MESSAGE_CHARS, message_body_problem, storable_text


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_plain_message_is_accepted() -> None:
    assert message_body_problem(body(sender="user-1", message="is the washer running?")) is None
    assert message_body_problem(body(sender="a:b", message="hi", metadata={"x": 1})) is None


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b"[" * 5000 + b"]" * 5000, 400, "body is not valid JSON"),  # deeper than the parser
        (b'{"sender": "x", "message": "hi", "n": ' + b"9" * 5000 + b"}", 400, "body is not"),
        (b"\xff\xfe", 400, "body is not valid JSON"),
        (b"[]", 400, "body must be a JSON object"),
        (body(message="hi"), 400, "'sender' must be a non-empty string"),
        (body(sender=" ", message="hi"), 400, "'sender' must be a non-empty string"),
        (body(sender="x", message=5), 400, "'message' must be a string"),
        (body(sender="x", message="m" * (MAX_MESSAGE_CHARS + 1)), 413, "'message' is longer"),
        (body(sender="x", message="hi", metadata=[1]), 400, "'metadata' must be an object"),
    ],
)
def test_malformed_bodies_say_what_is_wrong(raw: bytes, status: int, reason: str) -> None:
    problem = message_body_problem(raw)
    assert problem is not None and problem.status == status and problem.reason.startswith(reason)


@pytest.mark.parametrize("sender", ["telegram:42", "alexa:amzn1.ask.account.X", "WIDGET:alice"])
def test_sender_ids_of_authenticated_channels_cannot_be_claimed(sender: str) -> None:
    problem = message_body_problem(body(sender=sender, message="turn off the fridge"))
    assert problem is not None and problem.status == 403
    assert "belong to another channel" in problem.reason


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("set the AC to 22", "set the AC to 22"),
        ("거실 에어컨 켜줘 ☀️", "거실 에어컨 켜줘 ☀️"),
        ("line\nbreak\tand tab", "line\nbreak\tand tab"),
        ("a\x00b", "a\ufffdb"),
        ("lone \ud800 surrogate \udfff", "lone \ufffd surrogate \ufffd"),
    ],
)
def test_storable_text_replaces_only_what_no_store_holds(text: str, stored: str) -> None:
    assert storable_text(text) == stored
    stored.encode()  # UTF-8 now


def test_alexa_text_reaches_rasa_storable() -> None:
    # Telegram: tests/test_fuzz_channels.py::test_telegram_valid_updates_reach_rasa.
    said = utterance({"slots": {"utterance": {"value": "turn on\x00 the \udc80 oven"}}})
    assert said == "turn on\ufffd the \ufffd oven"
