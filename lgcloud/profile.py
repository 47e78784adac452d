"""ThinQ device profiles as data: parse, look up, validate a change, build the control body.

A profile (facts sheet §1.8) holds resources, each a set of properties with a
type, a read/write mode and allowed values. Resources that exist once per
compartment come in two shapes, and both are understood:

* a resource given as a list of items with a ``locationName`` (refrigerator
  ``temperatureInUnits: [{"locationName": "FRIDGE", ...}, ...]``), controlled
  as ``{"temperatureInUnits": {"locationName": "FRIDGE", "targetTemperatureC": 4}}``;
* a whole ``property`` given as a list of ``{"location": {"locationName": ...}, ...}``
  (washer MAIN/MINI, oven UPPER/LOWER), controlled as
  ``{"location": {"locationName": "UPPER"}, "temperature": {...}}``.

Every property gets a flat key: resource, then the location where the
resource is per-location, then the property name, joined by dots
(``temperatureInUnits.FRIDGE.targetTemperatureC``), the same keys the
simulator's inspection API reports.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

LocationStyle = Literal["item", "device"]


class ProfileError(ValueError):
    """The profile JSON is not in a shape we understand."""


class ChangeRejected(ValueError):
    """A requested change does not fit the profile. ``reason`` is machine-readable."""

    def __init__(self, reason: str, prop: PropertySpec | None, detail: str) -> None:
        super().__init__(detail)
        # One of: unknown_property, read_only, not_allowed, out_of_range, off_step, wrong_type.
        self.reason = reason
        self.prop = prop
        self.detail = detail


@dataclass(frozen=True)
class RangeSpec:
    minimum: Decimal
    maximum: Decimal
    step: Decimal
    excluded: tuple[Decimal, ...] = ()

    def contains(self, value: Decimal) -> bool:
        if value < self.minimum or value > self.maximum or value in self.excluded:
            return False
        return self.step == 0 or (value - self.minimum) % self.step == 0

    def clamp(self, value: Decimal) -> Decimal:
        """The nearest allowed value (used for relative changes that overshoot)."""
        value = min(max(value, self.minimum), self.maximum)
        if self.step:
            steps = ((value - self.minimum) / self.step).to_integral_value()
            value = min(self.minimum + steps * self.step, self.maximum)
        return value


@dataclass(frozen=True)
class PropertySpec:
    resource: str
    name: str
    location: str | None
    location_style: LocationStyle | None
    type: str
    readable: bool
    writable: bool
    read_values: tuple[Any, ...] | RangeSpec | None
    write_values: tuple[Any, ...] | RangeSpec | None
    unit: str | None = None

    @property
    def key(self) -> str:
        parts = (
            [self.resource, self.location, self.name]
            if self.location
            else [self.resource, self.name]
        )
        return ".".join(parts)  # type: ignore[arg-type]

    @property
    def enum_values(self) -> tuple[Any, ...]:
        """Every value the property can take, readable or writable, in profile order."""
        values: list[Any] = []
        for group in (self.read_values, self.write_values):
            if isinstance(group, tuple):
                values.extend(v for v in group if v not in values)
        return tuple(values)

    @property
    def write_range(self) -> RangeSpec | None:
        return self.write_values if isinstance(self.write_values, RangeSpec) else None

    def validate(self, value: Any) -> Any:
        """The value to send, or ChangeRejected saying exactly why not."""
        if not self.writable:
            raise ChangeRejected("read_only", self, f"{self.key} is read-only")
        if self.type == "boolean":
            if not isinstance(value, bool):
                raise ChangeRejected("wrong_type", self, f"{self.key} takes true or false")
            return value
        if self.type == "enum":
            allowed = self.write_values if isinstance(self.write_values, tuple) else ()
            if value not in allowed:
                raise ChangeRejected(
                    "not_allowed", self, f"{self.key} takes one of {', '.join(map(str, allowed))}"
                )
            return value
        if self.type == "range":
            number = _decimal(value)
            if number is None:
                raise ChangeRejected("wrong_type", self, f"{self.key} takes a number")
            spec = self.write_range
            if spec is None:
                return _plain_number(number)
            if number < spec.minimum or number > spec.maximum:
                raise ChangeRejected(
                    "out_of_range",
                    self,
                    f"{self.key} takes {spec.minimum} to {spec.maximum}",
                )
            if not spec.contains(number):
                raise ChangeRejected(
                    "off_step",
                    self,
                    f"{self.key} moves in steps of {spec.step}",
                )
            return _plain_number(number)
        if self.type == "number":
            number = _decimal(value)
            if number is None:
                raise ChangeRejected("wrong_type", self, f"{self.key} takes a number")
            return _plain_number(number)
        if self.type == "string":
            if not isinstance(value, str):
                raise ChangeRejected("wrong_type", self, f"{self.key} takes text")
            return value
        raise ChangeRejected("wrong_type", self, f"{self.key} ({self.type}) cannot be set")


@dataclass(frozen=True)
class DeviceProfile:
    properties: tuple[PropertySpec, ...]
    push_codes: tuple[str, ...]
    error_codes: tuple[str, ...]

    def get(self, key: str) -> PropertySpec | None:
        for prop in self.properties:
            if prop.key == key:
                return prop
        return None

    def require(self, key: str) -> PropertySpec:
        prop = self.get(key)
        if prop is None:
            raise ChangeRejected("unknown_property", None, f"this device has no {key}")
        return prop

    def find(self, resource: str | None = None, name: str | None = None) -> list[PropertySpec]:
        return [
            p
            for p in self.properties
            if (resource is None or p.resource == resource) and (name is None or p.name == name)
        ]

    @property
    def locations(self) -> tuple[str, ...]:
        seen: list[str] = []
        for prop in self.properties:
            if prop.location and prop.location not in seen:
                seen.append(prop.location)
        return tuple(seen)

    def build_command(self, changes: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Validate ``{flat key: value}`` and build the control bodies to send.

        Everything goes into one body where LG's format allows it. A body can
        address one compartment per list resource and one whole-device
        location, so changes to two compartments become two bodies.
        """
        if not changes:
            raise ValueError("no changes given")
        bodies: list[dict[str, Any]] = []
        for key, value in changes.items():
            prop = self.require(key)
            checked = prop.validate(value)
            body = _body_for(bodies, prop)
            if prop.location_style == "device":
                body["location"] = {"locationName": prop.location}
            resource = body.setdefault(prop.resource, {})
            if prop.location_style == "item":
                resource["locationName"] = prop.location
            resource[prop.name] = checked
        return bodies


