"""BECON Connect failures as typed exceptions, by the HTTP status LG documents.

LG's BECON error-code table is not public, so the family is chosen by HTTP status
(facts sheet §5.6): 400 our request was refused (invalid facility type, bad value),
401 authentication failed, 403 the site is not ours to see, 404 no such site, gateway
or facility, 412 a required header is missing, 5xx LG's side failed. The ``code`` and
``message`` the server sent stay on the exception for logs and wording; they never
carry a secret (the client never puts one in them).
"""

from __future__ import annotations


class BeconError(Exception):
    """Any failure talking to BECON Connect."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        status = f"HTTP {http_status} " if http_status is not None else ""
        super().__init__(f"BECON {status}{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status


class BeconTransportError(BeconError):
    """No usable answer: connection failed, or a body that is not what BECON sends."""


class BeconTimeout(BeconTransportError):
    """No answer in time. After a control command its outcome is unknown: read the state."""


class BeconBadRequest(BeconError):
    """400: invalid facility type, unknown key, read-only key, value out of range..."""


class BeconAuthError(BeconError):
    """401: the service id, service key, signature or token was refused."""


class BeconForbidden(BeconError):
    """403: this service may not access that site."""


class BeconNotFound(BeconError):
    """404: no such site, gateway or facility."""


class BeconHeaderMissing(BeconError):
    """412: a required x-lgtms-* header was missing (a configuration problem on our side)."""


class BeconServerError(BeconError):
    """5xx: BECON's side failed; the call may be tried again later."""


_BY_STATUS: dict[int, type[BeconError]] = {
    400: BeconBadRequest,
    401: BeconAuthError,
    403: BeconForbidden,
    404: BeconNotFound,
    412: BeconHeaderMissing,
}


def error_for(http_status: int, code: str, message: str) -> BeconError:
    """The typed exception for an HTTP error status (unlisted 4xx: plain BeconError)."""
    if http_status >= 500:
        return BeconServerError(code, message, http_status)
    return _BY_STATUS.get(http_status, BeconError)(code, message, http_status)
