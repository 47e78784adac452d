"""The Alexa custom-skill endpoint, ``POST /webhooks/alexa/webhook``, as a Rasa input channel.

Alexa posts a signed request JSON per user turn and waits at most 8 s for the response
JSON. Each request is verified (``connector/alexa_verify.py``) unless the demo switch
``ALEXA_VERIFY_SIGNATURES=0`` is set; the user's words come in the catch-all slot
``utterance`` of any custom intent (see the README's interaction model). The sender id is
``alexa:<userId>`` so an Alexa user can never share a conversation (or a linked LG
account) with a sender on another channel.

Rasa's handling of a turn is time-boxed: when it is not done within the reply budget the
user hears that the assistant has asked and will tell them, and the handling carries on
in the background (never cancelled, so a command already sent to LG is not abandoned
half-way); its late replies go to the user's inbox.

The inbox (``alexa_inbox``, :mod:`assistant.storage.alexa_inbox`) holds what Alexa could
not say when it happened: those late replies, and notifications the connector delivered to
the ``alexa`` channel (``connector/alexa_sender.py``). A LaunchRequest reads them out
("You have 2 new notifications. …") and removes them. The channel opens the database
lazily, in Rasa's running loop, from ``DATABASE_URL`` / ``STATE_DIR`` alone (engine and
this one table's repository: no LG credentials, no token key). A database that is down
costs the user only the read-out: the welcome is still answered in time.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from assistant.settings import AlexaSettings, load_alexa_settings, load_database_url
from assistant.storage.alexa_inbox import LATE_REPLY, AlexaInboxRepository, InboxMessage
from connector.alexa_speech import (
    alexa_response,
    chosen_payload,
    empty_response,
    reply_for_messages,
    spoken,
)
from connector.alexa_verify import (
    AlexaRequestVerifier,
    VerificationError,
    check_application_id,
    parse_body,
)
from connector.validation import storable_text

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 128 * 1024  # Alexa requests with device context are a few kB
MAX_SENDER_CHARS = 255  # linked_accounts.sender_id and Rasa's tracker sender_id
UTTERANCE_SLOT = "utterance"
MAX_UTTERANCE_CHARS = 1000

WELCOME_QUESTION = "What would you like to do?"
WELCOME = f"Hi, this is your LG appliance assistant. {WELCOME_QUESTION}"
WELCOME_REPROMPT = "You can say, for example, set the living room AC to 22 degrees."
HELP = (
    "I can tell you what your LG appliances are doing and control them. Try: is the "
    "washer running, or set the bedroom AC to 23 degrees. What would you like to do?"
)
HELP_REPROMPT = "What would you like to do?"
GOODBYE = "Goodbye."
NOT_UNDERSTOOD = "Sorry, I didn't catch that. What would you like to do?"
STILL_WORKING = "I've asked your appliance; I'll tell you when it confirms."
FAILED = "Sorry, something went wrong on my side. Please try again in a moment."

# Queued notifications read out per launch; the rest wait for the next one.
MAX_READ_OUT = 5
MAX_NOTIFICATION_CHARS = 300
# Of Alexa's 8 s, what a launch may spend opening and reading the inbox.
INBOX_BUDGET_SECONDS = 3.0
# After the database could not be opened, launches skip it for this long.
INBOX_RETRY_SECONDS = 30.0

STOP_INTENTS = frozenset({"AMAZON.StopIntent", "AMAZON.CancelIntent", "AMAZON.NavigateHomeIntent"})
# Built-in yes/no intents (if the interaction model has them) are words for Rasa too.
SPOKEN_INTENTS = {"AMAZON.YesIntent": "yes", "AMAZON.NoIntent": "no"}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]
InboxOpener = Callable[[], Awaitable[AlexaInboxRepository]]


class AlexaInput(InputChannel):
    """Rasa input channel ``alexa``; configured in credentials.yml with no keys."""

    @classmethod
    def name(cls) -> str:
        return "alexa"

    @classmethod
    def from_credentials(cls, credentials: dict[str, Any] | None) -> InputChannel:
        # Settings come from the environment (assistant/settings.py), not credentials.yml:
        # Rasa's ${VAR} substitution fails when a variable is unset, and Rasa must start
        # without any Alexa variable.
        return cls(load_alexa_settings())

    def __init__(
        self,
        settings: AlexaSettings,
        verifier: AlexaRequestVerifier | None = None,
        *,
        inbox: AlexaInboxRepository | None = None,
        open_inbox: InboxOpener | None = None,
    ) -> None:
        """``inbox`` is used as given; otherwise ``open_inbox`` (default: the database of
        ``DATABASE_URL`` / ``STATE_DIR``) opens one on first use, in the running loop."""
        self.settings = settings
        self._inbox = inbox
        self._open_inbox = open_inbox or self._open_database_inbox
        self._opening: asyncio.Task[AlexaInboxRepository] | None = None
        self._open_failed_at: float | None = None
        self._inbox_down_logged = False
        self._engine: AsyncEngine | None = None  # opened by this channel; close() disposes it
        if settings.verify_signatures:
            self.verifier: AlexaRequestVerifier | None = verifier or AlexaRequestVerifier(
                skill_id=settings.skill_id
            )
        else:
            self.verifier = None
            logger.warning(
                "ALEXA_VERIFY_SIGNATURES is off: /webhooks/alexa/webhook accepts unsigned "
                "requests from anyone. Demo use only; Amazon requires the check."
            )
        # Turns still running after their reply was sent; kept so they are not
        # garbage-collected mid-way, and so tests can wait for or cancel them.
        self.background: set[asyncio.Task[Any]] = set()

    def blueprint(self, on_new_message: OnNewMessage) -> Blueprint:
        webhook = Blueprint("alexa_webhook")

        @webhook.listener("after_server_stop")
        async def close_inbox(app: Any, loop: Any) -> None:
            await self.close()

        @webhook.route("/", methods=["GET"])
        async def health(request: Request) -> HTTPResponse:
            return response.json({"status": "ok"})

        @webhook.route("/webhook", methods=["POST"])
        async def receive(request: Request) -> HTTPResponse:
            body = request.body or b""
            try:
                if len(body) > MAX_BODY_BYTES:
                    raise VerificationError(f"the body is larger than {MAX_BODY_BYTES} bytes")
                alexa_request = await self._verified(request, body)
                sender = sender_id(alexa_request)
            except VerificationError as error:
                # Amazon expects 400 for a request that fails verification. One line,
                # without the body or the signature.
                logger.warning("alexa webhook refused a request: %s", error.reason)
                return response.json({"error": "bad_request", "reason": error.reason}, status=400)
            return response.json(await self.answer(alexa_request, sender, on_new_message))

        return webhook

    async def _verified(self, request: Request, body: bytes) -> dict[str, Any]:
        if self.verifier is not None:
            return await self.verifier.verify(request.headers, body)
        parsed = parse_body(body)
        check_application_id(parsed, self.settings.skill_id)
        return parsed

    async def answer(
        self, alexa_request: Mapping[str, Any], sender: str, on_new_message: OnNewMessage
    ) -> dict[str, Any]:
        """Alexa's response JSON for one verified request."""
        turn = alexa_request["request"]
        kind = turn.get("type")
        if kind == "LaunchRequest":
            return await self._launch(sender)
        if kind == "SessionEndedRequest":
            return empty_response()
        if kind != "IntentRequest":
            # Other request types (e.g. Display or AudioPlayer events) need no speech.
            return empty_response()
        intent = turn.get("intent") or {}
        name = intent.get("name")
        if name in STOP_INTENTS:
            return alexa_response(GOODBYE, end_session=True)
        if name == "AMAZON.HelpIntent":
            return alexa_response(HELP, end_session=False, reprompt=HELP_REPROMPT)
        text = SPOKEN_INTENTS.get(str(name)) or utterance(intent)
        if not text:
            return alexa_response(NOT_UNDERSTOOD, end_session=False, reprompt=NOT_UNDERSTOOD)
        attributes = (alexa_request.get("session") or {}).get("attributes")
        text = chosen_payload(text, attributes) or text
        return await self._run_turn(text, sender, alexa_request, on_new_message)

    async def _run_turn(
        self,
        text: str,
        sender: str,
        alexa_request: Mapping[str, Any],
        on_new_message: OnNewMessage,
    ) -> dict[str, Any]:
        collector = CollectingOutputChannel()
        message = UserMessage(
            text,
            collector,
            sender,
            input_channel=self.name(),
            metadata={"alexa_request_id": alexa_request["request"].get("requestId")},
        )
        # A task of its own, not awaited directly: asyncio.wait leaves it running when the
        # budget is over, and Sanic cancelling this handler (Alexa hung up) does not reach it.
        task = asyncio.ensure_future(on_new_message(message))
        done, _ = await asyncio.wait({task}, timeout=self.settings.reply_budget_seconds)
        if task not in done:
            self.background.add(task)
            task.add_done_callback(lambda finished: self._late(finished, sender, collector))
            logger.info(
                "alexa turn for %s still running after %.1f s; answered that it will follow",
                sender,
                self.settings.reply_budget_seconds,
            )
            return alexa_response(STILL_WORKING, end_session=True)
        if task.cancelled() or task.exception() is not None:
            error = None if task.cancelled() else task.exception()
            logger.error("alexa turn for %s failed", sender, exc_info=error)
            return alexa_response(FAILED, end_session=True)
        return reply_for_messages(collector.messages)

    def _late(
        self, task: asyncio.Task[Any], sender: str, collector: CollectingOutputChannel
    ) -> None:
        self.background.discard(task)
        if task.cancelled():
            return
        if task.exception() is not None:
            logger.error("late alexa turn for %s failed", sender, exc_info=task.exception())
            return
        # Nobody is listening any more: the reply waits in the inbox for the next launch.
        texts = [str(m["text"]).strip() for m in collector.messages if m.get("text")]
        text = " ".join(t for t in texts if t)
        if not text:
            return
        queued = asyncio.ensure_future(self._queue_late_reply(sender, text))
        self.background.add(queued)
        queued.add_done_callback(self.background.discard)

    async def _queue_late_reply(self, sender: str, text: str) -> None:
        inbox = await self.inbox(timeout=None)
        if inbox is not None:
            try:
                await inbox.add(str(uuid.uuid4()), sender, text, LATE_REPLY)
            except Exception as error:
                self._inbox_down(error)
            else:
                self._inbox_up()
                logger.info("late alexa reply for %s queued for the next launch", sender)
                return
        logger.warning("late alexa reply for %s could not be queued: %s", sender, text)

    # -- the inbox ------------------------------------------------------------------

    async def _launch(self, sender: str) -> dict[str, Any]:
        messages, remaining = await self._take_inbox(sender)
        if not messages:
            return alexa_response(WELCOME, end_session=False, reprompt=WELCOME_REPROMPT)
        return alexa_response(
            notifications_speech(messages, remaining),
            end_session=False,
            reprompt=WELCOME_REPROMPT,
        )

    async def _take_inbox(self, sender: str) -> tuple[list[InboxMessage], int]:
        """Up to MAX_READ_OUT of the sender's queued messages (removed) and how many remain;
        nothing when the database cannot answer within INBOX_BUDGET_SECONDS."""
        deadline = time.monotonic() + INBOX_BUDGET_SECONDS
        inbox = await self.inbox(timeout=INBOX_BUDGET_SECONDS)
        if inbox is None:
            return [], 0
        try:
            messages = await asyncio.wait_for(
                inbox.take_all(sender, limit=MAX_READ_OUT), _left(deadline)
            )
        except Exception as error:
            self._inbox_down(error)
            return [], 0
        self._inbox_up()
        remaining = 0
        if len(messages) == MAX_READ_OUT:
            try:
                remaining = await asyncio.wait_for(inbox.count(sender), max(_left(deadline), 0.5))
            except Exception as error:
                # Those read are already removed: say them; the rest stay for next time.
                self._inbox_down(error)
        return messages, remaining

    async def inbox(self, timeout: float | None) -> AlexaInboxRepository | None:
        """The inbox, opened on first use; None while it cannot be (yet).

        Opening is a task of its own: a launch waits for it at most ``timeout`` seconds,
        and a slow database finishes opening for the next request instead of being
        abandoned. After a failure, opening is tried again INBOX_RETRY_SECONDS later.
        """
        if self._inbox is not None:
            return self._inbox
        if self._opening is None:
            failed_at = self._open_failed_at
            if failed_at is not None and time.monotonic() - failed_at < INBOX_RETRY_SECONDS:
                return None
            self._opening = asyncio.ensure_future(self._open_inbox())
            self._opening.add_done_callback(self._opened)
        task = self._opening
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if task in done:
            self._opened(task)
        return self._inbox

    def _opened(self, task: asyncio.Task[AlexaInboxRepository]) -> None:
        """Settles an opening attempt (idempotent: the done callback and a waiter both call)."""
        if self._opening is not task:
            return
        self._opening = None
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._open_failed_at = time.monotonic()
            self._inbox_down(error)
            return
        self._open_failed_at = None
        self._inbox = task.result()

    async def _open_database_inbox(self) -> AlexaInboxRepository:
        # Imported here: the database layer is only needed once a request comes.
        from assistant.storage.db import create_engine, create_schema

        engine = create_engine(load_database_url())
        try:
            await create_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine
        return AlexaInboxRepository(engine)

    def _inbox_down(self, error: BaseException) -> None:
        # Once per outage: a launch every few seconds must not flood the log.
        if not self._inbox_down_logged:
            self._inbox_down_logged = True
            logger.warning(
                "alexa inbox unavailable (%s); launches answer without queued notifications "
                "until it is back",
                type(error).__name__,
            )

    def _inbox_up(self) -> None:
        if self._inbox_down_logged:
            self._inbox_down_logged = False
            logger.info("alexa inbox available again")

    async def close(self) -> None:
        """Stops opening the inbox and disposes of an engine this channel opened."""
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.gather(self._opening, return_exceptions=True)
            self._opening = None
        engine, self._engine = self._engine, None
        if engine is not None:
            self._inbox = None
            await engine.dispose()


