"""Fixtures shared across the suite: a real simulator over HTTP, and a real runtime on it."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from hypothesis import settings as hypothesis_settings

from assistant.runtime import Runtime
from assistant.settings import load_settings
from lgcloud.thinq import ThinQAuth, ThinQClient
from simulator.app import create_app
from simulator.clock import SimClock
from simulator.config import SimulatorConfig
from tests.connector_support import (  # noqa: F401 - fixtures are found by name
    aiohttp_session,
    sink,
)
from tests.db_fixtures import (  # noqa: F401 - fixtures are found by name
    database_url,
    postgres_database_url,
    postgres_server_url,
    redis_key_prefix,
    redis_server_url,
    redis_url,
    storage,
    token_cipher,
)

# CI runs the property-based tests with a fixed seed per test: the same inputs every run,
# so a landing is judged on the code, not on the draw. Runs elsewhere explore new inputs
# each time and keep what failed in .hypothesis/ to replay it.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@dataclass
class RunningSimulator:
    url: str
    service_id: str
    service_key: str
    demo_token: str
    neighbour_token: str
    clock: SimClock

    @property
    def demo_auth(self) -> ThinQAuth:
        return ThinQAuth(self.demo_token, "US")

    def client(self, **kwargs: object) -> ThinQClient:
        return ThinQClient(self.url, self.service_id, self.service_key, **kwargs)  # type: ignore[arg-type]

    async def devices(self) -> dict[str, dict]:
        """``/sim/devices`` keyed by alias."""
        async with httpx.AsyncClient() as http:
            listed = (await http.get(f"{self.url}/sim/devices")).json()
        return {d["alias"]: d for d in listed}

    async def sim(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        async with httpx.AsyncClient() as http:
            return await http.request(method, f"{self.url}{path}", **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def simulator() -> AsyncIterator[RunningSimulator]:
    """The LG cloud simulator on a free loopback port, time frozen (tests advance it)."""
    demo_token, neighbour_token = secrets.token_hex(48), secrets.token_hex(48)
    config = SimulatorConfig(
        port=0,
        time_scale=0,
        service_id=secrets.token_hex(12),
        service_key=secrets.token_urlsafe(40),
        tokens={demo_token: "demo", neighbour_token: "neighbour"},
    )
    clock = SimClock(0)
    runner = web.AppRunner(create_app(config, clock))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield RunningSimulator(
            f"http://127.0.0.1:{port}",
            config.service_id,
            config.service_key,
            demo_token,
            neighbour_token,
            clock,
        )
    finally:
        await runner.cleanup()


def runtime_env(simulator: RunningSimulator, state_dir: Path, db_url: str) -> dict[str, str]:
    return {
        "DEMO_MODE": "1",
        "STATE_DIR": str(state_dir),
        "THINQ_BASE_URL": simulator.url,
        "THINQ_SERVICE_ID": simulator.service_id,
        "THINQ_SERVICE_KEY": simulator.service_key,
        "DEMO_THINQ_TOKEN": simulator.demo_token,
        "DATABASE_URL": db_url,
        "THINQ_TIMEOUT_SECONDS": "3",
        # The same simulator stands in for BECON (its demo credentials follow the key).
        "BECON_BASE_URL": simulator.url,
    }


@pytest.fixture
async def runtime(
    simulator: RunningSimulator,
    tmp_path: Path,
    database_url: str,  # noqa: F811
) -> AsyncIterator[Runtime]:
    """The assistant's real runtime against the simulator, once on SQLite and once on PostgreSQL."""
    settings = load_settings(runtime_env(simulator, tmp_path / "state", database_url))
    created = await Runtime.create(settings)
    try:
        yield created
    finally:
        await created.close()
