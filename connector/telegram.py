"""The Telegram channel for Rasa: ``POST /webhooks/telegram/webhook`` (Bot API webhook mode).

Why not Rasa's own ``telegram`` channel: in Rasa 3.6 it calls ``asyncio.run`` inside the
server's running loop and builds its bot per request, so it can neither run under Sanic
nor send a message the assistant starts. This one talks to the Bot API with aiohttp
(connector/telegram_api.py).

Configured from the environment (assistant/settings.py: ``TELEGRAM_BOT_TOKEN``,
``TELEGRAM_WEBHOOK_SECRET``, ``TELEGRAM_API_URL``), not from credentials.yml, because
credentials.yml's ``${VAR}`` fails Rasa's startup when the variable is unset. Without a
token and a secret the webhook answers 503 with the reason; every other channel runs.

Requests: Telegram sends the setWebhook ``secret_token`` in
``X-Telegram-Bot-Api-Secret-Token``; a missing or wrong one gets 401 and reaches nobody.
A malformed body gets 400. Updates we do not handle get 200 and are dropped (a non-2xx
would make Telegram send them again). The sender id is ``telegram:<chat id>``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from rasa.core.channels.channel import InputChannel, OutputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from assistant.settings import TelegramSettings, load_telegram_settings
from connector.telegram_api import (
    CallbackPayloads,
    TelegramBotApi,
    chat_id_of,
    inline_keyboard,
    sender_id,
    text_chunks,
)
from connector.telegram_updates import ButtonPress, Ignored, TextMessage, TooLong, parse_update
from connector.validation import MAX_MESSAGE_CHARS, Problem, storable_text

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
EXPIRED_BUTTON = "This button has expired. Please type your answer instead."
TOO_LONG = f"That message is too long for me. Please keep it under {MAX_MESSAGE_CHARS} characters."
_RECENT_UPDATES = 2048  # update ids remembered to drop Telegram's redeliveries


class TelegramOutput(OutputChannel):
    """Rasa's replies to a Telegram chat; buttons become an inline keyboard."""

    def __init__(self, api: TelegramBotApi, payloads: CallbackPayloads) -> None:
        self._api = api
        self._payloads = payloads

    @classmethod
    def name(cls) -> str:
        return "telegram"

    async def send_text_message(self, recipient_id: str, text: str, **kwargs: Any) -> None:
        await self._send(recipient_id, text, None)

    async def send_text_with_buttons(
        self, recipient_id: str, text: str, buttons: list[dict[str, Any]], **kwargs: Any
    ) -> None:
        await self._send(recipient_id, text, inline_keyboard(buttons, self._payloads))

    async def send_image_url(self, recipient_id: str, image: str, **kwargs: Any) -> None:
        # The assistant sends no images today; a link still reaches the user.
        await self._send(recipient_id, image, None)

    async def _send(self, recipient_id: str, text: str, markup: dict[str, Any] | None) -> None:
        chat_id = chat_id_of(recipient_id)
        if chat_id is None:
            log.warning("telegram reply not sent: %r is not a Telegram sender id", recipient_id)
            return
        chunks = text_chunks(text) if text else []
        for index, chunk in enumerate(chunks):
            # The keyboard goes with the last piece, under the question it answers.
            last = index == len(chunks) - 1
            result = await self._api.send_message(chat_id, chunk, markup if last else None)
            if not result.ok:
                # Rasa would turn an exception here into a failed turn; a log line is all
                # that helps. The reason never holds the token (see telegram_api).
                log.warning("telegram reply to %s not delivered: %s", recipient_id, result.reason)
                return


