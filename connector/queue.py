"""Where delivery work waits between the receiver and the workers.

An item names either an inbound callback to plan (``INBOUND``, by LG message id) or an
outbox row to attempt (``OUTBOX``, by outbox id). Items carry no content: the database
is the record, a queue item only says "look at this now", so losing one delays work
(the sweeper finds it) but never loses it, and handling one twice is harmless.

* :class:`RedisStreamQueue`: a Redis stream read through a consumer group, for several
  receiver and worker processes. An entry stays pending for its consumer until acked; a
  consumer that dies leaves its entries pending, and after ``reclaim_after_seconds`` of
  idleness another consumer takes them over with XAUTOCLAIM.
* :class:`InProcessQueue`: an asyncio queue, for one process running receiver and
  worker together; after a restart the worker rebuilds it from the database.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

INBOUND = "inbound"
OUTBOX = "outbox"
_KINDS = (INBOUND, OUTBOX)


@dataclass(frozen=True)
class WorkItem:
    kind: str  # INBOUND or OUTBOX
    ref: str  # LG message id or outbox id
    # The stream entry to acknowledge (Redis only).
    entry_id: str | None = None
    # Handed out again after its first consumer stopped without acknowledging it: the
    # work it names may be half done, so the worker may take over stale claims.
    redelivered: bool = False


class DeliveryQueue(ABC):
    # True when other processes publish to and consume from the same queue.
    shared: bool = False

    @abstractmethod
    async def start(self) -> None:
        """Connect / create what the queue needs; idempotent."""

    @abstractmethod
    async def publish(self, items: Sequence[tuple[str, str]]) -> None:
        """Queue ``(kind, ref)`` pairs, in one round trip where the backend allows."""

    @abstractmethod
    async def consume(self, count: int, block_seconds: float) -> list[WorkItem]:
        """Up to ``count`` items; waits up to ``block_seconds`` for the first one."""

    @abstractmethod
    async def ack(self, items: Sequence[WorkItem]) -> None:
        """The work these items name is done (or recorded in the database)."""

    @abstractmethod
    def interrupt(self) -> None:
        """Make a consume() that is waiting return early (the worker is stopping)."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; items not consumed stay queued (Redis) or are dropped
        (in-process: the database still holds their work)."""


def _check(items: Sequence[tuple[str, str]]) -> None:
    for kind, ref in items:
        if kind not in _KINDS or not ref:
            raise ValueError(f"not a queue item: {(kind, ref)!r}")


class InProcessQueue(DeliveryQueue):
    shared = False

    def __init__(self) -> None:
        # Unbounded: publishing must never block an HTTP answer; every item is already
        # in the database, so memory is the only cost of a backlog.
        self._queue: asyncio.Queue[WorkItem] = asyncio.Queue()
        self._interrupted = asyncio.Event()

    def __repr__(self) -> str:
        return f"InProcessQueue({self._queue.qsize()} queued)"

    async def start(self) -> None:
        # Nothing to connect; the worker refills the queue from the database at startup.
        return None

    async def close(self) -> None:
        # Items still queued are dropped; their work is in the database for the next start.
        return None

    async def publish(self, items: Sequence[tuple[str, str]]) -> None:
        _check(items)
        for kind, ref in items:
            self._queue.put_nowait(WorkItem(kind, ref))

    async def publish_recovered(self, items: Sequence[tuple[str, str]]) -> None:
        """Queue work found unfinished in the database at startup (may be half done)."""
        _check(items)
        for kind, ref in items:
            self._queue.put_nowait(WorkItem(kind, ref, redelivered=True))

    def interrupt(self) -> None:
        self._interrupted.set()

    async def consume(self, count: int, block_seconds: float) -> list[WorkItem]:
        if self._queue.empty():
            getter = asyncio.ensure_future(self._queue.get())
            interrupted = asyncio.ensure_future(self._interrupted.wait())
            await asyncio.wait(
                [getter, interrupted], timeout=block_seconds, return_when=asyncio.FIRST_COMPLETED
            )
            interrupted.cancel()
            if not getter.done():
                # Safe: an unfinished get() has not taken an item off the queue.
                getter.cancel()
                return []
            items = [getter.result()]
        else:
            items = [self._queue.get_nowait()]
        while len(items) < count and not self._queue.empty():
            items.append(self._queue.get_nowait())
        return items

    async def ack(self, items: Sequence[WorkItem]) -> None:
        # Nothing to do: an in-process item is gone once taken.
        return None

    def qsize(self) -> int:
        return self._queue.qsize()


def consumer_name() -> str:
    """Unique per process start: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class RedisStreamQueue(DeliveryQueue):
    shared = True
    GROUP = "delivery"

    def __init__(
        self,
        redis: Any,
        *,
        prefix: str = "lgconn",
        reclaim_after_seconds: float = 30.0,
        consumer: str | None = None,
        max_length: int = 100_000,
        forget_consumers_after_seconds: float = 3600.0,
    ) -> None:
        """``redis`` is a ``redis.asyncio.Redis``; the queue closes it in :meth:`close`.

        ``max_length`` trims the stream approximately (XADD MAXLEN ~): acked entries
        are kept only for inspection. Should a backlog ever exceed it, the trimmed
        entries' work is still in the database and the sweeper queues it again.
        """
        self._redis = redis
        self.stream = f"{prefix}:deliveries"
        self.consumer = consumer or consumer_name()
        self._reclaim_ms = max(1, int(reclaim_after_seconds * 1000))
        # How often to look for entries a dead consumer left behind.
        self._reclaim_every = min(max(reclaim_after_seconds / 2, 0.2), 10.0)
        self._next_reclaim = 0.0
        self._reclaim_cursor = "0-0"
        self._max_length = max_length
        self._forget_after_ms = int(forget_consumers_after_seconds * 1000)
        self._started = False
        self._closed = False

    def __repr__(self) -> str:
        return f"RedisStreamQueue({self.stream!r}, consumer={self.consumer!r})"

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> RedisStreamQueue:
        import redis.asyncio as aioredis

        # Health checks: XREADGROUP BLOCK keeps a connection idle on our side for long.
        client = aioredis.Redis.from_url(url, health_check_interval=30)
        return cls(client, **kwargs)

    async def start(self) -> None:
        if self._started:
            return
        from redis.exceptions import ResponseError

        try:
            # "0": a group created after the receiver already queued entries still sees them.
            await self._redis.xgroup_create(self.stream, self.GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        await self._forget_idle_consumers()
        self._started = True

    async def _forget_idle_consumers(self) -> None:
        """Drop names of long-gone consumers that hold nothing (each start makes a new one)."""
        try:
            consumers = await self._redis.xinfo_consumers(self.stream, self.GROUP)
        except Exception as error:  # housekeeping only; never stop the service for it
            log.warning("could not list the stream's consumers: %s", type(error).__name__)
            return
        for consumer in consumers:
            name = consumer["name"]
            name = name.decode() if isinstance(name, bytes) else name
            if consumer["pending"] == 0 and consumer["idle"] > self._forget_after_ms:
                await self._redis.xgroup_delconsumer(self.stream, self.GROUP, name)

    async def publish(self, items: Sequence[tuple[str, str]]) -> None:
        _check(items)
        if not items:
            return
        pipe = self._redis.pipeline(transaction=False)
        for kind, ref in items:
            pipe.xadd(
                self.stream,
                {"k": kind, "r": ref},
                maxlen=self._max_length,
                approximate=True,
            )
        await pipe.execute()

    async def _items(self, entries: Any, *, redelivered: bool) -> list[WorkItem]:
        items = []
        junk = []
        for entry_id, fields in entries or ():
            entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            kind = (fields or {}).get(b"k", b"").decode()
            ref = (fields or {}).get(b"r", b"").decode()
            if kind not in _KINDS or not ref:
                # Not ours or trimmed away while pending: nothing to do, so acknowledge it
                # (any work it named is in the database, where the sweeper finds it).
                junk.append(entry)
                continue
            items.append(WorkItem(kind, ref, entry_id=entry, redelivered=redelivered))
        if junk:
            log.warning("acknowledging %d unusable stream entries", len(junk))
            await self._redis.xack(self.stream, self.GROUP, *junk)
        return items

    async def _reclaim(self, count: int) -> list[WorkItem]:
        """Entries idle for longer than reclaim_after in other consumers' hands."""
        cursor, entries, *_ = await self._redis.xautoclaim(
            self.stream,
            self.GROUP,
            self.consumer,
            min_idle_time=self._reclaim_ms,
            start_id=self._reclaim_cursor,
            count=count,
        )
        self._reclaim_cursor = cursor.decode() if isinstance(cursor, bytes) else cursor
        if self._reclaim_cursor == "0-0":
            # The whole pending list was scanned: wait before the next scan.
            self._next_reclaim = time.monotonic() + self._reclaim_every
        items = await self._items(entries, redelivered=True)
        if items:
            log.info("took over %d delivery item(s) from a stopped consumer", len(items))
        return items

    async def consume(self, count: int, block_seconds: float) -> list[WorkItem]:
        if time.monotonic() >= self._next_reclaim:
            reclaimed = await self._reclaim(count)
            if reclaimed:
                return reclaimed
        response = await self._redis.xreadgroup(
            self.GROUP,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=max(1, int(block_seconds * 1000)),
        )
        items: list[WorkItem] = []
        for _stream, entries in response or ():
            items += await self._items(entries, redelivered=False)
        return items

    async def ack(self, items: Sequence[WorkItem]) -> None:
        ids = [item.entry_id for item in items if item.entry_id]
        if ids:
            await self._redis.xack(self.stream, self.GROUP, *ids)

    def interrupt(self) -> None:
        # Deliberately nothing: cancelling a blocked XREADGROUP could drop entries Redis
        # already handed over, so a stopping worker waits out the short block instead.
        return None

    async def pending_count(self) -> int:
        """Entries handed out and not yet acknowledged (all consumers)."""
        summary = await self._redis.xpending(self.stream, self.GROUP)
        return int(summary["pending"])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._started:
                await self._leave_group()
        finally:
            await self._redis.close()
            await self._redis.connection_pool.disconnect()

    async def _leave_group(self) -> None:
        """Remove our consumer name if it holds nothing (deleting it would drop its
        pending entries, so a consumer with unacknowledged entries stays for takeover)."""
        try:
            for consumer in await self._redis.xinfo_consumers(self.stream, self.GROUP):
                name = consumer["name"]
                name = name.decode() if isinstance(name, bytes) else name
                if name == self.consumer and consumer["pending"] == 0:
                    await self._redis.xgroup_delconsumer(self.stream, self.GROUP, name)
        except Exception as error:  # housekeeping on the way out
            log.warning("could not leave the consumer group: %s", type(error).__name__)
