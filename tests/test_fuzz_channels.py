"""Bad input at every HTTP and WebSocket entry point of our own Rasa channels (hypothesis).

Fuzzed (Rasa's stock REST and callback channels are not ours and are left out):

* Telegram, ``POST /webhooks/telegram/webhook``: bodies with the right secret, and a wrong
  or missing ``X-Telegram-Bot-Api-Secret-Token``;
* Alexa, ``POST /webhooks/alexa/webhook``: bodies with signature verification off (as the
  demo runs it), and with it on: certificate URLs, signatures, certificate chains, and
  bodies signed with the right key;
* the chat widget: ``GET /webhooks/widget/<name>``, ``POST /webhooks/widget/notify`` (its
  bearer secret, then bodies) and the WebSocket ``/webhooks/widget/ws`` (the hello and its
  token, then frames).

Each test starts one server (the channel's blueprint in a Sanic app on loopback, as the
channel tests run it: tests/sanic_support.py) with a recording stub for Rasa's
``on_new_message``, and runs its examples against it over httpx / websockets. For any
input:

* never a 5xx, and nothing logged at ERROR or with an exception (Sanic's "Exception
  occurred while handling uri" included), checked after every example;
* a 4xx says why, in the channels' shape ``{"error": ..., "reason": "<text>"}``; a refused
  WebSocket frame is answered ``{"type": "error", "reason": ...}`` and the socket stays
  open; a refused socket gets ``{"type": "refused", "reason": ...}`` and a 44xx close
  code, or 1009 from the websocket layer for a frame over the size limit;
* a refused request reaches no one: the stub is not called, the fake Bot API gets nothing,
  and the widget's message log (``widget_messages``) gains no row;
* after the examples the server still takes a valid request (each fixture's teardown).

Valid inputs drawn the same way must reach the stub, so the properties are not vacuous.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
import websockets
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from rasa.core.channels.channel import UserMessage
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from assistant.settings import AlexaSettings
from assistant.storage.db import create_engine, create_schema
from assistant.storage.models import WidgetMessageRecord
from assistant.storage.widget_messages import WidgetMessageRepository
from connector.alexa import AlexaInput
from connector.alexa_verify import CERT_URL_HEADER, SIGNATURE_HEADER, AlexaRequestVerifier
from connector.telegram import SECRET_HEADER, TelegramInput
from connector.validation import storable_text
from connector.widget import (
    MAX_FRAME_BYTES,
    STATIC_FILES,
    TURN_FAILED,
    WidgetHub,
    WidgetInput,
)
from connector.widget_token import AUDIENCE, LEEWAY_SECONDS
from tests.alexa_support import (
    CERT_URL,
    SKILL_ID,
    TestPKI,
    _leaf,
    alexa_request,
    encode,
    launch,
    said,
)
from tests.db_fixtures import (  # noqa: F401 - fixtures are found by name
    database_url,
    postgres_database_url,
    postgres_server_url,
)
from tests.fake_telegram import FakeTelegram, running_fake_telegram  # noqa: F401
from tests.sanic_support import serve_blueprint
from tests.test_alexa import CHOICES, StubRasa
from tests.test_telegram import SECRET as TELEGRAM_SECRET
from tests.test_telegram import RasaStub as TelegramRasa
from tests.test_telegram import press_update, settings_for, text_update
from tests.test_telegram import serve as serve_telegram
from tests.test_widget_channel import (
    ISSUER,
    NOTIFY_SECRET,
    PAGE,
    TOKEN_SECRET,
    widget_settings,
)
from tests.test_widget_channel import serve as serve_widget
from tests.test_widget_channel import token as widget_token

# A secret that is not the channel's, made per run (never a literal in the repository).
ATTACKERS_SECRET = secrets.token_urlsafe(32)

# One server per test serves all of its examples: the fixtures are function-scoped on
# purpose, and hypothesis' check against that is the one health check turned off.
FUZZ = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def fuzz(examples: int) -> settings:
    return settings(FUZZ, max_examples=examples)


SUBJECT = re.compile(r"[A-Za-z0-9._@:-]{1,128}")

# -- what the server logged -------------------------------------------------------------


class LoggedErrors(logging.Handler):
    """Every record at ERROR or above, or a warning with an exception, from any logger:
    Sanic's error logger (an exception in a handler), asyncio's (a task's lost exception),
    ours. (A traceback at DEBUG is a diagnostic, not a failure.)"""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or (
            record.exc_info and record.levelno >= logging.WARNING
        ):
            self.records.append(record)

    def mark(self) -> int:
        return len(self.records)

    def check(self, since: int = 0) -> None:
        logged = self.records[since:]
        assert not logged, "the server logged:\n" + "\n".join(self.format(r) for r in logged)


@pytest.fixture
def logged_errors() -> Iterator[LoggedErrors]:
    handler = LoggedErrors()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


# -- strategies -------------------------------------------------------------------------

FIELD_NAMES = [
    # Telegram
    "update_id", "message", "message_id", "chat", "id", "text", "from", "callback_query",
    "data", "edited_message",
    # Alexa
    "version", "session", "context", "System", "user", "userId", "application",
    "applicationId", "request", "type", "intent", "name", "slots", "utterance", "value",
    "attributes", "choices", "timestamp", "requestId",
    # widget
    "token", "title", "up_to", "sender_id", "key", "buttons", "payload",
]  # fmt: skip
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=12))
ODD_STRINGS = st.sampled_from(
    [
        "", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfffy", "\u202e", "\ufeff", "\u2028",
        "🔥❄️", "/start", "/start@Bot deep", "/help", "#forgotten", "null", "NaN", "<speak>",
        "&amp;", "%s%n", "'; DROP TABLE widget_messages; --", "LaunchRequest",
        "IntentRequest", "SessionEndedRequest", "AMAZON.StopIntent", "AMAZON.YesIntent",
        "message", "hello", "read", "ping", "widget:sample-partner:alice",
    ]
)  # fmt: skip
# What the message log can hold (see the widget's frames): no NUL, no lone surrogate.
STORABLE_CHARS = st.characters(exclude_categories=["Cs"], exclude_characters="\x00")
# Lone surrogates can only travel JSON-escaped ("\ud800"), as browsers and bots may send.
ANY_CHARS = st.one_of(st.characters(), st.characters(categories=["Cs"]))
TEXT = st.one_of(st.text(max_size=30), st.text(ANY_CHARS, max_size=8), ODD_STRINGS)
NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(max_value=-(2**63) + 2, min_value=-(2**64)),
    st.floats(),  # NaN and ±Infinity included: Python's JSON reads and writes them
)
JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBERS, TEXT),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=10,
)
HOP_BY_HOP = {
    "connection", "content-length", "expect", "host", "keep-alive", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
}  # fmt: skip
CONTENT_TYPES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json", "application/json; charset=utf-8",
            "application/json; charset=latin-1", "application/json; charset=nonsense",
            "text/plain", "application/octet-stream",
            "application/x-www-form-urlencoded", "multipart/form-data; boundary=xyz",
            "multipart/form-data", "", "*/*", ";;;", "application/",
        ]
    ),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
)  # fmt: skip
INTERESTING_HEADERS = [
    "Accept", "Accept-Encoding", "Accept-Charset", "Authorization", "Content-Encoding",
    "Content-Language", "Cookie", "Forwarded", "If-Modified-Since", "If-None-Match", "Origin",
    "Range", "Referer", "User-Agent", "X-Forwarded-For", "X-Forwarded-Proto", "X-Real-IP",
    "X-Request-Id", "Sec-WebSocket-Key", "Signature", "SignatureCertChainUrl",
    "Signature-256", "X-Telegram-Bot-Api-Secret-Token",
]  # fmt: skip


def wire(value: str | bytes) -> bytes:
    """``value`` as a header value HTTP lets through (h11 refuses CR, LF, NUL, vertical
    tab and form feed, and blanks at either end); any other byte, even not UTF-8, stays."""
    raw = value.encode() if isinstance(value, str) else value
    return bytes(c for c in raw if c not in b"\r\n\x00\x0b\x0c").strip(b" \t")


HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(wire),
    st.text(max_size=20).map(wire),
    st.binary(max_size=40).map(wire),
)


def headers_except(*reserved: str) -> st.SearchStrategy[dict[str, bytes]]:
    """Random request headers, none of ``reserved`` (the test sets those itself)."""
    taken = HOP_BY_HOP | {"content-type"} | {r.lower() for r in reserved}
    names = st.one_of(
        st.sampled_from(INTERESTING_HEADERS), st.from_regex(r"\A[A-Za-z][A-Za-z0-9-]{0,20}\Z")
    ).filter(lambda name: name.lower() not in taken)
    return st.dictionaries(names, HEADER_VALUES, max_size=4)


def to_json(value: Any) -> bytes:
    # ensure_ascii: lone surrogates go as \ud800 escapes, NaN as Python writes it.
    return json.dumps(value).encode()


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, each drawn about ``weight`` times in the total. (``one_of``
    left to itself draws a branch of big random bytes far more than one of small
    documents.)"""
    total = sum(weight for weight, _ in choices)

    def pick(roll: int) -> st.SearchStrategy[Any]:
        for weight, strategy in choices:
            if roll < weight:
                return strategy
            roll -= weight
        raise AssertionError(roll)

    return st.integers(0, total - 1).flatmap(pick)


def _nested(depth: int, bracket: str, closed: bool) -> bytes:
    opening, closing = ("[", "]") if bracket == "[" else ('{"a":', "}")
    return (opening * depth + ("1" + closing * depth if closed else "")).encode()


def odd_bytes(max_depth: int, max_size: int) -> st.SearchStrategy[bytes]:
    """Bodies or frames that are not JSON, not UTF-8, too deep or too big for Python's
    parser, or JSON of the wrong shape; deep and big ones up to about ``max_size`` bytes."""
    return st.one_of(
        st.just(b""),
        st.binary(max_size=200),
        # Not UTF-8 inside an otherwise plausible document.
        st.binary(min_size=1, max_size=20).map(lambda b: b'{"text": "\xff' + b + b'"}'),
        JSON.map(lambda v: json.dumps(v, ensure_ascii=False).encode("latin-1", "replace")),
        JSON.map(lambda v: json.dumps(v).encode("utf-16")),
        # Deeper than Python's recursion limit (RecursionError, not a JSONDecodeError).
        st.builds(_nested, st.integers(900, max_depth), st.sampled_from("[{"), st.booleans()),
        # Integers past Python's 4300-digit limit (a ValueError, not a JSONDecodeError).
        st.builds(
            lambda digits, wrap: wrap.replace(b"N", b"9" * digits),
            st.integers(4301, max(4301, min(9000, max_size - 40))),
            st.sampled_from([b"N", b"[N]", b'{"update_id": N}', b'{"type": "read", "up_to": N}']),
        ),
        st.builds(
            lambda size, char: to_json({"text": char * size}),
            st.integers(1000, max_size),
            st.sampled_from(["a", "é", "\u2028", "🔥"]),
        ),
        JSON.map(to_json),
    )


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if prefix:
        yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*prefix, index))


