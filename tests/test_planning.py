"""From a request to validated changes, per appliance, using only profiles and data tables."""

from __future__ import annotations

import pytest

from assistant.planning import CommandRequest, Refusal, plan_command
from assistant.vocabulary import load_vocabulary
from tests.household_fixtures import by_alias

VOCAB = load_vocabulary()
HOME = by_alias()


def plan(alias, status=None, location=None, **request):
    return plan_command(
        CommandRequest(**request), HOME[alias], VOCAB, status=status or {}, location=location
    )


@pytest.mark.parametrize(
    ("alias", "action", "expected"),
    [
        ("Living Room AC", "turn_on", {"operation.airConOperationMode": "POWER_ON"}),
        ("Living Room AC", "turn_off", {"operation.airConOperationMode": "POWER_OFF"}),
        ("Living Room AC", "start", {"operation.airConOperationMode": "POWER_ON"}),
        ("Washer", "turn_on", {"operation.washerOperationMode": "WAKE_UP"}),
        ("Washer", "start", {"operation.washerOperationMode": "START"}),
        ("Washer", "stop", {"operation.washerOperationMode": "STOP"}),
        ("Air Purifier", "turn_off", {"operation.airPurifierOperationMode": "POWER_OFF"}),
        ("Oven", "stop", {"operation.ovenOperationMode": "STOP"}),
    ],
)
def test_verbs_pick_the_value_the_profile_offers(alias, action, expected):
    assert plan(alias, action=action).flat_changes == expected


def test_named_settings_map_through_the_table():
    assert plan("Bedroom AC", action="set", setting="dry").flat_changes == {
        "airConJobMode.currentJobMode": "AIR_DRY"
    }
    assert plan("Bedroom AC", action="set", feature="fan_speed", setting="high").flat_changes == {
        "airFlow.windStrength": "HIGH"
    }
    assert plan("Oven", action="set", setting="convection_bake").flat_changes == {
        "cook.cookMode": "CONVECTION_BAKE"
    }


def test_a_value_the_mode_lacks_lists_what_it_has():
    with pytest.raises(Refusal) as refused:
        plan("Air Purifier", action="set", feature="mode", setting="heat")
    assert refused.value.kind == "value_not_allowed"
    assert refused.value.facts["allowed"] == ["clean", "auto", "circulator", "dual clean"]


def test_relative_changes_read_the_current_value_and_stop_at_the_limits():
    status = {"temperatureInUnits.targetTemperatureC": 23}
    down_two = plan("Bedroom AC", status, action="adjust", number="two", direction="down")
    assert down_two.flat_changes == {"temperatureInUnits.targetTemperatureC": 21}
    up_one = plan("Bedroom AC", status, action="adjust", direction="up")
    assert up_one.flat_changes == {"temperatureInUnits.targetTemperatureC": 24}
    clamped = plan("Bedroom AC", {"temperatureInUnits.targetTemperatureC": 29}, action="adjust",
                   number="5", direction="up")  # fmt: skip
    assert clamped.flat_changes == {"temperatureInUnits.targetTemperatureC": 30}
    with pytest.raises(Refusal) as at_limit:
        plan(
            "Bedroom AC",
            {"temperatureInUnits.targetTemperatureC": 30},
            action="adjust",
            direction="up",
        )
    assert at_limit.value.kind == "at_limit" and at_limit.value.facts["limit"] == 30


def test_fan_speed_steps_through_its_ordered_values():
    status = {"airFlow.windStrength": "LOW"}
    faster = plan("Bedroom AC", status, action="adjust", feature="fan_speed", direction="up")
    assert faster.flat_changes == {"airFlow.windStrength": "MID"}


def test_a_temperature_fitting_both_compartments_asks_which():
    with pytest.raises(Refusal) as refused:
        plan("Fridge", action="set", number="99")
    assert refused.value.kind == "choose_location"
    assert refused.value.facts["locations"] == ["FRIDGE", "FREEZER"]


def test_oven_commands_need_confirmation_except_stopping():
    assert plan("Oven", action="start").needs_confirmation
    assert plan("Oven", action="set", number="200").needs_confirmation
    assert not plan("Oven", action="stop").needs_confirmation
    assert not plan("Washer", action="start").needs_confirmation


def test_delayed_start_is_whole_hours_in_range():
    changes = plan("Dishwasher", action="schedule_start", number="3").flat_changes
    assert changes == {"timer.relativeHourToStart": 3, "operation.dishWasherOperationMode": "START"}
    for number, kind in (("2.5", "whole_hours"), ("30", "out_of_range"), (None, "need_value")):
        with pytest.raises(Refusal) as refused:
            plan("Washer", action="schedule_start", number=number)
        assert refused.value.kind == kind
    with pytest.raises(Refusal) as refused:
        plan("Styler", action="schedule_start", number="2")
    assert refused.value.kind == "no_delay_start"


def test_read_only_and_missing_features_are_refused():
    with pytest.raises(Refusal) as read_only:
        plan("Bedroom AC", action="set", feature="current_temperature", number="20")
    assert read_only.value.kind == "read_only"
    with pytest.raises(Refusal) as missing:
        plan("Washer", action="turn_on", feature="express_mode")
    assert missing.value.kind == "no_such_feature"
