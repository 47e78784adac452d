"""The delivery worker: turns stored callbacks into messages and gets them delivered.

For an ``INBOUND`` queue item (an LG message id) it reads the stored body, asks the
planner who is to be told what, inserts one outbox row per conversation (inserted
already claimed for its first attempt) and marks the callback planned, in one
transaction; then it sends each new row at once. For an ``OUTBOX`` item (a retry) it
claims the row (compare-and-set pending -> sending) and sends it. Each attempt ends as
delivered, retry later (exponential backoff with jitter) or failed with the reason; the
queue item is acknowledged only after that is committed.

Background loops:

* scheduler: re-queues retries whose time has come; reserving a row moves its
  next_attempt_at forward by compare-and-set, so one worker queues it, not all.
* sweeper: re-queues callbacks stored but never planned (a publish that failed after
  the commit, a crash) and releases 'sending' claims older than reclaim_after (a worker
  that died mid-attempt). Send timeouts are shorter than reclaim_after, so a live
  worker's claim is never taken over.
* history (optional): records delivered messages in the Rasa conversation.

:meth:`DeliveryWorker.run` returns once ``stop`` is set and every batch in hand has
been sent, recorded and acknowledged.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from assistant.settings import ConnectorSettings
from assistant.storage.models import utcnow
from connector.history import HistoryRecorder
from connector.outputs import OutgoingMessage, Outputs, SendResult
from connector.queue import INBOUND, OUTBOX, DeliveryQueue, InProcessQueue, WorkItem
from connector.store import (
    DELIVERED,
    FAILED,
    PENDING,
    PLANNED,
    RECEIVED,
    AttemptOutcome,
    DeliveryStore,
    NoticeLike,
    OutboxRow,
    StoredCallback,
)
from lgcloud.callbacks import CallbackRejected, LgCallback, parse_callback

log = logging.getLogger(__name__)

# Rows the in-process startup recovery queues at most per kind (ids only: cheap).
_RECOVERY_LIMIT = 100_000


class Planner(Protocol):
    """What the worker needs of assistant.notifications.NotificationPlanner."""

    async def plan_many(self, callbacks: Sequence[LgCallback]) -> Sequence[Sequence[NoticeLike]]:
        """Notices for each callback, in order."""


def backoff_seconds(
    attempts: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Delay before attempt ``attempts + 1``: base * 2^(attempts-1), capped, "equal jitter"
    (between half and all of it) so that retries of many rows do not arrive together."""
    ceiling = min(cap, base * 2 ** max(attempts - 1, 0))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


@dataclass
class WorkerStats:
    planned: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    taken_over: int = 0
    errors: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in vars(self).items())


class _RetryClock:
    """Retry times this worker scheduled, so the scheduler wakes when one comes due
    rather than at its next poll (other workers' retries are found by polling)."""

    def __init__(self) -> None:
        self._times: list[float] = []  # monotonic, a heap
        self.changed = asyncio.Event()

    def add(self, when: float) -> None:
        heapq.heappush(self._times, when)
        if self._times[0] == when:
            self.changed.set()

    def next_after(self, now: float) -> float | None:
        """Forget times that have come; the earliest one still ahead, if any."""
        while self._times and self._times[0] <= now:
            heapq.heappop(self._times)
        return self._times[0] if self._times else None


