"""The simulated households: who owns which device, and each device's current state."""

from __future__ import annotations

import copy
import json
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


class Household:
    """Every simulated user's devices, in household.json order."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices: dict[str, Device] = {d.device_id: d for d in devices}
        if len(self.devices) != len(devices):
            raise ValueError("duplicate device id in household")

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
        return cls(devices)

    def get(self, device_id: str) -> Device | None:
        return self.devices.get(device_id)

    def owned_by(self, user_id: str) -> list[Device]:
        return [d for d in self.devices.values() if d.owner == user_id]

    def demo_devices(self) -> list[Device]:
        return self.owned_by(DEMO_USER)

    def all(self) -> list[Device]:
        return list(self.devices.values())
