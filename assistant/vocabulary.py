"""The data tables (``assistant/data/*.yml``) as typed, read-only objects.

Everything that differs between appliance types is here or in the device's
profile; the dialogue code only asks these tables questions.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lgcloud.profile import DeviceProfile, PropertySpec

DATA_DIR = Path(__file__).parent / "data"
# How alike a feature name the NLU did not know must be to a known one to count as its
# typo (difflib's ratio; "expres mode" ~ "express mode" is 0.96, "fan mode" ~ "fan speed" 0.59).
_TYPO_RATIO = 0.84


@dataclass(frozen=True)
class DeviceType:
    code: str
    name: str
    words: tuple[str, ...]
    location_words: dict[str, str] = field(default_factory=dict)
    confirm_control: bool = False
    pcc: bool = False
    group: str = "other"


@dataclass(frozen=True)
class Feature:
    key: str
    label: str
    patterns: tuple[str, ...]
    unit: str | None = None

    def matches(self, prop: PropertySpec) -> bool:
        name = f"{prop.resource}.{prop.name}"
        return any(fnmatch.fnmatchcase(name, pattern) for pattern in self.patterns)

    def properties(
        self, profile: DeviceProfile, *, writable: bool = False, readable: bool = False
    ) -> list[PropertySpec]:
        """The device's properties for this feature, in the table's order of preference."""
        found: list[PropertySpec] = []
        for pattern in self.patterns:
            for prop in profile.properties:
                if prop in found or not fnmatch.fnmatchcase(
                    f"{prop.resource}.{prop.name}", pattern
                ):
                    continue
                if (writable and not prop.writable) or (readable and not prop.readable):
                    continue
                found.append(prop)
        return found


@dataclass(frozen=True)
class Readout:
    pattern: str
    label: str | None
    format: str
    # Among the few facts a whole-home summary gives (assistant/home.py).
    overview: bool = False

    def matches(self, prop: PropertySpec) -> bool:
        return fnmatch.fnmatchcase(f"{prop.resource}.{prop.name}", self.pattern)


@dataclass(frozen=True)
class Vocabulary:
    device_types: dict[str, DeviceType]
    features: dict[str, Feature]
    operations: dict[str, tuple[str, ...]]
    safe_values: frozenset[str]
    settings: dict[str, tuple[str, ...]]
    value_labels: dict[str, str]
    run_states: dict[str, str]
    readouts: tuple[Readout, ...]
    operation_done: dict[str, str]
    operation_ask: dict[str, str]
    # Write-only operation -> the run states it leaves (to see whether it took effect).
    operation_effects: dict[str, frozenset[str]] = field(default_factory=dict)

    def device_type(self, code: str) -> DeviceType:
        known = self.device_types.get(code)
        if known:
            return known
        # An unknown type still gets a usable name: DEVICE_WINE_FRIDGE -> "wine fridge".
        name = code.removeprefix("DEVICE_").replace("_", " ").lower()
        return DeviceType(code=code, name=name, words=(name,))

    def feature(self, key: str | None) -> Feature | None:
        """The feature an entity value names: a key ("express_mode"), or when the NLU met a
        misspelling it has no synonym for ("expres mode"), the key or label it is a typo of."""
        if not key:
            return None
        known = self.features.get(key)
        if known is not None:
            return known
        names: dict[str, Feature] = {}
        for feature_key, feature in self.features.items():
            names[feature_key.replace("_", " ")] = feature
            names[feature.label.lower()] = feature
        said = " ".join(key.lower().replace("_", " ").split())
        close = difflib.get_close_matches(said, list(names), n=1, cutoff=_TYPO_RATIO)
        return names[close[0]] if close else None

    def feature_of(self, prop: PropertySpec) -> Feature | None:
        return next((f for f in self.features.values() if f.matches(prop)), None)

    def value_label(self, value: Any) -> str:
        key = str(value).lower() if isinstance(value, bool) else str(value)
        if key in self.value_labels:
            return self.value_labels[key]
        return key.replace("_", " ").lower()

    def run_state_label(self, state: str) -> str:
        return self.run_states.get(state, state.replace("_", " ").lower())

    def readout_for(self, prop: PropertySpec) -> Readout | None:
        return next((r for r in self.readouts if r.matches(prop)), None)


def _load_yaml(name: str) -> Any:
    with (DATA_DIR / name).open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@functools.lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    types_raw = _load_yaml("device_types.yml")
    device_types = {
        code: DeviceType(
            code=code,
            name=entry["name"],
            words=tuple(str(w).lower() for w in entry.get("words", [])),
            location_words={str(k).lower(): v for k, v in entry.get("location_words", {}).items()},
            confirm_control=bool(entry.get("confirm_control", False)),
            pcc=bool(entry.get("pcc", False)),
            group=str(entry.get("group", "other")),
        )
        for code, entry in types_raw.items()
    }
    raw = _load_yaml("features.yml")
    features = {
        key: Feature(
            key=key,
            label=entry["label"],
            patterns=tuple(entry["properties"]),
            unit=entry.get("unit"),
        )
        for key, entry in raw["features"].items()
    }
    return Vocabulary(
        device_types=device_types,
        features=features,
        operations={k: tuple(v) for k, v in raw["operations"].items()},
        safe_values=frozenset(raw["safe_values"]),
        settings={k: tuple(v) for k, v in raw["settings"].items()},
        value_labels={str(k): str(v) for k, v in raw["value_labels"].items()},
        run_states={str(k): str(v) for k, v in raw["run_states"].items()},
        readouts=tuple(
            Readout(
                pattern=r["match"],
                label=r.get("label"),
                format=r["format"],
                overview=bool(r.get("overview", False)),
            )
            for r in raw["readouts"]
        ),
        operation_done={str(k): str(v) for k, v in raw["operation_done"].items()},
        operation_ask={str(k): str(v) for k, v in raw["operation_ask"].items()},
        operation_effects={
            str(k): frozenset(str(s) for s in v)
            for k, v in raw.get("operation_effects", {}).items()
        },
    )
