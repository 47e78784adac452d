"""Hands work to delivery workers: a Redis stream with a consumer group, or in-process.

An item names either a stored LG callback to plan (``cb:<message id>``) or an
outbox row to attempt (``ob:<row id>``). With Redis, each item goes to one worker
of the group; an item a dead worker took but never acknowledged is taken over
(XAUTOCLAIM) after ``reclaim_after``. The database stays the record of truth:
every state change there is compare-and-set, so an item handed out twice is sent once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from typing import Protocol

STREAM = "lgconn:deliveries"
GROUP = "delivery"


class DeliveryQueue(Protocol):
    async def publish(self, items: list[str]) -> None: ...

    async def take(self, count: int, block_ms: int) -> list[tuple[str, str]]:
        """Up to ``count`` items as (entry id, item); waits up to ``block_ms`` for one."""
        ...

    async def ack(self, entry_ids: list[str]) -> None: ...

    async def close(self) -> None: ...


class InProcessQueue:
    """The no-Redis default: one process receives and delivers. Restart recovery comes
    from the database (unplanned callbacks and unsent rows are queued again)."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._seq = 0

    async def publish(self, items: list[str]) -> None:
        for item in items:
            self._queue.put_nowait(item)

    async def take(self, count: int, block_ms: int) -> list[tuple[str, str]]:
        try:
            first = await asyncio.wait_for(self._queue.get(), block_ms / 1000)
        except asyncio.TimeoutError:
            return []
        items = [first]
        while len(items) < count and not self._queue.empty():
            items.append(self._queue.get_nowait())
        out = []
        for item in items:
            self._seq += 1
            out.append((str(self._seq), item))
        return out

    async def ack(self, entry_ids: list[str]) -> None:
        return None

    async def close(self) -> None:
        return None


class RedisStreamQueue:
    def __init__(self, url: str, *, reclaim_after_ms: int, prefix: str = "") -> None:
        import redis.asyncio as redis  # only needed when Redis is configured

        self._redis = redis.from_url(url, decode_responses=True)
        self._stream = f"{prefix}{STREAM}"
        self._consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._reclaim_after_ms = reclaim_after_ms
        self._ready = False

    async def _ensure_group(self) -> None:
        if self._ready:
            return
        try:
            await self._redis.xgroup_create(self._stream, GROUP, id="0", mkstream=True)
        except Exception as exc:  # redis.ResponseError; imported lazily
            if "BUSYGROUP" not in str(exc):
                raise
        self._ready = True

    async def publish(self, items: list[str]) -> None:
        if not items:
            return
        await self._ensure_group()
        async with self._redis.pipeline(transaction=False) as pipe:
            for item in items:
                pipe.xadd(self._stream, {"item": item})
            await pipe.execute()

    async def take(self, count: int, block_ms: int) -> list[tuple[str, str]]:
        await self._ensure_group()
        # Entries a dead consumer took but never acknowledged come first.
        _, claimed, *_ = await self._redis.xautoclaim(
            self._stream, GROUP, self._consumer, self._reclaim_after_ms, "0-0", count=count
        )
        entries = [(entry_id, fields) for entry_id, fields in claimed if fields]
        if not entries:
            response = await self._redis.xreadgroup(
                GROUP, self._consumer, {self._stream: ">"}, count=count, block=block_ms
            )
            for _, stream_entries in response or []:
                entries.extend(stream_entries)
        return [(entry_id, fields["item"]) for entry_id, fields in entries]

    async def ack(self, entry_ids: list[str]) -> None:
        if entry_ids:
            await self._redis.xack(self._stream, GROUP, *entry_ids)

    async def close(self) -> None:
        await self._redis.close()
