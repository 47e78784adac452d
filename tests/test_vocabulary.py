"""The data tables as the dialogue code asks them: feature names the NLU did not map."""

from __future__ import annotations

import pytest

from assistant.vocabulary import load_vocabulary


@pytest.mark.parametrize(
    ("said", "key"),
    [
        ("express_mode", "express_mode"),  # what the synonym mapper gives
        ("expres mode", "express_mode"),  # typos it has no synonym for
        ("rapid freez", "rapid_freeze"),
        ("sabath mode", "sabbath_mode"),
        ("temprature", "temperature"),
        ("Express Mode", "express_mode"),
    ],
)
def test_a_feature_by_its_key_or_a_typo_of_its_name(said: str, key: str) -> None:
    feature = load_vocabulary().feature(said)
    assert feature is not None and feature.key == key


@pytest.mark.parametrize("said", [None, "", "banana", "fan mode speed level", "express"])
def test_words_that_are_no_feature_name_none(said: str | None) -> None:
    assert load_vocabulary().feature(said) is None
