"""The delivery worker: plans stored callbacks into outbox rows and sends each row.

Every attempt is claimed in the database first (compare-and-set), so a queue item
delivered twice is sent once. A retryable failure (channel down) is tried again
with exponential backoff and jitter up to ``max_attempts``; then, or at once for
a permanent failure, the row is marked failed with the reason.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

from assistant.notifications import NotificationPlanner
from assistant.settings import ConnectorSettings
from connector.dispatch import DeliveryQueue
from connector.outbox_store import OutboxStore, utcnow
from connector.senders import DeliveryFailed, Senders
from lgcloud.callbacks import CallbackRejected, parse_callback

logger = logging.getLogger(__name__)

CALLBACK_ITEM, ROW_ITEM = "cb:", "ob:"
SWEEP_EVERY_SECONDS = 5.0
RETRY_SCAN_SECONDS = 0.25


def backoff_seconds(attempts: int, base: float, cap: float) -> float:
    """Full jitter: a random wait up to base * 2^(attempts-1), capped."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempts - 1))


class DeliveryWorker:
    def __init__(
        self,
        store: OutboxStore,
        planner: NotificationPlanner,
        queue: DeliveryQueue,
        senders: Senders,
        settings: ConnectorSettings,
        *,
        sole_worker: bool,
        concurrency: int = 64,
    ) -> None:
        self._store = store
        self._planner = planner
        self._queue = queue
        self._senders = senders
        self._settings = settings
        self._reclaim_after = timedelta(seconds=settings.reclaim_after_seconds)
        # The only worker (in-process queue): anything half-done at start-up is its own
        # from before a restart, so it can be taken back at once.
        self._sole = sole_worker
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        await self.recover(at_start=True)
        loops = [
            asyncio.create_task(self._consume(stop)),
            asyncio.create_task(self._schedule(stop)),
        ]
        try:
            await stop.wait()
        finally:
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            # Finish what is in flight so nothing is left claimed (graceful stop).
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def recover(self, *, at_start: bool = False) -> None:
        grace = timedelta(0) if (self._sole and at_start) else self._reclaim_after
        await self._store.release_stale_claims(grace)
        await self._store.requeue_orphans(grace)
        unplanned = await self._store.unplanned(grace)
        await self._queue.publish([CALLBACK_ITEM + m for m in unplanned])

    async def _consume(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                entries = await self._queue.take(count=64, block_ms=500)
            except Exception:
                logger.exception("delivery queue unavailable; retrying in 1 s")
                await asyncio.sleep(1)
                continue
            for entry_id, item in entries:
                await self._slots.acquire()
                task = asyncio.create_task(self._handle(entry_id, item))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _handle(self, entry_id: str, item: str) -> None:
        try:
            if item.startswith(CALLBACK_ITEM):
                await self.plan_and_send(item[len(CALLBACK_ITEM) :])
            elif item.startswith(ROW_ITEM):
                await self.attempt(item[len(ROW_ITEM) :])
            await self._queue.ack([entry_id])
        except Exception:
            # Left unacknowledged: the sweeper (or XAUTOCLAIM) brings it back.
            logger.exception("delivery item %s failed; it will be retried", item[:40])
        finally:
            self._slots.release()

    async def plan_and_send(self, message_id: str) -> None:
        stored = await self._store.callback_body(message_id)
        if stored is None:
            return
        _state, body = stored
        try:
            callback = parse_callback(body)
        except CallbackRejected as exc:  # validated on arrival; only a changed parser gets here
            logger.error("stored callback %s no longer parses: %s", message_id, exc.reason)
            return
        notices = await self._planner.plan(callback)
        row_ids = await self._store.save_plan(message_id, notices)
        await asyncio.gather(*(self.attempt(row_id) for row_id in row_ids))

    async def attempt(self, row_id: str) -> None:
        row = await self._store.claim(row_id, self._reclaim_after)
        if row is None:
            return  # delivered, failed, or another worker has it
        try:
            await self._senders.send(row)
        except DeliveryFailed as failure:
            if failure.retryable and row.attempts < self._settings.max_attempts:
                wait = backoff_seconds(
                    row.attempts,
                    self._settings.retry_base_seconds,
                    self._settings.retry_max_seconds,
                )
                await self._store.schedule_retry(
                    row_id, failure.reason, utcnow() + timedelta(seconds=wait)
                )
                logger.info(
                    "message %s not delivered (%s); retry in %.1f s", row_id, failure.reason, wait
                )
            else:
                await self._store.mark_failed(row_id, failure.reason)
                logger.warning("message %s failed: %s", row_id, failure.reason)
            return
        await self._store.mark_delivered(row_id)

    async def _schedule(self, stop: asyncio.Event) -> None:
        since_sweep = 0.0
        while not stop.is_set():
            try:
                due = await self._store.take_due_retries()
                await self._queue.publish([ROW_ITEM + r for r in due])
                since_sweep += RETRY_SCAN_SECONDS
                if since_sweep >= SWEEP_EVERY_SECONDS:
                    since_sweep = 0.0
                    await self.recover()
            except Exception:
                logger.exception("retry scheduler failed; trying again")
            await asyncio.sleep(RETRY_SCAN_SECONDS)
