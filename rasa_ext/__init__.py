"""Rasa-side extensions: stores, the language guard, and two fixes to Rasa's server.

Importing the package installs :mod:`rasa_ext.schema_checks` (action answers and posted
events checked against compiled schemas) and :mod:`connector.sanic_accept` (a malformed
Accept header no longer turns a 404 into a 500). Rasa imports this package when it reads
endpoints.yml and the pipeline, before the first turn.
"""

from connector.sanic_accept import tolerate_malformed_accept
from rasa_ext.schema_checks import install as _install_schema_checks

_install_schema_checks()
tolerate_malformed_accept()