def mutated(
    template: Callable[[], dict[str, Any]], values: st.SearchStrategy[Any] = JSON
) -> st.SearchStrategy[Any]:
    """A fresh ``template()`` with up to three of its values replaced by ``values``,
    deleted, or given an unknown sibling: the wrong types and missing fields a sender
    could really get wrong (and, unchanged, the valid input among them)."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        document = template()
        for _ in range(draw(weighted((3, st.just(0)), (4, st.just(1)), (3, st.integers(2, 3))))):
            paths = list(_paths(document))
            if not paths:
                break
            path = draw(st.sampled_from(paths))
            parent = document
            for step in path[:-1]:
                parent = parent[step]
            how = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
            if how == "delete":
                del parent[path[-1]]
            elif how == "add" and isinstance(parent, dict):
                parent[draw(KEYS)] = copy.deepcopy(draw(values))
            else:
                # A copy: later mutations must not change a shared value (st.just's).
                parent[path[-1]] = copy.deepcopy(draw(values))
        return document

    return build()


def bodies(
    *templates: Callable[[], dict[str, Any]], max_depth: int = 20_000, max_size: int = 200_000
) -> st.SearchStrategy[bytes]:
    documents = st.sampled_from(templates).flatmap(mutated).map(to_json)
    return weighted((1, odd_bytes(max_depth, max_size)), (2, documents))


async def post(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    content_type: str | None,
    headers: dict[str, bytes],
    **auth: str | bytes | None,
) -> httpx.Response:
    sent = {name: wire(value) for name, value in headers.items()}
    if content_type is not None:
        sent["Content-Type"] = wire(content_type)
    sent.update({name.replace("_", "-"): wire(v) for name, v in auth.items() if v is not None})
    return await http.post(url, content=body, headers=sent)


def refusal(answer: httpx.Response, error: str | None = None) -> str:
    """The reason of a 4xx in our channels' shape, ``{"error": ..., "reason": ...}``."""
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    body = answer.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), str) and body["error"], body
    if error is not None:
        assert body["error"] == error, body
    assert isinstance(body.get("reason"), str) and body["reason"].strip(), body
    return body["reason"]


def no_server_error(answer: httpx.Response) -> None:
    assert answer.status_code < 500, (answer.status_code, answer.text[:500])


# -- Telegram -----------------------------------------------------------------------------


@dataclass(repr=False)
class Telegram:
    url: str
    rasa: TelegramRasa
    api: FakeTelegram
    http: httpx.AsyncClient
    errors: LoggedErrors
    update_ids: Iterator[int] = field(default_factory=lambda: itertools.count(10_000))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' reports
        printer.text(f"<{type(self).__name__} at {self.url}>")

    def update(self) -> dict[str, Any]:
        return text_update("set the AC to 22", update_id=next(self.update_ids))


@pytest.fixture
async def tg(telegram: FakeTelegram, logged_errors: LoggedErrors) -> AsyncIterator[Telegram]:
    rasa = TelegramRasa()
    async with httpx.AsyncClient(timeout=30) as http:
        async for hook in serve_telegram(TelegramInput(settings_for(telegram)), rasa):
            served = Telegram(hook.url, rasa, telegram, http, logged_errors)
            yield served
            # Still serving, whatever came before.
            before = len(rasa.received)
            answer = await post(
                http, hook.url, to_json(served.update()), "application/json", {},
                X_Telegram_Bot_Api_Secret_Token=TELEGRAM_SECRET,
            )  # fmt: skip
            assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
            assert len(rasa.received) == before + 1
    logged_errors.check()


_telegram_ids = itertools.count(1_000_000)


def telegram_template() -> dict[str, Any]:
    return text_update("turn on the oven", update_id=next(_telegram_ids))


def _sticker() -> dict[str, Any]:
    update = text_update("", update_id=next(_telegram_ids))
    del update["message"]["text"]
    update["message"]["sticker"] = {"file_id": "x"}
    return update


