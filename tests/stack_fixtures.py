"""One whole demo stack for the browser and cross-channel security tests (session-scoped).

Real processes on free ports (simulator, sink, connector, action server, Rasa, the sample
partner site), every channel switched on: the Telegram channel talks to a fake Bot API
that runs in a thread of the test process, and the Alexa endpoint has signature checks
off (its own tests prove them; here the point is which user a request acts for).

Import the fixtures by name in a test module::

    from tests.stack_fixtures import full_stack, telegram_api  # noqa: F401
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.processes import Ports, Stack
from devstack.training import ensure_model
from tests.fake_telegram import TOKEN, FakeTelegram

# Random per test run: the stack and the tests share it through the environment.
TELEGRAM_SECRET = secrets.token_urlsafe(24)


class ThreadedFakeTelegram:
    """A :class:`FakeTelegram` serving from its own event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.fake = FakeTelegram()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return self.fake.url

    def sent(self) -> list[dict]:
        return list(self.fake.sent())


@pytest.fixture(scope="session")
def telegram_api() -> Iterator[ThreadedFakeTelegram]:
    fake = ThreadedFakeTelegram()
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def full_stack(
    tmp_path_factory: pytest.TempPathFactory, telegram_api: ThreadedFakeTelegram
) -> Iterator[Stack]:
    ports = Ports.free()
    running = Stack(
        model_path=ensure_model(),
        ports=ports,
        state_dir=Path(tmp_path_factory.mktemp("full-stack-state")),
        env={
            # This stack's own sink, whatever CALLBACK_URL the calling shell has.
            "CALLBACK_URL": f"http://127.0.0.1:{ports.sink}/callback",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TELEGRAM_SECRET,
            "TELEGRAM_API_URL": telegram_api.url,
            "ALEXA_VERIFY_SIGNATURES": "false",
        },
    )
    running.start(timeout_seconds=300)
    try:
        yield running
    finally:
        running.stop()
