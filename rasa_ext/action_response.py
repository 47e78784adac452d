"""The Rasa server checks every action server answer against one compiled schema.

Rasa 3.6 validates each custom action's answer with ``jsonschema.validate(result,
spec)``, and that function first checks the *schema itself* against the JSON Schema
2020-12 meta-schema before it looks at the answer. Rasa's schema never changes, yet the
meta-schema check ran on every action call: 13 ms of CPU on these machines, more than
half of what the Rasa server spends on a control turn (measured with py-spy during
``make bench``; the check of the answer itself takes 0.2 ms).

:func:`install` checks Rasa's schema once, compiles its validator once and makes
``RemoteAction`` use it. Answers are held to exactly the same schema with the same
validator class and the same error as before (``best_match`` of the errors, Rasa's
message appended); only the repeated check of the constant schema is gone.

``rasa_ext/__init__.py`` calls :func:`install`, so it takes effect in every process that
loads this project's endpoints or pipeline (the tracker store and language guard live
in this package).
"""

from __future__ import annotations

from typing import Any

from jsonschema import ValidationError
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from rasa.core.actions.action import RemoteAction
from rasa.shared.constants import DOCS_BASE_URL

# Rasa's wording (rasa/core/actions/action.py, RemoteAction._validate_action_result).
FAILURE_SUFFIX = (
    ". Failed to validate Action server response from API, "
    "make sure your response from the Action endpoint is valid. "
    "For more information about the format visit "
    f"{DOCS_BASE_URL}/custom-actions"
)


def install() -> None:
    """Replace ``RemoteAction._validate_action_result`` with a precompiled check (once)."""
    original = RemoteAction._validate_action_result
    if getattr(original, "precompiled", False):
        return
    schema = RemoteAction.action_response_format_spec()
    validator_class = validator_for(schema)
    validator_class.check_schema(schema)  # what jsonschema.validate did on every call
    validator = validator_class(schema)

    def _validate_action_result(self: RemoteAction, result: dict[str, Any]) -> bool:
        error: ValidationError | None = best_match(validator.iter_errors(result))
        if error is None:
            return True
        error.message += FAILURE_SUFFIX
        raise error

    _validate_action_result.precompiled = True  # type: ignore[attr-defined]
    _validate_action_result.rasa_original = original  # type: ignore[attr-defined]
    RemoteAction._validate_action_result = _validate_action_result  # type: ignore[method-assign]
