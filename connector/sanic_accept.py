"""A malformed ``Accept`` header is ignored instead of turning an error page into a 500.

Sanic 21.12 (Rasa's and rasa_sdk's web server) parses ``Accept`` lazily, when it picks
the format of an error page. A header it cannot parse ("0", "a/b;q=x", "a/b, c") raises
*inside* the error handler, so a plain 404 (no such route) or 405 (wrong method) is
answered 500 and logged as a server error — on every route of the Rasa server, found by
the fuzz tests (tests/test_fuzz_channels.py). RFC 9110 §12.5.1 lets a server ignore a
malformed Accept; :func:`tolerate_malformed_accept` makes ``Request.accept`` do that
(an empty list: "no preference", the same as no header at all).

Installed by ``rasa_ext`` in the Rasa server and by ``rasa_sdk_plugins`` in the action
server. Imports Sanic only.
"""

from __future__ import annotations

import logging

from sanic.exceptions import InvalidHeader
from sanic.headers import AcceptContainer, parse_accept
from sanic.request import Request

log = logging.getLogger(__name__)

# Sanic's own property, kept for the tests that show what it did.
SANIC_ACCEPT = Request.accept


def _tolerant_accept(request: Request) -> AcceptContainer:
    if request.parsed_accept is None:
        header = request.headers.getone("accept", "")
        try:
            request.parsed_accept = parse_accept(header)
        except (InvalidHeader, ValueError):
            log.debug("ignoring a malformed Accept header")
            request.parsed_accept = AcceptContainer()
    return request.parsed_accept


def tolerate_malformed_accept() -> None:
    """Make ``sanic.request.Request.accept`` ignore a header it cannot parse (once)."""
    if Request.accept.fget is not _tolerant_accept:  # type: ignore[attr-defined]
        Request.accept = property(_tolerant_accept)  # type: ignore[method-assign,assignment]
