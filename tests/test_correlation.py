"""Gathering a placement request's per-device callbacks: out of order, duplicated, late,
missing, before the request is registered; woken in-process or through Redis; on SQLite
and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from assistant.correlation import Gatherer, InProcessWaker, RedisWaker, Waker
from assistant.storage.db import create_engine, create_schema
from assistant.storage.models import utcnow
from assistant.storage.placement import DeviceResult, PlacementRepository
from tests.db_fixtures import (  # noqa: F401 - fixtures are found by name
    database_url,
    postgres_database_url,
    postgres_server_url,
    redis_key_prefix,
    redis_server_url,
    redis_url,
)

DEVICES = ("washer", "dryer", "fridge", "oven")
# With wake-ups working, a gather ends long before this poll interval would let it.
SLOW_POLL = 30.0


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[PlacementRepository]:  # noqa: F811
    engine = create_engine(database_url)
    await create_schema(engine)
    try:
        yield PlacementRepository(engine)
    finally:
        await engine.dispose()


def answer(request_id: str, device: str, ok: bool = True, **extra: object) -> DeviceResult:
    return DeviceResult(
        request_id=request_id,
        device_id=device,
        push_type="DEVICE_STATUS",
        ok=ok,
        device_type="DEVICE_WASHER",
        error_code=None if ok else "2301",
        result={"runState": {"currentState": "RUNNING"}} if ok else None,
        **extra,  # type: ignore[arg-type]
    )


async def deliver(repository: PlacementRepository, waker: Waker, *results: DeviceResult) -> None:
    """What the connector does with each callback: store it, then ring."""
    for result in results:
        await repository.record(result)
        await waker.notify(result.request_id)


def gathering(
    gatherer: Gatherer, request_id: str, timeout: float = 10.0, expected=DEVICES
) -> asyncio.Task:
    return asyncio.ensure_future(
        gatherer.gather(request_id, expected, timeout, thinq_user="demo", kind="status")
    )


async def test_out_of_order_and_duplicated_callbacks_complete_the_request(repository) -> None:
    waker = InProcessWaker()
    gatherer = Gatherer(repository, waker, poll_seconds=SLOW_POLL)
    task = gathering(gatherer, "r1")
    await asyncio.sleep(0.05)
    await deliver(
        repository,
        waker,
        answer("r1", "oven"),
        answer("r1", "washer"),
        answer("r1", "washer"),  # LG sent it twice
        answer("r1", "fridge", ok=False),
        answer("r1", "dryer"),
    )
    gathered = await asyncio.wait_for(task, 5)
    assert gathered.complete and gathered.missing == ()
    assert set(gathered.answers) == set(DEVICES)
    assert sorted(gathered.confirmed) == ["dryer", "oven", "washer"]
    assert set(gathered.refused) == {"fridge"} and gathered.refused["fridge"].error_code == "2301"
    assert len(await repository.results("r1")) == 4  # the duplicate is stored once


async def test_callbacks_that_beat_the_registration_are_not_lost(repository) -> None:
    waker = InProcessWaker()
    # LG can call back before the 202's requestId has even been registered.
    await deliver(repository, waker, *(answer("r2", d) for d in DEVICES))
    gathered = await asyncio.wait_for(
        Gatherer(repository, waker, poll_seconds=SLOW_POLL).gather(
            "r2", DEVICES, 10, thinq_user="demo", kind="status"
        ),
        5,
    )
    assert gathered.complete


async def test_a_device_that_never_answers_is_reported_and_its_late_answer_kept(
    repository,
) -> None:
    waker = InProcessWaker()
    gatherer = Gatherer(repository, waker, poll_seconds=0.05)
    task = gathering(gatherer, "r3", timeout=0.5)
    await deliver(repository, waker, *(answer("r3", d) for d in DEVICES[:3]))
    gathered = await task
    assert not gathered.complete and gathered.missing == ("oven",)
    assert len(gathered.answers) == 3
    request = await repository.request("r3")
    assert request is not None and request.reported_missing == ("oven",)

    late = await repository.record(answer("r3", "oven"))
    assert late.new and late.late and late.request is not None
    assert "oven" in (late.request.reported_missing or ())
    again = await repository.record(answer("r3", "oven"))
    assert not again.new  # a duplicate of the late answer is not news either


async def test_answers_from_devices_nobody_asked_about_are_set_aside(repository) -> None:
    waker = InProcessWaker()
    gatherer = Gatherer(repository, waker, poll_seconds=SLOW_POLL)
    task = gathering(gatherer, "r4", expected=("washer",))
    await asyncio.sleep(0.05)
    await deliver(repository, waker, answer("r4", "stranger"), answer("r4", "washer"))
    gathered = await asyncio.wait_for(task, 5)
    assert gathered.complete and gathered.unexpected == ("stranger",)
    assert set(gathered.answers) == {"washer"}


async def test_requests_do_not_see_each_others_results(repository) -> None:
    waker = InProcessWaker()
    gatherer = Gatherer(repository, waker, poll_seconds=0.05)
    mine, other = gathering(gatherer, "r5", timeout=0.5), gathering(gatherer, "r6", timeout=0.5)
    await deliver(repository, waker, *(answer("r6", d) for d in DEVICES))
    assert (await mine).answers == {} and (await other).complete


async def test_without_a_wake_up_the_database_is_polled(repository) -> None:
    """Receiver in another process and no Redis: the result is found by polling."""
    gatherer = Gatherer(repository, InProcessWaker(), poll_seconds=0.05)
    task = gathering(gatherer, "r7", expected=("washer",))
    await asyncio.sleep(0.1)
    await repository.record(answer("r7", "washer"))  # stored, nobody rang
    assert (await asyncio.wait_for(task, 5)).complete


@pytest.mark.redis
async def test_redis_wakes_a_waiter_in_another_process(
    repository,
    redis_url: str,  # noqa: F811
    redis_key_prefix: str,  # noqa: F811
) -> None:
    receiver_side, waiter_side = (
        RedisWaker(redis_url, redis_key_prefix),
        RedisWaker(redis_url, redis_key_prefix),
    )
    await receiver_side.start()
    await waiter_side.start()
    try:
        await asyncio.sleep(0.2)  # both subscribed
        gatherer = Gatherer(repository, waiter_side, poll_seconds=SLOW_POLL)
        task = gathering(gatherer, "r8", expected=("washer", "dryer"))
        await asyncio.sleep(0.1)
        await deliver(repository, receiver_side, answer("r8", "washer"), answer("r8", "dryer"))
        assert (await asyncio.wait_for(task, 5)).complete
    finally:
        await receiver_side.close()
        await waiter_side.close()


async def test_old_requests_and_results_are_pruned(repository) -> None:
    await repository.record(answer("r9", "washer"))
    await repository.expect("r9", "demo", "status", ["washer"], utcnow())
    assert await repository.prune(timedelta(days=1)) == 0
    assert await repository.prune(timedelta(days=1), now=utcnow() + timedelta(days=2)) == 2
    assert await repository.results("r9") == [] and await repository.request("r9") is None


@pytest.mark.parametrize("bad", ["", "x" * 200, None])
async def test_bad_ids_are_refused(repository, bad) -> None:
    with pytest.raises(ValueError):
        await repository.record(answer(bad, "washer"))  # type: ignore[arg-type]
