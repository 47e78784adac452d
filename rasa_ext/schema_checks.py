"""The Rasa server checks action answers and posted events against compiled schemas.

Rasa 3.6 checks two kinds of JSON with ``jsonschema.validate(instance, schema)``:

* every custom action's answer (``RemoteAction._validate_action_result``), and
* the events posted to ``POST /conversations/<id>/tracker/events``
  (``rasa.server.validate_events_in_request_body``), which the connector uses to record
  every proactive message in its conversation.

That function first checks the *schema itself* against the JSON Schema 2020-12
meta-schema before it looks at the instance. Rasa's schemas never change, yet the
meta-schema check ran on every call: 13 ms of CPU for an action answer on these
machines, more than half of what the Rasa server spent on a control turn, and 13 % of
its CPU under the load test (py-spy); checking the instance itself takes 0.2 ms.

:func:`install` checks each schema once, compiles its validator once and makes Rasa use
it. Instances are held to exactly the same schema with the same validator class and get
the same error (``best_match`` of the errors, with Rasa's own wording around it); only
the repeated check of the constant schemas is gone.

``rasa_ext/__init__.py`` calls :func:`install`, so it takes effect in every process that
loads this project's endpoints or pipeline (the tracker store and language guard live in
this package).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import rasa.server
from jsonschema import ValidationError
from jsonschema.exceptions import best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL
from rasa.shared.utils.schemas.events import EVENTS_SCHEMA

# Rasa's wording (rasa/core/actions/action.py, RemoteAction._validate_action_result).
ACTION_FAILURE_SUFFIX = (
    ". Failed to validate Action server response from API, "
    "make sure your response from the Action endpoint is valid. "
    "For more information about the format visit "
    f"{DOCS_BASE_URL}/custom-actions"
)


def compiled(schema: dict[str, Any]) -> Validator:
    """The validator ``jsonschema.validate`` would build for ``schema``, after the check of
    the schema it would make (once here, instead of on every call)."""
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def first_error(validator: Validator, instance: Any) -> ValidationError | None:
    """The error ``jsonschema.validate`` would raise for ``instance``, or None."""
    return best_match(validator.iter_errors(instance))


def install() -> None:
    """Make Rasa's action-answer and posted-events checks use compiled validators (once)."""
    original_action_check = RemoteAction._validate_action_result
    if getattr(original_action_check, "precompiled", False):
        return
    answers = compiled(RemoteAction.action_response_format_spec())
    events = compiled(EVENTS_SCHEMA)

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        error = first_error(answers, result)
        if error is None:
            return True
        error.message += ACTION_FAILURE_SUFFIX
        raise error

    original_events_check = rasa.server.validate_events_in_request_body

    def validate_events_in_request_body(request: Any) -> None:
        # Rasa's function, with the compiled validator (rasa/server.py).
        body = request.json
        error = first_error(events, body if isinstance(body, list) else [body])
        if error is not None:
            raise rasa.server.ErrorResponse(
                HTTPStatus.BAD_REQUEST,
                "BadRequest",
                f"Failed to validate the events format. "
                f"For more information about the format visit the docs. Error: {error}",
                help_url=rasa.server._docs("/pages/http-api"),
            ) from error

    for replacement, original in (
        (_validate_action_result, original_action_check),
        (validate_events_in_request_body, original_events_check),
    ):
        replacement.precompiled = True  # type: ignore[attr-defined]
        replacement.rasa_original = original  # type: ignore[attr-defined]
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
    # append_events looks the function up in its module when a request comes.
    rasa.server.validate_events_in_request_body = validate_events_in_request_body
