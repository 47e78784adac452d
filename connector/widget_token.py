"""The chat widget's sign-in token: a short-lived JWT (HS256) the partner site signs.

The partner's web server knows who is signed in on its page; the assistant does not. So
the partner's server signs a token naming its user (``sub``), itself (``iss``) and us
(``aud``), valid for a few minutes, with a secret only the two servers hold. The widget
presents it when it opens its socket; the sender id of the conversation is taken from the
verified token (``widget:<iss>:<sub>``) and never from anything else the browser sends,
so one visitor cannot speak as another.

Refused: any algorithm but HS256 (including ``none``), a bad signature, a missing claim,
another audience or issuer, an expired token or one issued in the future (30 s leeway for
clock skew), a lifetime (exp - iat) over the configured maximum, and a subject outside
``[A-Za-z0-9._@:-]{1,128}``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import jwt

AUDIENCE = "lg-assistant-widget"
ALGORITHM = "HS256"
LEEWAY_SECONDS = 30
SENDER_PREFIX = "widget:"
_SUBJECT = re.compile(r"[A-Za-z0-9._@:-]{1,128}")
_REQUIRED = ["exp", "iat", "sub", "iss", "aud"]


class TokenRejected(Exception):
    """The token cannot open a conversation; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WidgetIdentity:
    issuer: str
    subject: str
    expires_at: float  # seconds since the epoch

    @property
    def sender_id(self) -> str:
        return widget_sender_id(self.issuer, self.subject)


def widget_sender_id(issuer: str, subject: str) -> str:
    return f"{SENDER_PREFIX}{issuer}:{subject}"


def issue_token(
    secret: str,
    issuer: str,
    subject: str,
    ttl_seconds: float = 600,
    now: float | None = None,
) -> str:
    """What a partner's server does for its signed-in user (the sample site uses it)."""
    if not _SUBJECT.fullmatch(subject):
        raise ValueError("subject must be 1-128 characters of A-Z, a-z, 0-9, . _ @ : -")
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": AUDIENCE,
        "iat": issued,
        "exp": issued + int(ttl_seconds),
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(
    token: object,
    secret: str,
    issuer: str,
    max_lifetime_seconds: float,
    now: float | None = None,
) -> WidgetIdentity:
    """The identity a valid token names; :class:`TokenRejected` with the reason otherwise."""
    if not isinstance(token, str) or not token or len(token) > 4096:
        raise TokenRejected("a sign-in token is required")
    current = time.time() if now is None else now
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected("the sign-in token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise TokenRejected(f"the sign-in token must be signed with {ALGORITHM}")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=issuer,
            leeway=LEEWAY_SECONDS,
            # exp and iat are checked below against ``current``, so tests can set the clock.
            options={"require": _REQUIRED, "verify_exp": False, "verify_iat": False},
        )
    except jwt.InvalidSignatureError:
        raise TokenRejected("the sign-in token's signature is not valid") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected("the sign-in token is for another service") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("the sign-in token comes from an unknown site") from None
    except jwt.MissingRequiredClaimError as error:
        raise TokenRejected(f"the sign-in token has no {error.claim!r} claim") from None
    except jwt.PyJWTError:
        raise TokenRejected("the sign-in token is malformed") from None
    issued, expires, subject = claims["iat"], claims["exp"], claims["sub"]
    if not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        for v in (issued, expires)
    ):
        # Not finite: NaN compares false with everything, so it would pass every check
        # below and the conversation would never expire.
        raise TokenRejected("the sign-in token's times are not numbers")
    if expires <= current - LEEWAY_SECONDS:
        raise TokenRejected("the sign-in token has expired")
    if issued > current + LEEWAY_SECONDS:
        raise TokenRejected("the sign-in token is issued in the future")
    if expires - issued > max_lifetime_seconds:
        raise TokenRejected(
            f"the sign-in token lives too long (at most {max_lifetime_seconds:g} s allowed)"
        )
    if not isinstance(subject, str) or not _SUBJECT.fullmatch(subject):
        raise TokenRejected("the sign-in token names no valid user")
    return WidgetIdentity(issuer=str(claims["iss"]), subject=subject, expires_at=float(expires))
