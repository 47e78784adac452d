"""Proactive messages to Telegram chats: the connector's sender for the ``telegram`` channel.

Posts ``sendMessage`` to the chat in the conversation's sender id (``telegram:<chat id>``).
Rate limiting (429), Telegram's own failures (5xx) and network trouble are worth trying
again; a refusal (400 chat not found, 403 bot blocked by the user) is not, and its reason
is Telegram's description. The Bot API has no idempotency key, so a worker killed in the
middle of a send can make that one message arrive twice (see README, Durability).
"""

from __future__ import annotations

import aiohttp

from assistant.settings import TelegramSettings
from connector.outputs import ChannelSender, OutgoingMessage, SendResult
from connector.telegram_api import TelegramBotApi, chat_id_of, text_chunks


class TelegramSender(ChannelSender):
    def __init__(self, settings: TelegramSettings, session: aiohttp.ClientSession) -> None:
        if not settings.bot_token:
            raise ValueError("TelegramSender needs TELEGRAM_BOT_TOKEN")
        self._api = TelegramBotApi(
            settings.api_url, settings.bot_token, session, settings.timeout_seconds
        )

    def __repr__(self) -> str:
        return f"TelegramSender({self._api!r})"

    async def send(self, message: OutgoingMessage) -> SendResult:
        chat_id = chat_id_of(message.sender_id)
        if chat_id is None:
            return SendResult.permanent(
                f"{message.sender_id!r} is not a Telegram sender id (telegram:<chat id>)"
            )
        if not message.text:
            return SendResult.permanent("the message has no text")
        for chunk in text_chunks(message.text):
            result = await self._api.send_message(chat_id, chunk)
            if not result.ok:
                reason = result.reason or "Telegram did not accept it"
                return (
                    SendResult.retry(reason) if result.retryable else SendResult.permanent(reason)
                )
        return SendResult.ok()
