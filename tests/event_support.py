"""Helpers for the event-subscription tests: a clock tied to the simulator's, a connector
receiving the simulator's callbacks, renewers on demand, and /sim readings."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from assistant.household import HouseholdService
from assistant.settings import EventSettings, Settings, demo_callback_secret, load_settings
from assistant.storage import Storage
from assistant.storage.device_states import (
    DeviceStateRepository,
    EventSubscriptionRepository,
    LeaseRepository,
)
from connector.renewer import EventRenewer
from connector.service import ConnectorService, Roles
from lgcloud.call_budget import CallBudget
from lgcloud.placement import PlacementClient
from lgcloud.thinq import ThinQAuth
from simulator.clock import SimClock
from tests.conftest import RunningSimulator, runtime_env

EVENT_PATH = "/v2/devices/event-async"
SENDER = "alice"
HOUR = 3600


class SimTime:
    """Now = when the test started + the simulator's seconds: the renewer, the reads and
    LG's expiries all follow ``POST /sim/clock/advance``."""

    def __init__(self, clock: SimClock) -> None:
        self._clock = clock
        self.base = datetime.now(timezone.utc).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.base + timedelta(seconds=self._clock.now())


def event_settings(**overrides: Any) -> EventSettings:
    return replace(EventSettings(), **overrides)


def settings_for(
    simulator: RunningSimulator, tmp_path: Path, database_url: str, **env: str
) -> Settings:
    return load_settings({**runtime_env(simulator, tmp_path / "state", database_url), **env})


@dataclass
class Rig:
    simulator: RunningSimulator
    storage: Storage
    settings: Settings
    clock: SimTime
    service: ConnectorService | None = None
    placements: list[PlacementClient] = field(default_factory=list)

    # --- the parts ------------------------------------------------------------------------

    @property
    def subscriptions(self) -> EventSubscriptionRepository:
        return EventSubscriptionRepository(self.storage.engine)

    @property
    def states(self) -> DeviceStateRepository:
        return DeviceStateRepository(self.storage.engine)

    @property
    def leases(self) -> LeaseRepository:
        return LeaseRepository(self.storage.engine)

    @property
    def auth(self) -> ThinQAuth:
        return ThinQAuth(self.simulator.demo_token, "US", user="demo")

    def renewer(
        self,
        owner: str,
        *,
        storage: Storage | None = None,
        budget: CallBudget | None = None,
        **settings: Any,
    ) -> EventRenewer:
        placement = PlacementClient(
            self.simulator.url, self.simulator.service_id, self.simulator.service_key, budget=budget
        )
        self.placements.append(placement)
        storage = storage or self.storage
        engine = storage.engine
        return EventRenewer(
            EventSubscriptionRepository(engine),
            DeviceStateRepository(engine),
            LeaseRepository(engine),
            storage.accounts,
            placement,
            event_settings(**settings),
            owner=owner,
            clock=self.clock,
        )

    def household(self, state_max_age_seconds: float | None = None) -> HouseholdService:
        return HouseholdService(
            self.simulator.client(),
            self.storage.devices,
            list_ttl_seconds=600,
            profile_ttl_seconds=86400,
            states=self.states,
            clock=self.clock,
            state_max_age_seconds=state_max_age_seconds,
        )

    async def link(
        self, sender: str = SENDER, user: str = "demo", token: str | None = None
    ) -> None:
        await self.storage.accounts.link(
            sender,
            thinq_user=user,
            token=token or self.simulator.demo_token,
            country_code="US",
            region="aic",
            channel="callback",
        )

    # --- the simulated cloud --------------------------------------------------------------

    async def advance(self, seconds: float) -> dict[str, Any]:
        answer = await self.simulator.sim("POST", "/sim/clock/advance", json={"seconds": seconds})
        assert answer.status_code == 200, answer.text
        return answer.json()

    async def subscribed(self) -> set[str]:
        return set((await self.simulator.sim("GET", "/sim/subscriptions")).json()["event"])

    async def calls(self, method: str | None = None, path: str | None = None) -> list[dict]:
        listed = (await self.simulator.sim("GET", "/sim/calls")).json()
        return [
            c
            for c in listed
            if (method is None or c["method"] == method) and (path is None or c["path"] == path)
        ]

    async def event_calls(self) -> int:
        return len(await self.calls("POST", EVENT_PATH))

    async def ids(self) -> dict[str, str]:
        return {alias: d["deviceId"] for alias, d in (await self.simulator.devices()).items()}

    async def sim_events(self, device_id: str | None = None) -> list[dict[str, Any]]:
        params = {"deviceId": device_id} if device_id else None
        return (await self.simulator.sim("GET", "/sim/events", params=params)).json()

    async def wait_covered(self, device_ids: list[str]) -> None:
        """Until LG's DEVICE_EVENT_SUBSCRIBED answers marked every device covered."""

        async def covered() -> bool:
            for device_id in device_ids:
                stored = await self.states.get(device_id)
                if stored is None or stored.covered_at is None:
                    return False
            return True

        await wait_for(covered)

    async def close(self) -> None:
        for placement in self.placements:
            await placement.aclose()
        if self.service is not None:
            await self.service.stop()


async def wait_for(
    condition: Callable[[], Awaitable[bool]], timeout: float = 10.0, interval: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def start_receiver(rig: Rig, **env: str) -> ConnectorService:
    """A connector (receiver and worker; no renewer unless ``env`` turns it on) on a free
    port, registered as the simulator's callback URL."""
    settings = settings_for(
        rig.simulator,
        Path(rig.settings.state_dir).parent,
        rig.settings.database_url,
        **{"EVENT_SUBSCRIPTIONS": "0", **env},
    )
    service = ConnectorService(settings, Roles(), port=0, storage=rig.storage, clock=rig.clock)
    await service.start()
    secret = demo_callback_secret(settings.thinq.service_key)
    url = f"http://127.0.0.1:{service.bound_port}/lg/callbacks?secret={secret}"
    answer = await rig.simulator.sim("PUT", "/sim/callback-url", json={"url": url})
    assert answer.status_code == 200, answer.text
    return service


@pytest.fixture(name="rig")
async def event_rig(
    simulator: RunningSimulator, tmp_path: Path, storage: Storage, database_url: str
) -> AsyncIterator[Rig]:
    built = Rig(
        simulator,
        storage,
        settings_for(simulator, tmp_path, database_url),
        SimTime(simulator.clock),
    )
    try:
        yield built
    finally:
        await built.close()
        await simulator.sim("DELETE", "/sim/rate-limit")