# Every kind of update Telegram sends, as the bot gets it (mutated in the tests).
TELEGRAM_TEMPLATES = [
    telegram_template,
    lambda: text_update("/start@LgBot deep", update_id=next(_telegram_ids)),
    lambda: text_update("x" * 4001, update_id=next(_telegram_ids)),  # too long: told so
    lambda: press_update("/affirm", update_id=next(_telegram_ids)),
    lambda: press_update("#gone", update_id=next(_telegram_ids)),  # expired button
    lambda: {"update_id": next(_telegram_ids)},
    lambda: {"update_id": next(_telegram_ids), "edited_message": text_update("x")["message"]},
    lambda: {"update_id": next(_telegram_ids), "channel_post": text_update("x")["message"]},
    lambda: {
        "update_id": next(_telegram_ids),
        "callback_query": {"id": "q", "game_short_name": "g"},
    },
    _sticker,
]


@fuzz(300)
@given(
    body=bodies(*TELEGRAM_TEMPLATES, max_size=70_000),
    content_type=CONTENT_TYPES,
    headers=headers_except(SECRET_HEADER),
)
@example(body=b"[" * 5000, content_type="application/json", headers={})  # RecursionError
@example(body=b'{"update_id": ' + b"9" * 5000 + b"}", content_type=None, headers={})
async def test_telegram_webhook_takes_any_body_without_crashing(
    tg: Telegram, body: bytes, content_type: str | None, headers: dict[str, bytes]
) -> None:
    mark, before, calls = tg.errors.mark(), len(tg.rasa.received), len(tg.api.calls)
    answer = await post(
        tg.http, tg.url, body, content_type, headers,
        X_Telegram_Bot_Api_Secret_Token=TELEGRAM_SECRET,
    )  # fmt: skip
    tg.errors.check(mark)
    no_server_error(answer)
    event(f"{answer.status_code} {answer.text[:40] if answer.status_code < 400 else ''}")
    if answer.status_code >= 400:
        refusal(answer, "bad_request")
        assert answer.status_code in (400, 413)
        assert len(tg.rasa.received) == before and len(tg.api.calls) == calls
        return
    assert answer.status_code == 200
    status = answer.json()["status"]
    assert status in ("ok", "ignored", "duplicate")
    reached = len(tg.rasa.received) - before
    assert reached <= (1 if status == "ok" else 0)
    if status != "ok":
        assert len(tg.api.calls) == calls  # ignored: nobody is answered either
    for message in tg.rasa.received[before:]:
        assert isinstance(message.text, str) and message.text.strip()
        assert re.fullmatch(r"telegram:-?\d+", message.sender_id)


SECRET_GUESSES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"",
            b"Bearer " + TELEGRAM_SECRET.encode(),
            TELEGRAM_SECRET.upper().encode(),
            TELEGRAM_SECRET.encode() + b"x",
            TELEGRAM_SECRET[:-1].encode(),
            TELEGRAM_SECRET.encode() + b"\xff",
            b"\xff" + TELEGRAM_SECRET.encode()[1:],
            TELEGRAM_SECRET.encode() + b"," + TELEGRAM_SECRET.encode(),
        ]
    ),
    st.builds(
        lambda at, char: TELEGRAM_SECRET[:at] + char + TELEGRAM_SECRET[at + 1 :],
        st.integers(0, len(TELEGRAM_SECRET) - 1),
        st.characters(min_codepoint=0x21, max_codepoint=0x7E),
    )
    .filter(lambda s: s != TELEGRAM_SECRET)
    .map(str.encode),
    HEADER_VALUES,
).filter(lambda s: s != TELEGRAM_SECRET.encode())


@fuzz(60)
@given(
    secret=SECRET_GUESSES,
    body=st.one_of(st.builds(lambda: to_json(telegram_template())), bodies(*TELEGRAM_TEMPLATES)),
    headers=headers_except(SECRET_HEADER),
)
@example(secret=b"\xff", body=b"{}", headers={})  # not UTF-8: compared as bytes, not a 500
async def test_telegram_without_the_right_secret_is_401_and_reaches_no_one(
    tg: Telegram, secret: bytes | None, body: bytes, headers: dict[str, bytes]
) -> None:
    mark, before, calls = tg.errors.mark(), len(tg.rasa.received), len(tg.api.calls)
    answer = await post(
        tg.http, tg.url, body, "application/json", headers, X_Telegram_Bot_Api_Secret_Token=secret
    )
    tg.errors.check(mark)
    assert answer.status_code == 401, (answer.status_code, answer.text[:300])
    assert refusal(answer, "unauthorized") == f"missing or wrong {SECRET_HEADER}"
    assert len(tg.rasa.received) == before and len(tg.api.calls) == calls


VALID_TEXT = st.one_of(
    st.text(min_size=1, max_size=300),
    st.integers(3990, 4000).map(lambda n: "y" * n),
).filter(lambda t: t.strip() and not t.startswith("/"))


@fuzz(30)
@example(text="a\x00b \ud800", chat=1, data="\x00", content_type=None)
@given(
    text=VALID_TEXT,
    chat=st.integers(-(2**52), 2**52),
    data=st.text(min_size=1, max_size=20).filter(lambda d: d.strip() and d[0] != "#"),
    content_type=CONTENT_TYPES,
)
async def test_telegram_valid_updates_reach_rasa(
    tg: Telegram, text: str, chat: int, data: str, content_type: str | None
) -> None:
    before = len(tg.rasa.received)
    for update, expected in (
        (text_update(text, update_id=next(tg.update_ids), chat=chat), text),
        (press_update(data, update_id=next(tg.update_ids), chat=chat), data),
    ):
        answer = await post(
            tg.http, tg.url, to_json(update), content_type, {},
            X_Telegram_Bot_Api_Secret_Token=TELEGRAM_SECRET,
        )  # fmt: skip
        assert (answer.status_code, answer.json()) == (200, {"status": "ok"})
        message = tg.rasa.received[-1]  # (Rasa's UserMessage strips the text)
        # NUL and unpaired surrogates become U+FFFD (no tracker store can hold them).
        stored = storable_text(expected).strip()
        assert (message.text, message.sender_id) == (stored, f"telegram:{chat}")
    assert len(tg.rasa.received) == before + 2
    tg.errors.check()


# -- Alexa --------------------------------------------------------------------------------


class MemoryInbox:
    """The Alexa inbox, empty and in memory: launches read nothing, late replies are kept."""

    def __init__(self) -> None:
        self.added: list[tuple[str, str]] = []

    async def take_all(self, sender_id: str, limit: int | None = None) -> list[Any]:
        return []

    async def count(self, sender_id: str) -> int:
        return 0

    async def add(self, key: str, sender_id: str, text: str, kind: str = "") -> bool:
        self.added.append((sender_id, text))
        return True


@dataclass(repr=False)
class Alexa:
    url: str
    rasa: StubRasa
    channel: AlexaInput
    http: httpx.AsyncClient
    errors: LoggedErrors
    pki: TestPKI | None = None
    chains: dict[str, bytes] = field(default_factory=dict)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' reports
        printer.text(f"<{type(self).__name__} at {self.url}>")


async def serve_alexa(
    channel: AlexaInput, errors: LoggedErrors, pki: TestPKI | None = None
) -> AsyncIterator[Alexa]:
    rasa = StubRasa({"text": "Which one: Bedroom AC or Living Room AC?", "buttons": CHOICES})
    prefix = "/webhooks/alexa"
    async with httpx.AsyncClient(timeout=30) as http:
        async with serve_blueprint(channel.blueprint(rasa), prefix, name="alexa-fuzz") as base:
            served = Alexa(f"{base}{prefix}/webhook", rasa, channel, http, errors, pki)
            yield served
            # Still serving, whatever came before.
            body = encode(said("what devices do I have"))
            headers = pki.headers(body) if pki is not None else {}
            answer = await http.post(served.url, content=body, headers=headers)
            assert answer.status_code == 200, answer.text
            assert rasa.received[-1].text == "what devices do I have"
            for task in list(channel.background):
                task.cancel()
    errors.check()


