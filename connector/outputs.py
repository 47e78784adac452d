"""How a proactive message reaches a conversation, per Rasa input channel.

Each sender knows one channel (keyed by the name Rasa gives the input channel the user
last wrote from) and answers with a :class:`SendResult`: delivered, worth retrying, or
permanently impossible with a reason an operator can read. Senders never raise for a
failing partner, and never put a URL's query string (it may hold a secret) in a reason
or a log line.

``callback``, ``telegram``, ``widget`` (through Rasa's widget channel) and ``alexa``
(queued for the next launch) can carry a message the assistant starts; ``rest`` is
request/response only.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp

from assistant.settings import ConnectorSettings, WidgetSettings

if TYPE_CHECKING:
    from assistant.storage.alexa_inbox import AlexaInboxRepository

log = logging.getLogger(__name__)

# Partner answers worth trying again: 408 Request Timeout and 429 Too Many Requests say
# "not now" rather than "never", so they are treated like 5xx.
RETRYABLE_4XX = frozenset({408, 425, 429})
_REASON_BODY_CHARS = 200


@dataclass(frozen=True)
class OutgoingMessage:
    outbox_id: str  # the idempotency key the channel receives
    message_id: str  # LG's callback id
    sender_id: str
    channel: str | None
    text: str
    response: str
    params: Mapping[str, str] = field(default_factory=dict)
    device_id: str = ""
    kind: str = ""


@dataclass(frozen=True)
class SendResult:
    delivered: bool
    retryable: bool = False
    reason: str | None = None

    @classmethod
    def ok(cls) -> SendResult:
        return cls(True)

    @classmethod
    def retry(cls, reason: str) -> SendResult:
        return cls(False, True, reason)

    @classmethod
    def permanent(cls, reason: str) -> SendResult:
        return cls(False, False, reason)


def redacted(url: str) -> str:
    """The URL without credentials or query string, fit for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def cannot_carry(channel: str | None) -> str:
    return f"the {channel or 'unknown'} channel cannot carry messages the assistant starts"


class ChannelSender(ABC):
    @abstractmethod
    async def send(self, message: OutgoingMessage) -> SendResult:
        """Deliver one message; never raises for a partner's failure."""


class CallbackChannelSender(ChannelSender):
    """Rasa's callback channel: POST the message to CALLBACK_URL, as Rasa itself does.

    The body is Rasa's (``recipient_id``, ``text``) plus ``message_id``; the same id goes
    in the ``Idempotency-Key`` header so the partner can drop a redelivery.
    """

    def __init__(
        self, url: str | None, session: aiohttp.ClientSession, timeout_seconds: float
    ) -> None:
        self._url = url
        self._session = session
        self._timeout_seconds = timeout_seconds

    def __repr__(self) -> str:
        return f"CallbackChannelSender({redacted(self._url) if self._url else None})"

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not self._url:
            return SendResult.permanent("CALLBACK_URL is not configured")
        body = {
            "recipient_id": message.sender_id,
            "text": message.text,
            "message_id": message.outbox_id,
        }
        return await post_for_delivery(
            self._session,
            self._url,
            body,
            {"Idempotency-Key": message.outbox_id},
            self._timeout_seconds,
            "the callback channel",
        )


async def post_for_delivery(
    session: aiohttp.ClientSession,
    url: str,
    body: Mapping[str, object],
    headers: Mapping[str, str],
    timeout_seconds: float,
    what: str,
) -> SendResult:
    """POST ``body`` as JSON and classify the answer: 2xx delivered; timeouts, network
    errors, 5xx and RETRYABLE_4XX worth retrying; any other status permanent, with the
    start of the partner's answer as the reason. ``what`` names the receiver in reasons."""
    try:
        async with session.post(
            url,
            json=body,
            headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        ) as response:
            status = response.status
            # Reading a success body to the end lets the connection be reused.
            detail = (
                await response.read()
                if 200 <= status < 300
                else await response.content.read(_REASON_BODY_CHARS * 4)
            )
    except asyncio.TimeoutError:
        return SendResult.retry(f"{what} did not answer within {timeout_seconds:g} s")
    except aiohttp.ClientError as error:
        # The exception's text can contain the URL: only its type goes in the reason.
        return SendResult.retry(f"{what} is unreachable ({type(error).__name__})")
    if 200 <= status < 300:
        return SendResult.ok()
    if status >= 500 or status in RETRYABLE_4XX:
        return SendResult.retry(f"{what} answered HTTP {status}")
    text = detail.decode("utf-8", "replace").strip()
    text = "".join(ch if ch.isprintable() else " " for ch in text)[:_REASON_BODY_CHARS]
    suffix = f": {text}" if text else ""
    return SendResult.permanent(f"{what} refused it with HTTP {status}{suffix}")


