"""Channel senders: how a message the assistant starts reaches a user on each channel.

Keyed by Rasa input-channel name (what ``linked_accounts.channel`` records). A
channel with no sender here (``rest`` is request/response only) cannot carry
proactive messages: delivery fails at once with that reason, never retried.
Later channels (socket.io widget, Alexa, Telegram) register their own sender.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from connector.outbox_store import OutboxRow


class DeliveryFailed(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


Sender = Callable[[OutboxRow], Awaitable[None]]


@dataclass
class CallbackUrlSender:
    """Rasa's ``callback`` channel: POST the message to CALLBACK_URL.

    The body is what Rasa's own callback channel posts (recipient_id, text) plus
    ``message_id``, the outbox id, also sent as ``Idempotency-Key``: a redelivery
    after a crash mid-send carries the same id, so the receiver can drop it.
    """

    url: str
    http: httpx.AsyncClient

    async def __call__(self, row: OutboxRow) -> None:
        try:
            response = await self.http.post(
                self.url,
                json={"recipient_id": row.sender_id, "text": row.text, "message_id": row.id},
                headers={"Idempotency-Key": row.id},
            )
        except httpx.HTTPError as exc:
            raise DeliveryFailed(
                f"callback URL unreachable ({type(exc).__name__})", retryable=True
            ) from None
        if response.is_success:
            return
        retryable = response.status_code >= 500 or response.status_code in (408, 429)
        raise DeliveryFailed(
            f"callback URL answered HTTP {response.status_code}", retryable=retryable
        )


class Senders:
    def __init__(self) -> None:
        self._by_channel: dict[str, Sender] = {}

    def register(self, channel: str, sender: Sender) -> None:
        self._by_channel[channel] = sender

    async def send(self, row: OutboxRow) -> None:
        sender = self._by_channel.get(row.channel or "")
        if sender is None:
            raise DeliveryFailed(
                f"the {row.channel or 'unknown'} channel cannot carry messages the assistant "
                "starts; the user sees it when they next use a channel that can",
                retryable=False,
            )
        await sender(row)