def _body_for(bodies: list[dict[str, Any]], prop: PropertySpec) -> dict[str, Any]:
    for body in bodies:
        body_location = (body.get("location") or {}).get("locationName")
        if prop.location_style == "device":
            if body_location == prop.location:
                return body
            continue
        if body_location is not None:
            continue
        if prop.location_style == "item":
            existing = body.get(prop.resource, {}).get("locationName")
            if existing not in (None, prop.location):
                continue
        return body
    bodies.append({})
    return bodies[-1]


def parse_profile(profile: Mapping[str, Any]) -> DeviceProfile:
    """Parse a ThinQ profile JSON object into a :class:`DeviceProfile`."""
    if not isinstance(profile, Mapping):
        raise ProfileError("a profile must be a JSON object")
    raw = profile.get("property")
    props: list[PropertySpec] = []
    if isinstance(raw, Mapping):
        props.extend(_parse_resources(raw, location=None, style=None))
    elif isinstance(raw, list):
        for item in raw:
            if not isinstance(item, Mapping):
                raise ProfileError("a location entry of 'property' must be an object")
            location = _location_name((item.get("location") or {}).get("locationName"))
            resources = {k: v for k, v in item.items() if k != "location"}
            props.extend(_parse_resources(resources, location=location, style="device"))
    else:
        raise ProfileError("a profile needs a 'property' object or list")
    notification = profile.get("notification") or {}
    push = notification.get("push") if isinstance(notification, Mapping) else None
    errors = profile.get("error") or []
    return DeviceProfile(
        properties=tuple(props),
        push_codes=tuple(str(code) for code in push or []),
        error_codes=tuple(str(code) for code in errors if isinstance(code, str)),
    )


def _parse_resources(
    resources: Mapping[str, Any], location: str | None, style: LocationStyle | None
) -> Iterable[PropertySpec]:
    for resource, body in resources.items():
        if isinstance(body, Mapping):
            yield from _parse_properties(resource, body, location, style)
        elif isinstance(body, list):
            for item in body:
                if not isinstance(item, Mapping):
                    raise ProfileError(f"{resource}: list items must be objects")
                item_location = _location_name(item.get("locationName"))
                if item_location is None:
                    raise ProfileError(f"{resource}: list item without a locationName")
                fields = {k: v for k, v in item.items() if k != "locationName"}
                yield from _parse_properties(resource, fields, item_location, "item")
        else:
            raise ProfileError(f"{resource}: expected an object or a list")


