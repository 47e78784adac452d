"""The simulated LG cloud: households, subscriptions, time, callbacks, call log.

The HTTP layers (``thinq_api`` for LG's paths, ``inspection`` for ``/sim``) are
thin; the state they share lives here, on one object stored in the app.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from simulator.appliance import Behaviour, behaviour_for
from simulator.becon import BeconSite
from simulator.callbacks import CallbackSender, Delivery
from simulator.clock import SimClock
from simulator.config import SimulatorConfig
from simulator.household import Device, Household
from simulator.messages import device_push_message, pcc_event_message
from simulator.profile import normalize
from simulator.subscriptions import Subscriptions

log = logging.getLogger(__name__)

# Keep the call log bounded: a long-running demo must not grow without limit.
MAX_CALLS_LOGGED = 10_000
# Device types LG's PCC API supports (pcc-api.txt, "Supported Devices").
PCC_DEVICE_TYPES = frozenset(
    {"DEVICE_WASHER", "DEVICE_REFRIGERATOR", "DEVICE_DISH_WASHER", "DEVICE_OVEN"}
)


@dataclass(frozen=True)
class PendingPush:
    """A push a device produced on its own (cycle finished, preheat done)."""

    device: Device
    push_code: str


class SimulatedCloud:
    def __init__(
        self,
        config: SimulatorConfig,
        clock: SimClock | None = None,
        household: Household | None = None,
    ) -> None:
        self.config = config
        self.clock = clock or SimClock(config.time_scale)
        self.household = household or Household.load()
        self.behaviours: dict[str, Behaviour] = {
            d.device_id: behaviour_for(d.device_type) for d in self.household.all()
        }
        self.subscriptions = Subscriptions()
        self.sender = CallbackSender(config.callback_url)
        self.becon = BeconSite()
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS_LOGGED)
        self._last_tick = self.clock.now()
        self._deliveries: set[asyncio.Task[Any]] = set()
        for device in self.household.all():
            self.behaviours[device.device_id].sync(device.state)

    # --- device state ------------------------------------------------------------------

    def control(self, device: Device, body: Any) -> None:
        """Validate the whole body, run the appliance rules on a copy, then commit."""
        writes = device.profile.parse_control(body)
        scratch = device.state.copy()
        self.behaviours[device.device_id].apply(scratch, writes)
        device.state = scratch

    def set_state(self, device: Device, values: Any) -> str | None:
        """/sim: force readable state by flat key. Returns why not, or None when done."""
        if not isinstance(values, dict) or not values:
            return "body must be a non-empty object of flat state keys"
        for key, value in values.items():
            problem = device.profile.check_state_value(key, value)
            if problem:
                return problem
        scratch = device.state.copy()
        for key, value in values.items():
            scratch.set(key, normalize(value))
        if any(key.startswith(("runState.", "timer.")) for key in values):
            # Only then: a resync rounds the countdown to whole minutes.
            self.behaviours[device.device_id].sync(scratch)
        device.state = scratch
        return None

    def reset(self) -> None:
        """Contract: every device back to its initial state; ids and subscriptions kept."""
        for device in self.household.all():
            device.reset()
            self.behaviours[device.device_id].sync(device.state)
        self.becon.reset()

    # --- time --------------------------------------------------------------------------

    def tick(self) -> list[PendingPush]:
        """Move every appliance on to the clock's present; return the pushes produced."""
        now = self.clock.now()
        elapsed, self._last_tick = now - self._last_tick, now
        if elapsed <= 0:
            return []
        pushes: list[PendingPush] = []
        for device in self.household.all():
            codes = self.behaviours[device.device_id].advance(device.state, elapsed)
            if codes and not device.online:
                # An appliance that cannot reach the cloud cannot push either.
                log.info("%s finished offline; no push sent", device.alias)
                continue
            pushes.extend(PendingPush(device, code) for code in codes)
        return pushes

    def tick_in_background(self) -> None:
        """Catch up with the clock; deliver any pushes without making the caller wait."""
        pushes = self.tick()
        if pushes:
            task = asyncio.ensure_future(self.deliver(pushes))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def deliver(self, pushes: list[PendingPush]) -> list[dict[str, Any]]:
        """Send each push that has a push subscription; report what happened to each."""
        results = []
        for pending in pushes:
            device = pending.device
            entry: dict[str, Any] = {"deviceId": device.device_id, "pushCode": pending.push_code}
            if device.device_id not in self.subscriptions.push:
                entry.update(sent=False, reason="device is not subscribed to push")
            else:
                delivery = await self.send_push(device, pending.push_code)
                entry.update(sent=delivery.sent, reason=delivery.reason)
            results.append(entry)
        return results

    # --- callbacks ---------------------------------------------------------------------

    async def send_push(self, device: Device, push_code: str) -> Delivery:
        message = device_push_message(
            service_id=self.config.service_id,
            device_id=device.device_id,
            device_type=device.device_type,
            push_code=push_code,
            user_id=device.owner,
        )
        return await self.sender.send(message)

    async def send_pcc(self, device: Device, diagnosis_type: str, content_url: str) -> Delivery:
        message = pcc_event_message(
            device_id=device.device_id,
            device_type=device.device_type,
            diagnosis_type=diagnosis_type,
            content_url=content_url,
        )
        return await self.sender.send(message)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self.sender.close()


CLOUD = web.AppKey("cloud", SimulatedCloud)
