"""The demo household as Appliance objects, built from the simulator's own profile files."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.household import Appliance
from lgcloud.profile import parse_profile

SIMULATOR = Path(__file__).resolve().parent.parent / "simulator"


def demo_appliances() -> list[Appliance]:
    household = json.loads((SIMULATOR / "household.json").read_text())
    user = next(u for u in household["users"] if u["userId"] == "demo")
    return [
        Appliance(
            device_id=d["deviceId"],
            device_type=d["deviceType"],
            alias=d["alias"],
            model_name=d["modelName"],
            profile=parse_profile(json.loads((SIMULATOR / "profiles" / d["profile"]).read_text())),
        )
        for d in user["devices"]
    ]


def by_alias() -> dict[str, Appliance]:
    return {a.alias: a for a in demo_appliances()}