@pytest.fixture
async def alexa_open(logged_errors: LoggedErrors) -> AsyncIterator[Alexa]:
    """Verification off (the demo switch), the skill id checked."""
    settings = AlexaSettings(verify_signatures=False, skill_id=SKILL_ID, reply_budget_seconds=6)
    channel = AlexaInput(settings, inbox=MemoryInbox())  # type: ignore[arg-type]
    async for served in serve_alexa(channel, logged_errors):
        yield served


@pytest.fixture(scope="module")
def pki() -> TestPKI:
    return TestPKI()


@pytest.fixture(scope="module")
def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class AnyUrlFetcher:
    """Serves the test PKI's good chain at every URL (an attacker can host a copy of
    Amazon's real chain anywhere: only the URL rules refuse it), or what ``chains`` says."""

    def __init__(self, chain: bytes) -> None:
        self.chain = chain
        self.chains: dict[str, bytes] = {}

    async def __call__(self, url: str) -> bytes:
        return self.chains.get(url, self.chain)


@pytest.fixture
async def alexa_signed(pki: TestPKI, logged_errors: LoggedErrors) -> AsyncIterator[Alexa]:
    """Verification on, against the test PKI; ``chains`` are the certificate chains the
    (fake) fetcher serves by URL, the good one at any other."""
    fetcher = AnyUrlFetcher(pki.chain_pem())
    verifier = AlexaRequestVerifier(fetch=fetcher, trusted_roots=[pki.root], skill_id=SKILL_ID)
    settings = AlexaSettings(verify_signatures=True, skill_id=SKILL_ID, reply_budget_seconds=6)
    channel = AlexaInput(settings, verifier, inbox=MemoryInbox())  # type: ignore[arg-type]
    async for served in serve_alexa(channel, logged_errors, pki):
        served.chains = fetcher.chains
        yield served


def alexa_templates() -> st.SearchStrategy[Callable[[], dict[str, Any]]]:
    return st.sampled_from(
        [
            lambda: said("turn on the oven"),
            lambda: said("the bedroom AC", attributes={"choices": [["Bedroom AC", "/x"]]}),
            launch,
            lambda: alexa_request(
                {"type": "IntentRequest", "intent": {"name": "AMAZON.StopIntent"}}
            ),
            lambda: alexa_request({"type": "SessionEndedRequest", "reason": "ERROR"}),
        ]
    )  # fmt: skip


TIMESTAMPS = st.sampled_from(
    [
        "", "now", "2024-13-45T99:99:99Z", "9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59",
        "2024-01-01T00:00:00.123456789Z", "１２３", "1e9999",
    ]
)  # fmt: skip
ALEXA_VALUES = st.one_of(JSON, TIMESTAMPS)


def alexa_bodies() -> st.SearchStrategy[bytes]:
    """A fresh request (its timestamp is now) mutated, or bytes that are no request."""
    requests = alexa_templates().flatmap(lambda template: mutated(template, ALEXA_VALUES))
    return weighted((1, odd_bytes(20_000, 140_000)), (3, requests.map(to_json)))


def check_alexa_answer(answer: httpx.Response, rasa: StubRasa, before: int) -> None:
    no_server_error(answer)
    event(f"{answer.status_code} {answer.json().get('reason', '')[:40]}")
    if answer.status_code >= 400:
        assert answer.status_code == 400
        refusal(answer, "bad_request")
        assert len(rasa.received) == before
        return
    assert answer.status_code == 200
    body = answer.json()
    assert body["version"] == "1.0" and isinstance(body["response"], dict), body
    assert len(rasa.received) - before <= 1
    for message in rasa.received[before:]:
        assert message.sender_id.startswith("alexa:") and len(message.sender_id) <= 255
        assert isinstance(message.text, str) and message.text


@fuzz(300)
@given(body=alexa_bodies(), content_type=CONTENT_TYPES, headers=headers_except())
@example(body=b"[" * 5000, content_type=None, headers={})  # RecursionError
@example(body=b"9" * 5000, content_type=None, headers={})  # over Python's int digits
@example(  # a truthy non-object where an object belongs
    body=to_json({**said("hi"), "session": ["x"]}), content_type=None, headers={}
)
@example(
    body=to_json({**said("hi"), "request": {"type": "IntentRequest", "intent": {"name": [1]}}}),
    content_type=None,
    headers={},
)
async def test_alexa_unverified_takes_any_body_without_crashing(
    alexa_open: Alexa, body: bytes, content_type: str | None, headers: dict[str, bytes]
) -> None:
    mark, before = alexa_open.errors.mark(), len(alexa_open.rasa.received)
    answer = await post(alexa_open.http, alexa_open.url, body, content_type, headers)
    alexa_open.errors.check(mark)
    check_alexa_answer(answer, alexa_open.rasa, before)


@fuzz(30)
@given(words=st.text(min_size=1, max_size=1000).filter(str.strip), headers=headers_except())
@example(words="turn on\x00 the \ud800 oven", headers={})
async def test_alexa_unverified_utterances_reach_rasa(
    alexa_open: Alexa, words: str, headers: dict[str, bytes]
) -> None:
    answer = await post(alexa_open.http, alexa_open.url, encode(said(words)), None, headers)
    assert answer.status_code == 200, answer.text
    # NUL and unpaired surrogates become U+FFFD (no tracker store can hold them).
    assert alexa_open.rasa.received[-1].text == storable_text(words.strip())
    alexa_open.errors.check()


def _not_port_443(port: object) -> bool:
    """Not a port Amazon's rule lets through: 443, or none given (``https://host:/``)."""
    try:
        return urlsplit(f"https://s3.amazonaws.com:{port}/").port not in (None, 443)
    except ValueError:  # not a port at all
        return True


# Certificate chain URLs that break one of Amazon's rules each (https, host
# s3.amazonaws.com, port 443, path under /echo.api/ once normalised).
BAD_CERT_URLS = st.one_of(
    st.sampled_from(
        [
            "", "http://s3.amazonaws.com/echo.api/echo-api-cert-12.pem",
            "https://notamazon.com/echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com.evil.example/echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com./echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com@evil.example/echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com:563/echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com:99999/echo.api/echo-api-cert-12.pem",
            "https://s3.amazonaws.com:0/echo.api/x.pem", "https://[::1/echo.api/x.pem",
            "https://s3.amazonaws.com/EcHo.aPi/echo-api-cert-12.pem",
            "https://s3.amazonaws.com/echo.api/../echo-api-cert-12.pem",
            "https://s3.amazonaws.com/echo.api/%2e%2e/x.pem", "https://s3.amazonaws.com/echo.api",
            "https://s3.amazonaws.com/echo.api/", "https://s3.amazonaws.com/echo.api.pem",
            "file:///etc/passwd", "//s3.amazonaws.com/echo.api/x", "s3.amazonaws.com/echo.api/x",
        ]
    ),
    st.builds(
        "{}://s3.amazonaws.com/echo.api/{}".format,
        st.sampled_from(["http", "ftp", "wss", "", "https:", "https ", "file"]),
        st.text(max_size=20),
    ),
    st.builds(
        "https://{}/echo.api/{}".format,
        st.one_of(
            st.sampled_from(["s3.amazonaws.co", "s3-amazonaws.com", "echo-api.amazon.com"]),
            st.from_regex(r"\A[a-z0-9.-]{1,30}\Z").filter(lambda h: h != "s3.amazonaws.com"),
        ),
        st.text(max_size=20),
    ),
    st.builds(
        "https://s3.amazonaws.com:{}/echo.api/x.pem".format,
        st.one_of(st.integers(0, 65535), st.text(max_size=6)).filter(_not_port_443),
    ),
    st.text(max_size=60).filter(lambda url: "amazonaws" not in url.lower()),
)  # fmt: skip


