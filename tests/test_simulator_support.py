"""Shared helpers for the simulator tests (no tests here).

The simulator runs on an ephemeral loopback port and is spoken to over real
HTTP with httpx; the ThinQ headers are built by hand, as a partner would.
The contract table (demo-stack.md §3) is written out again below, on purpose,
so the tests check the simulator against the contract and not against itself.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web

from devstack.credentials import DemoCredentials, generate
from simulator.app import create_app
from simulator.config import SimulatorConfig

WRITE_ONLY = object()  # "initial: -" in the contract: write-only, no state


def new_message_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes)[:-2].decode()


# alias -> (deviceType, {flat key: (type, mode, allowed values, initial)})
# allowed: list for enums (None when the contract lists none), (min, max, step) for ranges.
def _ac(mode: str, job: str, target: float, current: float, wind: str) -> dict[str, tuple]:
    return {
        "operation.airConOperationMode": ("enum", "rw", ["POWER_ON", "POWER_OFF"], mode),
        "airConJobMode.currentJobMode": (
            "enum",
            "rw",
            ["COOL", "AIR_DRY", "FAN", "AUTO", "HEAT"],
            job,
        ),
        "temperatureInUnits.targetTemperatureC": ("range", "rw", (18, 30, 0.5), target),
        "temperatureInUnits.currentTemperatureC": ("number", "r", None, current),
        "airFlow.windStrength": ("enum", "rw", ["LOW", "MID", "HIGH", "AUTO"], wind),
    }


CYCLE_OPS = ["START", "STOP", "POWER_OFF", "WAKE_UP"]
CONTRACT: dict[str, tuple[str, dict[str, tuple]]] = {
    "Fridge": (
        "DEVICE_REFRIGERATOR",
        {
            "refrigeration.expressMode": ("boolean", "rw", None, False),
            "refrigeration.rapidFreeze": ("boolean", "rw", None, False),
            "sabbath.sabbathMode": ("boolean", "rw", None, False),
            "temperatureInUnits.FRIDGE.targetTemperatureC": ("range", "rw", (1, 7, 1), 3),
            "temperatureInUnits.FREEZER.targetTemperatureC": ("range", "rw", (-23, -15, 1), -18),
            "doorStatus.MAIN.doorState": ("enum", "r", ["OPEN", "CLOSE"], "CLOSE"),
            "waterFilterInfo.usedTime": ("number", "r", None, 5),
        },
    ),
    "Washer": (
        "DEVICE_WASHER",
        {
            "runState.currentState": ("enum", "r", None, "INITIAL"),
            "operation.washerOperationMode": ("enum", "w", CYCLE_OPS, WRITE_ONLY),
            "remoteControlEnable.remoteControlEnabled": ("boolean", "r", None, True),
            "timer.remainHour": ("number", "r", None, 0),
            "timer.remainMinute": ("number", "r", None, 0),
            "timer.relativeHourToStart": ("range", "rw", (0, 19, 1), 0),
        },
    ),
    "Dryer": (
        "DEVICE_DRYER",
        {
            "runState.currentState": ("enum", "r", None, "POWER_OFF"),
            "operation.dryerOperationMode": ("enum", "w", CYCLE_OPS, WRITE_ONLY),
            "remoteControlEnable.remoteControlEnabled": ("boolean", "r", None, False),
        },
    ),
    "Living Room AC": ("DEVICE_AIR_CONDITIONER", _ac("POWER_OFF", "COOL", 24, 27, "AUTO")),
    "Bedroom AC": ("DEVICE_AIR_CONDITIONER", _ac("POWER_ON", "COOL", 23, 25, "LOW")),
    "Styler": (
        "DEVICE_STYLER",
        {
            "runState.currentState": ("enum", "r", None, "RUNNING"),
            "operation.stylerOperationMode": ("enum", "w", CYCLE_OPS, WRITE_ONLY),
            "remoteControlEnable.remoteControlEnabled": ("boolean", "r", None, True),
            "timer.remainHour": ("number", "r", None, 0),
            "timer.remainMinute": ("number", "r", None, 35),
        },
    ),
    "Air Purifier": (
        "DEVICE_AIR_PURIFIER",
        {
            "operation.airPurifierOperationMode": (
                "enum",
                "rw",
                ["POWER_ON", "POWER_OFF"],
                "POWER_ON",
            ),
            "airPurifierJobMode.currentJobMode": (
                "enum",
                "rw",
                ["CLEAN", "AUTO", "CIRCULATOR", "DUAL_CLEAN"],
                "CLEAN",
            ),
            "airFlow.windStrength": ("enum", "rw", ["LOW", "MID", "HIGH", "AUTO"], "MID"),
            "airQualitySensor.PM2": ("number", "r", None, 38),
            "airQualitySensor.PM10": ("number", "r", None, 52),
            "airQualitySensor.totalPollutionLevel": (
                "enum",
                "r",
                ["GOOD", "NORMAL", "BAD", "VERY_BAD"],
                "NORMAL",
            ),
            "filterInfo.filterRemainPercent": ("number", "r", None, 64),
        },
    ),
    "Dishwasher": (
        "DEVICE_DISH_WASHER",
        {
            "runState.currentState": ("enum", "r", None, "RUNNING"),
            "operation.dishWasherOperationMode": (
                "enum",
                "w",
                ["START", "STOP", "POWER_OFF"],
                WRITE_ONLY,
            ),
            "remoteControlEnable.remoteControlEnabled": ("boolean", "r", None, True),
            "timer.remainHour": ("number", "r", None, 1),
            "timer.remainMinute": ("number", "r", None, 10),
            "doorStatus.doorState": ("enum", "r", ["OPEN", "CLOSE"], "CLOSE"),
            "dishWashingStatus.rinseRefill": ("boolean", "r", None, True),
        },
    ),
    "Oven": (
        "DEVICE_OVEN",
        {
            "runState.currentState": ("enum", "r", None, "INITIAL"),
            "operation.ovenOperationMode": ("enum", "w", ["START", "STOP"], WRITE_ONLY),
            "cook.cookMode": (
                "enum",
                "rw",
                ["BAKE", "CONVECTION_BAKE", "CONVECTION_ROAST", "BROIL", "WARM"],
                "BAKE",
            ),
            "temperature.targetTemperatureC": ("range", "rw", (50, 250, 5), 180),
            "remoteControlEnable.remoteControlEnabled": ("boolean", "r", None, True),
        },
    ),
}


def profile_property(profile: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The property object a flat key names, following per-location lists."""
    parts = key.split(".")
    resource = profile["property"].get(parts[0])
    if resource is None:
        return None
    if isinstance(resource, list):
        if len(parts) != 3:
            return None
        item = next((i for i in resource if i.get("locationName") == parts[1]), None)
        return None if item is None else item.get(parts[2])
    return resource.get(parts[1]) if len(parts) == 2 else None


