"""Which appliance a request means: aliases, type words, compartments, capabilities, context."""

from __future__ import annotations

import pytest

from assistant.resolution import Ambiguous, NotCapable, NotFound, Resolved, has_feature, resolve
from assistant.vocabulary import load_vocabulary
from tests.household_fixtures import by_alias, demo_appliances

VOCAB = load_vocabulary()
HOME = demo_appliances()
ALIAS = by_alias()


@pytest.mark.parametrize(
    ("mention", "alias", "location"),
    [
        ("Living Room AC", "Living Room AC", None),
        ("living room ac", "Living Room AC", None),
        ("the living room", "Living Room AC", None),
        ("the bedroom one", "Bedroom AC", None),
        ("bedrom", "Bedroom AC", None),  # a typo
        ("my fridge", "Fridge", None),
        ("refrigerator", "Fridge", "FRIDGE"),
        ("freezer", "Fridge", "FREEZER"),
        ("washing machine", "Washer", None),
        ("purifier", "Air Purifier", None),
        ("dish washer", "Dishwasher", None),
        ("the oven", "Oven", None),
    ],
)
def test_mentions_resolve_to_one_appliance(mention, alias, location):
    result = resolve(mention, HOME, VOCAB)
    assert isinstance(result, Resolved), result
    assert result.appliance.alias == alias
    assert result.location == location


def test_a_type_word_shared_by_two_appliances_is_a_question():
    result = resolve("AC", HOME, VOCAB)
    assert isinstance(result, Ambiguous)
    assert {a.alias for a in result.candidates} == {"Living Room AC", "Bedroom AC"}


@pytest.mark.parametrize("mention", ["kitchen AC", "garage freezer", "toaster", "car"])
def test_words_that_name_nothing_here_are_not_guessed(mention):
    assert isinstance(resolve(mention, HOME, VOCAB), NotFound)


def test_a_feature_picks_the_only_appliance_that_has_it():
    rapid = VOCAB.features["rapid_freeze"]
    result = resolve(None, HOME, VOCAB, capable=has_feature(rapid, writable=True), feature=rapid)
    assert isinstance(result, Resolved) and result.appliance.alias == "Fridge"


def test_a_feature_the_named_appliance_lacks():
    express = VOCAB.features["express_mode"]
    result = resolve(
        "washer", HOME, VOCAB, capable=has_feature(express, writable=True), feature=express
    )
    assert isinstance(result, NotCapable) and [a.alias for a in result.matched] == ["Washer"]


def test_it_means_the_appliance_in_context_when_it_can_do_the_thing():
    temperature = VOCAB.features["temperature"]
    bedroom = ALIAS["Bedroom AC"].device_id
    fridge = ALIAS["Fridge"].device_id
    capable = has_feature(temperature, writable=True)
    assert resolve(None, HOME, VOCAB, capable=capable, context_ids=[bedroom]).appliance.alias == (
        "Bedroom AC"
    )
    # The context cannot do it (the styler has no temperature): ask among those that can.
    styler = ALIAS["Styler"].device_id
    result = resolve(None, HOME, VOCAB, capable=capable, context_ids=[styler])
    assert isinstance(result, Ambiguous)
    assert {a.alias for a in result.candidates} == {
        "Fridge",
        "Living Room AC",
        "Bedroom AC",
        "Oven",
    }
    assert (
        resolve(None, HOME, VOCAB, capable=capable, context_ids=[fridge]).appliance.alias
        == "Fridge"
    )


def test_no_mention_and_no_context_asks_rather_than_guesses():
    assert isinstance(resolve(None, HOME, VOCAB), Ambiguous)
