"""Which writing system a message is in, to answer "I only understand English for now"
instead of guessing at an intent. No models: the Unicode names of its letters."""

from __future__ import annotations

import unicodedata

# At least this share of a message's letters outside the Latin script: not English.
OTHER_SCRIPT_SHARE = 0.5
MIN_LETTERS = 2
HANGUL = "hangul"
OTHER = "other"


def foreign_script(text: str) -> str | None:
    """``"hangul"`` for mostly-Korean text, ``"other"`` for another non-Latin script,
    None for Latin text (English or not: the NLU has its say) or text without letters."""
    letters = [c for c in text[:2000] if c.isalpha()]
    if len(letters) < MIN_LETTERS:
        return None
    names = [unicodedata.name(c, "") for c in letters]
    foreign = [n for n in names if not n.startswith("LATIN")]
    if len(foreign) / len(letters) < OTHER_SCRIPT_SHARE:
        return None
    hangul = sum(1 for n in foreign if n.startswith("HANGUL"))
    return HANGUL if hangul * 2 >= len(foreign) else OTHER
