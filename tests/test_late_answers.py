"""An appliance that answers after the user was told it had not: the user is told, once,
through the ordinary delivery pipeline (real simulator, connector receiver and worker,
callback channel sink; SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest

from assistant.bulk import BulkControl
from assistant.conversation import Memory
from assistant.correlation import Gatherer, InProcessWaker
from assistant.home import HomeOverview
from assistant.planning import CommandRequest
from assistant.runtime import Runtime
from assistant.settings import demo_callback_secret
from assistant.storage.placement import PlacementRepository
from assistant.vocabulary import load_vocabulary
from connector.service import ConnectorService, Roles
from tests.conftest import RunningSimulator
from tests.connector_support import ChannelSink

SENDER = "alice-callback"
TIMEOUT = 1.0  # the turn's patience; the late device answers after it
LATE = 2.5


@dataclass
class Rig:
    simulator: RunningSimulator
    runtime: Runtime
    sink: ChannelSink
    home: HomeOverview
    bulk: BulkControl

    async def ids(self) -> dict[str, str]:
        return {alias: d["deviceId"] for alias, d in (await self.simulator.devices()).items()}

    async def told(self, needle: str, timeout: float = 15.0) -> list[str]:
        for _ in range(int(timeout / 0.1)):
            texts = [m["text"] for m in self.sink.messages(SENDER)]
            if any(needle in t for t in texts):
                return texts
            await asyncio.sleep(0.1)
        raise AssertionError(f"{needle!r} never reached {SENDER}: {self.sink.messages(SENDER)}")


@pytest.fixture
async def rig(simulator: RunningSimulator, runtime: Runtime) -> AsyncIterator[Rig]:
    sink = ChannelSink()
    await sink.start()
    connector = replace(runtime.settings.connector, callback_url=sink.url, retry_base_seconds=0.1)
    service = ConnectorService(
        replace(runtime.settings, connector=connector), Roles(), port=0, storage=runtime.storage
    )
    await service.start()
    secret = demo_callback_secret(runtime.settings.thinq.service_key)
    url = f"http://127.0.0.1:{service.bound_port}/lg/callbacks?secret={secret}"
    assert (await simulator.sim("PUT", "/sim/callback-url", json={"url": url})).status_code == 200
    gatherer = Gatherer(PlacementRepository(runtime.storage.engine), InProcessWaker(), 0.05)
    parts = (runtime.household, runtime.placement, gatherer, load_vocabulary(), TIMEOUT)
    try:
        yield Rig(simulator, runtime, sink, HomeOverview(*parts), BulkControl(*parts))
    finally:
        await simulator.sim("DELETE", "/sim/placement/faults")
        await service.stop()
        await sink.stop()


async def test_a_late_status_is_told_once(rig: Rig) -> None:
    oven = (await rig.ids())["Oven"]
    await rig.simulator.sim(
        "PUT", "/sim/placement/faults", json={"delaySeconds": {oven: LATE}, "duplicate": [oven]}
    )
    session = await rig.runtime.session_for(SENDER, "callback")
    assert session is not None
    outcome = await rig.home.overview(session, Memory(), sender_id=SENDER, channel="callback")
    [reply] = outcome.replies
    assert reply.response == "utter_home_overview_partial" and reply.params["missing"] == "Oven"

    texts = await rig.told("Update: the Oven has answered now:")
    await asyncio.sleep(1.5)  # the duplicate has arrived by now, and made nothing
    late = [t for t in (m["text"] for m in rig.sink.messages(SENDER)) if t.startswith("Update")]
    assert late == [
        "Update: the Oven has answered now: on and ready, cooking mode bake, set to 180°C."
    ], texts


async def test_a_late_confirmation_is_told(rig: Rig) -> None:
    bedroom = (await rig.ids())["Bedroom AC"]
    await rig.simulator.sim("PUT", "/sim/placement/faults", json={"delaySeconds": {bedroom: LATE}})
    session = await rig.runtime.session_for(SENDER, "callback")
    assert session is not None
    outcome = await rig.bulk.control_all(
        session,
        Memory(),
        CommandRequest(action="turn_off"),
        "air conditioners",
        sender_id=SENDER,
        channel="callback",
    )
    assert "The Bedroom AC didn't answer in time" in outcome.replies[0].params["summary"]
    await rig.told("Update: the Bedroom AC has confirmed now, so that's done too.")


async def test_nobody_is_told_when_everything_answered_in_time(rig: Rig) -> None:
    session = await rig.runtime.session_for(SENDER, "callback")
    assert session is not None
    outcome = await rig.home.overview(session, Memory(), sender_id=SENDER, channel="callback")
    assert outcome.replies[0].response == "utter_home_overview"
    await asyncio.sleep(1.5)
    assert rig.sink.messages(SENDER) == []