@dataclass
class Sim:
    """A running simulator and an HTTP client for it."""

    client: httpx.AsyncClient
    creds: DemoCredentials
    neighbour_token: str
    config: SimulatorConfig
    ids: dict[str, str] = field(default_factory=dict)  # alias -> deviceId (demo user)

    def headers(self, token: str | None = None, **overrides: str | None) -> dict[str, str]:
        headers: dict[str, str | None] = {
            "Authorization": f"Bearer {token or self.creds.demo_token}",
            "x-country-code": "US",
            "x-message-id": new_message_id(),
            "x-service-id": self.creds.service_id,
            "x-service-key": self.creds.service_key,
        }
        headers.update({k.replace("_", "-"): v for k, v in overrides.items()})
        return {k: v for k, v in headers.items() if v is not None}

    async def lg(
        self, method: str, path: str, *, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        return await self.client.request(method, path, headers=self.headers(token), **kwargs)

    async def control(self, alias: str, body: Any) -> httpx.Response:
        return await self.lg("POST", f"/devices/{self.ids[alias]}", json=body)

    async def sim_devices(self) -> dict[str, dict[str, Any]]:
        response = await self.client.get("/sim/devices")
        assert response.status_code == 200
        return {entry["alias"]: entry for entry in response.json()}

    async def state(self, alias: str) -> dict[str, Any]:
        return (await self.sim_devices())[alias]["state"]

    async def set_state(self, alias: str, **values: Any) -> None:
        response = await self.client.post(f"/sim/devices/{self.ids[alias]}/state", json=values)
        assert response.status_code == 200, response.text

    async def advance(self, seconds: float) -> dict[str, Any]:
        response = await self.client.post("/sim/clock/advance", json={"seconds": seconds})
        assert response.status_code == 200, response.text
        return response.json()


@asynccontextmanager
async def running_simulator(
    *, callback_url: str | None = None, time_scale: float = 0.0, tick_seconds: float = 0.05
) -> AsyncIterator[Sim]:
    creds = generate()
    neighbour_token = secrets.token_hex(48)
    config = SimulatorConfig(
        time_scale=time_scale,
        service_id=creds.service_id,
        service_key=creds.service_key,
        tokens={creds.demo_token: "demo", neighbour_token: "neighbour"},
        callback_url=callback_url,
        tick_seconds=tick_seconds,
    )
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            sim = Sim(client, creds, neighbour_token, config)
            sim.ids = {alias: d["deviceId"] for alias, d in (await sim.sim_devices()).items()}
            yield sim
    finally:
        await runner.cleanup()


@dataclass
class Receiver:
    """A tiny partner callback endpoint that records what the simulator POSTs."""

    url: str = ""
    status: int = 200
    messages: list[dict[str, Any]] = field(default_factory=list)

    def pushes(self) -> list[dict[str, Any]]:
        return [m["push"] for m in self.messages if "push" in m]

    def events(self) -> list[dict[str, Any]]:
        return [m["event"] for m in self.messages if "event" in m]


@asynccontextmanager
async def callback_receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def handle(request: web.Request) -> web.Response:
        receiver.messages.append(await request.json())
        return web.json_response({}, status=receiver.status)

    app = web.Application()
    app.router.add_post("/lg/callback", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/lg/callback"
        yield receiver
    finally:
        await runner.cleanup()
