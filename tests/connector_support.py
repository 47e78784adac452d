"""Helpers for the connector tests: a switchable channel sink, seed data, LG bodies."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from assistant.settings import Settings, load_settings
from assistant.storage import DeviceRecord, Storage
from devstack import sink as devstack_sink
from devstack.processes import free_port
from tests.db_fixtures import reset_postgres_tables


class ChannelSink:
    """The devstack sink (idempotent by message id) standing in for CALLBACK_URL, plus
    switches: answer ``status`` instead of accepting, wait ``delay`` seconds first, or be
    stopped altogether (connection refused) and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status: int | None = None  # None: accept (the devstack sink answers)
        self.delay = 0.0
        self.raw: Counter[str] = Counter()  # every POST that reached the sink, by message id
        self.arrivals: dict[str, list[float]] = {}  # time.monotonic() of each, by message id
        self.headers: list[dict[str, str]] = []
        self.app = devstack_sink.create_app()
        self.app.middlewares.append(self._switch)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    @web.middleware
    async def _switch(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.method != "POST":
            return await handler(request)
        status = self.status
        if status is None:
            # Counted when the request arrives: a sender killed while it waits has sent it.
            body = await request.json()
            key = str(body.get("message_id"))
            self.raw[key] += 1
            self.arrivals.setdefault(key, []).append(time.monotonic())
            self.headers.append(dict(request.headers))
        if self.delay:
            await asyncio.sleep(self.delay)
        if status is not None:
            return web.json_response({"error": "switched off"}, status=status)
        return await handler(request)

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def messages(self, sender: str | None = None) -> list[dict[str, Any]]:
        """What users saw: each message id once (the sink drops redeliveries)."""
        kept = self.app[devstack_sink.MESSAGES]
        if sender is not None:
            return list(kept.get(sender, []))
        return [message for messages in kept.values() for message in messages]

    def redeliveries(self) -> int:
        return sum(count - 1 for count in self.raw.values() if count > 1)


@pytest.fixture
async def sink() -> AsyncIterator[ChannelSink]:
    """A running :class:`ChannelSink` on a free loopback port."""
    running = ChannelSink()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(name="http")
async def aiohttp_session() -> AsyncIterator[aiohttp.ClientSession]:
    """One aiohttp session, closed after the test (what the connector's senders share)."""
    async with aiohttp.ClientSession() as session:
        yield session


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def seed_subscriber(
    storage: Storage,
    *,
    sender: str,
    user: str,
    device: str,
    channel: str | None = "callback",
    alias: str = "Washer",
) -> None:
    """A linked conversation with a cached washer it subscribed to (push)."""
    now = datetime.now(timezone.utc)
    await storage.accounts.link(
        sender, thinq_user=user, token="t" * 40, country_code="US", region="aic", channel=channel
    )
    await storage.devices.upsert_device(
        user, DeviceRecord(device, "DEVICE_WASHER", "F3", alias, True), now
    )
    await storage.subscriptions.add(sender, user, device, "push", now)


def push_body(
    device: str,
    user: str,
    *,
    code: str = "WASHING_IS_COMPLETE",
    message_id: str | None = None,
) -> dict[str, Any]:
    return {
        "messageId": message_id or uuid.uuid4().hex[:22],
        "timestamp": "2025-03-01T12:00:00.000000",
        "push": {
            "pushType": "DEVICE_PUSH",
            "serviceId": "test-service",
            "deviceId": device,
            "pushCode": code,
            "deviceType": "DEVICE_WASHER",
            "userList": [user],
        },
    }


def connector_env(
    tmp_path: Path, database_url: str, token_key: str, sink_url: str, **extra: str
) -> dict[str, str]:
    """Environment for a connector on ``database_url`` delivering to ``sink_url``."""
    return {
        "STATE_DIR": str(tmp_path / "state"),
        "DEMO_MODE": "1",
        "THINQ_SERVICE_ID": "test-service",
        "THINQ_SERVICE_KEY": "test-service-key",
        "DEMO_THINQ_TOKEN": "test-demo-token",
        "DATABASE_URL": database_url,
        "TOKEN_ENCRYPTION_KEY": token_key,
        "LG_CALLBACK_SECRET": "s3cret-" + "x" * 32,
        "CALLBACK_URL": sink_url,
        "DELIVERY_RETRY_BASE_SECONDS": "0.1",
        "DELIVERY_RETRY_MAX_SECONDS": "0.4",
        "DELIVERY_RECLAIM_AFTER_SECONDS": "2",
        "DELIVERY_SEND_TIMEOUT_SECONDS": "1",
        **extra,
    }


def connector_settings(env: dict[str, str]) -> Settings:
    return load_settings(env)


# SQLite serves one host; several processes (the Redis queue) go with PostgreSQL.
SETUPS = [
    ("sqlite", "in-process"),
    pytest.param(("postgres", "in-process"), marks=pytest.mark.postgres),
    pytest.param(("postgres", "redis"), marks=[pytest.mark.postgres, pytest.mark.redis]),
]


@pytest.fixture(name="setup", params=SETUPS, ids=lambda setup: "-".join(setup))
def connector_setup(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(database, queue) of one SETUPS entry; a module imports this fixture, with
    ``connector_database_url`` and ``queue_env``, to run each test in every setup."""
    return request.param


@pytest.fixture(name="database_url")
def connector_database_url(
    setup: tuple[str, str], request: pytest.FixtureRequest, tmp_path: Path
) -> str:
    """The importing module's databases follow SETUPS (replaces the suite's sqlite/postgres
    pair)."""
    if setup[0] == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'assistant.db'}"
    url = request.getfixturevalue("postgres_database_url")
    reset_postgres_tables(url)
    return url


@pytest.fixture(name="queue_env")
def connector_queue_env(setup: tuple[str, str], request: pytest.FixtureRequest) -> dict[str, str]:
    """Environment selecting the setup's queue (nothing: in-process)."""
    if setup[1] == "in-process":
        return {}
    return {
        "REDIS_URL": request.getfixturevalue("redis_url"),
        "CONNECTOR_REDIS_PREFIX": request.getfixturevalue("redis_key_prefix"),
    }
