"""Numbers as people type or say them: "22", "-20", "22.5", "twenty two and a half", "minus 20"."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "couple": 2,
}  # fmt: skip
_TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}  # fmt: skip
_NEGATIVE = {"minus", "negative", "-"}
_FILLER = {"and", "degrees", "degree", "hours", "hour", "celsius", "c", "°c", "°", "by", "to", "of"}
_NUMERIC = re.compile(r"^[+-]?\d+(?:[.,]\d+)?$")


def parse_number(text: str | None) -> Decimal | None:
    """The number in ``text``, or None when it holds no number we can read with certainty."""
    if text is None:
        return None
    cleaned = text.strip().lower().replace("°", " ").replace("–", "-")
    if not cleaned:
        return None
    compact = cleaned.replace(" ", "")
    for suffix in ("degrees", "degree", "hours", "hour", "c"):
        compact = compact.removesuffix(suffix)
    if _NUMERIC.match(compact):
        try:
            return Decimal(compact.replace(",", "."))
        except InvalidOperation:
            return None
    # "twenty-two" is one number; a leading "-" is a sign.
    words = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", cleaned)
    return _parse_words(re.findall(r"[a-z]+|[-+]?\d+(?:\.\d+)?|-", words))


def _parse_words(tokens: list[str]) -> Decimal | None:
    sign = 1
    total = Decimal(0)
    current = Decimal(0)
    seen_number = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _NEGATIVE and not seen_number:
            sign = -1
        elif token == "half" or (token == "a" and tokens[i + 1 : i + 2] == ["half"]):
            if token == "a":
                i += 1
            current += Decimal("0.5")
            seen_number = True
        elif token == "point" and i + 1 < len(tokens):
            digits = []
            for follower in tokens[i + 1 :]:
                if follower in _UNITS and _UNITS[follower] < 10:
                    digits.append(str(_UNITS[follower]))
                elif follower.isdigit():
                    digits.append(follower)
                else:
                    break
            if not digits:
                return None
            current += Decimal("0." + "".join(digits))
            i += len(digits)
        elif token == "a":
            if tokens[i + 1 : i + 2] == ["hundred"]:
                current += 1  # "a hundred"
        elif token in _UNITS:
            current += _UNITS[token]
            seen_number = True
        elif token in _TENS:
            current += _TENS[token]
            seen_number = True
        elif token == "hundred":
            current = (current or 1) * 100
            seen_number = True
        elif re.fullmatch(r"[-+]?\d+(?:\.\d+)?", token):
            current += Decimal(token)
            seen_number = True
        elif token in _FILLER:
            pass
        else:
            return None  # an unknown word: better to ask than to guess
        i += 1
    if not seen_number:
        return None
    return sign * (total + current)
