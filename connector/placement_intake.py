"""Placement callbacks (v2 multi-device API) arriving at the LG callback URL.

Unlike pushes, these are answers a turn is waiting for: each is stored at once
(``PlacementRepository.record``: duplicates once, late ones kept and marked) and the
waiters are woken (``assistant/correlation.py``). Nothing is queued for delivery: the
waiting turn tells the user. A late answer for a device the user was told did not answer
changes what they were told: it becomes a message for that conversation
(``assistant/late_answers.py``), added to the outbox as pending, so the delivery worker's
scheduler sends it like any notification (durable, retried, once).
"""

from __future__ import annotations

import logging

from assistant.correlation import Waker
from assistant.late_answers import LateAnswers
from assistant.storage.models import utcnow
from assistant.storage.placement import DeviceResult, PlacementRepository, Recorded
from connector.store import DeliveryStore
from lgcloud.placement_callbacks import PlacementResult

log = logging.getLogger(__name__)


class PlacementIntake:
    def __init__(
        self,
        repository: PlacementRepository,
        waker: Waker,
        store: DeliveryStore | None = None,
        late: LateAnswers | None = None,
    ) -> None:
        self._repository = repository
        self._waker = waker
        self._store = store
        self._late = late

    def __repr__(self) -> str:
        return f"PlacementIntake({self._repository!r}, {self._waker!r})"

    async def accept(self, callback: PlacementResult) -> Recorded:
        answer = DeviceResult(
            request_id=callback.request_id,
            device_id=callback.device_id,
            push_type=callback.push_type,
            ok=callback.ok,
            device_type=callback.device_type,
            error_code=callback.error_code,
            result=callback.result,
        )
        recorded = await self._repository.record(answer)
        if not recorded.new:
            return recorded
        await self._waker.notify(callback.request_id)
        if recorded.late and recorded.request is not None and self._late and self._store:
            late = await self._late.notice(recorded.request, answer)
            if late is not None:
                # Pending and due now: the worker's scheduler picks it up within a second.
                await self._store.plan_callbacks(
                    {late.message_id: [late.notice]}, utcnow(), claim=False
                )
                log.info(
                    "placement %s: %s answered after the user was told it had not; told them",
                    callback.request_id,
                    callback.device_id,
                )
        return recorded