class DeliveryWorker:
    def __init__(
        self,
        store: DeliveryStore,
        queue: DeliveryQueue,
        planner: Planner,
        outputs: Outputs,
        settings: ConnectorSettings,
        *,
        history: HistoryRecorder | None = None,
        batch_size: int = 128,
        max_in_flight: int = 512,
        max_batches: int = 4,
        planning_concurrency: int = 6,
        scheduler_interval_seconds: float = 1.0,
        sweep_interval_seconds: float | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._planner = planner
        self._outputs = outputs
        self._settings = settings
        self._history = history
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._max_batches = max_batches
        self._planning = asyncio.Semaphore(planning_concurrency)
        self._scheduler_interval = scheduler_interval_seconds
        reclaim = settings.reclaim_after_seconds
        self._reclaim_after = timedelta(seconds=reclaim)
        self._sweep_interval = sweep_interval_seconds or min(max(reclaim / 2, 0.5), 15.0)
        self._rng = rng or random.Random()
        self._in_flight = 0
        self._room = asyncio.Event()
        self._batches: set[asyncio.Task[None]] = set()
        self._retry_clock = _RetryClock()
        # Callbacks this worker re-queued recently: not again within reclaim_after.
        self._swept: dict[str, float] = {}
        self.stats = WorkerStats()

    def __repr__(self) -> str:
        return f"DeliveryWorker({self._queue!r})"

    # -- main loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> None:
        await self._queue.start()
        if isinstance(self._queue, InProcessQueue):
            await self._recover_in_process()
        loops = [
            asyncio.create_task(self._scheduler(stop), name="delivery-scheduler"),
            asyncio.create_task(self._sweeper(stop), name="delivery-sweeper"),
        ]
        if self._history is not None:
            loops.append(asyncio.create_task(self._history.run(stop), name="delivery-history"))
        if ready is not None:
            ready.set()
        try:
            await self._consume(stop)
        finally:
            # Graceful stop: what is in hand is finished (sent, recorded, acked) first.
            if self._batches:
                await asyncio.gather(*self._batches, return_exceptions=True)
            stop.set()
            _, pending = await asyncio.wait(loops, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            log.info("delivery worker stopped: %s", self.stats)

    async def _consume(self, stop: asyncio.Event) -> None:
        async def interrupt_on_stop() -> None:
            await stop.wait()
            self._queue.interrupt()

        interrupter = asyncio.create_task(interrupt_on_stop())
        try:
            await self._consume_until(stop)
        finally:
            interrupter.cancel()

    async def _consume_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            # Few batches at a time: what arrives meanwhile waits in the queue and is
            # taken as one bigger batch, whose lookups and commits serve many callbacks.
            # Without the cap, load arrives as many batches of one or two, each paying
            # for its own round trips, and the worker saturates far below its capacity.
            while self._in_flight >= self._max_in_flight or len(self._batches) >= self._max_batches:
                self._room.clear()
                await self._room.wait()
            room = min(self._batch_size, self._max_in_flight - self._in_flight)
            try:
                # A short block keeps a stop request from waiting long (Redis reads
                # cannot be interrupted safely).
                items = await self._queue.consume(room, block_seconds=0.25)
            except Exception as error:
                self.stats.errors += 1
                log.warning("reading the delivery queue failed: %s", type(error).__name__)
                await _sleep_or_stop(stop, 1.0)
                continue
            if not items:
                continue
            self._in_flight += len(items)
            task = asyncio.create_task(self._handle(items))
            self._batches.add(task)
            task.add_done_callback(lambda done, n=len(items): self._finished(done, n))

    def _finished(self, task: asyncio.Task[None], count: int) -> None:
        self._batches.discard(task)
        self._in_flight -= count
        self._room.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery batch crashed", exc_info=task.exception())

    async def _handle(self, items: Sequence[WorkItem]) -> None:
        """One batch of queue items; acknowledged only if every step was recorded."""
        # Every claim is stamped when it is made (not when the batch started): claimed_at
        # is what others compare with reclaim_after to decide a worker is gone.
        try:
            rows: list[OutboxRow] = []
            inbound = [item for item in items if item.kind == INBOUND]
            if inbound:
                rows += await self._plan(inbound)
            retries = [item.ref for item in items if item.kind == OUTBOX and not item.redelivered]
            if retries:
                rows += await self._store.claim(retries, utcnow())
            orphans = [item.ref for item in items if item.kind == OUTBOX and item.redelivered]
            if orphans:
                rows += await self._take_over(orphans, only_due=False)
            if rows:
                await self._attempt(rows)
            await self._queue.ack(items)
        except Exception:
            # Not acknowledged: Redis hands the items out again after reclaim_after, and
            # the sweeper finds their rows in the database either way.
            self.stats.errors += 1
            log.exception("a delivery batch of %d item(s) failed; it will be retried", len(items))

    async def _take_over(self, outbox_ids: list[str], *, only_due: bool) -> list[OutboxRow]:
        now = utcnow()
        rows = await self._store.claim(
            outbox_ids, now, only_due=only_due, takeover_before=now - self._reclaim_after
        )
        self.stats.taken_over += len(rows)
        return rows

    # -- planning ---------------------------------------------------------------------------

    async def _plan(self, items: Sequence[WorkItem]) -> list[OutboxRow]:
        stored = await self._store.load_callbacks(item.ref for item in items)
        for item in items:
            if item.ref not in stored:
                log.warning("queued callback %s is not in the database; skipped", item.ref)
        waiting = [callback for callback in stored.values() if callback.state == RECEIVED]
        planned = await self._plan_batch(waiting)
        rows: list[OutboxRow] = []
        if planned:
            rows = await self._store.plan_callbacks(planned, utcnow(), claim=True)
            self.stats.planned += len(planned)
        # A callback handled before (queued twice, or its worker stopped half way) may
        # have rows that never got their attempt: give them one now if they are due.
        revisit = [
            item.ref
            for item in items
            if item.ref in stored and (item.redelivered or stored[item.ref].state == PLANNED)
        ]
        if revisit:
            fresh = {row.id for row in rows}
            leftover = [i for i in await self._store.unfinished_for(revisit) if i not in fresh]
            if leftover:
                rows += await self._take_over(leftover, only_due=True)
        return rows

    async def _plan_batch(
        self, waiting: Sequence[StoredCallback]
    ) -> dict[str, Sequence[NoticeLike]]:
        """Notices per message id for the callbacks that could be planned.

        The batch is planned together (the planner shares its lookups); if that fails,
        each callback is planned alone so that one bad callback cannot hold up the rest.
        One that still fails is left 'received' and the sweeper queues it again later.
        """
        parsed: list[tuple[str, LgCallback]] = []
        planned: dict[str, Sequence[NoticeLike]] = {}
        for stored in waiting:
            try:
                parsed.append((stored.message_id, parse_callback(stored.body)))
            except CallbackRejected as rejected:
                # It was valid when received; a parser change since makes it unusable.
                log.error(
                    "stored callback %s no longer parses (%s); nobody will be told",
                    stored.message_id,
                    rejected.reason,
                )
                planned[stored.message_id] = []
        if not parsed:
            return planned
        try:
            async with self._planning:
                batch = await self._planner.plan_many([callback for _, callback in parsed])
            planned.update(zip((message_id for message_id, _ in parsed), batch, strict=True))
            return planned
        except Exception:
            if len(parsed) == 1:
                self._planning_failed(*parsed[0])
                return planned
            log.warning("planning %d callbacks together failed; planning each alone", len(parsed))
        for message_id, callback in parsed:
            try:
                async with self._planning:
                    planned[message_id] = (await self._planner.plan_many([callback]))[0]
            except Exception:
                self._planning_failed(message_id, callback)
        return planned

    def _planning_failed(self, message_id: str, callback: LgCallback) -> None:
        self.stats.errors += 1
        log.exception(
            "planning callback %s (%s) failed; it will be tried again",
            message_id,
            callback.push_type,
        )

    # -- attempts ---------------------------------------------------------------------------

    async def _attempt(self, rows: Sequence[OutboxRow]) -> None:
        results = await asyncio.gather(*(self._send(row) for row in rows))
        now = utcnow()
        outcomes = [
            self._outcome(row, result, now) for row, result in zip(rows, results, strict=True)
        ]
        await self._store.finish(outcomes, utcnow())
        for outcome in outcomes:
            if outcome.state == DELIVERED:
                self.stats.delivered += 1
            elif outcome.state == PENDING:
                self.stats.retried += 1
                assert outcome.next_attempt_at is not None
                wait = (outcome.next_attempt_at - now).total_seconds()
                self._retry_clock.add(time.monotonic() + max(wait, 0.0))
            else:
                self.stats.failed += 1
        if self._history is not None and any(o.state == DELIVERED for o in outcomes):
            self._history.poke()

    async def _send(self, row: OutboxRow) -> SendResult:
        return await self._outputs.send(
            OutgoingMessage(
                outbox_id=row.id,
                message_id=row.message_id,
                sender_id=row.sender_id,
                channel=row.channel,
                text=row.text,
                response=row.response,
                params=row.params,
                device_id=row.device_id,
                kind=row.kind,
            )
        )

    def _outcome(self, row: OutboxRow, result: SendResult, now: datetime) -> AttemptOutcome:
        if result.delivered:
            return AttemptOutcome(row.id, row.attempts, DELIVERED)
        reason = result.reason or "not delivered"
        if not result.retryable:
            log.warning("outbox %s (callback %s) failed: %s", row.id, row.message_id, reason)
            return AttemptOutcome(row.id, row.attempts, FAILED, error=reason)
        if row.attempts >= self._settings.max_attempts:
            reason = f"gave up after {row.attempts} attempts; last: {reason}"
            log.warning("outbox %s (callback %s) failed: %s", row.id, row.message_id, reason)
            return AttemptOutcome(row.id, row.attempts, FAILED, error=reason)
        delay = backoff_seconds(
            row.attempts,
            self._settings.retry_base_seconds,
            self._settings.retry_max_seconds,
            self._rng,
        )
        log.info(
            "outbox %s attempt %d not delivered (%s); next in %.1f s",
            row.id,
            row.attempts,
            reason,
            delay,
        )
        return AttemptOutcome(
            row.id,
            row.attempts,
            PENDING,
            error=reason,
            next_attempt_at=now + timedelta(seconds=delay),
        )

    # -- background loops -------------------------------------------------------------------

    async def _scheduler(self, stop: asyncio.Event) -> None:
        """Queue retries whose time has come (reserved by compare-and-set, see store)."""
        while not stop.is_set():
            reserved: list[str] = []
            try:
                now = utcnow()
                reserved = await self._store.reserve_due(now, now + self._reclaim_after)
                if reserved:
                    await self._queue.publish([(OUTBOX, outbox_id) for outbox_id in reserved])
            except Exception as error:
                self.stats.errors += 1
                log.warning("queueing due retries failed: %s", type(error).__name__)
            if len(reserved) >= 500:
                continue  # more are due
            clock = time.monotonic()
            wake = clock + self._scheduler_interval
            known = self._retry_clock.next_after(clock)
            if known is not None:
                wake = min(wake, known)
            self._retry_clock.changed.clear()
            await _sleep_or_stop(stop, wake - clock, self._retry_clock.changed)

    async def _sweeper(self, stop: asyncio.Event) -> None:
        """Recover work a failed publish or a stopped worker left behind."""
        while not stop.is_set():
            await _sleep_or_stop(stop, self._sweep_interval)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except Exception as error:
                self.stats.errors += 1
                log.warning("the delivery sweep failed: %s", type(error).__name__)

    async def sweep(self) -> None:
        now = utcnow()
        clock = time.monotonic()
        window = self._reclaim_after.total_seconds()
        self._swept = {m: t for m, t in self._swept.items() if clock - t < window}
        stale = [
            message_id
            for message_id in await self._store.stale_received(now - self._reclaim_after)
            if message_id not in self._swept
        ]
        if stale:
            log.info("re-queueing %d callback(s) stored but never planned", len(stale))
            await self._queue.publish([(INBOUND, message_id) for message_id in stale])
            self._swept.update(dict.fromkeys(stale, clock))
        released = await self._store.release_stale_sending(now - self._reclaim_after, now)
        if released:
            # Now pending and due: the scheduler queues them (one worker each).
            log.info("released %d attempt(s) abandoned by a stopped worker", len(released))
            self._retry_clock.add(clock)

    async def _recover_in_process(self) -> None:
        """In-process queue: nothing survived the last stop but the database. This
        process is the only worker, so every 'sending' claim is an orphan."""
        assert isinstance(self._queue, InProcessQueue)
        now = utcnow()
        released = await self._store.release_stale_sending(now + timedelta(seconds=1), now)
        received = await self._store.stale_received(
            now + timedelta(seconds=1), limit=_RECOVERY_LIMIT
        )
        if received:
            await self._queue.publish_recovered([(INBOUND, message_id) for message_id in received])
        if released or received:
            log.info(
                "recovered %d unplanned callback(s) and %d interrupted attempt(s)",
                len(received),
                len(released),
            )
        self._retry_clock.add(time.monotonic())


async def _sleep_or_stop(
    stop: asyncio.Event, seconds: float, also: asyncio.Event | None = None
) -> None:
    waiters = [asyncio.ensure_future(stop.wait())]
    if also is not None:
        waiters.append(asyncio.ensure_future(also.wait()))
    try:
        await asyncio.wait(waiters, timeout=max(seconds, 0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
