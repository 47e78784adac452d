"""The Telegram channel against a fake Bot API on loopback (tests/fake_telegram.py).

The Rasa side runs the channel's own Sanic blueprint in a small Sanic app on a free port,
with a stub ``on_new_message`` standing in for Rasa's agent: it records each UserMessage
and replies through the message's output channel (text + buttons), as Rasa does.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from rasa.core.channels.channel import UserMessage

from assistant.settings import SettingsError, TelegramSettings, load_telegram_settings
from connector.outputs import OutgoingMessage, build_outputs
from connector.telegram import SECRET_HEADER, TelegramInput
from connector.telegram_api import CallbackPayloads, chat_id_of
from connector.telegram_sender import TelegramSender
from tests.db_fixtures import make_settings
from tests.fake_telegram import (  # noqa: F401 - fixtures are found by name
    TOKEN,
    FakeTelegram,
    running_fake_telegram,
)
from tests.sanic_support import serve_blueprint

SECRET = "webhook-secret_0123456789"
CHAT = 4242
BUTTONS = [
    {"title": "Living Room AC", "payload": '/inform_device{"device": "Living Room AC"}'},
    {"title": "Bedroom AC", "payload": '/inform_device{"device": "Bedroom AC"}'},
]
LONG_PAYLOAD = '/subscribe_push{"device": "The Big Front-Loading Washer In The Basement Laundry"}'


@dataclass
class RasaStub:
    """Rasa's agent, reduced to: record the message, answer through its output channel."""

    received: list[UserMessage] = field(default_factory=list)
    buttons: list[dict[str, str]] = field(default_factory=lambda: list(BUTTONS))
    fail: bool = False

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        if self.fail:
            raise RuntimeError("the agent broke")
        await message.output_channel.send_response(
            message.sender_id, {"text": f"You said: {message.text}", "buttons": self.buttons}
        )


@dataclass
class Webhook:
    url: str
    rasa: RasaStub
    channel: TelegramInput

    async def post(
        self, body: Any, secret: str | None = SECRET, raw: bytes | None = None
    ) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        content = raw if raw is not None else json.dumps(body).encode()
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(self.url, content=content, headers=headers)


async def serve(channel: TelegramInput, rasa: RasaStub) -> AsyncIterator[Webhook]:
    """The channel's blueprint at Rasa's prefix (/webhooks/telegram) in a Sanic app."""
    prefix = "/webhooks/telegram"
    async with serve_blueprint(channel.blueprint(rasa), prefix, name="telegram-test") as base:
        yield Webhook(f"{base}{prefix}/webhook", rasa, channel)


def settings_for(fake: FakeTelegram, **overrides: Any) -> TelegramSettings:
    values = {"bot_token": TOKEN, "webhook_secret": SECRET, "api_url": fake.url}
    return TelegramSettings(**{**values, **overrides}, timeout_seconds=2.0)


@pytest.fixture
async def webhook(
    telegram: FakeTelegram,
    caplog: pytest.LogCaptureFixture,
) -> AsyncIterator[Webhook]:
    caplog.set_level(logging.DEBUG)
    async for running in serve(TelegramInput(settings_for(telegram)), RasaStub()):
        yield running
    # Whatever the test did, the bot token never reached a log line.
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text


def text_update(text: str, update_id: int = 1, chat: int = CHAT) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 77,
            "from": {"id": 9001, "is_bot": False, "first_name": "Ana"},
            "chat": {"id": chat, "type": "private"},
            "date": 1_700_000_000,
            "text": text,
        },
    }


def press_update(data: str, update_id: int = 2, chat: int = CHAT) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": "cbq-555",
            "from": {"id": 9001, "is_bot": False, "first_name": "Ana"},
            "message": {"message_id": 78, "chat": {"id": chat, "type": "private"}, "date": 1},
            "chat_instance": "-1",
            "data": data,
        },
    }


# -- messages in, replies out -------------------------------------------------------------


async def test_message_in_reaches_rasa_and_reply_goes_out_with_inline_buttons(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    answer = await webhook.post(text_update("set the AC to 22"))
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})

    [message] = webhook.rasa.received
    assert (message.text, message.sender_id, message.input_channel) == (
        "set the AC to 22",
        f"telegram:{CHAT}",
        "telegram",
    )
    assert message.metadata == {"telegram": {"update_id": 1, "user_id": 9001, "message_id": 77}}
    assert telegram.sent() == [
        {
            "chat_id": CHAT,
            "text": "You said: set the AC to 22",
            "reply_markup": {
                "inline_keyboard": [
                    [
                        {
                            "text": "Living Room AC",
                            "callback_data": '/inform_device{"device": "Living Room AC"}',
                        }
                    ],
                    [
                        {
                            "text": "Bedroom AC",
                            "callback_data": '/inform_device{"device": "Bedroom AC"}',
                        }
                    ],
                ]
            },
        }
    ]


