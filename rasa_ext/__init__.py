"""Rasa-side extensions: stores, the language guard, and a faster action-answer check.

Importing the package installs :mod:`rasa_ext.action_response` (Rasa imports this
package when it reads endpoints.yml and the pipeline, before the first turn).
"""

from rasa_ext.action_response import install as _install_action_response_check

_install_action_response_check()
