"""The Rasa server's check of action server answers (rasa_ext/action_response.py): the same
verdict and error as Rasa's own check, without re-checking Rasa's constant schema on
every action call."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction

import rasa_ext  # noqa: F401  (installs the check, as Rasa's import of our stores does)

ACTION = RemoteAction("action_control_device", None)
RASAS_OWN = RemoteAction._validate_action_result.rasa_original

VALID = [
    {"events": [], "responses": []},
    {},
    {
        "events": [{"event": "slot", "name": "context_devices", "value": ["d-1"]}],
        "responses": [
            {
                "response": "utter_confirm_control",
                "buttons": [{"title": "Yes", "payload": "/affirm"}],
                "device": "Oven",
                "text": None,
                "elements": [],
                "custom": {},
                "image": None,
                "attachment": None,
            }
        ],
    },
]
INVALID = [
    {"events": [{"name": "no event key"}]},
    {"events": "not a list"},
    {"events": [{"event": "slot", "name": "x", "value": 1}], "responses": "text"},
    {"responses": [{"response": "utter_x"}], "events": [{"event": 3}]},
]


def verdict(check: Any, answer: Any) -> tuple[bool, str]:
    try:
        return check(ACTION, answer), ""
    except ValidationError as error:
        return False, error.message


def test_install_replaced_rasas_check_once() -> None:
    from rasa_ext.action_response import install

    installed = RemoteAction._validate_action_result
    assert installed.precompiled and installed is not RASAS_OWN
    install()
    assert RemoteAction._validate_action_result is installed


@pytest.mark.parametrize("answer", VALID)
def test_valid_answers_pass_as_before(answer: dict[str, Any]) -> None:
    assert verdict(RemoteAction._validate_action_result, answer) == (True, "")
    assert verdict(RASAS_OWN, answer) == (True, "")


@pytest.mark.parametrize("answer", INVALID)
def test_invalid_answers_fail_with_rasas_error(answer: dict[str, Any]) -> None:
    ours = verdict(RemoteAction._validate_action_result, answer)
    assert ours == verdict(RASAS_OWN, answer)
    assert ours[0] is False
    assert "Failed to validate Action server response from API" in ours[1]


def test_the_constant_schema_is_not_checked_again_per_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    validator_class = validator_for(RemoteAction.action_response_format_spec())

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the schema was checked again")

    monkeypatch.setattr(validator_class, "check_schema", classmethod(refuse))
    assert RemoteAction._validate_action_result(ACTION, VALID[2]) is True
    with pytest.raises(AssertionError, match="checked again"):
        RASAS_OWN(ACTION, VALID[2])  # Rasa's own check does it on every call


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
EVENT = st.fixed_dictionaries(
    {"event": st.sampled_from(["slot", "action", "bot", "user", 7])},
    optional={"name": JSON, "value": JSON, "timestamp": JSON},
)
ANSWER = st.fixed_dictionaries(
    {},
    optional={
        "events": st.lists(EVENT, max_size=3) | JSON,
        "responses": st.lists(st.dictionaries(st.text(max_size=8), JSON, max_size=3), max_size=2)
        | JSON,
    },
)


@settings(max_examples=60, deadline=None)
@given(answer=ANSWER)
def test_any_answer_gets_rasas_verdict(answer: dict[str, Any]) -> None:
    assert verdict(RemoteAction._validate_action_result, answer) == verdict(RASAS_OWN, answer)
