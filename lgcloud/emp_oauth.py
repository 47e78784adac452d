"""Client for LG EMP's OAuth (the user's sign-in that yields their ThinQ token).

What LG documents (thinq-connect-overview.txt): the ``Authorization: Bearer`` token of
every ThinQ Connect call is "the service user's OAuth token" from LG EMP, obtained
"using the API provided by LG EMP", "an open API that conforms to the OAuth standard";
the guide to that API is given to partners privately.

What is ASSUMED here, all in this one module: the standard RFC 6749
authorization-code grant (authorize URL with ``response_type=code``, ``client_id``,
``redirect_uri``, ``state``; a token endpoint taking form-encoded
``grant_type=authorization_code`` / ``refresh_token`` with the client credentials in the
body), the RFC 6749 §5.1/§5.2 answer and error shapes, rotating refresh tokens, and a
``user_number`` field naming the LG user (as in callbacks' ``userNumber``). When LG's
guide says otherwise, change this module (and the simulator's stand-in).
Transport only: no storage, no Rasa. Tokens and the client secret are never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

logger = logging.getLogger(__name__)


class OAuthError(Exception):
    """The token endpoint refused the request for a reason other than the grant."""

    def __init__(self, error: str, description: str = "") -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error


class OAuthGrantError(OAuthError):
    """``invalid_grant``: the code or refresh token is unknown, used, expired or revoked."""


class OAuthTransportError(OAuthError):
    """No usable answer (network, timeout, 5xx, not JSON): the outcome is unknown."""


@dataclass(frozen=True)
class TokenGrant:
    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    expires_in: int | None
    user_number: str


def authorize_url(authorize_endpoint: str, client_id: str, redirect_uri: str, state: str) -> str:
    """The page the user opens to sign in to LG and allow our service."""
    parts = urlsplit(authorize_endpoint)
    query = [
        *parse_qsl(parts.query, keep_blank_values=True),
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("state", state),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


class EmpOAuthClient:
    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        *,
        timeout_seconds: float = 5.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._token_url = token_url
        self._client_id = client_id
        self._client_secret = client_secret
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout_seconds))

    def __repr__(self) -> str:
        return f"EmpOAuthClient(token_url={self._token_url!r}, client_id={self._client_id!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def exchange_code(self, code: str, redirect_uri: str) -> TokenGrant:
        return await self._token_request(
            {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        )

    async def refresh(self, refresh_token: str) -> TokenGrant:
        return await self._token_request(
            {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )

    async def _token_request(self, form: dict[str, str]) -> TokenGrant:
        body = {**form, "client_id": self._client_id, "client_secret": self._client_secret}
        try:
            response = await self._http.post(
                self._token_url,
                content=urlencode(body),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                },
            )
        except httpx.HTTPError as exc:
            raise OAuthTransportError("transport", type(exc).__name__) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 500 or not isinstance(payload, dict):
            raise OAuthTransportError("server", f"HTTP {response.status_code}")
        if response.status_code != 200:
            error = str(payload.get("error") or f"http_{response.status_code}")
            description = str(payload.get("error_description") or "")
            logger.warning("LG OAuth token request refused: %s", error)
            if error == "invalid_grant":
                raise OAuthGrantError(error, description)
            raise OAuthError(error, description)
        return _grant(payload)


def _grant(payload: dict[str, object]) -> TokenGrant:
    access = payload.get("access_token")
    user = payload.get("user_number")
    if not isinstance(access, str) or not access or not isinstance(user, str) or not user:
        raise OAuthTransportError("server", "token answer without access_token or user_number")
    refresh = payload.get("refresh_token")
    expires_in = payload.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    return TokenGrant(
        access_token=access,
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        expires_in=expires_in if isinstance(expires_in, int) and expires_in > 0 else None,
        user_number=user,
    )
