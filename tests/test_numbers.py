from decimal import Decimal

import pytest

from assistant.numbers import parse_number


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("22", "22"),
        ("-20", "-20"),
        ("22.5", "22.5"),
        ("22,5", "22.5"),
        ("22 degrees", "22"),
        ("twenty two", "22"),
        ("twenty-two", "22"),
        ("twenty two and a half", "22.5"),
        ("minus twenty", "-20"),
        ("negative 18", "-18"),
        ("two hundred fifty", "250"),
        ("a hundred", "100"),
        ("one and a half", "1.5"),
        ("seventeen point five", "17.5"),
        ("a couple", "2"),
        ("three hours", "3"),
        ("Nineteen", "19"),
    ],
)
def test_numbers_as_people_say_them(text, expected):
    assert parse_number(text) == Decimal(expected)


@pytest.mark.parametrize("text", [None, "", "  ", "banana", "twenty bananas", "point", "minus"])
def test_anything_unclear_is_not_a_number(text):
    assert parse_number(text) is None
