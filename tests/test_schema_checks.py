"""The Rasa server's checks of action server answers and posted events
(rasa_ext/schema_checks.py): the same verdict and error as Rasa's own checks, without
re-checking Rasa's constant schemas on every call."""

from __future__ import annotations

import json
from typing import Any

import pytest
import rasa.server
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import ValidationError
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction

import rasa_ext  # noqa: F401  (installs the check, as Rasa's import of our stores does)

ACTION = RemoteAction("action_control_device", None)
RASAS_OWN = RemoteAction._validate_action_result.rasa_original
RASAS_EVENTS_CHECK = rasa.server.validate_events_in_request_body.rasa_original

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
    from rasa_ext.schema_checks import install

    installed = RemoteAction._validate_action_result
    events = rasa.server.validate_events_in_request_body
    assert installed.precompiled and installed is not RASAS_OWN
    assert events.precompiled and events is not RASAS_EVENTS_CHECK
    install()
    assert RemoteAction._validate_action_result is installed
    assert rasa.server.validate_events_in_request_body is events


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
    rasa.server.validate_events_in_request_body(Posted(POSTED_VALID[0]))
    with pytest.raises(AssertionError, match="checked again"):
        RASAS_OWN(ACTION, VALID[2])  # Rasa's own check does it on every call
    with pytest.raises(AssertionError, match="checked again"):
        RASAS_EVENTS_CHECK(Posted(POSTED_VALID[0]))


class Posted:
    """The part of a Sanic request the events check reads."""

    def __init__(self, json: Any) -> None:
        self.json = json


POSTED_VALID: list[Any] = [
    {"event": "bot", "text": "Your washer is done.", "metadata": {"proactive": True}},
    [{"event": "slot", "name": "pending", "value": None}, {"event": "action", "name": "x"}],
    [],
]
POSTED_INVALID: list[Any] = [
    {"text": "no event key"},
    [{"event": "bot"}, "not an object"],
    [{"event": 5}],
    "a string",
    None,
]


def events_verdict(check: Any, body: Any) -> tuple[bool, str]:
    try:
        check(Posted(body))
        return True, ""
    except rasa.server.ErrorResponse as error:
        return False, json.dumps(error.error_info, sort_keys=True)


@pytest.mark.parametrize("body", POSTED_VALID + POSTED_INVALID)
def test_posted_events_get_rasas_verdict_and_error(body: Any) -> None:
    ours = events_verdict(rasa.server.validate_events_in_request_body, body)
    assert ours == events_verdict(RASAS_EVENTS_CHECK, body)
    assert ours[0] is (body in POSTED_VALID)
    if not ours[0]:
        assert "Failed to validate the events format" in ours[1]


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


@settings(max_examples=60, deadline=None)
@given(body=st.lists(EVENT, max_size=3) | EVENT | JSON)
def test_any_posted_events_get_rasas_verdict(body: Any) -> None:
    ours = events_verdict(rasa.server.validate_events_in_request_body, body)
    assert ours == events_verdict(RASAS_EVENTS_CHECK, body)
