"""Which BECON facilities a building manager means, no Rasa and no HTTP.

Facility names are whatever the building's installer typed ("Meeting Room 3F", "Lobby
Purifier"), so they are matched fuzzily against what was said:

1. Floors are spelled one way first: "3rd floor", "floor 3", "third floor", "3 F" -> "3f".
2. Each facility scores by the share of its name's words the request contains (typos
   tolerated), plus what the request says of its type ("unit", "purifier": a word of
   another type counts against it) and of its purpose ("23 degrees" is about
   temperature, "clean the air" about air cleaning): so "lobby" is the Lobby indoor unit
   when the request is about temperature and the Lobby Purifier when it is about air.
3. Facilities whose type lacks the state key the request needs drop out.
4. A clear winner is the answer; near-equal scores are a question for the user.

Whether a request is about the building at all (and not the home) is
:meth:`FacilityCatalog.names_building`: a word that only a facility or site name has
("lobby", "3f", "headquarters"), or a building word ("indoor units").
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DATA_FILE = Path(__file__).parent / "data" / "facility_types.yml"

_STOPWORDS = {
    "the", "my", "our", "a", "an", "please", "in", "on", "of", "at", "for", "to", "is",
    "it", "its", "and", "all", "every", "each", "both", "whole", "entire", "what", "whats",
    "s", "how", "turn", "switch", "set", "off", "up", "down", "make", "put", "me", "there",
}  # fmt: skip
_TYPO_RATIO = 0.84
# A score this close to the best one is a tie: ask instead of guessing.
_TIE_MARGIN = 0.2
_ORDINALS = {
    "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6,
    "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10, "ground": 1,
}  # fmt: skip


def normalize(text: str) -> str:
    """Lower case, one spelling for floors: "3rd floor", "floor 3", "3 F" -> "3f"."""
    text = text.lower().replace("’", "'")
    text = re.sub(
        r"\b(" + "|".join(_ORDINALS) + r")\s+(?:floor|fl)\b",
        lambda m: f"{_ORDINALS[m.group(1)]}f",
        text,
    )
    text = re.sub(r"\b(?:floor|fl)\.?\s*(\d+)\b", r"\1f", text)
    text = re.sub(r"\b(\d+)\s*(?:st|nd|rd|th)?\s*(?:floor|fl|f)\b\.?", r"\1f", text)
    return text


def tokens(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+(?:\.[0-9]+)?", normalize(text).replace("'s", ""))
    return [w for w in words if w not in _STOPWORDS]


def _phrase_in(phrase: str, text: str) -> bool:
    """A phrase (or its plural) as whole words in already-normalized text."""
    pattern = r"(?<![a-z0-9])" + re.escape(phrase) + r"(?:e?s)?(?![a-z0-9])"
    return re.search(pattern, text) is not None


def _same_word(said: str, name_word: str) -> bool:
    if said == name_word:
        return True
    if said.rstrip("s") == name_word.rstrip("s"):
        return True
    if said.isdigit() or name_word.isdigit() or len(name_word) < 4:
        return False  # "3f" is not "2f"
    return difflib.SequenceMatcher(None, said, name_word).ratio() >= _TYPO_RATIO


@dataclass(frozen=True)
class FacilityType:
    code: str
    name: str
    words: tuple[str, ...]
    purposes: tuple[str, ...]
    keys: Mapping[str, str]  # key -> "r" or "rw"

    def readable(self, key: str) -> bool:
        return key in self.keys

    def writable(self, key: str) -> bool:
        return self.keys.get(key) == "rw"


@dataclass(frozen=True)
class FacilityRef:
    """One facility of a site, as the directory lists it."""

    site_code: str
    gw_id: str
    facility_type: str
    facility_id: str
    name: str


@dataclass(frozen=True)
class Found:
    facility: FacilityRef


@dataclass(frozen=True)
class Several:
    """Near-equal candidates: ask which."""

    candidates: tuple[FacilityRef, ...]


@dataclass(frozen=True)
class Lacking:
    """Facilities matched the name, but none has the needed key."""

    matched: tuple[FacilityRef, ...]


@dataclass(frozen=True)
class NoFacility:
    mention: str


Match = Found | Several | Lacking | NoFacility


@dataclass(frozen=True)
class FacilityCatalog:
    types: Mapping[str, FacilityType]
    features: Mapping[str, str]
    settings: Mapping[str, Mapping[str, str]]
    purposes: Mapping[str, tuple[str, ...]]
    value_labels: Mapping[str, Mapping[str, str]]
    key_labels: Mapping[str, str]
    building_words: tuple[str, ...]
    home_words: frozenset[str]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FacilityCatalog:
        types = {
            code: FacilityType(
                code,
                str(entry["name"]),
                tuple(normalize(str(w)) for w in entry.get("words", ())),
                tuple(entry.get("purposes", ())),
                {str(k): str(v) for k, v in entry.get("keys", {}).items()},
            )
            for code, entry in data["types"].items()
        }
        return cls(
            types=types,
            features=dict(data.get("features", {})),
            settings={k: dict(v) for k, v in data.get("settings", {}).items()},
            purposes={k: tuple(normalize(w) for w in v) for k, v in data["purposes"].items()},
            value_labels={k: dict(v) for k, v in data.get("value_labels", {}).items()},
            key_labels=dict(data.get("key_labels", {})),
            building_words=tuple(normalize(w) for w in data.get("building_words", ())),
            home_words=frozenset(data.get("home_words", ())),
        )

    def type_of(self, facility: FacilityRef) -> FacilityType:
        """The facility's type; an unknown type has no keys (it can be listed, not used)."""
        known = self.types.get(facility.facility_type)
        return known or FacilityType(facility.facility_type, facility.facility_type, (), (), {})

    def label(self, key: str, value: Any) -> str:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if key in ("setTemperature", "currentTemperature"):
            return f"{value} °C"
        return self.value_labels.get(key, {}).get(str(value), str(value).lower())

    # --- what the request is for ------------------------------------------------------------

    def purpose_of(self, text: str) -> str | None:
        said = normalize(text)
        for purpose, words in self.purposes.items():
            if any(_phrase_in(w, said) for w in words):
                return purpose
        return None

    def named_types(self, text: str) -> set[str]:
        """The facility types a request names by a type word ("indoor units" -> IDU)."""
        said = normalize(text)
        return {
            code
            for code, kind in self.types.items()
            if any(_phrase_in(w, said) for w in kind.words)
        }

    # --- is it about the building? -------------------------------------------------------

    def names_building(
        self, text: str, facilities: Sequence[FacilityRef], site_names: Iterable[str] = ()
    ) -> bool:
        """True when the request names the building: a building word, or a word that only
        a facility or site name has (not a home word, a type word or a number)."""
        said = normalize(text)
        if any(_phrase_in(w, said) for w in self.building_words):
            return True
        generic = set(self.home_words) | {w for t in self.types.values() for w in t.words}
        distinctive = {
            word
            for name in [f.name for f in facilities] + list(site_names)
            for word in tokens(name)
            if word not in generic and not word.isdigit()
        }
        return any(
            _same_word(word, name_word) for word in tokens(text) for name_word in distinctive
        )

    # --- which facility -----------------------------------------------------------------------

    def match(
        self,
        mention: str,
        facilities: Sequence[FacilityRef],
        *,
        key: str | None = None,
        writable: bool = False,
        purpose: str | None = None,
    ) -> Match:
        """The facility ``mention`` means, among those with ``key`` (writable if asked)."""
        scored = [(self._score(mention, f, purpose), f) for f in facilities]
        named = [(s, f) for (s, coverage), f in scored if coverage > 0 and s > 0]
        if not named:
            # No name word: a type word alone ("the purifier") names the only one of it.
            types = self.named_types(mention)
            named = [(0.5, f) for f in facilities if f.facility_type in types]
        if not named:
            return NoFacility(mention)
        capable = [(s, f) for s, f in named if self._has(f, key, writable)]
        best_named = max(s for s, _ in named)
        if not capable or max(s for s, _ in capable) < best_named - _TIE_MARGIN:
            # The one clearly meant cannot do it ("set the lobby purifier to 23 degrees"):
            # say so rather than pick a lesser match that can.
            return Lacking(
                tuple(
                    f
                    for s, f in named
                    if s > best_named - _TIE_MARGIN and not self._has(f, key, writable)
                )
            )
        capable.sort(key=lambda pair: (-pair[0], pair[1].name))
        best = capable[0][0]
        tied = tuple(f for s, f in capable if s > best - _TIE_MARGIN)
        return Found(tied[0]) if len(tied) == 1 else Several(tied)

    def select(
        self,
        mention: str,
        facilities: Sequence[FacilityRef],
        *,
        key: str,
    ) -> list[FacilityRef]:
        """Every facility "all the ..." means: of the types the mention names (all types
        when it names none), and whose names share a word with it when it names any; only
        those with the writable ``key``."""
        types = self.named_types(mention)
        chosen = [f for f in facilities if not types or f.facility_type in types]
        named = [f for f in chosen if self._score(mention, f, None)[1] > 0]
        return [f for f in named or chosen if self._has(f, key, True)]

    def _has(self, facility: FacilityRef, key: str | None, writable: bool) -> bool:
        if key is None:
            return True
        kind = self.type_of(facility)
        return kind.writable(key) if writable else kind.readable(key)

    def _score(
        self, mention: str, facility: FacilityRef, purpose: str | None
    ) -> tuple[float, float]:
        """(score, share of the name's words said)."""
        name_words = tokens(facility.name)
        said = tokens(mention)
        if not name_words or not said:
            return 0.0, 0.0
        hits = sum(1 for n in name_words if any(_same_word(w, n) for w in said))
        coverage = hits / len(name_words)
        kind = self.type_of(facility)
        named_types = self.named_types(mention)
        score = coverage
        if kind.code in named_types:
            score += 0.5
        elif named_types and not self.named_types(facility.name) & named_types:
            score -= 0.75  # "purifier" said, and this is not one (nor named like one)
        if purpose is not None and kind.purposes:
            score += 0.5 if purpose in kind.purposes else -0.5
        return score, coverage


@functools.lru_cache(maxsize=1)
def load_catalog(path: Path = DATA_FILE) -> FacilityCatalog:
    with path.open(encoding="utf-8") as handle:
        return FacilityCatalog.from_dict(yaml.safe_load(handle))
