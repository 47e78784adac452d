"""Benchmark: LG callbacks in, user messages out, through the real connector process.

``python -m devstack.bench_callbacks [--count N] [--rate R] [--redis URL --database URL]``

Seeds a database with S linked conversations (each with its own device and push
subscription), starts ``python -m connector`` (receiver + delivery worker) on a
free port with its CALLBACK_URL pointing at a sink inside this process, then fires
N DEVICE_PUSH callbacks at a fixed rate (open loop, so queueing shows up as
latency instead of being hidden by a slower sender). Each callback carries a
unique push code; the delivered text names it, which ties every message at the
sink back to the callback that caused it.

Prints one table: callbacks/s accepted, delivered/s, callback->delivered
p50/p95/p99, lost and duplicated messages. Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
from aiohttp import web

from assistant.settings import demo_callback_secret
from assistant.storage import DeviceRecord, Storage, TokenCipher
from devstack.processes import ROOT, free_port

CODE = re.compile(r"bench (\d+)")


@dataclass
class Sink:
    """Stands for the partner's CALLBACK_URL endpoint; records when each message arrived."""

    arrivals: dict[int, float] = field(default_factory=dict)
    received: Counter[int] = field(default_factory=Counter)
    unparsed: int = 0

    async def receive(self, request: web.Request) -> web.Response:
        body = await request.json()
        now = time.perf_counter()
        found = CODE.search(str(body.get("text", "")))
        if found is None:
            self.unparsed += 1
        else:
            number = int(found.group(1))
            self.received[number] += 1
            self.arrivals.setdefault(number, now)
        return web.json_response({"ok": True})


async def seed(database_url: str, key: str, senders: int) -> None:
    storage = await Storage.open_url(database_url, TokenCipher([key]))
    now = datetime.now(timezone.utc)
    try:
        for i in range(senders):
            user, sender, device = f"bench-user-{i}", f"bench-sender-{i}", f"bench-washer-{i}"
            await storage.accounts.link(
                sender,
                thinq_user=user,
                token="x" * 48,
                country_code="US",
                region="aic",
                channel="callback",
            )
            record = DeviceRecord(device, "DEVICE_WASHER", "F3", f"Washer {i}", True)
            await storage.devices.replace_device_list(user, [record], now)
            await storage.subscriptions.add(sender, user, device, "push", now)
    finally:
        await storage.close()


def callback(number: int, senders: int) -> dict:
    i = number % senders
    return {
        "messageId": f"bench-{number:08d}",
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f"),
        "push": {
            "pushType": "DEVICE_PUSH",
            "serviceId": "bench",
            "deviceId": f"bench-washer-{i}",
            # Not in the wording table: the fallback wording spells the code out.
            "pushCode": f"BENCH_{number:08d}",
            "deviceType": "DEVICE_WASHER",
            "userList": [f"bench-user-{i}"],
        },
    }