async def refused_by_alexa(
    alexa: Alexa, body: bytes, headers: dict[str, Any], *context: object
) -> str:
    """Post ``body`` to the signature-checking endpoint: it must be a 400 with a reason,
    logged no error and reach no one; returns the reason."""
    mark, before = alexa.errors.mark(), len(alexa.rasa.received)
    answer = await alexa.http.post(alexa.url, content=body, headers=headers)
    alexa.errors.check(mark)
    assert answer.status_code == 400, (*context, answer.status_code, answer.text[:300])
    reason = refusal(answer, "bad_request")
    assert len(alexa.rasa.received) == before
    return reason


@fuzz(60)
@given(url=BAD_CERT_URLS, headers=headers_except(CERT_URL_HEADER, SIGNATURE_HEADER))
async def test_alexa_refuses_cert_urls_off_amazons_rules_even_with_a_good_signature(
    alexa_signed: Alexa, url: str, headers: dict[str, bytes]
) -> None:
    assert alexa_signed.pki is not None
    body = encode(said("unlock the front-loader door"))
    sent = {**headers, CERT_URL_HEADER: wire(url), SIGNATURE_HEADER: alexa_signed.pki.sign(body)}
    event((await refused_by_alexa(alexa_signed, body, sent))[:40])


@fuzz(60)
@given(
    url=st.sampled_from([CERT_URL, "https://S3.AMAZONAWS.COM:443/echo.api/echo-api-cert-12.pem"]),
    how=st.sampled_from(["random", "text", "empty", "missing", "other body", "other key"]),
    raw=st.binary(max_size=300),
    text=st.text(max_size=40),
    headers=headers_except(CERT_URL_HEADER, SIGNATURE_HEADER),
)
async def test_alexa_refuses_bad_or_missing_signatures(
    alexa_signed: Alexa,
    attacker_key: rsa.RSAPrivateKey,
    url: str,
    how: str,
    raw: bytes,
    text: str,
    headers: dict[str, bytes],
) -> None:
    assert alexa_signed.pki is not None
    body = encode(said("unlock the front-loader door"))
    signature = {
        "random": base64.b64encode(raw).decode(),
        "text": text,
        "empty": "",
        "missing": None,
        "other body": alexa_signed.pki.sign(encode(said("something else"))),
        "other key": alexa_signed.pki.sign(body, key=attacker_key),
    }[how]
    sent = {**headers, CERT_URL_HEADER: wire(url)}
    if signature is not None:
        sent[SIGNATURE_HEADER] = wire(signature)
    event((await refused_by_alexa(alexa_signed, body, sent))[:40])


_chain_urls = itertools.count()


def _pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def bad_chain(pki: TestPKI, kind: str, noise: bytes) -> bytes:
    """A certificate chain that must not be trusted, of the given kind."""
    day = timedelta(days=1)
    if kind == "noise":
        return noise
    if kind == "pem noise":
        inner = base64.encodebytes(noise).decode()
        return f"-----BEGIN CERTIFICATE-----\n{inner}-----END CERTIFICATE-----\n".encode()
    if kind == "empty":
        return b""
    if kind == "leaf only":
        return _pem(pki.leaf)
    if kind == "intermediate only":
        return _pem(pki.intermediate)
    if kind == "reversed":
        return _pem(pki.intermediate, pki.leaf)
    if kind == "expired":
        return pki.chain_pem(pki.make_leaf(not_before=pki.now - 9 * day, not_after=pki.now - day))
    if kind == "not yet valid":
        return pki.chain_pem(pki.make_leaf(not_before=pki.now + day))
    if kind == "another name":
        return pki.chain_pem(pki.make_leaf(names=["echo-api.amazon.com.evil.example"]))
    if kind == "no name":
        return pki.chain_pem(pki.make_leaf(names=[]))
    if kind == "self-signed":
        leaf = _leaf(
            pki.leaf_key, pki.leaf, pki.leaf_key,
            names=["echo-api.amazon.com"], not_before=pki.now - day, not_after=pki.now + day,
        )  # fmt: skip
        return _pem(leaf)
    assert kind == "not RSA"
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = _leaf(
        key, pki.intermediate, pki.intermediate_key,  # type: ignore[arg-type]
        names=["echo-api.amazon.com"], not_before=pki.now - day, not_after=pki.now + day,
    )  # fmt: skip
    return pki.chain_pem(leaf)


@fuzz(30)
@given(
    kind=st.sampled_from(
        [
            "noise", "pem noise", "empty", "leaf only", "intermediate only", "reversed",
            "expired", "not yet valid", "another name", "no name", "self-signed", "not RSA",
        ]
    ),
    noise=st.binary(max_size=400),
)  # fmt: skip
async def test_alexa_untrusted_certificate_chains_are_400(
    alexa_signed: Alexa, kind: str, noise: bytes
) -> None:
    assert alexa_signed.pki is not None
    url = f"https://s3.amazonaws.com/echo.api/fuzz-{next(_chain_urls)}.pem"
    alexa_signed.chains[url] = bad_chain(alexa_signed.pki, kind, noise)
    body = encode(said("start the oven"))
    headers = alexa_signed.pki.headers(body, url=url)  # signed with the real leaf's key
    await refused_by_alexa(alexa_signed, body, headers, kind)


@fuzz(80)
@given(body=alexa_bodies(), content_type=CONTENT_TYPES)
@example(  # signed, but the timestamp is no time
    body=to_json({**said("hi"), "request": {**said("hi")["request"], "timestamp": "１２３"}}),
    content_type=None,
)
async def test_alexa_correctly_signed_garbage_is_refused_or_answered(
    alexa_signed: Alexa, body: bytes, content_type: str | None
) -> None:
    assert alexa_signed.pki is not None
    headers: dict[str, str] = alexa_signed.pki.headers(body)
    if content_type is not None:
        headers["Content-Type"] = content_type
    mark, before = alexa_signed.errors.mark(), len(alexa_signed.rasa.received)
    answer = await alexa_signed.http.post(alexa_signed.url, content=body, headers=headers)
    alexa_signed.errors.check(mark)
    check_alexa_answer(answer, alexa_signed.rasa, before)


# -- the chat widget ------------------------------------------------------------------------


class WidgetRasa:
    """Rasa for the widget: records each message, answers one short line (and a button)
    through the channel's output, as Rasa does."""

    def __init__(self) -> None:
        self.received: list[UserMessage] = []

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        await message.output_channel.send_response(
            message.sender_id,
            {"text": "Noted.", "buttons": [{"title": "Undo", "payload": "/undo"}]},
        )


@dataclass(repr=False)
class Widget:
    base: str
    rasa: WidgetRasa
    channel: WidgetInput
    messages: WidgetMessageRepository
    engine: AsyncEngine
    http: httpx.AsyncClient
    errors: LoggedErrors
    users: Iterator[int] = field(default_factory=itertools.count)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' reports
        printer.text(f"<{type(self).__name__} at {self.base}>")

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/webhooks/widget/ws"

    @property
    def notify_url(self) -> str:
        return f"{self.base}/webhooks/widget/notify"

    def new_user(self) -> str:
        return f"fuzz-{next(self.users)}"

    async def rows(self) -> tuple[int, int]:
        """How many messages the log holds, and the newest id (ids only grow)."""
        table = WidgetMessageRecord.__table__
        async with self.engine.connect() as conn:
            count, newest = (
                await conn.execute(select(func.count(), func.max(table.c.id)).select_from(table))
            ).one()
        return int(count), int(newest or 0)

    async def settled(self) -> None:
        """Waits until every closed socket's turns are done (their replies stored)."""
        await wait_for(lambda: not self.channel.background)


