"""From what the user asked to the exact property changes, checked against the profile.

Nothing here talks to LG. A plan either holds the validated changes and the
control bodies to send, or raises :class:`Refusal` with a machine-readable
kind and the facts needed to explain it (the allowed range, the values a mode
can take, the compartments to choose from...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from assistant.household import Appliance
from assistant.numbers import parse_number
from assistant.vocabulary import Feature, Vocabulary
from lgcloud.profile import ChangeRejected, PropertySpec, RangeSpec

ACTIONS = ("turn_on", "turn_off", "start", "stop", "set", "adjust", "schedule_start")


@dataclass(frozen=True)
class CommandRequest:
    """What the user asked, independent of any device. Kept in a slot for follow-ups."""

    action: str
    feature: str | None = None
    setting: str | None = None
    number: str | None = None
    direction: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CommandRequest:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Change:
    prop: PropertySpec
    value: Any


@dataclass(frozen=True)
class Plan:
    appliance: Appliance
    changes: tuple[Change, ...]
    bodies: list[dict[str, Any]] = field(compare=False)
    needs_confirmation: bool

    @property
    def flat_changes(self) -> dict[str, Any]:
        return {c.prop.key: c.value for c in self.changes}


class Refusal(Exception):
    """The request cannot be turned into a command; ``kind`` picks the explanation."""

    def __init__(self, kind: str, **facts: Any) -> None:
        super().__init__(kind)
        self.kind = kind
        self.facts = facts


def plan_command(
    request: CommandRequest,
    appliance: Appliance,
    vocab: Vocabulary,
    *,
    location: str | None = None,
    status: dict[str, Any] | None = None,
) -> Plan:
    """Validated changes for ``request`` on ``appliance``. ``status`` is needed for "adjust"."""
    profile = appliance.profile
    if profile is None:
        raise Refusal("no_profile")
    feature = vocab.feature(request.feature)
    changes: list[Change]

    if request.action in ("turn_on", "turn_off") and feature and feature.key != "power":
        changes = [_switch_feature(request.action == "turn_on", feature, appliance, location)]
    elif request.action in ("turn_on", "turn_off", "start", "stop"):
        changes = [_operation(request.action, appliance, vocab)]
    elif request.action == "schedule_start":
        changes = _schedule_start(request, appliance, vocab)
    elif request.action == "set":
        changes = [_set(request, feature, appliance, vocab, location)]
    elif request.action == "adjust":
        changes = [_adjust(request, feature, appliance, vocab, location, status or {})]
    else:
        raise Refusal("unknown_action", action=request.action)

    try:
        bodies = profile.build_command({c.prop.key: c.value for c in changes})
    except ChangeRejected as exc:  # pragma: no cover - each change was validated above
        raise _refusal_from(exc, appliance, vocab) from exc
    confirm = vocab.device_type(appliance.device_type).confirm_control and not all(
        str(c.value) in vocab.safe_values for c in changes
    )
    return Plan(appliance, tuple(changes), bodies, confirm)


def _candidates(
    feature: Feature, appliance: Appliance, location: str | None, *, writable: bool = True
) -> list[PropertySpec]:
    assert appliance.profile is not None
    props = feature.properties(appliance.profile, writable=writable)
    if location:
        props = [p for p in props if p.location == location] or props
    return props


def _switch_feature(
    on: bool, feature: Feature, appliance: Appliance, location: str | None
) -> Change:
    props = _candidates(feature, appliance, location)
    booleans = [p for p in props if p.type == "boolean"]
    if not props:
        raise Refusal("no_such_feature", feature=feature.label)
    if not booleans:
        raise Refusal("not_switchable", feature=feature.label)
    return Change(booleans[0], on)


def _operation(action: str, appliance: Appliance, vocab: Vocabulary) -> Change:
    power = vocab.features["power"]
    assert appliance.profile is not None
    props = power.properties(appliance.profile, writable=True)
    if not props:
        readable = power.properties(appliance.profile, readable=True)
        if readable:
            raise Refusal("read_only", feature="power")
        raise Refusal("no_operation", action=action)
    for value in vocab.operations[action]:
        for prop in props:
            if isinstance(prop.write_values, tuple) and value in prop.write_values:
                return Change(prop, value)
    raise Refusal("operation_not_supported", action=action)


def _schedule_start(
    request: CommandRequest, appliance: Appliance, vocab: Vocabulary
) -> list[Change]:
    delay = vocab.features["delay_start"]
    assert appliance.profile is not None
    props = delay.properties(appliance.profile, writable=True)
    if not props:
        raise Refusal("no_delay_start")
    hours = parse_number(request.number)
    if hours is None:
        raise Refusal("need_value", feature=delay.label)
    if hours != hours.to_integral_value():
        raise Refusal("whole_hours")
    start = _operation("start", appliance, vocab)
    return [_validated(props[0], hours, appliance, vocab), start]


def _set(
    request: CommandRequest,
    feature: Feature | None,
    appliance: Appliance,
    vocab: Vocabulary,
    location: str | None,
) -> Change:
    assert appliance.profile is not None
    if request.setting:
        return _set_named(request.setting, feature, appliance, vocab)
    number = parse_number(request.number)
    if number is None:
        raise Refusal("need_value", feature=feature.label if feature else "setting")
    feature = feature or vocab.features["temperature"]
    props = [p for p in _candidates(feature, appliance, location) if p.type in ("range", "number")]
    if not props:
        readable = feature.properties(appliance.profile, readable=True)
        if readable:
            raise Refusal("read_only", feature=feature.label)
        raise Refusal("no_such_feature", feature=feature.label)
    if len(props) > 1:
        # Fridge vs freezer: when the number only fits one compartment, that is the one meant.
        fitting = [p for p in props if p.write_range is None or p.write_range.contains(number)]
        if len(fitting) != 1:
            raise Refusal(
                "choose_location",
                feature=feature.label,
                locations=[p.location for p in props if p.location],
            )
        props = fitting
    return _validated(props[0], number, appliance, vocab)


def _set_named(
    setting: str, feature: Feature | None, appliance: Appliance, vocab: Vocabulary
) -> Change:
    assert appliance.profile is not None
    wanted = vocab.settings.get(setting.lower(), (setting.upper(),))
    props = (
        feature.properties(appliance.profile, writable=True)
        if feature
        else [p for p in appliance.profile.properties if p.writable and p.type == "enum"]
    )
    for prop in props:
        allowed = prop.write_values if isinstance(prop.write_values, tuple) else ()
        for value in wanted:
            if value in allowed:
                return Change(prop, value)
    # Say what the closest property does accept, so the user can pick.
    options = [p for p in props if isinstance(p.write_values, tuple) and p.type == "enum"]
    if feature and options:
        raise Refusal(
            "value_not_allowed",
            feature=feature.label,
            value=setting.replace("_", " "),
            allowed=[vocab.value_label(v) for v in options[0].write_values or ()],
        )
    raise Refusal("setting_not_supported", value=setting.replace("_", " "))


def _adjust(
    request: CommandRequest,
    feature: Feature | None,
    appliance: Appliance,
    vocab: Vocabulary,
    location: str | None,
    status: dict[str, Any],
) -> Change:
    assert appliance.profile is not None
    if request.direction not in ("up", "down"):
        raise Refusal("need_direction")
    feature = feature or vocab.features["temperature"]
    props = _candidates(feature, appliance, location)
    if not props:
        raise Refusal("no_such_feature", feature=feature.label)
    if len(props) > 1 and props[0].type == "range":
        raise Refusal(
            "choose_location",
            feature=feature.label,
            locations=[p.location for p in props if p.location],
        )
    prop = props[0]
    current = status.get(prop.key)
    sign = 1 if request.direction == "up" else -1
    if prop.type == "range" and isinstance(prop.write_values, RangeSpec):
        if current is None or isinstance(current, bool):
            raise Refusal("state_unknown", feature=feature.label)
        amount = parse_number(request.number) if request.number else None
        step = amount if amount is not None else max(prop.write_values.step, Decimal(1))
        target = Decimal(str(current)) + sign * abs(step)
        if not prop.write_values.contains(target):
            spec = prop.write_values
            edge = spec.maximum if sign > 0 else spec.minimum
            if Decimal(str(current)) == edge:
                raise Refusal(
                    "at_limit", feature=feature.label, limit=_num(edge), unit=feature.unit
                )
            target = spec.clamp(target)
        return _validated(prop, target, appliance, vocab)
    if prop.type == "enum":
        # Ordered enums (fan speed LOW < MID < HIGH) step to the neighbouring value.
        ordered = [v for v in prop.write_values or () if v != "AUTO"]  # type: ignore[union-attr]
        if current not in ordered:
            raise Refusal("state_unknown", feature=feature.label)
        index = ordered.index(current) + sign
        if not 0 <= index < len(ordered):
            raise Refusal("at_limit", feature=feature.label, limit=vocab.value_label(current))
        return Change(prop, ordered[index])
    raise Refusal("not_adjustable", feature=feature.label)


def _validated(prop: PropertySpec, value: Any, appliance: Appliance, vocab: Vocabulary) -> Change:
    plain = _num(value) if isinstance(value, Decimal) else value
    try:
        return Change(prop, prop.validate(plain))
    except ChangeRejected as exc:
        refusal = _refusal_from(exc, appliance, vocab)
        refusal.facts["requested"] = plain
        raise refusal from exc


def _refusal_from(exc: ChangeRejected, appliance: Appliance, vocab: Vocabulary) -> Refusal:
    prop = exc.prop
    facts: dict[str, Any] = {"property": prop.key if prop else None}
    if prop is not None:
        feature = vocab.feature_of(prop)
        facts["feature"] = feature.label if feature else prop.name
        facts["unit"] = feature.unit if feature else None
        facts["location"] = prop.location
        spec = prop.write_range
        if spec is not None:
            facts.update(
                minimum=_num(spec.minimum), maximum=_num(spec.maximum), step=_num(spec.step)
            )
        if isinstance(prop.write_values, tuple):
            facts["allowed"] = [vocab.value_label(v) for v in prop.write_values]
    return Refusal(exc.reason, **facts)


def _num(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)
