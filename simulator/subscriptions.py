"""Push, PCC and event subscriptions as the simulated cloud records them.

Subscriptions are per device (a device has one owner). They survive /sim/reset,
except those of devices the reset (or a /sim removal) takes away.
Dicts keep subscription order, so lists come out in the order made.
"""

from __future__ import annotations


class Subscriptions:
    def __init__(self) -> None:
        self.push: dict[str, None] = {}
        self.pcc: dict[str, None] = {}
        self.event: dict[str, float] = {}  # device id -> expiry, in simulated seconds

    def drop(self, device_id: str) -> None:
        """Forget every subscription of a device that left the cloud."""
        self.push.pop(device_id, None)
        self.pcc.pop(device_id, None)
        self.event.pop(device_id, None)

    def events_active(self, now: float) -> list[str]:
        return [device_id for device_id, expiry in self.event.items() if expiry > now]

    def snapshot(self, now: float) -> dict[str, list[str]]:
        return {
            "push": list(self.push),
            "pcc": list(self.pcc),
            "event": self.events_active(now),
        }
