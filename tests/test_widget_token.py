"""The chat widget's sign-in token: what opens a conversation and what never does."""

from __future__ import annotations

import base64
import json
import time

import jwt
import pytest

from connector.widget_token import (
    AUDIENCE,
    TokenRejected,
    issue_token,
    verify_token,
    widget_sender_id,
)

SECRET = "partner-widget-secret-for-tests-0123456789"
ISSUER = "sample-partner"
NOW = 1_800_000_000.0


def verify(token: object, now: float = NOW, max_lifetime: float = 900) -> str:
    return verify_token(token, SECRET, ISSUER, max_lifetime, now=now).sender_id


def signed(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, secret, algorithm=algorithm)


def claims(**overrides: object) -> dict:
    base = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "iat": int(NOW), "exp": int(NOW) + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_an_issued_token_names_its_user() -> None:
    token = issue_token(SECRET, ISSUER, "alice", ttl_seconds=600, now=NOW)
    identity = verify_token(token, SECRET, ISSUER, 900, now=NOW + 10)
    assert identity.sender_id == "widget:sample-partner:alice" == widget_sender_id(ISSUER, "alice")
    assert identity.expires_at == NOW + 600


def rejected(token: object, **kwargs: float) -> str:
    with pytest.raises(TokenRejected) as caught:
        verify(token, **kwargs)
    return caught.value.reason


def test_another_secret_is_refused() -> None:
    assert "signature" in rejected(signed(claims(), secret="someone-elses-secret-0123456789abcdef"))


def test_a_tampered_subject_is_refused() -> None:
    header, payload, signature = issue_token(SECRET, ISSUER, "alice", now=NOW).split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=="))
    data["sub"] = "bob"
    forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    assert "signature" in rejected(f"{header}.{forged}.{signature}")


def test_unsigned_and_other_algorithms_are_refused() -> None:
    none_token = jwt.encode(claims(), None, algorithm="none")
    assert "HS256" in rejected(none_token)
    assert "HS256" in rejected(signed(claims(), algorithm="HS512"))


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"aud": "another-service"}, "another service"),
        ({"iss": "other-partner"}, "unknown site"),
        ({"exp": int(NOW) - 31}, "expired"),
        ({"iat": int(NOW) + 120, "exp": int(NOW) + 600}, "future"),
        ({"iat": int(NOW) - 10, "exp": int(NOW) + 3600}, "too long"),
        ({"sub": "alice bob"}, "no valid user"),
        ({"sub": ""}, "no valid user"),
        ({"sub": "x" * 129}, "no valid user"),
        ({"sub": None}, "'sub'"),
        ({"exp": None}, "'exp'"),
        ({"iat": None}, "'iat'"),
        ({"aud": None}, "'aud'"),
    ],
)
def test_claims_are_checked(overrides: dict, reason: str) -> None:
    assert reason in rejected(signed(claims(**overrides)))


def test_clock_skew_within_the_leeway_is_tolerated() -> None:
    token = signed(claims(iat=int(NOW) + 20, exp=int(NOW) + 600))
    assert verify(token) == "widget:sample-partner:alice"
    assert verify(signed(claims(exp=int(NOW) - 20))) == "widget:sample-partner:alice"


@pytest.mark.parametrize("token", [None, "", 42, "not.a.jwt", "x" * 5000, {"token": "x"}])
def test_garbage_is_refused_without_an_exception_escaping(token: object) -> None:
    assert rejected(token)


def test_the_real_clock_is_used_by_default() -> None:
    token = issue_token(SECRET, ISSUER, "bob", ttl_seconds=60)
    assert verify_token(token, SECRET, ISSUER, 900).subject == "bob"
    old = issue_token(SECRET, ISSUER, "bob", ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(TokenRejected):
        verify_token(old, SECRET, ISSUER, 900)


def test_the_issuer_refuses_a_subject_it_could_not_verify() -> None:
    with pytest.raises(ValueError):
        issue_token(SECRET, ISSUER, "alice smith")
