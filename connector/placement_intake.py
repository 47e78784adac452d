"""Placement callbacks (v2 multi-device API) arriving at the LG callback URL.

Unlike pushes, these are answers a turn is waiting for: each is stored at once
(``PlacementRepository.record``: duplicates once, late ones kept and marked) and the
waiters are woken (``assistant/correlation.py``). Nothing is queued for delivery: the
waiting turn tells the user. A late answer for a device the user was told did not answer
is logged for now; telling the user is the turn's follow-up (see README, v2 API).
"""

from __future__ import annotations

import logging

from assistant.correlation import Waker
from assistant.storage.placement import DeviceResult, PlacementRepository, Recorded
from lgcloud.placement_callbacks import PlacementResult

log = logging.getLogger(__name__)


class PlacementIntake:
    def __init__(self, repository: PlacementRepository, waker: Waker) -> None:
        self._repository = repository
        self._waker = waker

    def __repr__(self) -> str:
        return f"PlacementIntake({self._repository!r}, {self._waker!r})"

    async def accept(self, callback: PlacementResult) -> Recorded:
        recorded = await self._repository.record(
            DeviceResult(
                request_id=callback.request_id,
                device_id=callback.device_id,
                push_type=callback.push_type,
                ok=callback.ok,
                device_type=callback.device_type,
                error_code=callback.error_code,
                result=callback.result,
            )
        )
        if recorded.new:
            await self._waker.notify(callback.request_id)
            missing = recorded.request.reported_missing if recorded.request else None
            if recorded.late and missing and callback.device_id in missing:
                log.info(
                    "placement %s: %s answered after the user was told it had not",
                    callback.request_id,
                    callback.device_id,
                )
        return recorded
