"""An appliance's state in plain words, driven by the readout table and the profile.

"running, 35 minutes left", "power on, mode cool, set to 23°C, currently 25°C,
fan speed low". Units and the order of facts come from ``features.yml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from assistant.household import Appliance
from assistant.vocabulary import Feature, Vocabulary
from lgcloud.profile import PropertySpec


def format_duration(hours: int, minutes: int) -> str:
    parts = []
    if hours:
        parts.append(f"{hours} hour{'s' if hours != 1 else ''}")
    if minutes or not hours:
        parts.append(f"{minutes} minute{'s' if minutes != 1 else ''}")
    return " ".join(parts)


def join_names(names: list[str], joiner: str = "and") -> str:
    """ "Washer", "Washer and Dryer", "Washer, Dryer and Oven"."""
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {joiner} {names[-1]}"


def results_summary(
    done_sentence: str | None,
    done: int,
    refused: Sequence[str],
    silent: Sequence[str],
    *,
    article: str = "",
) -> str:
    """What one command to several devices did, honestly: "Turned off the Bedroom AC and
    Living Room AC. Both confirmed." or "1 of 2 confirmed. … The Bedroom AC didn't answer
    in time, so I can't confirm it; ask me again in a moment." ``refused`` entries carry
    their reason; ``article`` ("The ") goes before the silent names."""
    sentences = [done_sentence] if done and done_sentence else []
    if refused:
        sentences.append(f"Not done for {join_names(list(refused))}.")
    if silent:
        sentences.append(
            f"{article}{join_names(list(silent))} didn't answer in time, so I can't confirm "
            f"{'them' if len(silent) > 1 else 'it'}; ask me again in a moment."
        )
    if not refused and not silent:
        if done <= 1:
            return " ".join(sentences)
        both = "Both" if done == 2 else f"All {done}"
        return f"{sentences[0]} {both} confirmed."
    total = done + len(refused) + len(silent)
    return f"{done} of {total} confirmed. " + " ".join(sentences)


def format_number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _formatted(prop: PropertySpec, value: Any, fmt: str, vocab: Vocabulary) -> str | None:
    if fmt == "state":
        return vocab.run_state_label(str(value))
    if fmt == "on_off":
        return "on" if value else "off"
    if fmt == "flag":
        return "" if value else None  # the label says it all; nothing when false
    if fmt == "enabled":
        return "enabled" if value else "disabled"
    if fmt == "celsius":
        return f"{format_number(value)}°C"
    if fmt == "percent":
        return f"{format_number(value)}%"
    if fmt == "ugm3":
        return f"{format_number(value)} µg/m³"
    if fmt == "months":
        return f"{format_number(value)} month{'s' if value != 1 else ''}"
    if fmt == "hours_if_set":
        return f"in {format_number(value)} hours" if value else None
    return vocab.value_label(value)


def remaining_time(status: dict[str, Any]) -> str | None:
    hours, minutes = status.get("timer.remainHour"), status.get("timer.remainMinute")
    if not isinstance(hours, int | float) and not isinstance(minutes, int | float):
        return None
    hours, minutes = int(hours or 0), int(minutes or 0)
    if hours == 0 and minutes == 0:
        return None
    return format_duration(hours, minutes)


def describe(
    appliance: Appliance,
    status: dict[str, Any],
    vocab: Vocabulary,
    *,
    feature: Feature | None = None,
    overview: bool = False,
) -> str:
    """A comma-separated summary of the readable state; only ``feature``'s facts when given,
    only the readouts marked ``overview`` (a whole-home summary) when ``overview``."""
    if appliance.profile is None:
        return "I can't read its state right now"
    phrases: list[str] = []
    props: Iterable[PropertySpec] = (
        feature.properties(appliance.profile, readable=True)
        if feature
        else appliance.profile.properties
    )
    ordered = sorted(
        (p for p in props if p.readable and p.key in status),
        key=lambda p: _readout_rank(p, vocab),
    )
    for prop in ordered:
        readout = vocab.readout_for(prop)
        if overview and (readout is None or not readout.overview):
            continue
        if readout is None:
            if feature is None:
                continue  # the summary keeps to facts people care about
            text = vocab.value_label(status[prop.key])
            label: str | None = prop.name
        else:
            text = _formatted(prop, status[prop.key], readout.format, vocab)
            label = readout.label
        if text is None:
            continue
        if prop.location and _has_sibling_locations(appliance, prop):
            label = f"{prop.location.lower()} {label}" if label else prop.location.lower()
        phrases.append(" ".join(part for part in (label, text) if part))
        if prop.key == "runState.currentState":
            left = remaining_time(status)
            if left and status.get(prop.key) in ("RUNNING", "RESERVED", "PAUSE", "PREHEATING"):
                phrases.append(f"{left} left")
    if feature is not None and feature.key == "remaining_time":
        left = remaining_time(status)
        return f"{left} left" if left else "no time left on its timer"
    return ", ".join(phrases) if phrases else "no readable state"


def _readout_rank(prop: PropertySpec, vocab: Vocabulary) -> int:
    for index, readout in enumerate(vocab.readouts):
        if readout.matches(prop):
            return index
    return len(vocab.readouts)


def _has_sibling_locations(appliance: Appliance, prop: PropertySpec) -> bool:
    assert appliance.profile is not None
    return len(appliance.profile.find(prop.resource, prop.name)) > 1
