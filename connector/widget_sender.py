"""Proactive messages to chat-widget users: the connector's sender for the ``widget`` channel.

The widget's sockets live in the Rasa process (``connector/widget.py``), so the connector
hands each message to that channel's ``POST /webhooks/widget/notify`` (bearer
``WIDGET_NOTIFY_SECRET``, the outbox id as idempotency key). The channel stores it in the
user's widget log and sends it to every open widget of the user; a widget that is closed
shows it when it reopens. Delivered therefore means "stored in the user's widget log";
Rasa unreachable or its store down is worth trying again.
"""

from __future__ import annotations

import aiohttp

from connector.outputs import ChannelSender, OutgoingMessage, SendResult, post_for_delivery
from connector.widget_token import SENDER_PREFIX

NOTIFY_PATH = "/webhooks/widget/notify"


class WidgetSender(ChannelSender):
    def __init__(
        self,
        rasa_url: str,
        notify_secret: str,
        session: aiohttp.ClientSession,
        timeout_seconds: float,
    ) -> None:
        self._url = rasa_url.rstrip("/") + NOTIFY_PATH
        self._secret = notify_secret
        self._session = session
        self._timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"WidgetSender({self._url})"  # the secret stays out

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not message.sender_id.startswith(SENDER_PREFIX):
            return SendResult.permanent(
                f"{message.sender_id!r} is not a widget sender id (widget:<site>:<user>)"
            )
        if not message.text.strip():
            return SendResult.permanent("the message has no text")
        body = {"sender_id": message.sender_id, "text": message.text, "key": message.outbox_id}
        return await post_for_delivery(
            self._session,
            self._url,
            body,
            {"Authorization": f"Bearer {self._secret}"},
            self._timeout_seconds,
            "the widget channel",
        )
