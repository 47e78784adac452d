"""Every response the code utters exists in domain.yml, and every response there is used."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CODE = [*ROOT.glob("assistant/*.py"), *ROOT.glob("actions/*.py")]
# The reasons lgcloud.profile.ChangeRejected carries (see its docstring).
PROFILE_REASONS = {
    "unknown_property",
    "read_only",
    "not_allowed",
    "out_of_range",
    "off_step",
    "wrong_type",
}


def domain_responses() -> set[str]:
    return set(yaml.safe_load((ROOT / "domain.yml").read_text())["responses"])


def responses_in_code() -> set[str]:
    text = "\n".join(p.read_text() for p in CODE)
    named = set(re.findall(r'"(utter_[a-z_]+)"', text))
    kinds = set(re.findall(r'Refusal\(\s*"([a-z_]+)"', text)) | PROFILE_REASONS
    kinds.discard("choose_location")  # asked as a question (utter_ask_which_location)
    return named | {f"utter_refuse_{kind}" for kind in kinds}


def responses_in_dialogue_data() -> set[str]:
    # assistant/data/notifications.yml picks the responses the connector sends.
    files = [*(ROOT / "data").rglob("*.yml"), ROOT / "assistant" / "data" / "notifications.yml"]
    text = "\n".join(p.read_text() for p in files)
    return set(re.findall(r"\b(utter_[a-z_]+)\b", text))


def test_every_uttered_response_is_in_the_domain():
    missing = responses_in_code() - domain_responses()
    assert not missing, f"responses used in code but missing from domain.yml: {sorted(missing)}"


def test_every_domain_response_is_used():
    unused = domain_responses() - responses_in_code() - responses_in_dialogue_data()
    assert not unused, f"responses in domain.yml that nothing utters: {sorted(unused)}"


def test_every_rule_action_exists():
    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    text = "\n".join(p.read_text() for p in (ROOT / "data").rglob("*.yml"))
    used = set(re.findall(r"\b(action_[a-z_]+)\b", text))
    assert used <= set(domain["actions"])
