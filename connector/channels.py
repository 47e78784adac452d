"""Rasa's REST and callback channels, with the request body validated first.

Same names and URLs as Rasa's own (``/webhooks/rest/webhook``,
``/webhooks/callback/webhook``) and the same behaviour for good input; bad
input gets a 4xx JSON ``{"error": "bad_request", "reason": ...}`` instead of
Rasa's 500. Configured in credentials.yml by module path.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from rasa.core.channels.callback import CallbackInput
from rasa.core.channels.channel import UserMessage
from rasa.core.channels.rest import RestInput
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from connector.validation import message_body_problem

logger = logging.getLogger(__name__)


def add_body_validation(blueprint: Blueprint, channel: str) -> Blueprint:
    @blueprint.middleware("request")
    async def validate(request: Request) -> HTTPResponse | None:
        if request.method != "POST" or not request.path.endswith("/webhook"):
            return None
        problem = message_body_problem(request.body or b"")
        if problem is None:
            return None
        logger.info("%s webhook refused a request: %s", channel, problem.reason)
        return response.json(
            {"error": "bad_request", "reason": problem.reason}, status=problem.status
        )

    return blueprint


class ValidatedRestInput(RestInput):
    @classmethod
    def name(cls) -> str:
        return "rest"

    def _extract_input_channel(self, req: Request) -> str:
        # Rasa takes "input_channel" from the body; the channel a message came in on is
        # this one, whatever the caller claims (proactive delivery is routed by it).
        return self.name()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        return add_body_validation(super().blueprint(on_new_message), self.name())


class ValidatedCallbackInput(CallbackInput):
    @classmethod
    def name(cls) -> str:
        return "callback"

    def _extract_input_channel(self, req: Request) -> str:
        return self.name()

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        return add_body_validation(super().blueprint(on_new_message), self.name())
