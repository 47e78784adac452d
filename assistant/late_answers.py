"""Telling the user when an appliance answers after they were told it had not, no Rasa.

A whole-home turn says which appliances did not answer in time ("The Oven didn't answer
in time"). When one of them answers later, that changes what the user was told, so the
connector turns the late answer into a message for that conversation, delivered through
the ordinary outbox (durable, retried, once per conversation): "Update: the Oven has
answered now: on and ready." Answers that change nothing (a device that had answered, a
duplicate, a request nobody was told about) make no message.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from assistant.bulk import refusal_reason
from assistant.describe import describe
from assistant.household import HouseholdService
from assistant.notifications import Notice, Wording
from assistant.storage.device_cache import DeviceCacheRepository
from assistant.storage.placement import DeviceResult, ExpectedRequest
from assistant.vocabulary import Vocabulary
from lgcloud.errors import error_for
from lgcloud.profile import flatten_status


@dataclass(frozen=True)
class LateNotice:
    message_id: str  # the outbox's idempotency key: one message per late answer
    notice: Notice


class LateAnswers:
    def __init__(self, devices: DeviceCacheRepository, vocab: Vocabulary, wording: Wording) -> None:
        self._devices = devices
        self._vocab = vocab
        self._wording = wording

    def __repr__(self) -> str:
        return "LateAnswers()"

    async def notice(self, request: ExpectedRequest, answer: DeviceResult) -> LateNotice | None:
        """The message for ``answer``, or None when it changes nothing the user was told."""
        if request.sender_id is None or answer.device_id not in (request.reported_missing or ()):
            return None
        record = await self._devices.get_device(request.thinq_user, answer.device_id)
        appliance = HouseholdService.appliance_of(record) if record is not None else None
        device = appliance.alias if appliance is not None else "appliance"
        if not answer.ok:
            response = "utter_placement_late_refused"
            detail = refusal_reason(error_for(answer.error_code or "", "", None))
        elif request.kind == "control":
            response, detail = "utter_placement_late_done", ""
        elif appliance is not None and isinstance(answer.result, dict):
            response = "utter_placement_late_status"
            facts = describe(appliance, flatten_status(answer.result), self._vocab, overview=True)
            detail = facts
        else:
            response, detail = "utter_placement_late_answered", ""
        params = {"device": device, "detail": detail}
        key = hashlib.sha256(f"{answer.request_id}\0{answer.device_id}".encode()).hexdigest()
        return LateNotice(
            message_id=f"late:{key[:40]}",
            notice=Notice(
                sender_id=request.sender_id,
                channel=request.channel,
                thinq_user=request.thinq_user,
                device_id=answer.device_id,
                kind="placement",
                response=response,
                params=params,
                text=self._wording.render(response, params),
            ),
        )