def _parse_properties(
    resource: str, body: Mapping[str, Any], location: str | None, style: LocationStyle | None
) -> Iterable[PropertySpec]:
    unit = None
    unit_spec = body.get("unit")
    if isinstance(unit_spec, str):
        unit = unit_spec
    elif isinstance(unit_spec, Mapping):
        values = (unit_spec.get("value") or {}).get("r")
        if isinstance(values, list) and len(values) == 1:
            unit = str(values[0])
    for name, spec in body.items():
        if name == "unit":
            continue
        if isinstance(spec, str):
            # A plain string in a profile is a read-only constant (LG SDK behaviour).
            yield PropertySpec(
                resource, name, location, style, "string", True, False, (spec,), None
            )
            continue
        if not isinstance(spec, Mapping) or "type" not in spec:
            raise ProfileError(f"{resource}.{name}: a property needs a 'type'")
        mode = spec.get("mode", [])
        modes = set(mode) if isinstance(mode, list) else set(str(mode))
        values = spec.get("value") or {}
        prop_type = str(spec["type"])
        yield PropertySpec(
            resource=resource,
            name=name,
            location=location,
            location_style=style if location else None,
            type=prop_type,
            readable="r" in modes,
            writable="w" in modes,
            read_values=_values(prop_type, values.get("r")) if "r" in modes else None,
            write_values=_values(prop_type, values.get("w")) if "w" in modes else None,
            unit=spec.get("unit") if isinstance(spec.get("unit"), str) else unit,
        )


def _values(prop_type: str, raw: Any) -> tuple[Any, ...] | RangeSpec | None:
    if prop_type == "range" and isinstance(raw, Mapping):
        try:
            minimum = Decimal(str(raw["min"]))
            maximum = Decimal(str(raw["max"]))
            step = Decimal(str(raw.get("step", 1)))
            excluded = tuple(Decimal(str(v)) for v in raw.get("except", []))
        except (KeyError, InvalidOperation) as exc:
            raise ProfileError(f"a range needs numeric min and max: {raw!r}") from exc
        if minimum > maximum or step < 0:
            raise ProfileError(f"an empty range: {raw!r}")
        return RangeSpec(minimum, maximum, step, excluded)
    if prop_type == "boolean":
        return (True, False) if raw is None else tuple(raw)
    if isinstance(raw, list):
        return tuple(raw)
    return None


def _location_name(raw: Any) -> str | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, Mapping):  # the enum form {"type": "enum", "value": {"r": ["FRIDGE"]}}
        values = (raw.get("value") or {}).get("r") or []
        if len(values) == 1 and isinstance(values[0], str):
            return values[0]
    raise ProfileError(f"unreadable locationName: {raw!r}")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):  # bool is an int in Python, but never a temperature
        return None
    if isinstance(value, int | float | Decimal):
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            return None
        return number if number.is_finite() else None
    return None


def _plain_number(value: Decimal) -> int | float:
    """JSON-friendly: whole numbers as int (22, not 22.0), others as float (22.5)."""
    return int(value) if value == value.to_integral_value() else float(value)


def flatten_status(status: Mapping[str, Any]) -> dict[str, Any]:
    """``{resource: {prop: v}}`` status JSON to ``{flat key: v}``, both location shapes included."""
    flat: dict[str, Any] = {}

    def resources(body: Mapping[str, Any], location: str | None) -> None:
        for resource, value in body.items():
            if resource == "location":
                continue
            if isinstance(value, Mapping):
                for name, v in value.items():
                    key = f"{resource}.{location}.{name}" if location else f"{resource}.{name}"
                    flat[key] = v
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Mapping) and isinstance(item.get("locationName"), str):
                        loc = item["locationName"]
                        for name, v in item.items():
                            if name != "locationName":
                                flat[f"{resource}.{loc}.{name}"] = v

    if isinstance(status, list):
        for item in status:
            if isinstance(item, Mapping):
                location = (item.get("location") or {}).get("locationName")
                resources(item, location if isinstance(location, str) else None)
    elif isinstance(status, Mapping):
        resources(status, None)
    return flat
