"""DeliveryWorker planning: a batch is planned together, and one callback the planner
cannot handle does not hold up the others in its batch."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import pytest

from assistant.settings import load_settings
from connector.queue import InProcessQueue
from connector.store import RECEIVED, DeliveryStore, StoredCallback
from connector.worker import DeliveryWorker
from lgcloud.callbacks import LgCallback

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


def stored(message_id: str, device: str) -> StoredCallback:
    body = {
        "messageId": message_id,
        "timestamp": "2026-11-23T12:00:00.000000",
        "push": {
            "pushType": "DEVICE_PUSH",
            "deviceId": device,
            "pushCode": "WASHING_IS_COMPLETE",
            "deviceType": "DEVICE_WASHER",
            "userList": ["u1"],
        },
    }
    return StoredCallback(message_id, "DEVICE_PUSH", device, body, NOW, RECEIVED, None)


class Planner:
    """Names each callback's device; fails any batch holding the ``broken`` device."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def plan_many(self, callbacks: Sequence[LgCallback]) -> list[list[str]]:
        devices = [c.device_id for c in callbacks]
        self.batches.append(devices)
        if "broken" in devices:
            raise RuntimeError("planner failure")
        return [[device] for device in devices]


@pytest.fixture
def worker_and_planner(storage, tmp_path) -> tuple[DeliveryWorker, Planner]:
    planner = Planner()
    worker = DeliveryWorker(
        DeliveryStore(storage.engine),
        InProcessQueue(),
        planner,  # type: ignore[arg-type]
        outputs=None,  # type: ignore[arg-type]  # planning sends nothing
        settings=load_settings({"STATE_DIR": str(tmp_path)}).connector,
    )
    return worker, planner


async def test_a_batch_is_planned_with_one_planner_call(worker_and_planner) -> None:
    worker, planner = worker_and_planner
    planned = await worker._plan_batch([stored("m1", "d1"), stored("m2", "d2")])
    assert planned == {"m1": ["d1"], "m2": ["d2"]}
    assert planner.batches == [["d1", "d2"]]


async def test_a_failing_callback_is_left_for_later_and_the_rest_planned(
    worker_and_planner, caplog
) -> None:
    worker, planner = worker_and_planner
    batch = [stored("m1", "d1"), stored("m2", "broken"), stored("m3", "d3")]
    planned = await worker._plan_batch(batch)
    assert planned == {"m1": ["d1"], "m3": ["d3"]}  # m2 stays 'received' for the sweeper
    assert planner.batches == [["d1", "broken", "d3"], ["d1"], ["broken"], ["d3"]]
    assert worker.stats.errors == 1
    assert "planning callback m2 (DEVICE_PUSH) failed" in caplog.text


async def test_a_stored_body_that_no_longer_parses_tells_nobody(worker_and_planner) -> None:
    worker, planner = worker_and_planner
    unusable = StoredCallback("m9", "DEVICE_PUSH", "d9", {"messageId": "m9"}, NOW, RECEIVED, None)
    planned = await worker._plan_batch([unusable, stored("m1", "d1")])
    assert planned == {"m9": [], "m1": ["d1"]}
    assert planner.batches == [["d1"]]
