""" "How is everything at home?" for a household of 50 devices: LG's v2 placement API (one
call, per-device callbacks gathered by requestId) against one status call per device.

Starts the simulator and the connector (the LG callback receiver) on free ports, grows
the demo household to 50 devices, then asks ROUNDS times each way and prints one table:
time to the full answer (p50/p95) and LG calls per question. With Redis reachable
(``TEST_REDIS_URL`` / ``REDIS_URL``, default 127.0.0.1:6379/15) the placement answers
wake the waiting turn through Redis pub/sub; the database-polling path (no Redis) is
measured too.

    python -m devstack.bench_home          # part of `make bench`
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from assistant.correlation import Gatherer, InProcessWaker, RedisWaker, Waker
from assistant.settings import load_settings
from assistant.storage.db import create_engine, create_schema
from assistant.storage.placement import PlacementRepository
from devstack.bench import percentile, print_table
from devstack.processes import ROOT, Ports, Process, Stack
from lgcloud.placement import PlacementClient
from lgcloud.thinq import ThinQAuth, ThinQClient

HOUSEHOLD = 50
ROUNDS = 10
CONCURRENCY = 10
TYPES = (
    "DEVICE_WASHER",
    "DEVICE_DRYER",
    "DEVICE_STYLER",
    "DEVICE_DISH_WASHER",
    "DEVICE_OVEN",
    "DEVICE_REFRIGERATOR",
    "DEVICE_AIR_CONDITIONER",
    "DEVICE_AIR_PURIFIER",
)


class LgOnlyStack(Stack):
    """The simulated cloud and the connector only: no model, no Rasa."""

    def plan(self) -> list[Process]:
        return [p for p in super().plan() if p.name in ("simulator", "connector")]


def _redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL")
    url = url or "redis://127.0.0.1:6379/15"
    try:
        import redis

        redis.Redis.from_url(url, socket_timeout=1).ping()
    except Exception:
        return None
    return url


async def _timed(rounds: int, ask: Callable[[], Awaitable[None]]) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await ask()
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _measure(stack: Stack, redis_url: str | None, prefix: str) -> list[tuple[str, str]]:
    env = stack.child_env()
    settings = load_settings(env)
    sim = f"http://127.0.0.1:{stack.ports.simulator}"
    auth = ThinQAuth(settings.demo_thinq_token or "", "US")
    thinq = settings.thinq
    v1 = ThinQClient(thinq.base_url, thinq.service_id, thinq.service_key, read_retries=0)
    v2 = PlacementClient(thinq.base_url, thinq.service_id, thinq.service_key)
    engine = create_engine(settings.database_url)
    await create_schema(engine)
    repository = PlacementRepository(engine)
    rows: list[tuple[str, str]] = []
    async with httpx.AsyncClient(base_url=sim, timeout=30) as http:
        for n in range(HOUSEHOLD - len((await http.get("/sim/devices")).json())):
            kind = TYPES[n % len(TYPES)]
            added = await http.post(
                "/sim/devices", json={"deviceType": kind, "alias": f"Bench {n + 1}"}
            )
            added.raise_for_status()
        devices = [d["deviceId"] for d in (await http.get("/sim/devices")).json()]
        assert len(devices) == HOUSEHOLD, len(devices)

        async def calls() -> int:
            return len((await http.get("/sim/calls")).json())

        async def per_device_sequential() -> None:
            for device in devices:
                await v1.get_status(auth, device)

        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(device: str) -> None:
            async with limit:
                await v1.get_status(auth, device)

        async def per_device_concurrent() -> None:
            await asyncio.gather(*(one(d) for d in devices))

        def placement(waker: Waker) -> Callable[[], Awaitable[None]]:
            gatherer = Gatherer(repository, waker, poll_seconds=0.1)

            async def ask() -> None:
                request_id = await v2.statuses(auth)
                gathered = await gatherer.gather(
                    request_id, devices, 10.0, thinq_user="demo", kind="status"
                )
                assert gathered.complete, gathered.missing

            return ask

        wakers: list[tuple[str, Waker]] = [("v2 placement, database polling", InProcessWaker())]
        if redis_url:
            wakers.insert(0, ("v2 placement, Redis wake-up", RedisWaker(redis_url, prefix)))
        for name, waker in wakers:
            await waker.start()
            await placement(waker)()  # warm-up
            before = await calls()
            times = await _timed(ROUNDS, placement(waker))
            rows.append((name, _row(times, (await calls() - before) / ROUNDS)))
            await waker.close()
        if not redis_url:
            rows.append(("v2 placement, Redis wake-up", "not measured: no Redis reachable"))
        for name, ask in (
            (f"v1, one status call per device ({HOUSEHOLD} in turn)", per_device_sequential),
            (f"v1, one status call per device ({CONCURRENCY} at a time)", per_device_concurrent),
        ):
            await ask()  # warm-up
            before = await calls()
            times = await _timed(ROUNDS, ask)
            rows.append((name, _row(times, (await calls() - before) / ROUNDS)))
    await v1.aclose()
    await v2.aclose()
    await engine.dispose()
    return rows


def _row(times: list[float], calls: float) -> str:
    return f"{statistics.median(times):7.0f} | {percentile(times, 95):7.0f} | {calls:5.1f}"


def main() -> None:
    redis_url = _redis_url()
    prefix = f"benchhome{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as state:
        env = {"SIM_TIME_SCALE": "0"}
        if redis_url:
            env.update({"REDIS_URL": redis_url, "CONNECTOR_REDIS_PREFIX": prefix})
        stack = LgOnlyStack(
            model_path=ROOT / "models", ports=Ports.free(), state_dir=Path(state), env=env
        )
        with stack:
            rows = asyncio.run(_measure(stack, redis_url, prefix))
    print(f'\n"How is everything at home?" with {HOUSEHOLD} devices, {ROUNDS} rounds each')
    print_table("method", " p50 ms | p95 ms  | LG calls per question", rows)


if __name__ == "__main__":
    main()