class UnsupportedChannel(ChannelSender):
    """A channel that only answers requests (e.g. ``rest``): nowhere to push to."""

    def __init__(self, name: str) -> None:
        self._name = name

    async def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult.permanent(cannot_carry(self._name))


class Outputs:
    """The channel senders, by Rasa input-channel name."""

    def __init__(self) -> None:
        self._senders: dict[str, ChannelSender] = {}

    def __repr__(self) -> str:
        return f"Outputs({sorted(self._senders)})"

    def register(self, channel: str, sender: ChannelSender) -> None:
        self._senders[channel] = sender

    def channels(self) -> list[str]:
        return sorted(self._senders)

    async def send(self, message: OutgoingMessage) -> SendResult:
        sender = self._senders.get(message.channel) if message.channel else None
        if sender is None:
            return SendResult.permanent(cannot_carry(message.channel))
        try:
            return await sender.send(message)
        except Exception as error:
            # A sender bug must not take the worker down; retrying gives a fixed
            # deployment a chance, and max_attempts bounds it.
            log.exception("the %s sender failed on outbox %s", message.channel, message.outbox_id)
            return SendResult.retry(f"the {message.channel} sender failed ({type(error).__name__})")


def build_outputs(
    settings: ConnectorSettings,
    session: aiohttp.ClientSession,
    alexa_inbox: AlexaInboxRepository | None = None,
    widget: WidgetSettings | None = None,
) -> Outputs:
    """Every channel sender this deployment has, sharing one HTTP session (keep-alive).

    ``alexa_inbox`` (the assistant database's ``Storage.alexa_inbox``) lets the ``alexa``
    channel queue messages for the user's next launch; without it that channel is off.
    ``widget`` (its notify secret) lets the ``widget`` channel reach open chat widgets
    through Rasa (``settings.rasa_url``).
    """
    outputs = Outputs()
    outputs.register(
        "callback",
        CallbackChannelSender(settings.callback_url, session, settings.send_timeout_seconds),
    )
    outputs.register("rest", UnsupportedChannel("rest"))
    outputs.register("telegram", _telegram_sender(settings, session))
    outputs.register("alexa", _alexa_sender(alexa_inbox))
    outputs.register("widget", _widget_sender(settings, widget, session))
    return outputs


class NotConfiguredChannel(ChannelSender):
    """A channel this deployment could carry but has no credentials for."""

    def __init__(self, reason: str) -> None:
        self._reason = reason

    async def send(self, message: OutgoingMessage) -> SendResult:
        return SendResult.permanent(self._reason)


def _telegram_sender(settings: ConnectorSettings, session: aiohttp.ClientSession) -> ChannelSender:
    if not settings.telegram.bot_token:
        return NotConfiguredChannel("the telegram channel is off: TELEGRAM_BOT_TOKEN is not set")
    # Imported here: connector.telegram_sender builds on this module's classes.
    from connector.telegram_sender import TelegramSender

    return TelegramSender(settings.telegram, session)


def _alexa_sender(inbox: AlexaInboxRepository | None) -> ChannelSender:
    if inbox is None:
        return NotConfiguredChannel("the alexa channel is off: no Alexa inbox was given")
    # Imported here: connector.alexa_sender builds on this module's classes.
    from connector.alexa_sender import AlexaInboxSender

    return AlexaInboxSender(inbox)


def _widget_sender(
    settings: ConnectorSettings, widget: WidgetSettings | None, session: aiohttp.ClientSession
) -> ChannelSender:
    if widget is None or not widget.notify_secret:
        return NotConfiguredChannel("the widget channel is off: WIDGET_NOTIFY_SECRET is not set")
    if not settings.rasa_url:
        return NotConfiguredChannel("the widget channel is off: RASA_URL is not set")
    # Imported here: connector.widget_sender builds on this module's classes.
    from connector.widget_sender import WidgetSender

    return WidgetSender(
        settings.rasa_url, widget.notify_secret, session, settings.send_timeout_seconds
    )
