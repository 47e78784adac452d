"""ThinQ device profiles: loading, value checks, control-body validation, status shape.

A profile (facts sheet §1.8) maps resource -> property -> ``{"type", "mode",
"value"}``. A per-location resource is a list of items, each carrying a plain
``"locationName"`` string plus its properties. Every property has a flat key:
``resource.property`` or ``resource.LOCATION.property`` (contract §3).

Numbers are checked with ``Decimal`` so that steps like 0.5 are exact:
22.5 is on the grid of 18..30 step 0.5, 22.3 is not, whatever binary floats say.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from simulator.errors import ThinQError

LOCATION_NAME = "locationName"
MAX_NUMBER = 10**9


@dataclass(frozen=True)
class PropertySpec:
    resource: str
    location: str | None
    name: str
    type: str
    mode: tuple[str, ...]
    value: Mapping[str, Any]  # {"r": allowed readable values, "w": allowed writable values}

    @property
    def key(self) -> str:
        return flat_key(self.resource, self.location, self.name)

    @property
    def readable(self) -> bool:
        return "r" in self.mode

    @property
    def writable(self) -> bool:
        return "w" in self.mode


@dataclass(frozen=True)
class Write:
    """One validated property change from a control body."""

    spec: PropertySpec
    value: Any


def flat_key(resource: str, location: str | None, name: str) -> str:
    return f"{resource}.{location}.{name}" if location else f"{resource}.{name}"


def as_decimal(value: Any) -> Decimal | None:
    """The exact decimal of a JSON number, or None for anything else (bools included)."""
    if isinstance(value, bool):
        return None  # JSON true is not the number 1
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))  # repr is the shortest exact round-trip text
    else:
        return None
    return number if number.is_finite() else None


def plain_number(number: Decimal) -> int | float:
    """Store 4 and 4.0 as 4, 22.5 as 22.5: what a JSON client expects to read back."""
    if number == number.to_integral_value():
        return int(number)
    return float(number)


def normalize(value: Any) -> Any:
    """Turn the Decimals our JSON parser produces into plain ints and floats."""
    if isinstance(value, Decimal):
        return plain_number(value)
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def check_value(prop_type: str, allowed: Any, value: Any) -> str | None:
    """Why ``value`` does not fit a property of ``prop_type`` with ``allowed`` values, or None."""
    if prop_type == "boolean":
        return None if isinstance(value, bool) else "takes true or false"
    if prop_type == "enum":
        options = allowed if isinstance(allowed, list) else []
        if isinstance(value, str) and value in options:
            return None
        return f"takes one of {', '.join(options)}"
    if prop_type in ("range", "number"):
        number = as_decimal(value)
        if number is None:
            return "takes a finite number"
        if prop_type == "number" or not isinstance(allowed, Mapping):
            # Profiles give read-only numbers no bounds; ours keeps later arithmetic sane.
            return None if abs(number) <= MAX_NUMBER else f"takes at most {MAX_NUMBER} in size"
        return _range_problem(allowed, number)
    return f"a {prop_type} property cannot be set"


def _range_problem(spec: Mapping[str, Any], number: Decimal) -> str | None:
    try:
        low = Decimal(str(spec["min"]))
        high = Decimal(str(spec["max"]))
        step = Decimal(str(spec.get("step", 1)))
        excluded = [Decimal(str(x)) for x in spec.get("except", [])]
    except (KeyError, InvalidOperation) as exc:  # a broken profile is our bug, not the caller's
        raise ValueError(f"bad range spec {spec!r}") from exc
    if number < low or number > high:
        return f"takes {low} to {high}"
    if step and (number - low) % step != 0:
        return f"takes steps of {step} from {low}"
    if number in excluded:
        return f"does not take {number}"
    return None


class Profile:
    """One device type's profile document plus indexes over it."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.specs: dict[str, PropertySpec] = {}
        # resource -> its location names in profile order, or None for a plain resource
        self.resources: dict[str, tuple[str, ...] | None] = {}
        for resource, content in doc["property"].items():
            if isinstance(content, list):
                locations = []
                for item in content:
                    location = item[LOCATION_NAME]
                    locations.append(location)
                    self._add_props(resource, location, item)
                self.resources[resource] = tuple(locations)
            else:
                self._add_props(resource, None, content)
                self.resources[resource] = None

    def _add_props(self, resource: str, location: str | None, props: Mapping[str, Any]) -> None:
        for name, body in props.items():
            if name == LOCATION_NAME:
                continue
            spec = PropertySpec(
                resource=resource,
                location=location,
                name=name,
                type=body["type"],
                mode=tuple(body["mode"]),
                value=body.get("value") or {},
            )
            self.specs[spec.key] = spec

    @classmethod
    def load(cls, path: Path) -> Profile:
        return cls(json.loads(path.read_text()))

    @property
    def push_codes(self) -> list[str]:
        return list(self.doc.get("notification", {}).get("push", []))

    def readable_specs(self) -> list[PropertySpec]:
        return [spec for spec in self.specs.values() if spec.readable]

    def document(self) -> dict[str, Any]:
        """A copy of the profile JSON, safe to hand to a response."""
        return copy.deepcopy(self.doc)

    # --- control bodies -------------------------------------------------------------

    def parse_control(self, body: Any) -> list[Write]:
        """Validate a whole control body before anything is applied (atomic control)."""
        if not isinstance(body, dict):
            raise ThinQError("1311", "the control body must be a JSON object")
        if not body:
            raise ThinQError("1101", "the control body names no resource")
        writes: list[Write] = []
        for resource, content in body.items():
            if resource not in self.resources:
                raise ThinQError("1102", f"unknown resource {resource!r}")
            if not isinstance(content, dict):
                raise ThinQError("1102", f"{resource} must be an object")
            props = dict(content)
            location = None
            locations = self.resources[resource]
            if locations is not None:
                if LOCATION_NAME not in props:
                    raise ThinQError("1101", f"{resource} needs a locationName")
                location = props.pop(LOCATION_NAME)
                if not isinstance(location, str) or location not in locations:
                    raise ThinQError("1102", f"{resource} has no location {location!r}")
            if not props:
                raise ThinQError("1101", f"no property given for {resource}")
            for name, value in props.items():
                spec = self.specs.get(flat_key(resource, location, name))
                if spec is None:
                    raise ThinQError("1102", f"unknown property {resource}.{name}")
                if not spec.writable:
                    raise ThinQError("1102", f"{spec.key} is read-only")
                problem = check_value(spec.type, spec.value.get("w"), value)
                if problem:
                    raise ThinQError("1102", f"{spec.key} {problem}")
                writes.append(Write(spec, normalize(value)))
        return writes

    # --- status ------------------------------------------------------------------------

    def check_state_value(self, key: str, value: Any) -> str | None:
        """Why ``value`` cannot be the readable state of ``key``, or None (for /sim state)."""
        spec = self.specs.get(key)
        if spec is None:
            return f"unknown key {key!r}"
        if not spec.readable:
            return f"{key} is write-only and has no state"
        problem = check_value(spec.type, spec.value.get("r"), value)
        return f"{key} {problem}" if problem else None

    def build_status(self, flat: Mapping[str, Any]) -> dict[str, Any]:
        """ThinQ status JSON from flat keys; every readable key must be given."""
        missing = [spec.key for spec in self.readable_specs() if spec.key not in flat]
        extra = [key for key in flat if key not in self.specs or not self.specs[key].readable]
        if missing or extra:
            raise ValueError(f"state does not match profile: missing {missing}, extra {extra}")
        status: dict[str, Any] = {}
        for resource, locations in self.resources.items():
            if locations is None:
                props = {
                    s.name: flat[s.key]
                    for s in self.readable_specs()
                    if s.resource == resource and s.location is None
                }
                if props:
                    status[resource] = props
            else:
                items = []
                for location in locations:
                    item: dict[str, Any] = {LOCATION_NAME: location}
                    for s in self.readable_specs():
                        if s.resource == resource and s.location == location:
                            item[s.name] = flat[s.key]
                    items.append(item)
                status[resource] = items
        return status


def flatten_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """Flat-key view of a ThinQ status JSON (the /sim/devices ``state``)."""
    flat: dict[str, Any] = {}
    for resource, content in status.items():
        if isinstance(content, list):
            for item in content:
                location = item.get(LOCATION_NAME)
                for name, value in item.items():
                    if name != LOCATION_NAME:
                        flat[flat_key(resource, location, name)] = value
        elif isinstance(content, dict):
            for name, value in content.items():
                flat[flat_key(resource, None, name)] = value
    return flat


def read_status(status: Mapping[str, Any], spec: PropertySpec) -> Any:
    content = status[spec.resource]
    if spec.location is not None:
        content = next(i for i in content if i.get(LOCATION_NAME) == spec.location)
    return content[spec.name]


def write_status(status: dict[str, Any], spec: PropertySpec, value: Any) -> None:
    content = status[spec.resource]
    if spec.location is not None:
        content = next(i for i in content if i.get(LOCATION_NAME) == spec.location)
    content[spec.name] = value
