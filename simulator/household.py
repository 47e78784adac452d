"""The simulated households: who owns which device, and each device's current state."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from simulator.config import DEMO_USER
from simulator.profile import Profile, PropertySpec, flatten_status, read_status, write_status

PACKAGE_DIR = Path(__file__).parent
HOUSEHOLD_FILE = PACKAGE_DIR / "household.json"
PROFILE_DIR = PACKAGE_DIR / "profiles"


@dataclass
class Runtime:
    """Sub-minute countdowns the status JSON cannot hold (it shows whole minutes/hours)."""

    remaining_s: float = 0.0  # cycle time left (washer, dryer, styler, dishwasher)
    reserve_s: float = 0.0  # delayed-start time left while RESERVED
    preheat_s: float = 0.0  # oven preheat time left while PREHEATING


@dataclass
class DeviceState:
    """A device's ThinQ status JSON plus its runtime counters.

    Appliance rules run on a copy and the copy replaces the original only when
    the whole command succeeded, so a refused command changes nothing.
    """

    profile: Profile
    status: dict[str, Any]
    runtime: Runtime = field(default_factory=Runtime)

    def copy(self) -> DeviceState:
        return DeviceState(self.profile, copy.deepcopy(self.status), replace(self.runtime))

    def spec(self, key: str) -> PropertySpec:
        return self.profile.specs[key]

    def has(self, key: str) -> bool:
        spec = self.profile.specs.get(key)
        return spec is not None and spec.readable

    def get(self, key: str) -> Any:
        return read_status(self.status, self.spec(key))

    def set(self, key: str, value: Any) -> None:
        write_status(self.status, self.spec(key), value)

    def flat(self) -> dict[str, Any]:
        return flatten_status(self.status)


@dataclass
class Device:
    device_id: str
    device_type: str
    alias: str
    model_name: str
    owner: str
    profile: Profile
    initial_state: dict[str, Any]  # flat keys, as in household.json
    state: DeviceState
    online: bool = True

    def reset(self) -> None:
        self.state = DeviceState(self.profile, self.profile.build_status(self.initial_state))
        self.online = True

    def copy_as(self, *, device_id: str, alias: str, model_name: str, owner: str) -> Device:
        """A new device of this one's type, profile and initial state (not current state)."""
        initial = dict(self.initial_state)
        return Device(
            device_id=device_id,
            device_type=self.device_type,
            alias=alias,
            model_name=model_name,
            owner=owner,
            profile=self.profile,
            initial_state=initial,
            state=DeviceState(self.profile, self.profile.build_status(initial)),
        )


@dataclass(frozen=True)
class Restored:
    """What ``Household.restore`` changed, so LG's registry pushes can announce it."""

    removed: list[Device]  # added at run time, now gone
    returned: list[Device]  # household.json devices that had been removed, back again
    renamed: list[Device]  # household.json devices whose alias went back to the original


def new_device_id() -> str:
    """64 lowercase hex characters, like the household.json ids (which hash an alias)."""
    return hashlib.sha256(uuid.uuid4().bytes).hexdigest()


class Household:
    """Every simulated user's devices, in household.json order, then those added later.

    household.json's own device set is remembered (objects and aliases) so a reset
    can bring back exactly that set, with the original ids.
    """

    def __init__(self, devices: list[Device], users: list[str] | None = None) -> None:
        self.devices: dict[str, Device] = {d.device_id: d for d in devices}
        if len(self.devices) != len(devices):
            raise ValueError("duplicate device id in household")
        self.users = frozenset(users if users is not None else (d.owner for d in devices))
        self._original_alias = {d.device_id: d.alias for d in devices}
        self._originals = dict(self.devices)

    @classmethod
    def load(cls, path: Path = HOUSEHOLD_FILE, profile_dir: Path = PROFILE_DIR) -> Household:
        doc = json.loads(path.read_text())
        profiles: dict[str, Profile] = {}
        devices: list[Device] = []
        for user in doc["users"]:
            for entry in user["devices"]:
                name = entry["profile"]
                if name not in profiles:
                    profiles[name] = Profile.load(profile_dir / name)
                profile = profiles[name]
                initial = dict(entry["state"])
                for key, value in initial.items():
                    problem = profile.check_state_value(key, value)
                    if problem:
                        raise ValueError(f"{entry['alias']}: {problem}")
                devices.append(
                    Device(
                        device_id=entry["deviceId"],
                        device_type=entry["deviceType"],
                        alias=entry["alias"],
                        model_name=entry["modelName"],
                        owner=user["userId"],
                        profile=profile,
                        initial_state=initial,
                        # build_status also checks that every readable key has a value
                        state=DeviceState(profile, profile.build_status(initial)),
                    )
                )
        return cls(devices, users=[user["userId"] for user in doc["users"]])

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def owned_by(self, user_id: str) -> list[Device]:
        return [d for d in self.devices.values() if d.owner == user_id]

    def demo_devices(self) -> list[Device]:
        return self.owned_by(DEMO_USER)

    def all(self) -> list[Device]:
        return list(self.devices.values())

    # --- changes at run time (/sim), so LG's registry pushes can be exercised --------------

    def template(self, device_type: str) -> Device | None:
        """The first household.json device of a type, present or not: new ones copy it."""
        return next((d for d in self._originals.values() if d.device_type == device_type), None)

    def add(self, device: Device) -> None:
        if device.device_id in self.devices or device.device_id in self._originals:
            raise ValueError("duplicate device id in household")
        self.devices[device.device_id] = device

    def remove(self, device_id: str) -> Device:
        return self.devices.pop(device_id)

    def restore(self) -> Restored:
        """Back to household.json: its device set, ids, aliases and initial state."""
        removed = [d for d in self.devices.values() if d.device_id not in self._originals]
        returned = [d for i, d in self._originals.items() if i not in self.devices]
        renamed = [
            d
            for i, d in self._originals.items()
            if i in self.devices and d.alias != self._original_alias[i]
        ]
        for device_id, device in self._originals.items():
            device.alias = self._original_alias[device_id]
            device.reset()
        self.devices = dict(self._originals)  # household.json order again
        return Restored(removed=removed, returned=returned, renamed=renamed)
