"""lgcloud.profile: parsing LG profiles, validating changes, building control bodies."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lgcloud.profile import (
    ChangeRejected,
    ProfileError,
    RangeSpec,
    flatten_status,
    parse_profile,
)

PROFILES = Path(__file__).resolve().parent.parent / "simulator" / "profiles"


def load(name: str):
    return parse_profile(json.loads((PROFILES / f"{name}.json").read_text()))


def test_fridge_profile_has_per_compartment_temperatures():
    fridge = load("refrigerator")
    fridge_temp = fridge.require("temperatureInUnits.FRIDGE.targetTemperatureC")
    freezer_temp = fridge.require("temperatureInUnits.FREEZER.targetTemperatureC")
    assert fridge_temp.location == "FRIDGE" and fridge_temp.location_style == "item"
    assert fridge_temp.write_range == RangeSpec(Decimal(1), Decimal(7), Decimal(1))
    assert freezer_temp.write_range == RangeSpec(Decimal(-23), Decimal(-15), Decimal(1))
    assert fridge.require("refrigeration.expressMode").type == "boolean"
    door = fridge.require("doorStatus.MAIN.doorState")
    assert door.readable and not door.writable
    assert set(fridge.locations) >= {"FRIDGE", "FREEZER", "MAIN"}
    assert "DOOR_IS_OPEN" in fridge.push_codes


def test_boolean_change_builds_a_plain_body():
    fridge = load("refrigerator")
    assert fridge.build_command({"refrigeration.expressMode": True}) == [
        {"refrigeration": {"expressMode": True}}
    ]


def test_location_change_carries_the_location_name():
    fridge = load("refrigerator")
    body = fridge.build_command({"temperatureInUnits.FREEZER.targetTemperatureC": -20})
    assert body == [{"temperatureInUnits": {"locationName": "FREEZER", "targetTemperatureC": -20}}]


def test_two_compartments_become_two_bodies():
    fridge = load("refrigerator")
    bodies = fridge.build_command(
        {
            "temperatureInUnits.FRIDGE.targetTemperatureC": 4,
            "temperatureInUnits.FREEZER.targetTemperatureC": -20,
            "refrigeration.rapidFreeze": True,
        }
    )
    assert bodies == [
        {
            "temperatureInUnits": {"locationName": "FRIDGE", "targetTemperatureC": 4},
            "refrigeration": {"rapidFreeze": True},
        },
        {"temperatureInUnits": {"locationName": "FREEZER", "targetTemperatureC": -20}},
    ]


def test_combined_start_with_delay_is_one_body():
    washer = load("washer")
    body = washer.build_command(
        {"timer.relativeHourToStart": 3, "operation.washerOperationMode": "START"}
    )
    assert body == [
        {"timer": {"relativeHourToStart": 3}, "operation": {"washerOperationMode": "START"}}
    ]


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("temperatureInUnits.targetTemperatureC", 45, "out_of_range"),
        ("temperatureInUnits.targetTemperatureC", 17.5, "out_of_range"),
        ("temperatureInUnits.targetTemperatureC", 22.3, "off_step"),
        ("temperatureInUnits.targetTemperatureC", True, "wrong_type"),
        ("temperatureInUnits.targetTemperatureC", "22", "wrong_type"),
        ("temperatureInUnits.currentTemperatureC", 22, "read_only"),
        ("airConJobMode.currentJobMode", "AIR_CLEAN", "not_allowed"),
        ("airFlow.windStrength", "TURBO", "not_allowed"),
        ("refrigeration.expressMode", True, "unknown_property"),
    ],
)
def test_refused_changes_say_why(key, value, reason):
    ac = load("air_conditioner")
    with pytest.raises(ChangeRejected) as refused:
        ac.build_command({key: value})
    assert refused.value.reason == reason


def test_half_degree_steps_are_accepted_and_numbers_stay_json_friendly():
    ac = load("air_conditioner")
    assert ac.build_command({"temperatureInUnits.targetTemperatureC": 22.5}) == [
        {"temperatureInUnits": {"targetTemperatureC": 22.5}}
    ]
    assert ac.build_command({"temperatureInUnits.targetTemperatureC": 22.0}) == [
        {"temperatureInUnits": {"targetTemperatureC": 22}}
    ]


@given(
    minimum=st.integers(-50, 50),
    span_steps=st.integers(0, 40),
    step=st.sampled_from([Decimal("0.5"), Decimal(1), Decimal(2), Decimal(5)]),
    value=st.decimals(min_value=-100, max_value=150, places=1),
)
def test_range_accepts_exactly_the_grid(minimum, span_steps, step, value):
    spec = RangeSpec(Decimal(minimum), Decimal(minimum) + span_steps * step, step)
    on_grid = (value - spec.minimum) % step == 0
    assert spec.contains(value) == (spec.minimum <= value <= spec.maximum and on_grid)
    clamped = spec.clamp(value)
    assert spec.contains(clamped)


def test_whole_device_locations_are_understood():
    """Real LG washers and ovens list locations at the top of `property` (facts sheet §1.8)."""
    profile = parse_profile(
        {
            "property": [
                {
                    "location": {"locationName": "UPPER"},
                    "temperature": {
                        "targetTemperature": {
                            "type": "range",
                            "mode": ["r", "w"],
                            "value": {
                                "r": {"min": 50, "max": 250, "step": 5},
                                "w": {"min": 50, "max": 250, "step": 5},
                            },
                        }
                    },
                },
                {
                    "location": {"locationName": "LOWER"},
                    "temperature": {
                        "targetTemperature": {
                            "type": "range",
                            "mode": ["r", "w"],
                            "value": {"w": {"min": 50, "max": 200, "step": 5}},
                        }
                    },
                },
            ]
        }
    )
    assert profile.locations == ("UPPER", "LOWER")
    bodies = profile.build_command(
        {"temperature.UPPER.targetTemperature": 180, "temperature.LOWER.targetTemperature": 100}
    )
    assert bodies == [
        {"location": {"locationName": "UPPER"}, "temperature": {"targetTemperature": 180}},
        {"location": {"locationName": "LOWER"}, "temperature": {"targetTemperature": 100}},
    ]


def test_mode_written_as_a_string_and_plain_string_constants():
    profile = parse_profile(
        {
            "property": {
                "lamp": {
                    "lampBrightness": {
                        "type": "range",
                        "mode": "rw",
                        "value": {"w": {"min": 0, "max": 2}},
                    }
                },
                "info": {"modelType": "OTR"},
            }
        }
    )
    assert profile.require("lamp.lampBrightness").writable
    constant = profile.require("info.modelType")
    assert constant.readable and not constant.writable


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"property": 3},
        {"property": {"op": {"mode": {"type": "enum"}, "x": {"mode": ["r"]}}}},
        {"property": {"t": [{"target": {"type": "range", "mode": ["w"], "value": {"w": {}}}}]}},
        {
            "property": {
                "t": {"v": {"type": "range", "mode": ["w"], "value": {"w": {"min": 5, "max": 1}}}}
            }
        },
    ],
)
def test_malformed_profiles_are_rejected_clearly(bad):
    with pytest.raises(ProfileError):
        parse_profile(bad)


def test_flatten_status_matches_the_contract_keys():
    status = {
        "refrigeration": {"expressMode": False},
        "temperatureInUnits": [
            {"locationName": "FRIDGE", "targetTemperatureC": 3},
            {"locationName": "FREEZER", "targetTemperatureC": -18},
        ],
        "doorStatus": [{"locationName": "MAIN", "doorState": "CLOSE"}],
    }
    assert flatten_status(status) == {
        "refrigeration.expressMode": False,
        "temperatureInUnits.FRIDGE.targetTemperatureC": 3,
        "temperatureInUnits.FREEZER.targetTemperatureC": -18,
        "doorStatus.MAIN.doorState": "CLOSE",
    }
