"""Cutting long replies into channel-sized messages (connector/text_parts.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.text_parts import text_parts


def test_a_short_text_is_one_unchanged_part() -> None:
    assert text_parts("  Done: the oven is off. ", 100) == ["  Done: the oven is off. "]
    assert text_parts("", 10) == [""]


def test_cuts_at_a_line_break_in_the_second_half() -> None:
    text = "Washer: running\nDryer: idle\nOven: off"
    assert text_parts(text, 30) == ["Washer: running\nDryer: idle", "Oven: off"]


def test_cuts_at_a_space_when_there_is_no_line_break() -> None:
    assert text_parts("aaaa bbbb cccc dddd", 10) == ["aaaa bbbb", "cccc dddd"]


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert text_parts("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_a_break_early_in_the_piece_is_not_used() -> None:
    # Cutting at the first space would leave a one-word message.
    assert text_parts("a " + "b" * 20, 10) == ["a " + "b" * 8, "b" * 10, "b" * 2]


def test_the_limit_must_leave_room() -> None:
    with pytest.raises(ValueError):
        text_parts("abc", 1)


@given(text=st.text(alphabet=st.sampled_from("ab \n"), max_size=300), limit=st.integers(2, 50))
def test_parts_fit_and_keep_every_word(text: str, limit: int) -> None:
    parts = text_parts(text, limit)
    assert all(len(part) <= limit for part in parts)
    if len(text) > limit:
        assert all(part.strip() for part in parts)
        assert "".join(text.split()) == "".join("".join(parts).split())
    else:
        assert parts == [text]
