"""Benchmark: LG callbacks in, user messages out, through the real connector process.

``python -m devstack.bench_callbacks [--count N] [--rate R] [--processes P]
[--postgres SERVER_URL] [--redis URL]``, or ``--suite`` for the three configurations
the README reports (``make bench`` runs that).

Seeds a database with S linked conversations (each with its own device and push
subscription), starts ``python -m connector`` (receiver + delivery worker) on a
free port with its CALLBACK_URL pointing at a sink inside this process, then fires
N DEVICE_PUSH callbacks at a fixed rate (open loop, so queueing shows up as
latency instead of being hidden by a slower sender). Each callback carries a
unique push code; the delivered text names it, which ties every message at the
sink back to the callback that caused it.

With ``--postgres`` it creates a scratch database on that server and drops it after;
with ``--redis`` its keys carry a prefix of their own, deleted after. With
``--processes P`` (needs Redis) one receiver-only process and P-1 worker-only processes
run. A warm-up (default 1000 callbacks, not measured) comes first: pools fill, caches warm.

Prints a table: callbacks/s accepted, delivered/s, callback->delivered p50/p95/p99, lost
and duplicated messages. Exit status 1 if anything was lost, duplicated or refused.
Loopback only; bounded in time. The load generator and the sink run in this process, on
the same 2 cores as the connector: the figures include that competition.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import uvloop
from aiohttp import web
from sqlalchemy.engine import make_url

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

    def forget(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            self.arrivals.pop(number, None)
            self.received.pop(number, None)

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


async def fire(
    url: str, count: int, rate: float, senders: int, first: int = 0
) -> tuple[dict[int, float], int]:
    """Send callbacks ``first`` .. ``first + count - 1`` at ``rate``/s; return their send
    times and how many were refused."""
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
        for number in range(first, first + count):
            due = start + (number - first) / rate
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


@contextlib.contextmanager
def scratch_postgres(server_url: str) -> Iterator[str]:
    """A throwaway database on ``server_url`` (a user allowed to CREATE DATABASE)."""
    import psycopg2

    name = f"lgassist_bench_{secrets.token_hex(4)}"
    admin = psycopg2.connect(server_url, connect_timeout=5)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        try:
            yield str(make_url(server_url).set(database=name))
        finally:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


def delete_redis_keys(redis_url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


async def run(args: argparse.Namespace) -> tuple[Rows, bool]:
    if args.postgres is None:
        return await run_on(args, None)
    with scratch_postgres(args.postgres) as database_url:
        return await run_on(args, database_url)


def print_table(columns: list[Rows]) -> None:
    """Metrics down, one column per run."""
    names = [name for name, _ in columns[0]]
    cells = [[name, *(dict(rows)[name] for rows in columns)] for name in names]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    header = ["metric", *(f"run {i + 1}" for i in range(len(columns)))]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for row in [header, ["-" * w for w in widths], *cells]:
        print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


async def suite(args: argparse.Namespace) -> int:
    """The configurations the README reports: the embedded default, and PostgreSQL + Redis
    with one process and with a receiver and a worker process."""
    configurations = [
        {"postgres": None, "redis": None, "processes": 1},
        {"postgres": args.postgres_server, "redis": args.redis_server, "processes": 1},
        {"postgres": args.postgres_server, "redis": args.redis_server, "processes": 2},
    ]
    columns, ok = [], True
    for configuration in configurations:
        run_args = argparse.Namespace(**{**vars(args), **configuration})
        rows, clean = await run(run_args)
        columns.append(rows)
        ok = ok and clean
    print()
    print_table(columns)
    return 0 if ok else 1


async def single(args: argparse.Namespace) -> int:
    rows, clean = await run(args)
    print()
    print_table([rows])
    return 0 if clean else 1


Rows = list[tuple[str, str]]


async def run_on(args: argparse.Namespace, postgres_url: str | None) -> tuple[Rows, bool]:
    """One measured run: the table rows, and whether nothing was lost, duplicated or refused."""
    state = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    database_url = postgres_url or f"sqlite+aiosqlite:///{state / 'assistant.db'}"
    redis_prefix = f"bench{secrets.token_hex(4)}"
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
        "CONNECTOR_REDIS_PREFIX": redis_prefix,
        "LOG_LEVEL": "WARNING",
    }
    procs = []
    try:
        # One receiver; alone it also delivers, otherwise the other processes deliver.
        receiver_flags = ("--no-worker",) if len(ports) > 1 else ()
        procs.append(spawn_connector(state, env, ports[0], *receiver_flags))
        # INFO: a worker's "connector ready" line is how the bench knows it started.
        worker_env = {**env, "LOG_LEVEL": "INFO"}
        procs.extend(
            spawn_connector(state, worker_env, port, "--no-receiver") for port in ports[1:]
        )
        async with aiohttp.ClientSession() as http:
            await wait_ready(http, f"http://127.0.0.1:{ports[0]}/health", procs)
        await wait_logged(state, ports[1:], procs)
        secret = demo_callback_secret(service_key)
        urls = [f"http://127.0.0.1:{ports[0]}/lg/callbacks?secret={secret}"]
        if args.warmup:
            # Not measured: connection pools fill, statement caches warm, the receiver's
            # acceptance cache fills. "Sustained" is what follows.
            warm, _ = await fire(urls[0], args.warmup, args.rate, args.senders, first=args.count)
            deadline = time.perf_counter() + args.drain_seconds
            while any(n not in sink.arrivals for n in warm) and time.perf_counter() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            sink.forget(warm)
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
        if args.dump:
            # One line per delivered callback: when it was sent (s from the start), latency.
            lines = ["sent_s,latency_ms"] + [
                f"{sent[n] - started:.3f},{(sink.arrivals[n] - sent[n]) * 1000:.1f}"
                for n in sorted(sent, key=sent.__getitem__)
                if n in sink.arrivals
            ]
            await asyncio.to_thread(Path(args.dump).write_text, "\n".join(lines) + "\n")
        first, last = min(sent.values()), max(sink.arrivals.values(), default=started)
        lost = len(sent) - len(sink.arrivals)
        duplicated = sum(c - 1 for c in sink.received.values() if c > 1)
        rows = [
            ("configuration", describe(args, database_url)),
            (
                "callbacks sent",
                f"{len(sent)} at a target of {args.rate:.0f}/s, after {args.warmup} warm-up",
            ),
            ("callbacks accepted/s", f"{(len(sent) - refused) / accepted_s:.0f}"),
            ("refused (non-200)", str(refused)),
            ("messages delivered/s", f"{len(sink.arrivals) / max(last - first, 1e-9):.0f}"),
            ("callback->delivered p50", f"{statistics.median(latencies):.1f} ms"),
            ("callback->delivered p95", f"{percentile(latencies, 0.95):.1f} ms"),
            ("callback->delivered p99", f"{percentile(latencies, 0.99):.1f} ms"),
            ("lost", str(lost)),
            ("duplicated", str(duplicated + sink.unparsed)),
        ]
        return rows, lost == 0 and duplicated == 0 and refused == 0
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
        if args.redis:
            delete_redis_keys(args.redis, redis_prefix)


def spawn_connector(
    state: Path, env: dict[str, str], port: int, *flags: str
) -> subprocess.Popen[bytes]:
    with (state / f"connector-{port}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "connector", *flags],
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
    database = "PostgreSQL" if database_url.startswith("postgres") else "SQLite"
    queue = "Redis streams" if args.redis else "in-process queue"
    workers = args.processes - 1
    processes = f"1 receiver + {workers} worker process(es)" if workers else "1 process"
    return f"{processes}, {database}, {queue}"


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


async def wait_logged(state: Path, ports: list[int], procs: list) -> None:
    """Worker-only processes serve no health check: wait for their ready line."""
    deadline = time.monotonic() + 60
    for port in ports:
        log = state / f"connector-{port}.log"
        while "connector ready" not in log.read_text(errors="replace"):
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a connector process exited during start-up; see {log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"connector worker not ready; see {log}")
            await asyncio.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.bench_callbacks")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=500.0, help="callbacks per second")
    parser.add_argument("--senders", type=int, default=200)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument(
        "--postgres",
        default=None,
        help="PostgreSQL server URL to create a scratch database on (default: SQLite)",
    )
    parser.add_argument("--redis", default=None, help="REDIS_URL (default: in-process queue)")
    parser.add_argument("--drain-seconds", type=float, default=30.0)
    parser.add_argument(
        "--warmup", type=int, default=1000, help="callbacks sent first and not measured"
    )
    parser.add_argument("--dump", help="write each callback's send time and latency (CSV)")
    parser.add_argument(
        "--suite",
        action="store_true",
        help="run the README's three configurations (SQLite; PostgreSQL + Redis, 1 and 2 "
        "processes) and print them side by side",
    )
    parser.add_argument(
        "--postgres-server",
        default=os.environ.get("TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/test"),
        help="with --suite: the PostgreSQL server (default $TEST_POSTGRES_URL or local)",
    )
    parser.add_argument(
        "--redis-server",
        default=os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="with --suite: the Redis server (default $TEST_REDIS_URL or local db 15)",
    )
    args = parser.parse_args()
    # The load generator and sink share the 2 cores with what they measure: the faster
    # event loop leaves more of them to the connector (which uses it too).
    uvloop.install()
    if args.suite:
        return asyncio.run(suite(args))
    if args.processes > 1 and not args.redis:
        parser.error("several connector processes need --redis (the in-process queue is local)")
    return asyncio.run(single(args))


if __name__ == "__main__":
    sys.exit(main())
