"""connector.queue: the in-process queue, and Redis streams with a consumer group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis

from connector.queue import INBOUND, OUTBOX, InProcessQueue, RedisStreamQueue

pytestmark = pytest.mark.redis


async def test_in_process_queue_batches_and_times_out() -> None:
    queue = InProcessQueue()
    await queue.start()
    assert await queue.consume(10, block_seconds=0.01) == []
    await queue.publish([(INBOUND, "m1"), (OUTBOX, "o1"), (INBOUND, "m2")])
    first = await queue.consume(2, block_seconds=0.1)
    assert [(i.kind, i.ref, i.redelivered) for i in first] == [
        (INBOUND, "m1", False),
        (OUTBOX, "o1", False),
    ]
    await queue.publish_recovered([(INBOUND, "m3")])
    rest = await queue.consume(10, block_seconds=0.1)
    assert [(i.ref, i.redelivered) for i in rest] == [("m2", False), ("m3", True)]
    await queue.ack(first + rest)
    with pytest.raises(ValueError):
        await queue.publish([("nonsense", "x")])
    await queue.close()


@pytest.fixture
async def make_queue(
    redis_url: str, redis_key_prefix: str
) -> AsyncIterator[Callable[..., RedisStreamQueue]]:
    made: list[RedisStreamQueue] = []

    def make(**kwargs: object) -> RedisStreamQueue:
        queue = RedisStreamQueue(
            aioredis.Redis.from_url(redis_url), prefix=redis_key_prefix, **kwargs
        )
        made.append(queue)
        return queue

    yield make
    for queue in made:
        await queue.close()


async def test_each_entry_goes_to_one_consumer_of_the_group(make_queue) -> None:
    a, b = make_queue(consumer="a"), make_queue(consumer="b")
    await a.start()
    await b.start()  # the group exists already: BUSYGROUP is not an error
    await a.publish([(INBOUND, f"m{i}") for i in range(10)])
    got_a = await a.consume(6, block_seconds=0.5)
    got_b = await b.consume(10, block_seconds=0.5)
    assert len(got_a) == 6 and len(got_b) == 4
    assert sorted(i.ref for i in got_a + got_b) == sorted(f"m{i}" for i in range(10))
    assert all(i.entry_id and not i.redelivered for i in got_a + got_b)
    assert await a.consume(10, block_seconds=0.05) == []
    assert await a.pending_count() == 10
    await a.ack(got_a)
    await b.ack(got_b)
    assert await a.pending_count() == 0


async def test_entries_of_a_stopped_consumer_are_taken_over(make_queue) -> None:
    dead = make_queue(consumer="dead", reclaim_after_seconds=0.2)
    alive = make_queue(consumer="alive", reclaim_after_seconds=0.2)
    await dead.start()
    await alive.start()
    await dead.publish([(OUTBOX, "o1"), (OUTBOX, "o2")])
    taken = await dead.consume(10, block_seconds=0.5)
    assert len(taken) == 2  # and never acknowledged: the consumer "dies"
    await asyncio.sleep(0.05)
    assert await alive.consume(10, block_seconds=0.05) == []  # not idle long enough yet
    await asyncio.sleep(0.3)
    reclaimed = await alive.consume(10, block_seconds=0.05)
    assert sorted(i.ref for i in reclaimed) == ["o1", "o2"]
    assert all(i.redelivered for i in reclaimed)
    await alive.ack(reclaimed)
    assert await alive.pending_count() == 0


async def test_a_group_created_after_publishing_sees_earlier_entries(make_queue) -> None:
    publisher = make_queue(consumer="receiver")
    await publisher.publish([(INBOUND, "early")])  # no group yet: XADD creates the stream
    consumer = make_queue(consumer="worker")
    await consumer.start()
    assert [i.ref for i in await consumer.consume(10, block_seconds=0.5)] == ["early"]


async def test_unusable_entries_are_acknowledged_and_skipped(
    make_queue, redis_url: str, redis_key_prefix: str
) -> None:
    queue = make_queue(consumer="w")
    await queue.start()
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.xadd(queue.stream, {"something": "else"})
    finally:
        await client.close()
    await queue.publish([(INBOUND, "m1")])
    assert [i.ref for i in await queue.consume(10, block_seconds=0.5)] == ["m1"]
    assert await queue.pending_count() == 1  # only m1 is waiting for its ack


async def test_close_leaves_the_group_only_when_holding_nothing(make_queue, redis_url: str) -> None:
    idle, busy = make_queue(consumer="idle"), make_queue(consumer="busy")
    await idle.start()
    await busy.start()
    await busy.publish([(INBOUND, "m1")])
    assert len(await busy.consume(10, block_seconds=0.5)) == 1
    assert await idle.consume(10, block_seconds=0.05) == []
    stream = idle.stream
    await idle.close()
    await busy.close()
    client = aioredis.Redis.from_url(redis_url)
    try:
        names = {c["name"] for c in await client.xinfo_consumers(stream, RedisStreamQueue.GROUP)}
    finally:
        await client.close()
    # "busy" keeps its unacknowledged entry for a takeover; "idle" is gone.
    assert names == {b"busy"}