async def test_reply_without_buttons_is_plain_text(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    webhook.rasa.buttons = []
    await webhook.post(text_update("hello"))
    assert telegram.sent() == [{"chat_id": CHAT, "text": "You said: hello"}]


async def test_start_command_greets(webhook: Webhook) -> None:
    await webhook.post(text_update("/start"))
    await webhook.post(text_update("/start@LgApplianceBot deep-link", update_id=2))
    assert [m.text for m in webhook.rasa.received] == ["/greet", "/greet"]


async def test_button_press_delivers_payload_and_answers_the_callback_query(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    answer = await webhook.post(press_update('/inform_device{"device": "Bedroom AC"}'))
    assert answer.status_code == 200
    [message] = webhook.rasa.received
    assert (message.text, message.sender_id, message.input_channel) == (
        '/inform_device{"device": "Bedroom AC"}',
        f"telegram:{CHAT}",
        "telegram",
    )
    # The query is answered (the button stops spinning) before Rasa's reply goes out.
    assert [method for method, _ in telegram.calls] == ["answerCallbackQuery", "sendMessage"]
    assert telegram.answered() == [{"callback_query_id": "cbq-555"}]


async def test_payload_longer_than_64_bytes_goes_by_a_short_id(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    assert len(LONG_PAYLOAD.encode()) > 64
    webhook.rasa.buttons = [{"title": "Washer", "payload": LONG_PAYLOAD}]
    await webhook.post(text_update("notify me"))
    [[button]] = telegram.sent()[0]["reply_markup"]["inline_keyboard"]
    assert button["text"] == "Washer"
    assert button["callback_data"].startswith("#")
    assert len(button["callback_data"].encode()) <= 64

    await webhook.post(press_update(button["callback_data"], update_id=3))
    assert [m.text for m in webhook.rasa.received] == ["notify me", LONG_PAYLOAD]


async def test_unknown_short_id_is_answered_as_expired_and_not_delivered(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    answer = await webhook.post(press_update("#forgotten-after-a-restart"))
    assert answer.status_code == 200
    assert webhook.rasa.received == []
    assert telegram.answered() == [
        {
            "callback_query_id": "cbq-555",
            "text": "This button has expired. Please type your answer instead.",
        }
    ]
    assert telegram.sent() == []


def test_callback_payloads_fit_and_round_trip() -> None:
    payloads = CallbackPayloads(capacity=2)
    short = "/affirm"
    assert payloads.encode(short) == short and payloads.decode(short) == short
    keys = [payloads.encode(f"{LONG_PAYLOAD}{i}") for i in range(3)]
    assert all(len(k.encode()) <= 64 for k in keys)
    assert payloads.encode(f"{LONG_PAYLOAD}2") == keys[2]  # the same payload, the same key
    # Bounded: the oldest is forgotten.
    assert [payloads.decode(k) for k in keys] == [None, f"{LONG_PAYLOAD}1", f"{LONG_PAYLOAD}2"]
    # A payload that looks like one of our keys is mapped too, never taken for a key.
    assert payloads.decode(payloads.encode("#abc")) == "#abc"


# -- refused and ignored requests -----------------------------------------------------------


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET[:-1] + "X", SECRET + "x"])
async def test_wrong_or_missing_secret_is_401_and_reaches_nobody(
    webhook: Webhook, telegram: FakeTelegram, secret: str | None
) -> None:
    answer = await webhook.post(text_update("turn off the fridge"), secret=secret)
    assert answer.status_code == 401
    assert answer.json() == {
        "error": "unauthorized",
        "reason": "missing or wrong X-Telegram-Bot-Api-Secret-Token",
    }
    assert webhook.rasa.received == [] and telegram.calls == []


@pytest.mark.parametrize(
    ("raw", "status", "reason"),
    [
        (b"{not json", 400, "body is not valid JSON"),
        (b"[1, 2]", 400, "body must be a JSON object"),
        (b'{"message": {"chat": {"id": 1}, "text": "hi"}}', 400, "'update_id' must be an integer"),
        (b'{"update_id": 1, "message": {"chat": {"id": "1"}, "text": "hi"}}', 400,
         "'message.chat.id' must be an integer"),
        (b'{"update_id": 1, "message": {"chat": {"id": 1}, "text": 5}}', 400,
         "'message.text' must be a string"),
        (b'{"update_id": 1, "callback_query": {"data": "/affirm"}}', 400,
         "'callback_query.id' must be a string"),
        (b'{"update_id": 1, "pad": "' + b"x" * 70_000 + b'"}', 413, "body larger than 65536 bytes"),
    ],
)  # fmt: skip
async def test_malformed_update_is_refused_with_a_reason(
    webhook: Webhook, telegram: FakeTelegram, raw: bytes, status: int, reason: str
) -> None:
    answer = await webhook.post(None, raw=raw)
    assert (answer.status_code, answer.json()) == (
        status,
        {"error": "bad_request", "reason": reason},
    )
    assert webhook.rasa.received == [] and telegram.calls == []


@pytest.mark.parametrize(
    "update",
    [
        {"update_id": 5, "edited_message": text_update("edited")["message"]},
        {"update_id": 5, "message": {"message_id": 1, "chat": {"id": CHAT}, "sticker": {}}},
        {"update_id": 5, "channel_post": {"chat": {"id": -100}, "text": "news"}},
        {"update_id": 5, "my_chat_member": {"chat": {"id": CHAT}}},
        {"update_id": 5},
    ],
)
async def test_updates_we_do_not_handle_are_200_and_ignored(
    webhook: Webhook, telegram: FakeTelegram, update: dict[str, Any]
) -> None:
    answer = await webhook.post(update)
    assert (answer.status_code, answer.json()) == (200, {"status": "ignored"})
    assert webhook.rasa.received == [] and telegram.calls == []


async def test_a_redelivered_update_is_handled_once(webhook: Webhook) -> None:
    assert (await webhook.post(text_update("start the washer", update_id=9))).json() == {
        "status": "ok"
    }
    assert (await webhook.post(text_update("start the washer", update_id=9))).json() == {
        "status": "duplicate"
    }
    assert len(webhook.rasa.received) == 1


async def test_too_long_text_is_answered_without_rasa(
    webhook: Webhook, telegram: FakeTelegram
) -> None:
    answer = await webhook.post(text_update("x" * 4001))
    assert answer.status_code == 200
    assert webhook.rasa.received == []
    assert [b["text"] for b in telegram.sent()] == [
        "That message is too long for me. Please keep it under 4000 characters."
    ]


async def test_a_failing_turn_still_answers_200_so_telegram_does_not_resend(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    webhook.rasa.fail = True
    answer = await webhook.post(text_update("turn on the oven"))
    assert answer.status_code == 200
    assert "telegram update 1 failed" in caplog.text


async def test_bot_api_error_on_reply_is_logged_once_without_the_token(
    webhook: Webhook, telegram: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    telegram.status = 403
    answer = await webhook.post(text_update("hello"))
    assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert lines == [
        f"telegram reply to telegram:{CHAT} not delivered: Telegram sendMessage refused it "
        "with HTTP 403: Forbidden: bot was blocked by the user"
    ]
    # (the webhook fixture checks the token is in no log line)


async def test_unconfigured_channel_answers_503_with_the_reason(
    telegram: FakeTelegram,
) -> None:
    rasa = RasaStub()
    async for hook in serve(TelegramInput(TelegramSettings()), rasa):
        answer = await hook.post(text_update("hello"))
        assert answer.status_code == 503
        assert answer.json() == {
            "error": "not_configured",
            "reason": "the Telegram channel is off: "
            "TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET are not set",
        }
    async for hook in serve(TelegramInput(settings_for(telegram, webhook_secret=None)), rasa):
        answer = await hook.post(text_update("hello"), secret="")
        assert answer.status_code == 503
        assert answer.json()["reason"].endswith("TELEGRAM_WEBHOOK_SECRET is not set")
    assert rasa.received == [] and telegram.calls == []


def test_channel_reads_the_environment_and_hides_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("TELEGRAM_WEBHOOK_SECRET", SECRET)
    monkeypatch.delenv("TELEGRAM_API_URL", raising=False)
    channel = TelegramInput.from_credentials(None)
    assert channel.name() == "telegram" and channel.url_prefix() == "telegram"
    settings = load_telegram_settings()
    assert (settings.bot_token, settings.webhook_secret, settings.api_url) == (
        TOKEN,
        SECRET,
        "https://api.telegram.org",
    )
    assert settings.missing() is None
    for text in (repr(settings), repr(channel)):
        assert TOKEN not in text and SECRET not in text


@pytest.mark.parametrize(
    "env",
    [
        {"TELEGRAM_WEBHOOK_SECRET": "has spaces"},
        {"TELEGRAM_WEBHOOK_SECRET": "x" * 257},
        {"TELEGRAM_API_URL": "api.telegram.org"},
        {"TELEGRAM_TIMEOUT_SECONDS": "0"},
    ],
)
def test_bad_telegram_settings_fail_clearly(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="TELEGRAM_"):
        load_telegram_settings(env)


def test_sender_ids_are_namespaced_chat_ids() -> None:
    assert chat_id_of("telegram:4242") == 4242
    assert chat_id_of("telegram:-1001234567890") == -1001234567890
    for other in ("4242", "rest:4242", "telegram:", "telegram:42a", "telegram:-", "telegram:٤٢"):
        assert chat_id_of(other) is None


# -- proactive delivery (the connector's sender) --------------------------------------------


def proactive(sender: str = f"telegram:{CHAT}") -> OutgoingMessage:
    return OutgoingMessage(
        outbox_id="0f0e0d0c-0000-4000-8000-000000000009",
        message_id="lg-9",
        sender_id=sender,
        channel="telegram",
        text="Your Washer has finished washing.",
        response="utter_notify_washing_is_complete",
    )


@pytest.fixture
def quiet_token(caplog: pytest.LogCaptureFixture) -> Callable[[], Awaitable[None]]:
    caplog.set_level(logging.DEBUG)

    async def check() -> None:
        assert TOKEN not in caplog.text

    return check


async def test_proactive_message_goes_out_through_build_outputs(
    tmp_path, http, telegram: FakeTelegram, quiet_token
) -> None:
    settings = make_settings(
        tmp_path, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_API_URL=telegram.url
    ).connector
    outputs = build_outputs(settings, http)
    assert "telegram" in outputs.channels()
    result = await outputs.send(proactive())
    assert (result.delivered, result.retryable, result.reason) == (True, False, None)
    assert telegram.sent() == [{"chat_id": CHAT, "text": "Your Washer has finished washing."}]
    await quiet_token()


async def test_without_a_token_telegram_fails_permanently_with_the_reason(tmp_path, http) -> None:
    outputs = build_outputs(make_settings(tmp_path).connector, http)
    result = await outputs.send(proactive())
    assert (result.delivered, result.retryable, result.reason) == (
        False,
        False,
        "the telegram channel is off: TELEGRAM_BOT_TOKEN is not set",
    )


@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [
        (429, True, "Telegram sendMessage answered HTTP 429: Too Many Requests: retry after 7 "
                    "(retry after 7 s)"),
        (500, True, "Telegram sendMessage answered HTTP 500: Internal Server Error"),
        (403, False, "Telegram sendMessage refused it with HTTP 403: "
                     "Forbidden: bot was blocked by the user"),
        (400, False, "Telegram sendMessage refused it with HTTP 400: Bad Request: chat not found"),
    ],
)  # fmt: skip
async def test_sender_classifies_bot_api_failures(
    http, telegram: FakeTelegram, quiet_token, status, retryable, reason
) -> None:
    telegram.status = status
    sender = TelegramSender(settings_for(telegram), http)
    result = await sender.send(proactive())
    assert (result.delivered, result.retryable, result.reason) == (False, retryable, reason)
    assert [body["chat_id"] for _, body in telegram.refused] == [CHAT]
    await quiet_token()


async def test_sender_network_failure_is_retryable_and_names_no_url(
    http, telegram: FakeTelegram, quiet_token
) -> None:
    sender = TelegramSender(settings_for(telegram), http)
    await telegram.stop()
    result = await sender.send(proactive())
    assert (result.delivered, result.retryable, result.reason) == (
        False,
        True,
        "Telegram sendMessage is unreachable (ClientConnectorError)",
    )
    assert TOKEN not in repr(sender)
    await quiet_token()


async def test_sender_refuses_a_sender_id_of_another_channel(http, telegram: FakeTelegram) -> None:
    sender = TelegramSender(settings_for(telegram), http)
    result = await sender.send(proactive("rest-user-4242"))
    assert (result.delivered, result.retryable) == (False, False)
    assert result.reason == "'rest-user-4242' is not a Telegram sender id (telegram:<chat id>)"
    assert telegram.calls == [] and telegram.refused == []