@pytest.fixture
async def widget(database_url: str, logged_errors: LoggedErrors) -> AsyncIterator[Widget]:  # noqa: F811
    """The widget channel on the real message log (SQLite, then PostgreSQL)."""
    engine = create_engine(database_url)
    await create_schema(engine)
    messages = WidgetMessageRepository(engine)
    settings = widget_settings()
    channel = WidgetInput(settings, WidgetHub(settings, messages))
    rasa = WidgetRasa()
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            async for base in serve_widget(channel, rasa):  # type: ignore[arg-type]
                served = Widget(base, rasa, channel, messages, engine, http, logged_errors)
                yield served
                # Still serving, whatever came before: a turn and a notification.
                async with signed_in(served, served.new_user()) as ws:
                    frames, code = await exchange(ws, to_json({"type": "message", "text": "hi"}))
                    assert code is None and not [f for f in frames if f["type"] == "error"]
                    await wait_for(lambda: rasa.received and rasa.received[-1].text == "hi")
                answer = await served.http.post(
                    served.notify_url,
                    json={"sender_id": f"widget:{ISSUER}:x", "text": "Done.", "key": "last"},
                    headers={"Authorization": f"Bearer {NOTIFY_SECRET}"},
                )
                assert answer.status_code == 200, answer.text
                for task in list(channel.background):
                    task.cancel()
    finally:
        await engine.dispose()
    logged_errors.check()


async def wait_for(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


STATIC_NAMES = st.one_of(
    st.sampled_from(
        [
            *STATIC_FILES, "WIDGET.JS", "widget.js.map", "widget.py", "widget_token.py",
            "__init__.py", "..", ".", "%2e%2e", "../widget.py", "..%2Fwidget.py", "..\\widget.py",
            "widget.js\x00", "widget.js/", "/etc/passwd", "notify", "ws", "a" * 3000,
        ]
    ),
    st.text(max_size=40),
)  # fmt: skip


@fuzz(60)
@given(
    name=STATIC_NAMES,
    method=st.sampled_from(["GET", "GET", "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]),
    headers=headers_except("authorization"),
)
@example(name="ws", method="GET", headers={})  # no handshake: was a logged 500
# Sanic 21.12 answered its own 404/405 with a 500 when Accept did not parse, on every
# route of Rasa's server (fixed by connector/sanic_accept.py, installed by rasa_ext).
@example(name="nope", method="GET", headers={"Accept": b"a/b;q=x"})
@example(name="widget.js", method="DELETE", headers={"Accept": b"0"})
async def test_widget_static_files_and_nothing_else(
    widget: Widget, name: str, method: str, headers: dict[str, bytes]
) -> None:
    mark = widget.errors.mark()
    path = quote(name, safe="") if not name.startswith("/") else name
    answer = await widget.http.request(
        method, f"{widget.base}/webhooks/widget/{path}", headers=headers
    )
    widget.errors.check(mark)
    no_server_error(answer)
    if answer.status_code == 200:
        assert method == "GET", method
        if name in STATIC_FILES:
            assert answer.headers["content-type"] == STATIC_FILES[name]
        else:  # "", "." and the like are the channel's own URL: its health
            assert answer.json() == {"status": "ok"}, (name, answer.text[:200])
        return
    if method == "GET" and name == "ws":
        # A plain GET of the socket's URL is no handshake: 426 with the reason.
        assert answer.status_code == 426
        refusal(answer, "bad_handshake")
        return
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    if answer.headers.get("content-type", "").startswith("application/json"):
        # Our own 404 is {"error": "not_found"}; Sanic's (no route) has a "description".
        document = answer.json()
        assert document.get("error") or document.get("description"), document
    else:
        assert method == "HEAD" or answer.text.strip()


NOTIFY_GUESSES = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"", b"Bearer", b"Bearer  " + NOTIFY_SECRET.encode(),
            b"bearer " + NOTIFY_SECRET.encode(), NOTIFY_SECRET.encode(),
            b"Bearer " + NOTIFY_SECRET[:-1].encode(), b"Bearer " + NOTIFY_SECRET.encode() + b"x",
            b"Bearer " + NOTIFY_SECRET.encode() + b"\xff",
            b"Basic " + base64.b64encode(NOTIFY_SECRET.encode()), b"Bearer \xff\xfe",
        ]
    ),
    HEADER_VALUES,
    HEADER_VALUES.map(lambda v: b"Bearer " + v),
).filter(lambda v: v != f"Bearer {NOTIFY_SECRET}".encode())  # fmt: skip


def notify_template() -> dict[str, Any]:
    return {
        "sender_id": f"widget:{ISSUER}:alice",
        "text": "Your Washer has finished.",
        "key": f"outbox-{next(_notify_keys)}",
        "buttons": [{"title": "Start the dryer", "payload": "/start_dryer"}],
    }


_notify_keys = itertools.count()


@fuzz(40)
@given(auth=NOTIFY_GUESSES, headers=headers_except("authorization"))
@example(auth=b"Bearer \xff", headers={})  # not UTF-8: compared as bytes, not a 500
async def test_widget_notify_without_the_secret_is_401_and_stores_nothing(
    widget: Widget, auth: bytes | None, headers: dict[str, bytes]
) -> None:
    mark, rows = widget.errors.mark(), await widget.rows()
    answer = await post(
        widget.http, widget.notify_url, to_json(notify_template()), "application/json", headers,
        Authorization=auth,
    )  # fmt: skip
    widget.errors.check(mark)
    assert answer.status_code == 401, (answer.status_code, answer.text[:300])
    assert refusal(answer, "unauthorized") == "missing or wrong bearer secret"
    assert await widget.rows() == rows


NOTIFY_VALUES = st.one_of(
    JSON,
    st.builds("widget:{}:{}".format, st.text(max_size=5), st.text(max_size=300)),
    st.integers(100, 5000).map(lambda n: "n" * n),
    st.lists(st.fixed_dictionaries({"title": TEXT, "payload": TEXT}), max_size=12),
    st.just([{"title": "t", "payload": "p" * 1001}]),
)


@fuzz(100)
@given(
    body=weighted(
        (1, odd_bytes(20_000, 200_000)), (2, mutated(notify_template, NOTIFY_VALUES).map(to_json))
    ),
    content_type=CONTENT_TYPES,
    headers=headers_except("authorization"),
)
@example(body=b"[" * 5000, content_type=None, headers={})  # RecursionError
@example(  # PostgreSQL keeps no NUL in text: a 400, not a 503 "store unavailable"
    body=to_json({**notify_template(), "text": "a\x00b"}), content_type=None, headers={}
)
@example(body=to_json({**notify_template(), "key": "\ud800"}), content_type=None, headers={})
async def test_widget_notify_takes_any_body_without_crashing(
    widget: Widget, body: bytes, content_type: str | None, headers: dict[str, bytes]
) -> None:
    mark, (count, newest) = widget.errors.mark(), await widget.rows()
    answer = await post(
        widget.http, widget.notify_url, body, content_type, headers,
        Authorization=f"Bearer {NOTIFY_SECRET}",
    )  # fmt: skip
    widget.errors.check(mark)
    no_server_error(answer)
    event(f"{answer.status_code} {answer.json().get('reason', '')[:30]}")
    after_count, after_newest = await widget.rows()
    if answer.status_code >= 400:
        assert answer.status_code == 400
        refusal(answer, "bad_request")
        assert (after_count, after_newest) == (count, newest)
        return
    assert answer.status_code == 200
    stored = answer.json()
    assert stored["status"] == "stored" and isinstance(stored["id"], int), stored
    # At most the one message. (Not "the newest id grew by one": on PostgreSQL a redelivery
    # of a stored key still takes a number from the id sequence.)
    assert after_count - count <= 1 and after_newest >= newest


