"""v2 placement requests end to end: our client asks the simulated cloud about all of the
user's devices, the simulator calls the connector's real LG callback receiver once per
device, and a turn's gatherer collects the answers by requestId — in order or shuffled,
duplicated, late or missing — on SQLite, on PostgreSQL, and with Redis wake-ups."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from assistant.correlation import Gatherer
from assistant.storage import Storage, TokenCipher
from assistant.storage.placement import PlacementRepository
from connector.service import ConnectorService, Roles
from lgcloud.placement import PlacementClient
from tests.conftest import RunningSimulator
from tests.connector_support import (
    connector_database_url,  # noqa: F401 - fixture, found by name
    connector_env,
    connector_queue_env,  # noqa: F401 - fixture, found by name
    connector_settings,
    connector_setup,  # noqa: F401 - fixture, found by name
)

SECRET = "s3cret-" + "x" * 32
DEMO_DEVICES = 9


@dataclass
class Rig:
    simulator: RunningSimulator
    service: ConnectorService
    client: PlacementClient
    gatherer: Gatherer
    repository: PlacementRepository

    async def devices(self) -> dict[str, dict]:
        return await self.simulator.devices()

    async def faults(self, **knobs: object) -> None:
        answer = await self.simulator.sim("PUT", "/sim/placement/faults", json=knobs)
        assert answer.status_code == 200, answer.text

    async def gather(self, request_id: str, expected: list[str], timeout: float = 10.0):
        return await self.gatherer.gather(
            request_id, expected, timeout, thinq_user="demo", kind="status"
        )


@pytest.fixture
async def rig(
    simulator: RunningSimulator,
    tmp_path: Path,
    storage: Storage,
    database_url: str,
    queue_env: dict[str, str],
) -> AsyncIterator[Rig]:
    env = connector_env(
        tmp_path, database_url, TokenCipher.generate_key(), "http://127.0.0.1:9/none", **queue_env
    )
    service = ConnectorService(connector_settings(env), Roles(), port=0, storage=storage)
    await service.start()
    callback = f"http://127.0.0.1:{service.bound_port}/lg/callbacks?secret={SECRET}"
    answer = await simulator.sim("PUT", "/sim/callback-url", json={"url": callback})
    assert answer.status_code == 200, answer.text
    placement = PlacementClient(simulator.url, simulator.service_id, simulator.service_key)
    repository = PlacementRepository(storage.engine)
    assert service.waker is not None
    try:
        yield Rig(
            simulator,
            service,
            placement,
            Gatherer(repository, service.waker, poll_seconds=0.1),
            repository,
        )
    finally:
        await simulator.sim("DELETE", "/sim/placement/faults")
        await placement.aclose()
        await service.stop()


async def test_every_device_answers_a_status_request(rig: Rig) -> None:
    devices = await rig.devices()
    assert len(devices) == DEMO_DEVICES
    request_id = await rig.client.statuses(rig.simulator.demo_auth)
    gathered = await rig.gather(request_id, [d["deviceId"] for d in devices.values()])
    assert gathered.complete and len(gathered.confirmed) == DEMO_DEVICES
    washer = devices["Washer"]["deviceId"]
    assert gathered.answers[washer].push_type == "DEVICE_STATUS"
    assert gathered.answers[washer].result["runState"]["currentState"] == "INITIAL"


async def test_shuffled_duplicated_late_and_missing_answers(rig: Rig) -> None:
    devices = await rig.devices()
    ids = {alias: d["deviceId"] for alias, d in devices.items()}
    await rig.faults(
        shuffle=True,
        duplicate=[ids["Washer"], ids["Fridge"]],
        drop=[ids["Oven"]],
        delaySeconds={ids["Dryer"]: 2.0},
    )
    request_id = await rig.client.statuses(rig.simulator.demo_auth)
    gathered = await rig.gather(request_id, list(ids.values()), timeout=1.0)
    assert set(gathered.missing) == {ids["Oven"], ids["Dryer"]}
    assert len(gathered.answers) == DEMO_DEVICES - 2
    request = await rig.repository.request(request_id)
    assert request is not None and set(request.reported_missing or ()) == set(gathered.missing)

    # The dryer's late answer is recorded, not lost; the duplicates were stored once.
    async def dryer_arrived() -> bool:
        return any(r.device_id == ids["Dryer"] for r in await rig.repository.results(request_id))

    for _ in range(50):
        if await dryer_arrived():
            break
        await asyncio.sleep(0.1)
    results = await rig.repository.results(request_id)
    assert sorted(r.device_id for r in results) == sorted(
        device for alias, device in ids.items() if alias != "Oven"
    )


async def test_turning_off_all_air_conditioners_confirms_each(rig: Rig) -> None:
    devices = await rig.devices()
    acs = [d["deviceId"] for d in devices.values() if d["deviceType"] == "DEVICE_AIR_CONDITIONER"]
    assert len(acs) == 2
    request_id = await rig.client.control(
        rig.simulator.demo_auth,
        "DEVICE_AIR_CONDITIONER",
        {"operation": {"airConOperationMode": "POWER_OFF"}},
    )
    gathered = await rig.gather(request_id, acs)
    assert gathered.complete
    # The Living Room AC was already off: LG answers per device, and we report each.
    states = {
        d["alias"]: d["state"]["operation.airConOperationMode"]
        for d in (await rig.devices()).values()
        if d["deviceId"] in acs
    }
    assert states == {"Living Room AC": "POWER_OFF", "Bedroom AC": "POWER_OFF"}
    assert len(gathered.confirmed) + len(gathered.refused) == 2


async def test_a_duplicate_callback_is_answered_as_such(rig: Rig) -> None:
    body = {
        "messageId": "m-1",
        "requestId": "req-direct",
        "response": {
            "deviceId": "dev-1",
            "deviceType": "DEVICE_WASHER",
            "pushType": "DEVICE_STATUS",
            "serviceId": rig.simulator.service_id,
            "userNumber": "demo",
            "result": {},
        },
        "responseCode": "0000",
        "statusCode": 200,
        "timestamp": "2026-11-23T21:00:00.000000",
    }
    url = f"http://127.0.0.1:{rig.service.bound_port}/lg/callbacks"
    async with httpx.AsyncClient(timeout=10) as http:
        first = await http.post(url, params={"secret": SECRET}, json=body)
        again = await http.post(url, params={"secret": SECRET}, json=body)
        broken = await http.post(url, params={"secret": SECRET}, json={**body, "requestId": ""})
    assert first.json()["status"] == "accepted" and again.json()["status"] == "duplicate"
    assert broken.status_code == 400 and broken.json()["reason"]
    assert len(await rig.repository.results("req-direct")) == 1
