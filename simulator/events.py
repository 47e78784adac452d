"""DEVICE_STATUS event messages: what a device subscribed to events reports when it changes.

LG says an event fires when a subscribed device's status changes and carries the
post-change status (facts sheet §2.1); its "Event Messages" page is not public. Our
shape (an assumption, also in simulator/README.md) wraps the MQTT status event of
§2.4 the way PCC events are wrapped::

    {"messageId", "timestamp",
     "event": {"pushType": "DEVICE_STATUS", "deviceId", "deviceType", "userNumber",
               "report": {<changed properties only, resource -> property -> value,
                           location resources as [{"locationName", ...}] like status>}}}

How it works: when a device's event subscription starts (v1 ``/event/{id}`` or v2
``event-async``; renewing a live one changes nothing) its current state becomes the
*baseline*. After anything that can change state (control, the clock's tick, a /sim
state change, a reset, coming back online) every subscribed, online device is compared
with its baseline; what differs is sent as one event and becomes the new baseline.
No event once the subscription has lapsed (the baseline is dropped with it), none while
the device is offline (the difference is sent when it comes back). Events go out one
at a time in the order made, by one sender task, and are not retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from simulator.callbacks import CallbackSender
from simulator.household import Device
from simulator.messages import device_status_event_message
from simulator.profile import LOCATION_NAME
from simulator.subscriptions import Subscriptions

log = logging.getLogger(__name__)

MAX_EVENTS_KEPT = 500  # /sim/events keeps the most recent ones


def status_report(device: Device, changed: Iterable[str]) -> dict[str, Any]:
    """The changed flat keys as a partial status: resource -> property -> value."""
    report: dict[str, Any] = {}
    for key in changed:
        spec = device.profile.specs.get(key)
        if spec is None or not spec.readable:
            continue
        value = device.state.get(key)
        if spec.location is None:
            report.setdefault(spec.resource, {})[spec.name] = value
            continue
        items = report.setdefault(spec.resource, [])
        item = next((i for i in items if i[LOCATION_NAME] == spec.location), None)
        if item is None:
            item = {LOCATION_NAME: spec.location}
            items.append(item)
        item[spec.name] = value
    return report


class StatusEvents:
    """Baselines per subscribed device, the send queue and the log of events made."""

    def __init__(
        self,
        subscriptions: Subscriptions,
        sender: CallbackSender,
        now: Callable[[], float],
    ) -> None:
        self._subscriptions = subscriptions
        self._sender = sender
        self._now = now
        self._baselines: dict[str, dict[str, Any]] = {}
        self.log: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS_KEPT)
        self._queue: asyncio.Queue[tuple[dict[str, Any], dict[str, Any]]] | None = None
        self._task: asyncio.Task[None] | None = None

    # --- subscriptions -------------------------------------------------------------------------

    def subscribe(self, device: Device, expiry: float) -> None:
        """Start (or renew) a device's event subscription until ``expiry`` (simulated s)."""
        if device.device_id not in self._subscriptions.events_active(self._now()):
            # A new subscription reports changes from now on, not those made before.
            self._baselines[device.device_id] = device.state.flat()
        self._subscriptions.event[device.device_id] = expiry

    def forget(self, device_id: str) -> None:
        self._baselines.pop(device_id, None)

    # --- changes -------------------------------------------------------------------------------

    def report_changes(self, devices: Iterable[Device]) -> int:
        """Queue one event per subscribed, online device whose state left its baseline."""
        active = set(self._subscriptions.events_active(self._now()))
        made = 0
        for device in devices:
            if device.device_id not in active:
                self._baselines.pop(device.device_id, None)
                continue
            if not device.online:
                continue  # it cannot reach the cloud; the difference waits for its return
            current = device.state.flat()
            baseline = self._baselines.get(device.device_id)
            if baseline is None:  # subscribed by a path that set no baseline: start now
                self._baselines[device.device_id] = current
                continue
            changed = [k for k, v in current.items() if k not in baseline or baseline[k] != v]
            if not changed:
                continue
            self._baselines[device.device_id] = current
            message = device_status_event_message(
                device_id=device.device_id,
                device_type=device.device_type,
                user_id=device.owner,
                report=status_report(device, changed),
            )
            self._enqueue(message)
            made += 1
        return made

    def _enqueue(self, message: dict[str, Any]) -> None:
        event = message["event"]
        entry: dict[str, Any] = {
            "messageId": message["messageId"],
            "deviceId": event["deviceId"],
            "report": event["report"],
            "status": "pending",
            "reason": None,
        }
        self.log.append(entry)
        if self._queue is None:
            entry.update(status="failed", reason="the simulator is not running")
            return
        self._queue.put_nowait((message, entry))

    # --- delivery ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._send_all(), name="sim-status-events")

    async def _send_all(self) -> None:
        assert self._queue is not None
        while True:
            message, entry = await self._queue.get()
            try:
                delivery = await self._sender.send(message)
                entry.update(status="sent" if delivery.sent else "failed", reason=delivery.reason)
            except Exception:  # never let one event stop the rest
                log.exception("sending a status event failed")
                entry.update(status="failed", reason="simulator bug, see its log")
            finally:
                self._queue.task_done()

    async def drain(self) -> None:
        """Wait until every event queued so far has been sent (or failed)."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue = None


# --- /sim/events (ours, for tests) ---------------------------------------------------------------


def describe_log(events: StatusEvents, device_id: str | None) -> list[dict[str, Any]]:
    return [dict(e) for e in events.log if device_id is None or e["deviceId"] == device_id]


EVENTS = web.AppKey("status_events", StatusEvents)


async def list_events(request: web.Request) -> web.Response:
    """Status events made, oldest first (the last 500); ``?deviceId=`` picks one device's."""
    wanted = request.query.get("deviceId")
    return web.json_response(describe_log(request.app[EVENTS], wanted))


async def clear_events(request: web.Request) -> web.Response:
    request.app[EVENTS].log.clear()
    return web.json_response({"cleared": True})


def add_sim_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/sim/events", list_events)
    router.add_delete("/sim/events", clear_events)
