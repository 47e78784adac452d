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
half-way); its late replies are logged for now.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from assistant.settings import AlexaSettings, load_alexa_settings
from connector.alexa_speech import (
    alexa_response,
    chosen_payload,
    empty_response,
    reply_for_messages,
)
from connector.alexa_verify import (
    AlexaRequestVerifier,
    VerificationError,
    check_application_id,
    parse_body,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 128 * 1024  # Alexa requests with device context are a few kB
MAX_SENDER_CHARS = 255  # linked_accounts.sender_id and Rasa's tracker sender_id
UTTERANCE_SLOT = "utterance"
MAX_UTTERANCE_CHARS = 1000

WELCOME = "Hi, this is your LG appliance assistant. What would you like to do?"
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

STOP_INTENTS = frozenset({"AMAZON.StopIntent", "AMAZON.CancelIntent", "AMAZON.NavigateHomeIntent"})
# Built-in yes/no intents (if the interaction model has them) are words for Rasa too.
SPOKEN_INTENTS = {"AMAZON.YesIntent": "yes", "AMAZON.NoIntent": "no"}

OnNewMessage = Callable[[UserMessage], Awaitable[Any]]


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
        self, settings: AlexaSettings, verifier: AlexaRequestVerifier | None = None
    ) -> None:
        self.settings = settings
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
            return alexa_response(WELCOME, end_session=False, reprompt=WELCOME_REPROMPT)
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
        # Not spoken: nobody is listening any more. A later part queues these as
        # notifications read out at the next launch.
        for message in collector.messages:
            logger.info("late alexa reply for %s (not delivered): %s", sender, message.get("text"))


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
    return " ".join(w for w in words if w)[:MAX_UTTERANCE_CHARS]
