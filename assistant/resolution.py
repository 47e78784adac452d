"""Which of the user's appliances a request means.

Inputs are what the user said (a mention such as "the bedroom one", maybe
none), the feature the request needs ("rapid freeze"), and the appliances the
conversation was last about (for "it" and "and the living room too").

Rules, in order:
1. A mention is matched against aliases (exact, then word overlap with typo
   tolerance) and against what people call each type ("washing machine").
   Compartment words ("freezer") also pick a location.
2. Among the best matches, those lacking the needed feature drop out.
3. With no mention, the conversation's appliance is used if it has the
   feature; otherwise the only appliance that has it.
4. Anything still ambiguous is a question for the user, never a guess.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assistant.household import Appliance
from assistant.vocabulary import Feature, Vocabulary

_STOPWORDS = {
    "the", "my", "our", "a", "an", "one", "ones", "please", "in", "on", "of", "at", "for",
    "too", "also", "as", "well", "same", "and", "then", "that", "this", "it", "its", "to",
    "device", "appliance", "unit", "thing", "there", "all",
}  # fmt: skip
_TYPO_RATIO = 0.84


def _tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower())
    return [w.removesuffix("'s") for w in words if w not in _STOPWORDS]


@dataclass(frozen=True)
class Resolved:
    appliance: Appliance
    location: str | None = None


@dataclass(frozen=True)
class Ambiguous:
    candidates: tuple[Appliance, ...]
    location: str | None = None


@dataclass(frozen=True)
class NotFound:
    mention: str


@dataclass(frozen=True)
class NotCapable:
    """Appliances matched, but none has the feature (or none exists with it)."""

    feature: Feature | None
    matched: tuple[Appliance, ...] = field(default_factory=tuple)


Resolution = Resolved | Ambiguous | NotFound | NotCapable


Capable = Callable[[Appliance], bool]


def has_feature(feature: Feature | None, *, writable: bool) -> Capable:
    """A capability test: the appliance's profile has the feature (readable or writable)."""

    def test(appliance: Appliance) -> bool:
        if feature is None:
            return True
        if appliance.profile is None:
            return False
        return bool(feature.properties(appliance.profile, writable=writable, readable=not writable))

    return test


def _word_match(word: str, candidates: Sequence[str]) -> bool:
    if word in candidates:
        return True
    if len(word) < 4:
        return False
    return any(difflib.SequenceMatcher(None, word, c).ratio() >= _TYPO_RATIO for c in candidates)


def _phrase_in(phrase: str, tokens: list[str]) -> bool:
    words = _tokens(phrase)
    if not words:
        return False
    n = len(words)
    return any(tokens[i : i + n] == words for i in range(len(tokens) - n + 1))


def _score(
    mention_tokens: list[str], appliance: Appliance, vocab: Vocabulary
) -> tuple[int, str | None]:
    """How well a mention fits an appliance (0 = not at all), and any compartment it names."""
    device_type = vocab.device_type(appliance.device_type)
    alias_tokens = _tokens(appliance.alias)
    if mention_tokens == alias_tokens:
        return 100, None
    location = None
    type_hit = False
    type_tokens: set[str] = set()
    for phrase, loc in sorted(device_type.location_words.items(), key=lambda kv: -len(kv[0])):
        if _phrase_in(phrase, mention_tokens):
            location, type_hit = loc, True
            type_tokens.update(_tokens(phrase))
            break
    for phrase in sorted(device_type.words, key=len, reverse=True):
        if _phrase_in(phrase, mention_tokens):
            type_hit = True
            type_tokens.update(_tokens(phrase))
    alias_hits = 0
    for word in mention_tokens:
        if _word_match(word, alias_tokens):
            alias_hits += 1
        elif word not in type_tokens:
            # A word that names neither this appliance nor its type ("kitchen" for the
            # Living Room AC) rules it out: better to ask than to pick the wrong one.
            return 0, None
    if alias_hits == 0 and not type_hit:
        return 0, None
    return 10 * alias_hits + (5 if type_hit else 0), location


def resolve(
    mention: str | None,
    appliances: Sequence[Appliance],
    vocab: Vocabulary,
    *,
    capable: Capable | None = None,
    feature: Feature | None = None,
    context_ids: Sequence[str] = (),
) -> Resolution:
    """``capable`` says whether an appliance can do what is asked; ``feature`` names it."""
    can = capable or (lambda _appliance: True)
    mention_tokens = _tokens(mention) if mention else []
    if mention_tokens:
        scored = [(_score(mention_tokens, a, vocab), a) for a in appliances]
        best = max((score for (score, _), _ in scored), default=0)
        if best == 0:
            return NotFound(mention or "")
        matched = [(a, loc) for (score, loc), a in scored if score == best]
        fit = [(a, loc) for a, loc in matched if can(a)]
        if not fit:
            return NotCapable(feature, tuple(a for a, _ in matched))
        if len(fit) == 1:
            return Resolved(fit[0][0], fit[0][1])
        return Ambiguous(tuple(a for a, _ in fit), fit[0][1])

    by_id = {a.device_id: a for a in appliances}
    in_context = [by_id[i] for i in context_ids if i in by_id]
    context_fit = [a for a in in_context if can(a)]
    if len(context_fit) == 1:
        return Resolved(context_fit[0])
    fit = [a for a in appliances if can(a)]
    if not fit:
        return NotCapable(feature)
    if len(fit) == 1:
        return Resolved(fit[0])
    return Ambiguous(tuple(context_fit or fit))