@fuzz(20)
@given(
    text=st.text(STORABLE_CHARS, min_size=1, max_size=4000).filter(str.strip),
    title=st.text(STORABLE_CHARS, min_size=1, max_size=80).filter(str.strip),
)
async def test_widget_valid_notifications_are_stored(widget: Widget, text: str, title: str) -> None:
    body = {**notify_template(), "text": text, "buttons": [{"title": title, "payload": "/p"}]}
    answer = await widget.http.post(
        widget.notify_url, json=body, headers={"Authorization": f"Bearer {NOTIFY_SECRET}"}
    )
    assert answer.status_code == 200, answer.text
    stored_id = answer.json()["id"]
    [stored] = [m for m in await widget.messages.recent(body["sender_id"], 5) if m.id == stored_id]
    assert stored.text == text and stored.buttons[0]["title"] == title.strip()
    widget.errors.check()


# -- the widget's WebSocket ---------------------------------------------------------------


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def signed_token(header: bytes, payload: bytes, secret: str = TOKEN_SECRET) -> str:
    """An HS256 JWT over any header and payload bytes (PyJWT refuses odd claims)."""
    signing_input = f"{_b64(header)}.{_b64(payload)}"
    signature = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _segments(token: str) -> list[bytes] | None:
    try:
        return [base64.urlsafe_b64decode(part + "==") for part in token.split(".")]
    except ValueError:
        return None


def claims_template() -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "mallory", "aud": AUDIENCE, "iat": now, "exp": now + 600}


HS256 = b'{"alg":"HS256","typ":"JWT"}'
CLAIM_VALUES = st.one_of(
    JSON,
    st.sampled_from(
        [
            AUDIENCE,
            [AUDIENCE],
            [AUDIENCE, 5],
            ISSUER,
            [ISSUER],
            ISSUER.upper(),
            ISSUER + " ",
            "other-partner",
            "bob",
            "x" * 129,
            "a b",
            "widget:sample-partner:alice",
            "",
        ]
    ),
    st.floats(),
    st.integers(-(2**40), 2**40).map(lambda d: int(time.time()) + d),
)


@st.composite
def hellos(draw: st.DrawFn) -> tuple[str | bytes, dict[str, Any] | None]:
    """A first frame that is not a valid hello, mostly; with the claims it was signed over
    when the token is signed with the right secret (it may then be valid after all)."""
    kind = draw(
        weighted(
            *[(1, st.just(kind)) for kind in ("frame", "token value", "token text", "header")],
            (4, st.just("claims")),
        )
    )
    if kind == "frame":
        return draw(st.one_of(st.text(max_size=50), odd_bytes(3000, 20_000))), None
    if kind == "token value":
        return to_json({"type": "hello", "token": draw(JSON)}), None
    if kind == "token text":
        good = widget_token()
        text = draw(
            st.one_of(
                st.text(max_size=60),
                st.just(widget_token(secret=ATTACKERS_SECRET)),
                st.integers(0, len(good) - 1).map(lambda at: good[:at] + "A" + good[at + 1 :]),
                st.just(good.rsplit(".", 1)[0] + "."),  # no signature
                st.just("x" * 5000),
            )
        )
        if _segments(text) == _segments(good):
            # Base64 leaves a segment's last character a few unused bits: one changed
            # there is the same token. Not the forgery this is about.
            text = good + "x"
        return to_json({"type": "hello", "token": text}), None
    if kind == "header":
        header = draw(
            st.one_of(
                st.sampled_from(
                    [b'{"alg":"none"}', b'{"alg":"HS512"}', b'{"alg":"RS256"}', b'{"alg":"hs256"}',
                     b'{"alg":null}', b'{"alg":"HS256","crit":["b64"],"b64":false}', b"[1]", b""]
                ),
                odd_bytes(1200, 2000),
            )
        )  # fmt: skip
        claims = claims_template()  # valid: only the header is odd (maybe valid after all)
        return to_json({"type": "hello", "token": signed_token(header, to_json(claims))}), claims
    if draw(st.booleans()):
        # One claim wrong (or missing), the rest valid: each check on its own.
        claims = claims_template()
        name = draw(st.sampled_from(sorted(claims)))
        if draw(st.integers(0, 4)):
            claims[name] = copy.deepcopy(draw(CLAIM_VALUES))
        else:
            del claims[name]
    else:
        claims = draw(mutated(claims_template, CLAIM_VALUES))
    hello = {"type": "hello", "token": signed_token(HS256, to_json(claims))}
    if draw(st.booleans()):
        hello[draw(KEYS)] = draw(JSON)  # an extra field (a sender!) changes nothing
    return to_json(hello), claims


def acceptable(claims: Any) -> bool:
    """What a token signed with the right secret must hold to open a conversation (at
    least: PyJWT refuses more, an odd ``aud`` or ``nbf`` say)."""
    if not isinstance(claims, dict):
        return False
    now = time.time()
    issued, expires = claims.get("iat"), claims.get("exp")
    numbers = all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
        for v in (issued, expires)
    )
    return (
        claims.get("iss") == ISSUER
        and isinstance(claims.get("sub"), str)
        and bool(SUBJECT.fullmatch(claims["sub"]))
        and numbers
        and expires > now - LEEWAY_SECONDS - 5
        and issued <= now + LEEWAY_SECONDS + 5
        and expires - issued <= 900
    )


@asynccontextmanager
async def connected(widget: Widget, origin: str | None = PAGE) -> AsyncIterator[Any]:
    """A socket to the widget, closed however the example ends (an open one would keep
    its turn worker, and ``settled``, waiting)."""
    ws = await websockets.connect(
        widget.ws_url, origin=origin, open_timeout=10, close_timeout=5, max_size=None
    )
    try:
        yield ws
    finally:
        await ws.close()


@asynccontextmanager
async def signed_in(widget: Widget, user: str) -> AsyncIterator[Any]:
    """A socket past its hello, as ``user``."""
    async with connected(widget) as ws:
        await ws.send(to_json({"type": "hello", "token": widget_token(user)}).decode())
        ready = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ready["type"] == "ready", ready
        yield ws


