"""Which BECON facility a building manager means (assistant/facilities.py), no HTTP:
floors spelled any way, typos, type words, purpose ("lobby" is the indoor unit for
temperature and the purifier for air cleaning), capability, ties, and whether a request
is about the building at all rather than the home."""

from __future__ import annotations

import pytest

from assistant.facilities import (
    FacilityRef,
    Found,
    Lacking,
    NoFacility,
    Several,
    load_catalog,
    normalize,
)

CATALOG = load_catalog()


def _ref(kind: str, fid: str, name: str) -> FacilityRef:
    return FacilityRef("HQ", "GW01", kind, fid, name)


# The contract's demo site (demo-stack.md §4).
HQ = [
    _ref("IDU", "IDU-301", "Meeting Room 3F"),
    _ref("IDU", "IDU-101", "Lobby"),
    _ref("IDU", "IDU-201", "Office 2F"),
    _ref("VENT", "VENT-001", "Ventilation 1"),
    _ref("AIRCARE", "AIRCARE-001", "Lobby Purifier"),
]


def match(text: str, key: str | None = None, writable: bool = False):
    return CATALOG.match(text, HQ, key=key, writable=writable, purpose=CATALOG.purpose_of(text))


def named(result) -> str:
    assert isinstance(result, Found), result
    return result.facility.name


@pytest.mark.parametrize(
    ("said", "spelled"),
    [
        ("meeting room 3rd floor", "meeting room 3f"),
        ("the third floor meeting room", "the 3f meeting room"),
        ("floor 2 office", "2f office"),
        ("Office 2 F", "office 2f"),
        ("office 2nd fl.", "office 2f"),
    ],
)
def test_floors_are_spelled_one_way(said: str, spelled: str) -> None:
    assert normalize(said) == spelled


@pytest.mark.parametrize(
    ("text", "key", "writable", "expected"),
    [
        ("turn on the meeting room 3F unit", "power", True, "Meeting Room 3F"),
        ("meeting room on the third floor", "power", True, "Meeting Room 3F"),
        ("the meting room", "power", True, "Meeting Room 3F"),  # a typo
        ("set the lobby to 23 degrees", "setTemperature", True, "Lobby"),
        ("turn on the lobby", "power", True, "Lobby"),
        ("turn on air cleaning in the lobby", "power", True, "Lobby Purifier"),
        ("is the lobby purifier on?", "power", False, "Lobby Purifier"),
        ("what's the temperature in office 2F", "currentTemperature", False, "Office 2F"),
        ("set the ventilation fan to high", "fanSpeed", True, "Ventilation 1"),
        ("turn off the purifier", "power", True, "Lobby Purifier"),
    ],
)
def test_the_facility_meant(text: str, key: str, writable: bool, expected: str) -> None:
    assert named(match(text, key, writable)) == expected


def test_a_type_word_alone_with_several_of_the_type_is_a_question() -> None:
    result = match("turn on the indoor unit", "power", True)
    assert isinstance(result, Several)
    assert [c.name for c in result.candidates] == ["Lobby", "Meeting Room 3F", "Office 2F"]


def test_the_named_facility_lacking_the_key_is_said_not_swapped() -> None:
    result = match("set the lobby purifier to 23 degrees", "setTemperature", True)
    assert isinstance(result, Lacking)
    assert [m.name for m in result.matched] == ["Lobby Purifier"]
    assert isinstance(match("set ventilation 1 to 23 degrees", "setTemperature", True), Lacking)


def test_a_reading_cannot_be_set() -> None:
    assert isinstance(match("office 2f", "currentTemperature", True), Lacking)


def test_nothing_by_that_name() -> None:
    assert isinstance(match("the cafeteria", "power", True), NoFacility)


def test_all_indoor_units_are_the_site_s_indoor_units() -> None:
    chosen = CATALOG.select("turn off all indoor units at headquarters", HQ, key="power")
    assert [c.facility_id for c in chosen] == ["IDU-301", "IDU-101", "IDU-201"]


def test_all_the_lobby_units_narrow_by_name() -> None:
    chosen = CATALOG.select("turn off all the lobby units", HQ, key="power")
    assert [c.facility_id for c in chosen] == ["IDU-101"]


def test_everything_at_a_site_keeps_to_those_with_the_key() -> None:
    chosen = CATALOG.select("set everything at headquarters to 24", HQ, key="setTemperature")
    assert {c.facility_type for c in chosen} == {"IDU"}


@pytest.mark.parametrize(
    ("text", "building"),
    [
        ("turn off all indoor units at headquarters", True),
        ("set the lobby to 23", True),
        ("office 2f", True),
        ("the meting room", True),
        ("set the ventilation fan to high", True),
        ("what's it like at HQ", True),
        ("turn on the living room ac", False),
        ("what's the temperature in the office", False),  # "office" alone is a home word
        ("turn on express mode on my fridge", False),
        ("is the bedroom ac on", False),
        ("turn on the purifier", False),  # the home has one too: a type word is not a name
    ],
)
def test_whether_the_building_is_meant(text: str, building: bool) -> None:
    assert CATALOG.names_building(text, HQ, ["Headquarters", "HQ"]) is building


def test_the_data_table_is_consistent() -> None:
    for kind in CATALOG.types.values():
        assert kind.keys, kind.code
        assert set(kind.keys.values()) <= {"r", "rw"}, kind.code
        assert set(kind.purposes) <= set(CATALOG.purposes), kind.code
    keys = {key for kind in CATALOG.types.values() for key in kind.keys}
    assert set(CATALOG.features.values()) <= keys
    for options in CATALOG.settings.values():
        assert set(options) <= keys