class TelegramInput(InputChannel):
    """Rasa input channel for one Telegram bot, in webhook mode."""

    @classmethod
    def name(cls) -> str:
        return "telegram"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> TelegramInput:
        if credentials:
            log.warning(
                "telegram: keys in credentials.yml are ignored; set TELEGRAM_BOT_TOKEN and "
                "TELEGRAM_WEBHOOK_SECRET in the environment"
            )
        return cls(load_telegram_settings())

    def __init__(
        self, settings: TelegramSettings, payloads: CallbackPayloads | None = None
    ) -> None:
        self._settings = settings
        self._payloads = payloads or CallbackPayloads()
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None
        self._recent: OrderedDict[int, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"TelegramInput({self._settings!r})"  # the settings' repr hides both secrets

    def _api(self) -> TelegramBotApi | None:
        """The Bot API client, on one keep-alive session per process (made in its loop)."""
        token = self._settings.bot_token
        if not token:
            return None
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession()
            self._session_loop = loop
        return TelegramBotApi(
            self._settings.api_url, token, self._session, self._settings.timeout_seconds
        )

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def get_output_channel(self) -> OutputChannel | None:
        """For Rasa's own proactive API (``trigger_intent?output_channel=telegram``)."""
        if self._settings.missing() is not None:
            return None
        try:
            api = self._api()
        except RuntimeError:  # no running loop: nothing could send anyway
            return None
        return TelegramOutput(api, self._payloads) if api is not None else None

    def _authentic(self, presented: str | None) -> bool:
        expected = self._settings.webhook_secret
        if not presented or not expected:
            return False
        # Sanic decodes header bytes that are not UTF-8 as lone surrogates (surrogateescape):
        # encoded back the same way, they compare as the bytes that came instead of raising.
        return hmac.compare_digest(presented.encode(errors="surrogateescape"), expected.encode())

    def _seen(self, update_id: int) -> bool:
        """True if this update came before: Telegram resends what it thinks failed."""
        if update_id in self._recent:
            return True
        self._recent[update_id] = None
        while len(self._recent) > _RECENT_UPDATES:
            self._recent.popitem(last=False)
        return False

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        hook = Blueprint("telegram_webhook", __name__)
        missing = self._settings.missing()
        if missing:
            log.warning("telegram channel is off (%s): its webhook answers 503", missing)

        @hook.listener("after_server_stop")
        async def close_session(*_: Any) -> None:
            await self.close()

        @hook.route("/", methods=["GET"])
        async def health(_: Request) -> HTTPResponse:
            return response.json({"status": "ok" if missing is None else "not_configured"})

        @hook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            if missing:
                return _error(503, "not_configured", f"the Telegram channel is off: {missing}")
            if not self._authentic(request.headers.get(SECRET_HEADER)):
                log.info("telegram webhook refused a request without the right secret")
                return _error(401, "unauthorized", f"missing or wrong {SECRET_HEADER}")
            update = parse_update(request.body or b"")
            if isinstance(update, Problem):
                log.info("telegram webhook refused a request: %s", update.reason)
                return _error(update.status, "bad_request", update.reason)
            if self._seen(update.update_id):
                return response.json({"status": "duplicate"})
            if isinstance(update, Ignored):
                log.debug("telegram update %s ignored: %s", update.update_id, update.what)
                return response.json({"status": "ignored"})
            api = self._api()
            assert api is not None  # configured, checked above
            output = TelegramOutput(api, self._payloads)
            try:
                await self._handle(update, api, output, on_new_message)
            except Exception:
                # 200 all the same: a non-2xx makes Telegram resend the update, and the
                # turn (maybe a command to an appliance) would run again.
                log.exception("telegram update %s failed", update.update_id)
            return response.json({"status": "ok"})

        return hook

    async def _handle(
        self,
        update: TextMessage | ButtonPress | TooLong,
        api: TelegramBotApi,
        output: TelegramOutput,
        on_new_message: Callable[[UserMessage], Awaitable[Any]],
    ) -> None:
        if isinstance(update, TooLong):
            await output.send_text_message(sender_id(update.chat_id), TOO_LONG)
            return
        if isinstance(update, ButtonPress):
            payload = self._payloads.decode(update.data)
            # Answered first, so the button stops spinning while Rasa works.
            answered = await api.answer_callback_query(
                update.query_id, EXPIRED_BUTTON if payload is None else None
            )
            if not answered.ok:
                log.warning("telegram answerCallbackQuery failed: %s", answered.reason)
            if payload is None:
                return
            text, extra = payload, {"callback_query_id": update.query_id}
        else:
            text, extra = update.text, {"message_id": update.message_id}
        await on_new_message(
            UserMessage(
                storable_text(text),  # a NUL could not be saved in a PostgreSQL tracker
                output,
                sender_id(update.chat_id),
                input_channel=self.name(),
                metadata={
                    "telegram": {"update_id": update.update_id, "user_id": update.user_id, **extra}
                },
            )
        )


def _error(status: int, error: str, reason: str) -> HTTPResponse:
    return response.json({"error": error, "reason": reason}, status=status)