async def drain(
    ws: Any, seconds: float = 10.0, until_ready: bool = False
) -> tuple[list[dict[str, Any]], int | None]:
    """Frames until the server closes the socket, and its close code; with ``until_ready``,
    up to a ``ready`` frame (the socket stays open: no code)."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
            if until_ready and frames[-1].get("type") == "ready":
                return frames, None
    except websockets.ConnectionClosed as closed:
        return frames, closed.code


def _is_ping(frame: str | bytes) -> bool:
    try:
        parsed = json.loads(frame)
    except Exception:
        return False
    return isinstance(parsed, dict) and parsed.get("type") == "ping"


async def exchange(ws: Any, frame: str | bytes) -> tuple[list[dict[str, Any]], int | None]:
    """Sends ``frame`` then a ping; the frames the server sent before its pong, or, when it
    closed the socket, those and its close code."""
    pongs = 2 if _is_ping(frame) else 1
    frames: list[dict[str, Any]] = []
    try:
        await ws.send(frame)
        await ws.send('{"type": "ping"}')
        while True:
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if answer == {"type": "pong"}:
                pongs -= 1
                if not pongs:
                    return frames, None
            else:
                frames.append(answer)
    except websockets.ConnectionClosed as closed:
        return frames, closed.code


@fuzz(80)
@given(
    hello=hellos(),
    origin=st.one_of(
        st.just(PAGE),
        st.sampled_from([None, PAGE + "/", "null", "https://evil.example", PAGE + ".evil.example"]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
    ),
)
@example(  # a correctly signed token whose times are NaN must not open a session forever
    hello=(
        to_json(
            {
                "type": "hello",
                "token": signed_token(
                    HS256,
                    b'{"iss": "%s", "sub": "m", "aud": "%s", "iat": NaN, "exp": NaN}'
                    % (ISSUER.encode(), AUDIENCE.encode()),
                ),
            }
        ),
        {"iss": ISSUER, "sub": "m", "aud": AUDIENCE, "iat": math.nan, "exp": math.nan},
    ),
    origin=PAGE,
)
@example(hello=(b"[" * 3000, None), origin=PAGE)  # RecursionError in the hello
async def test_widget_socket_refuses_a_bad_hello_with_a_reason_and_a_44xx_code(
    widget: Widget, hello: tuple[str | bytes, dict[str, Any] | None], origin: str | None
) -> None:
    first, claims = hello
    mark, rows, before = widget.errors.mark(), await widget.rows(), len(widget.rasa.received)
    async with connected(widget, origin) as ws:
        try:
            await ws.send(first)
        except websockets.ConnectionClosed:
            pass  # refused before the hello (the origin): the close code says so
        frames, code = await drain(ws, until_ready=True)
    allowed_origin = origin is None or origin.rstrip("/") == PAGE
    widget.errors.check(mark)
    event(f"{code} {frames[0].get('reason', frames[0]['type'])[:30] if frames else ''}")
    if frames and frames[0]["type"] == "ready":
        # Only a token that is valid after all opens the conversation, as the token's user.
        assert allowed_origin and claims is not None and acceptable(claims), (claims, frames)
    elif code == 1009:
        # The websocket layer refused a frame over its size limit (see the frames test).
        assert allowed_origin and len(first) > MAX_FRAME_BYTES, (code, len(first))
    else:
        assert code in ({4400, 4401} if allowed_origin else {4403}), (code, frames)
        [refused] = frames
        assert refused["type"] == "refused" and refused["reason"].strip(), refused
    await widget.settled()
    widget.errors.check(mark)
    assert await widget.rows() == rows and len(widget.rasa.received) == before


FRAME_VALUES = st.one_of(
    JSON,
    st.integers(4001, 5000).map(lambda n: "t" * n),  # too long a message
    st.integers(81, 200).map(lambda n: "T" * n),  # too long a title
    st.sampled_from(["\x00", "hi\x00", "\ud800", "ok \udfff", "  hi  "]),
)


def message_fields() -> dict[str, Any]:
    return {"text": "set the AC to 22", "title": "Living Room AC"}


def read_fields() -> dict[str, Any]:
    return {"up_to": 1}


def _typed(kind: str) -> Callable[[Any], str]:
    return lambda fields: json.dumps({"type": kind, **fields})


MESSAGE_FRAMES = st.fixed_dictionaries(
    {"type": st.just("message"), "text": st.one_of(st.text(max_size=60), FRAME_VALUES)},
    optional={
        "title": st.one_of(st.text(max_size=90), FRAME_VALUES),
        "sender": st.just(f"widget:{ISSUER}:alice"),  # not the socket's: must change nothing
        "up_to": JSON,
    },
).map(json.dumps)

FRAMES = weighted(
    # Not JSON, not UTF-8, too deep, too big (over its size limit the websocket layer
    # closes the socket, 1009); as binary or as text frames.
    (2, st.text(max_size=100)),
    (2, odd_bytes(4000, 40_000)),
    (1, odd_bytes(4000, 40_000).map(lambda b: b.decode("utf-8", "replace"))),
    # Any type, known or not, with any fields.
    (
        2,
        st.builds(
            lambda kind, fields: json.dumps({**fields, "type": kind}),
            st.one_of(TEXT, JSON, st.sampled_from(["message", "read", "ping", "hello", "MESSAGE"])),
            st.dictionaries(KEYS, JSON, max_size=3),
        ),
    ),
    # Read and message frames with fields of the wrong type, missing, too long, odd text.
    (1, st.fixed_dictionaries({"type": st.just("read"), "up_to": NUMBERS}).map(json.dumps)),
    (1, mutated(read_fields, FRAME_VALUES).map(_typed("read"))),
    (2, mutated(message_fields, FRAME_VALUES).map(_typed("message"))),
    (4, MESSAGE_FRAMES),
)


@fuzz(80)
@given(frames=st.lists(FRAMES, min_size=1, max_size=4))
@example(frames=["[" * 3000])  # RecursionError: an error frame, not a silent close
@example(frames=[json.dumps({"type": "message", "text": "a\x00b"})])
@example(frames=[json.dumps({"type": "message", "text": "\ud800"})])
@example(frames=[json.dumps({"type": "message", "text": "ok", "title": "\ud800"})])
async def test_widget_socket_answers_any_frame_and_refused_ones_reach_no_one(
    widget: Widget, frames: list[str | bytes]
) -> None:
    user = widget.new_user()
    sender = f"widget:{ISSUER}:{user}"
    mark, before = widget.errors.mark(), len(widget.rasa.received)
    accepted: list[str] = []
    async with signed_in(widget, user) as ws:
        for frame in frames:
            answers, code = await exchange(ws, frame)
            errors = [a for a in answers if a.get("type") == "error"]
            for error in errors:
                assert isinstance(error.get("reason"), str) and error["reason"].strip(), error
                assert error["reason"] != TURN_FAILED, "a turn failed"
            if code is not None:
                event(f"closed {code}")
                # Only the websocket layer closes a socket for a frame: one over the limit.
                assert code == 1009, (code, answers, frame[:200])
                size = len(frame.encode() if isinstance(frame, str) else frame)
                assert size > MAX_FRAME_BYTES, (code, frame[:200])
                break
            parsed = _frame_object(frame)
            taken = errors[0]["reason"][:30] if errors else "taken"
            event(f"{parsed.get('type')!r:.10} {taken}")
            if not errors and parsed.get("type") == "message":
                accepted.append(parsed["text"].strip())
    await wait_for(lambda: len(widget.rasa.received) >= before + len(accepted))
    await widget.settled()
    widget.errors.check(mark)
    # Each accepted message reached Rasa as the token's user; nothing refused did.
    received = widget.rasa.received[before:]
    assert [m.text for m in received] == accepted
    assert all(m.sender_id == sender for m in received)
    # And the log holds each accepted turn (the user's message and the reply), nothing else.
    logged = await widget.messages.recent(sender, 1000)
    assert [m.role for m in logged] == ["user", "bot"] * len(accepted)


def _frame_object(frame: str | bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(frame)
    except Exception:
        return {}
    return parsed if isinstance(parsed, dict) else {}


@fuzz(25)
@given(
    text=st.one_of(
        st.text(STORABLE_CHARS, min_size=1, max_size=200),
        st.integers(3990, 4000).map(lambda n: "v" * n),
    ).filter(str.strip),
    as_bytes=st.booleans(),
)
async def test_widget_valid_messages_reach_rasa_and_the_log(
    widget: Widget, text: str, as_bytes: bool
) -> None:
    user = widget.new_user()
    before = len(widget.rasa.received)
    frame = json.dumps({"type": "message", "text": text})
    async with signed_in(widget, user) as ws:
        answers, code = await exchange(ws, frame.encode() if as_bytes else frame)
    assert code is None and not [a for a in answers if a["type"] == "error"], answers
    await widget.settled()
    [message] = widget.rasa.received[before:]
    assert (message.text, message.sender_id) == (text.strip(), f"widget:{ISSUER}:{user}")
    logged = await widget.messages.recent(message.sender_id, 10)
    assert [(m.role, m.text) for m in logged] == [("user", text.strip()), ("bot", "Noted.")]
    widget.errors.check()
