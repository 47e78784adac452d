"""Several connector processes on Redis + PostgreSQL: one receiver, two workers.

Real subprocesses (``python -m connector --no-worker`` / ``--no-receiver``), real
HTTP. One worker is stopped mid-stream and started again:

* kill -9: nothing is lost; the channel may see a message twice only if the killed
  worker was sending it at that moment (the row stayed 'sending', its claim was taken
  over after reclaim_after). The partner's idempotent view has every message once.
* SIGTERM: the worker finishes what it holds, so not even the raw view has a repeat.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from assistant.storage import Storage, TokenCipher
from connector.store import DeliveryStore
from devstack.processes import ROOT, free_port
from tests.connector_support import ChannelSink, connector_env, push_body, seed_subscriber
from tests.db_fixtures import reset_postgres_tables

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CALLBACKS = 200
SENDERS = 20


@dataclass
class Cluster:
    env: dict[str, str]
    logs: Path
    sink: ChannelSink
    store: DeliveryStore
    receiver_url: str = ""
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def spawn(self, name: str, *flags: str, **env: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "connector", *flags],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **self.env, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    async def wait_ready(self, name: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes[name]
        while "connector ready" not in self.log(name):
            if process.poll() is not None:
                raise AssertionError(f"{name} exited:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not ready:\n{self.log(name)}")
            await asyncio.sleep(0.05)

    async def post_all(self, on_progress: dict[int, object]) -> None:
        """Post CALLBACKS callbacks, 10 at a time; run ``on_progress[n]`` after n accepted."""
        secret = self.env["LG_CALLBACK_SECRET"]
        accepted = 0
        async with httpx.AsyncClient(timeout=30) as http:
            for start in range(0, CALLBACKS, 10):
                bodies = [
                    push_body(
                        f"washer-{i % SENDERS}", f"user-{i % SENDERS}", message_id=f"lg-{i:04d}"
                    )
                    for i in range(start, start + 10)
                ]
                responses = await asyncio.gather(
                    *(
                        http.post(self.receiver_url, params={"secret": secret}, json=body)
                        for body in bodies
                    )
                )
                assert [r.status_code for r in responses] == [200] * 10
                assert {r.json()["status"] for r in responses} == {"accepted"}
                accepted += 10
                action = on_progress.get(accepted)
                if action is not None:
                    await action()  # type: ignore[operator]

    async def wait_all_delivered(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (await self.store.count_by_state())["delivered"] < CALLBACKS:
            if time.monotonic() > deadline:
                counts = await self.store.count_by_state()
                logs = "\n".join(f"--- {n}\n{self.log(n)[-3000:]}" for n in self.processes)
                raise AssertionError(f"not all delivered: {counts}\n{logs}")
            await asyncio.sleep(0.1)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
async def cluster(
    tmp_path: Path,
    postgres_database_url: str,
    redis_url: str,
    redis_key_prefix: str,
) -> AsyncIterator[Cluster]:
    reset_postgres_tables(postgres_database_url)
    storage = await Storage.open_url(
        postgres_database_url, TokenCipher([TokenCipher.generate_key()])
    )
    sink = ChannelSink()
    sink.delay = 0.02  # so a worker always has sends in flight
    await sink.start()
    for i in range(SENDERS):
        await seed_subscriber(storage, sender=f"sender-{i}", user=f"user-{i}", device=f"washer-{i}")
    env = connector_env(
        tmp_path,
        postgres_database_url,
        TokenCipher.generate_key(),
        sink.url,
        REDIS_URL=redis_url,
        CONNECTOR_REDIS_PREFIX=redis_key_prefix,
        DELIVERY_MAX_ATTEMPTS="50",
        LOG_LEVEL="INFO",
    )
    (tmp_path / "logs").mkdir()
    running = Cluster(env, tmp_path / "logs", sink, DeliveryStore(storage.engine))
    port = free_port()
    running.receiver_url = f"http://127.0.0.1:{port}/lg/callbacks"
    try:
        running.spawn("receiver", "--no-worker", CONNECTOR_PORT=str(port))
        running.spawn("worker-1", "--no-receiver")
        running.spawn("worker-2", "--no-receiver")
        await asyncio.gather(*(running.wait_ready(n) for n in ("receiver", "worker-1", "worker-2")))
        yield running
    finally:
        running.stop_all()
        await sink.stop()
        await storage.close()


async def assert_each_delivered_once(cluster: Cluster) -> None:
    rows = await cluster.store.list_outbox(limit=10 * CALLBACKS)
    assert len(rows) == CALLBACKS  # one per (callback, conversation): the unique constraint
    assert {r.state for r in rows} == {"delivered"}
    assert len({(r.message_id, r.sender_id) for r in rows}) == CALLBACKS
    # What the partner's idempotent receiver shows: each outbox id exactly once.
    seen = [m["message_id"] for m in cluster.sink.messages()]
    assert sorted(seen) == sorted(r.id for r in rows)


async def test_kill_9_mid_stream_loses_nothing(cluster: Cluster) -> None:
    killed_at: list[float] = []

    async def kill_worker_1() -> None:
        await asyncio.sleep(0.1)  # let it get busy with what was just posted
        killed_at.append(time.monotonic())
        cluster.processes["worker-1"].send_signal(signal.SIGKILL)
        # Waited for off the loop: the sink in this process must keep answering.
        await asyncio.to_thread(cluster.processes["worker-1"].wait, 15)
        cluster.spawn("worker-1-again", "--no-receiver")

    await cluster.post_all({60: kill_worker_1})
    await cluster.wait_ready("worker-1-again")
    await cluster.wait_all_delivered()
    await assert_each_delivered_once(cluster)
    # A repeat at the channel can only be a send that was under way when the worker died.
    for outbox_id, count in cluster.sink.raw.items():
        if count > 1:
            assert cluster.sink.arrivals[outbox_id][0] <= killed_at[0], outbox_id


async def test_sigterm_mid_stream_finishes_in_flight_sends_without_repeats(
    cluster: Cluster,
) -> None:
    async def stop_worker_1() -> None:
        await asyncio.sleep(0.1)
        cluster.processes["worker-1"].send_signal(signal.SIGTERM)
        # Waited for off the loop: the sink in this process must keep answering the
        # sends the stopping worker finishes.
        assert await asyncio.to_thread(cluster.processes["worker-1"].wait, 15) == 0
        cluster.spawn("worker-1-again", "--no-receiver")

    await cluster.post_all({60: stop_worker_1})
    await cluster.wait_ready("worker-1-again")
    await cluster.wait_all_delivered()
    await assert_each_delivered_once(cluster)
    assert cluster.sink.redeliveries() == 0
    # Both workers took part before the stop (the stopped one says what it did).
    assert "delivery worker stopped: planned" in cluster.log("worker-1")
    assert "delivered 0," not in cluster.log("worker-1")