def _left(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.0)


def notifications_speech(messages: Sequence[InboxMessage], remaining: int) -> str:
    """ "You have 2 new notifications. <first> <second> What would you like to do?"."""
    total = len(messages) + remaining
    parts = [f"You have {total} new notification{'' if total == 1 else 's'}."]
    if remaining:
        parts.append(f"Here are the first {len(messages)}.")
    parts.extend(_notification(message.text) for message in messages)
    if remaining == 1:
        parts.append("I'll keep the last one for next time.")
    elif remaining:
        parts.append(f"I'll keep the other {remaining} for next time.")
    parts.append(WELCOME_QUESTION)
    return " ".join(part for part in parts if part)


def _notification(text: str) -> str:
    said = spoken(text)
    if len(said) > MAX_NOTIFICATION_CHARS:
        cut = said[:MAX_NOTIFICATION_CHARS]
        end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        said = cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0] + "."
    if said and said[-1] not in ".?!":
        said += "."
    return said


def sender_id(alexa_request: Mapping[str, Any]) -> str:
    """``alexa:<userId>``: namespaced so no other channel's sender id can collide."""
    system = (alexa_request.get("context") or {}).get("System") or {}
    user = (system.get("user") or {}).get("userId") or (
        ((alexa_request.get("session") or {}).get("user") or {}).get("userId")
    )
    if not isinstance(user, str) or not user.strip() or not user.isprintable():
        raise VerificationError("the request names no user")
    sender = f"alexa:{user}"
    if len(sender) > MAX_SENDER_CHARS:
        # Amazon's ids may be 255 characters; our tables (and Rasa's) hold 255 per sender.
        sender = "alexa:sha256:" + hashlib.sha256(user.encode()).hexdigest()
    return sender


def utterance(intent: Mapping[str, Any]) -> str:
    """The user's words: the ``utterance`` slot, else whatever slots are filled."""
    slots = intent.get("slots") or {}
    if not isinstance(slots, Mapping):
        return ""
    slot = slots.get(UTTERANCE_SLOT)
    values = [slot] if isinstance(slot, Mapping) else list(slots.values())
    words = [
        str(s.get("value")).strip()
        for s in values
        if isinstance(s, Mapping) and isinstance(s.get("value"), str)
    ]
    return storable_text(" ".join(w for w in words if w)[:MAX_UTTERANCE_CHARS])
