"""LG's status events (DEVICE_STATUS) and event-subscription answers at the callback URL.

A status event is not a notification for anyone: its report (the changed part of the
device's status) is deep-merged into ``device_states`` at once, and nothing is queued
for delivery. A redelivered event (same messageId) merges once. An event about a device
we cannot file under a user (no ``userNumber``, no stored state, not in exactly one
user's cached device list) is refused, so the receiver answers 404 and stores nothing.

LG's per-device DEVICE_EVENT_SUBSCRIBED answers to the renewer's v2 ``event-async``
request (placement callbacks, stored by ``connector/placement_intake.py`` like any
other) also pass through here: each marks its device as covered by the subscription,
which is one of the conditions for answering a status question from the stored state
(``assistant/storage/device_states.py``).
"""

from __future__ import annotations

import logging

from assistant.storage.device_states import DeviceStateRepository, Merged
from lgcloud.callbacks import StatusEvent
from lgcloud.placement_callbacks import DEVICE_EVENT_SUBSCRIBED, PlacementResult

log = logging.getLogger(__name__)


class EventIntake:
    def __init__(self, states: DeviceStateRepository) -> None:
        self._states = states

    def __repr__(self) -> str:
        return f"EventIntake({self._states!r})"

    async def accept(self, event: StatusEvent) -> Merged:
        merged = await self._states.merge_event(
            event.device_id,
            event.changes,
            event.message_id,
            thinq_user=event.user_number,
        )
        log.debug(
            "status event %s for %s: %s (%d values)",
            event.message_id,
            event.device_id,
            merged.outcome,
            len(event.changes),
        )
        return merged

    async def placement_answer(self, result: PlacementResult) -> None:
        """A placement callback was stored: one confirming an event subscription marks
        its device as covered (others are none of our business)."""
        if result.push_type != DEVICE_EVENT_SUBSCRIBED or not result.ok:
            return
        if await self._states.confirm_covered(result.request_id, result.device_id):
            log.debug("events of %s confirmed (request %s)", result.device_id, result.request_id)
