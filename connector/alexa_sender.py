"""Proactive messages for Alexa users: the connector's sender for the ``alexa`` channel.

Alexa cannot speak unprompted, so "delivering" a notification means storing it in the
user's inbox (``alexa_inbox``), from which the skill reads it out at the user's next
launch ("You have 2 new notifications…", see ``connector/alexa.py``). The outbox id is
the inbox key, so a message handed over twice is stored, and read, once. A database that
cannot be reached is worth trying again; nothing else here fails for good except a
message that cannot be stored at all (no text, an id that is not ``alexa:…``).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import SQLAlchemyError

from assistant.storage.alexa_inbox import NOTIFICATION, AlexaInboxRepository
from connector.outputs import ChannelSender, OutgoingMessage, SendResult

log = logging.getLogger(__name__)

SENDER_PREFIX = "alexa:"


class AlexaInboxSender(ChannelSender):
    def __init__(self, inbox: AlexaInboxRepository) -> None:
        self._inbox = inbox

    def __repr__(self) -> str:
        return f"AlexaInboxSender({self._inbox!r})"

    async def send(self, message: OutgoingMessage) -> SendResult:
        if not message.sender_id.startswith(SENDER_PREFIX):
            return SendResult.permanent(
                f"{message.sender_id!r} is not an Alexa sender id (alexa:<user id>)"
            )
        if not message.text.strip():
            return SendResult.permanent("the message has no text")
        try:
            await self._inbox.add(message.outbox_id, message.sender_id, message.text, NOTIFICATION)
        except ValueError as error:
            return SendResult.permanent(f"the Alexa inbox cannot hold it: {error}")
        except (SQLAlchemyError, OSError, asyncio.TimeoutError) as error:
            # The driver's message can name the host; only the type goes in the reason.
            log.warning(
                "alexa inbox unavailable for outbox %s (%s)",
                message.outbox_id,
                type(error).__name__,
            )
            return SendResult.retry(
                f"the Alexa inbox could not be written ({type(error).__name__})"
            )
        # Stored now, or by an earlier attempt (same key): either way it will be read out.
        return SendResult.ok()