async def fire(url: str, count: int, rate: float, senders: int) -> tuple[dict[int, float], int]:
    """Send ``count`` callbacks at ``rate``/s; return send times and how many were refused."""
    sent: dict[int, float] = {}
    refused = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(number: int) -> None:
            nonlocal refused
            sent[number] = time.perf_counter()
            async with http.post(url, json=callback(number, senders)) as response:
                await response.read()
                if response.status != 200:
                    refused += 1

        start = time.perf_counter()
        tasks = []
        for number in range(count):
            due = start + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(number)))
        await asyncio.gather(*tasks)
    return sent, refused


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run(args: argparse.Namespace) -> int:
    state = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    database_url = args.database or f"sqlite+aiosqlite:///{state / 'assistant.db'}"
    key = TokenCipher.generate_key()
    await seed(database_url, key, args.senders)

    sink = Sink()
    app = web.Application()
    app.router.add_post("/callback", sink.receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sink_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", sink_port).start()

    ports = [free_port() for _ in range(args.processes)]
    service_key = "bench-service-key"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "STATE_DIR": str(state),
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEY": key,
        "DEMO_MODE": "1",
        "THINQ_SERVICE_ID": "bench",
        "THINQ_SERVICE_KEY": service_key,
        "DEMO_THINQ_TOKEN": "bench-token",
        "CALLBACK_URL": f"http://127.0.0.1:{sink_port}/callback",
        "REDIS_URL": args.redis or "",
        "LOG_LEVEL": "WARNING",
    }
    procs = []
    try:
        procs.extend(spawn_connector(state, env, port) for port in ports)
        async with aiohttp.ClientSession() as http:
            for port in ports:
                await wait_ready(http, f"http://127.0.0.1:{port}/health", procs)
        secret = demo_callback_secret(service_key)
        # One receiver address per process, as a load balancer would spread them.
        urls = [f"http://127.0.0.1:{p}/lg/callbacks?secret={secret}" for p in ports]
        started = time.perf_counter()
        per = args.count // len(urls)
        results = await asyncio.gather(
            *(
                fire_offset(url, i * per, per, args.rate / len(urls), args.senders)
                for i, url in enumerate(urls)
            )
        )
        accepted_s = time.perf_counter() - started
        sent = {k: v for r in results for k, v in r[0].items()}
        refused = sum(r[1] for r in results)
        deadline = time.perf_counter() + args.drain_seconds
        # Polls a counter the sink's handler fills; an Event per message would cost more.
        while len(sink.arrivals) < len(sent) and time.perf_counter() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        latencies = [(sink.arrivals[n] - sent[n]) * 1000 for n in sent if n in sink.arrivals]
        first, last = min(sent.values()), max(sink.arrivals.values(), default=started)
        lost = len(sent) - len(sink.arrivals)
        duplicated = sum(c - 1 for c in sink.received.values() if c > 1)
        rows = [
            ("configuration", describe(args, database_url)),
            ("callbacks sent", f"{len(sent)} at a target of {args.rate:.0f}/s"),
            ("callbacks accepted/s", f"{(len(sent) - refused) / accepted_s:.0f}"),
            ("refused (non-200)", str(refused)),
            ("messages delivered/s", f"{len(sink.arrivals) / max(last - first, 1e-9):.0f}"),
            ("callback->delivered p50", f"{statistics.median(latencies):.1f} ms"),
            ("callback->delivered p95", f"{percentile(latencies, 0.95):.1f} ms"),
            ("callback->delivered p99", f"{percentile(latencies, 0.99):.1f} ms"),
            ("lost", str(lost)),
            ("duplicated", str(duplicated + sink.unparsed)),
        ]
        width = max(len(r[0]) for r in rows)
        print(f"\n{'metric'.ljust(width)} | value\n{'-' * width}-|------")
        for name, value in rows:
            print(f"{name.ljust(width)} | {value}")
        return 0 if lost == 0 and duplicated == 0 and refused == 0 else 1
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        await runner.cleanup()


def spawn_connector(state: Path, env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    with (state / f"connector-{port}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "connector"],
            cwd=ROOT,
            env={**env, "CONNECTOR_PORT": str(port)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def fire_offset(
    url: str, offset: int, count: int, rate: float, senders: int
) -> tuple[dict[int, float], int]:
    sent, refused = await fire(url, count, rate, senders)
    return {offset + k: v for k, v in sent.items()}, refused


def describe(args: argparse.Namespace, database_url: str) -> str:
    database = database_url.split(":", 1)[0]
    queue = "Redis streams" if args.redis else "in-process queue"
    return f"{args.processes} connector process(es), {database}, {queue}"


async def wait_ready(http: aiohttp.ClientSession, url: str, procs: list) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a connector process exited during start-up; see its log")
        try:
            async with http.get(url) as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError(f"connector not ready at {url}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.bench_callbacks")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0, help="callbacks per second")
    parser.add_argument("--senders", type=int, default=200)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--database", default=None, help="DATABASE_URL (default: SQLite)")
    parser.add_argument("--redis", default=None, help="REDIS_URL (default: in-process queue)")
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.processes > 1 and not args.redis:
        parser.error("several connector processes need --redis (the in-process queue is local)")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
