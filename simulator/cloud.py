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
from simulator.callbacks import CallbackSender, Delivery, redacted
from simulator.clock import SimClock
from simulator.config import SimulatorConfig
from simulator.events import StatusEvents
from simulator.household import Device, Household, new_device_id
from simulator.messages import (
    DEVICE_ALIAS_CHANGED,
    DEVICE_REGISTERED,
    DEVICE_UNREGISTERED,
    device_alias_changed_message,
    device_push_message,
    device_registered_message,
    device_unregistered_message,
    pcc_event_message,
)
from simulator.profile import normalize
from simulator.subscriptions import Subscriptions

log = logging.getLogger(__name__)

# Keep the call log bounded: a long-running demo must not grow without limit.
MAX_CALLS_LOGGED = 10_000
# Device types LG's PCC API supports (pcc-api.txt, "Supported Devices").
PCC_DEVICE_TYPES = frozenset(
    {"DEVICE_WASHER", "DEVICE_REFRIGERATOR", "DEVICE_DISH_WASHER", "DEVICE_OVEN"}
)


class RegistryError(ValueError):
    """A device cannot be added as asked (no template of its type, unknown owner)."""


@dataclass(frozen=True)
class RegistryChange:
    """One registry push to send: what happened (LG's pushType) to which device."""

    push_type: str
    device: Device


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
        self.behaviours: dict[str, Behaviour] = {}
        self.subscriptions = Subscriptions()
        self.sender = CallbackSender(config.callback_url)
        self.becon = BeconSite()
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS_LOGGED)
        # DEVICE_STATUS events of devices subscribed to events (simulator/events.py).
        self.events = StatusEvents(self.subscriptions, self.sender, self.clock.now)
        self._last_tick = self.clock.now()
        self._deliveries: set[asyncio.Task[Any]] = set()
        for device in self.household.all():
            self._track(device)

    # --- device state ------------------------------------------------------------------

    def control(self, device: Device, body: Any) -> None:
        """Validate the whole body, run the appliance rules on a copy, then commit."""
        writes = device.profile.parse_control(body)
        scratch = device.state.copy()
        self.behaviours[device.device_id].apply(scratch, writes)
        device.state = scratch
        self.report_changes()

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
        self.report_changes()
        return None

    def reset(self) -> list[RegistryChange]:
        """Contract: every device back to its initial state; ids and subscriptions kept.

        Also the household.json device set comes back (ours): devices added at run
        time go, with their subscriptions; removed ones return; aliases are restored.
        Returns the registry pushes that tell a connected partner about it.
        """
        restored = self.household.restore()
        for device in restored.removed:
            self._forget(device)
        for device in self.household.all():
            self._track(device)
        self.becon.reset()
        self.report_changes()
        return [
            *(RegistryChange(DEVICE_UNREGISTERED, d) for d in restored.removed),
            *(RegistryChange(DEVICE_REGISTERED, d) for d in restored.returned),
            *(RegistryChange(DEVICE_ALIAS_CHANGED, d) for d in restored.renamed),
        ]

    # --- the device registry (/sim add, remove, rename) ---------------------------------

    def add_device(
        self, device_type: str, alias: str, model_name: str | None, owner: str
    ) -> Device:
        """A new device copying the first household.json device of its type.

        Callers come through the HTTP middleware, which has already caught every device
        up with the clock: the new one's countdown starts now, not at the last tick.
        """
        template = self.household.template(device_type)
        if template is None:
            raise RegistryError(f"no household.json device of type {device_type} to copy")
        if owner not in self.household.users:
            raise RegistryError("unknown owner: not a user of household.json")
        device_id = new_device_id()
        while self.household.get(device_id) is not None:  # astronomically unlikely
            device_id = new_device_id()
        device = template.copy_as(
            device_id=device_id,
            alias=alias,
            model_name=model_name or template.model_name,
            owner=owner,
        )
        self.household.add(device)
        self._track(device)
        return device

    def remove_device(self, device: Device) -> None:
        self.household.remove(device.device_id)
        self._forget(device)

    def rename_device(self, device: Device, alias: str) -> bool:
        """Whether the alias changed: renaming to the same alias is no change to announce."""
        changed = device.alias != alias
        device.alias = alias
        return changed

    def _track(self, device: Device) -> None:
        """Give a (new or returning) device its appliance rules and countdown counters.

        Every device needs an entry: tick() and control() look each one up.
        """
        behaviour = self.behaviours.setdefault(device.device_id, behaviour_for(device.device_type))
        behaviour.sync(device.state)

    def _forget(self, device: Device) -> None:
        # A device that left LG has no subscriptions; should it return, it starts clean.
        self.behaviours.pop(device.device_id, None)
        self.subscriptions.drop(device.device_id)
        self.events.forget(device.device_id)

    # --- status events -----------------------------------------------------------------

    def subscribe_events(self, device: Device, expiry: float) -> None:
        """Event subscription (v1 and v2 share it) until ``expiry``, in simulated seconds;
        subscribing again renews. Changes from now on are sent as DEVICE_STATUS events."""
        self.events.subscribe(device, expiry)

    def report_changes(self) -> int:
        """Queue a DEVICE_STATUS event for each subscribed device whose state changed."""
        return self.events.report_changes(self.household.all())

    async def flush_events(self) -> None:
        """Wait until the status events queued so far have been sent."""
        await self.events.drain()

    # --- time --------------------------------------------------------------------------

    def tick(self) -> list[PendingPush]:
        """Move every appliance on to the clock's present; return the pushes produced."""
        now = self.clock.now()
        elapsed, self._last_tick = now - self._last_tick, now
        if elapsed <= 0:
            self.report_changes()  # e.g. a device back online sends what it missed
            return []
        pushes: list[PendingPush] = []
        for device in self.household.all():
            codes = self.behaviours[device.device_id].advance(device.state, elapsed)
            if codes and not device.online:
                # An appliance that cannot reach the cloud cannot push either.
                log.info("%s finished offline; no push sent", device.alias)
                continue
            pushes.extend(PendingPush(device, code) for code in codes)
        # Evaluated now: a subscription that lapsed during the jump sends nothing.
        self.report_changes()
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

    @property
    def callback_url(self) -> str | None:
        """Where callbacks go now: SIM_CALLBACK_URL at start, /sim/callback-url later."""
        return self.sender.url

    def set_callback_url(self, url: str | None) -> None:
        # The URL may carry a secret in its query: only the redacted form is logged.
        self.sender.url = url
        log.info("callback URL %s", f"set to {redacted(url)}" if url else "cleared")

    def registry_message(self, change: RegistryChange) -> dict[str, Any]:
        device = change.device
        ids = {
            "service_id": self.config.service_id,
            "device_id": device.device_id,
            "user_id": device.owner,
        }
        if change.push_type == DEVICE_REGISTERED:
            return device_registered_message(
                **ids,
                model_name=device.model_name,
                device_type=device.device_type,
                alias=device.alias,
            )
        if change.push_type == DEVICE_UNREGISTERED:
            return device_unregistered_message(
                **ids, device_type=device.device_type, alias=device.alias
            )
        return device_alias_changed_message(**ids, alias=device.alias)

    async def announce(self, change: RegistryChange) -> Delivery:
        """Send a registry push. No subscription is needed: LG subscribes every service
        to these by default once it has listed the user's devices."""
        return await self.sender.send(self.registry_message(change))

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
        await self.events.start()

    async def close(self) -> None:
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        await self.events.close()
        await self.sender.close()


CLOUD = web.AppKey("cloud", SimulatedCloud)
