"""STAND-IN for LG's membership login (LG EMP OAuth): NOT LG's real interface.

LG documents only that a partner obtains "the service user's OAuth token" from LG EMP
(Enterprise Membership Platform) through "an open API that conforms to the OAuth
standard", and that the guide to it is given to partners privately
(../shared/reference/lg-api/thinq-connect-overview.txt). Everything below is therefore
our assumption, shaped after RFC 6749's authorization-code grant:

* ``GET /oauth/authorize?client_id&redirect_uri&state&response_type=code`` shows a
  minimal login form (pick a simulated user; no password), ``POST /oauth/authorize``
  redirects to ``redirect_uri`` with ``code`` and the same ``state`` (or
  ``error=access_denied`` when cancelled). An unknown client or a redirect URI that is
  not registered for it gets a 400 page and no redirect (RFC 6749 §4.1.2.1).
* ``POST /oauth/token`` (form body; client credentials in the body or HTTP Basic):
  ``grant_type=authorization_code`` (``code``, ``redirect_uri``) or
  ``grant_type=refresh_token`` (``refresh_token``) answers ``{"access_token",
  "token_type": "Bearer", "expires_in", "refresh_token", "user_number"}``.
  ``user_number`` (the LG user the token belongs to, as in callbacks' ``userNumber``)
  is our assumption: LG's real answer may carry the user differently.
* Codes are single use and live ``code_seconds``; a code presented twice revokes what
  it issued (RFC 6749 §4.1.2). Refresh tokens rotate: each refresh answers a new pair
  and the old refresh token stops working. Errors are RFC 6749 §5.2 JSON
  (``invalid_request``, ``invalid_client`` 401, ``invalid_grant``,
  ``unsupported_grant_type``).

Issued access tokens are accepted by the simulator's ThinQ endpoints for their user
(:meth:`MembershipStandIn.user_for_token`, consulted after the configured static tokens,
so the demo token keeps working). Time here is real time (``now``), not the simulated
clock: the assistant compares ``expires_in`` with its own wall clock.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from simulator.config import OAuthClient
from simulator.jsonbody import BadJson, read_json


@dataclass
class _Grant:
    """One user's consent to one client; revoking it ends every token it issued."""

    user: str
    client_id: str
    revoked: bool = False


@dataclass
class _Code:
    grant: _Grant
    redirect_uri: str
    expires_at: float
    used: bool = False
    issued_access: list[str] = field(default_factory=list)


def _digest(secret: str) -> str:
    # Tokens are held only as digests, so a dump of this object leaks nothing usable.
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


class OAuthFailure(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class MembershipStandIn:
    """The state of the stand-in: clients, codes, access and refresh tokens."""

    def __init__(
        self,
        clients: dict[str, OAuthClient],
        users: frozenset[str] | set[str],
        *,
        access_seconds: int = 3600,
        code_seconds: int = 60,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.clients = clients
        self.users = frozenset(users)
        self.access_seconds = access_seconds
        self.code_seconds = code_seconds
        self.now = now
        self._codes: dict[str, _Code] = {}  # digest -> code
        self._access: dict[str, tuple[_Grant, float]] = {}  # digest -> (grant, expires_at)
        self._refresh: dict[str, _Grant] = {}  # digest -> grant

    # --- what the ThinQ endpoints ask ------------------------------------------------------

    def user_for_token(self, token: str) -> str | None:
        entry = self._access.get(_digest(token))
        if entry is None:
            return None
        grant, expires_at = entry
        if grant.revoked or self.now() >= expires_at:
            return None
        return grant.user

    # --- authorize ---------------------------------------------------------------------------

    def check_client_redirect(self, client_id: str, redirect_uri: str) -> None:
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthFailure("invalid_client", "unknown client_id", 400)
        if redirect_uri not in client.redirect_uris:
            raise OAuthFailure("invalid_request", "redirect_uri is not registered for the client")

    def issue_code(self, client_id: str, redirect_uri: str, user: str) -> str:
        self.check_client_redirect(client_id, redirect_uri)
        if user not in self.users:
            raise OAuthFailure("access_denied", "unknown user")
        self._purge()
        code = secrets.token_urlsafe(32)
        self._codes[_digest(code)] = _Code(
            _Grant(user, client_id), redirect_uri, self.now() + self.code_seconds
        )
        return code

    # --- token ------------------------------------------------------------------------------

    def authenticate_client(self, client_id: str, client_secret: str) -> OAuthClient:
        client = self.clients.get(client_id)
        # Compare against something even for an unknown id: no timing hint either way.
        expected = client.secret if client else secrets.token_urlsafe(16)
        ok = hmac.compare_digest(client_secret.encode(), expected.encode())
        if client is None or not ok:
            raise OAuthFailure("invalid_client", "client authentication failed", 401)
        return client

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, object]:
        entry = self._codes.get(_digest(code))
        if entry is None or entry.grant.client_id != client_id:
            raise OAuthFailure("invalid_grant", "unknown authorization code")
        if entry.used:
            # A replayed code: revoke everything it issued (RFC 6749 §4.1.2).
            entry.grant.revoked = True
            raise OAuthFailure("invalid_grant", "authorization code already used")
        if self.now() >= entry.expires_at:
            raise OAuthFailure("invalid_grant", "authorization code expired")
        if redirect_uri != entry.redirect_uri:
            raise OAuthFailure("invalid_grant", "redirect_uri differs from the authorization's")
        entry.used = True
        return self._issue(entry.grant)

    def refresh(self, client_id: str, refresh_token: str) -> dict[str, object]:
        grant = self._refresh.pop(_digest(refresh_token), None)  # rotation: single use
        if grant is None or grant.revoked or grant.client_id != client_id:
            raise OAuthFailure("invalid_grant", "refresh token is invalid, used or revoked")
        return self._issue(grant)

    def revoke_user(self, user: str) -> int:
        """/sim: revoke every grant of ``user`` (as if they removed the service at LG)."""
        grants = {id(g): g for g, _ in self._access.values() if g.user == user}
        grants.update({id(g): g for g in self._refresh.values() if g.user == user})
        for grant in grants.values():
            grant.revoked = True
        return len(grants)

    def _issue(self, grant: _Grant) -> dict[str, object]:
        access = secrets.token_hex(48)  # 96 hex characters, like LG's example token
        refresh = secrets.token_urlsafe(48)
        self._access[_digest(access)] = (grant, self.now() + self.access_seconds)
        self._refresh[_digest(refresh)] = grant
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_seconds,
            "refresh_token": refresh,
            "user_number": grant.user,
        }

    def _purge(self) -> None:
        now = self.now()
        for key in [k for k, c in self._codes.items() if c.expires_at + 3600 < now]:
            del self._codes[key]
        for key in [k for k, (g, exp) in self._access.items() if g.revoked or exp < now]:
            del self._access[key]
        for key in [k for k, g in self._refresh.items() if g.revoked]:
            del self._refresh[key]


MEMBERSHIP = web.AppKey("membership", MembershipStandIn)

# --- HTTP -------------------------------------------------------------------------------------

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body><main>
<p><strong>Simulator stand-in for LG's membership login (LG EMP). Not LG.</strong></p>
<h1>{title}</h1>
{body}
</main></body></html>
"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    response = web.Response(
        text=_PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _authorize_params(values: dict[str, str]) -> tuple[str, str, str]:
    """client_id, redirect_uri, state after the checks that must not redirect."""
    return values.get("client_id", ""), values.get("redirect_uri", ""), values.get("state", "")


async def authorize_form(request: web.Request) -> web.Response:
    membership = request.app[MEMBERSHIP]
    query = dict(request.query)
    client_id, redirect_uri, state = _authorize_params(query)
    try:
        membership.check_client_redirect(client_id, redirect_uri)
    except OAuthFailure as failure:
        return _page("Sign-in request refused", f"<p>{html.escape(failure.description)}</p>", 400)
    if query.get("response_type") != "code":
        raise web.HTTPFound(
            _with_query(redirect_uri, {"error": "unsupported_response_type", "state": state})
        )
    if not state:
        raise web.HTTPFound(_with_query(redirect_uri, {"error": "invalid_request", "state": state}))
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in (
            ("client_id", client_id),
            ("redirect_uri", redirect_uri),
            ("state", state),
        )
    )
    choices = "".join(
        f'<p><label><input type="radio" name="user" value="{html.escape(user)}"'
        f"{' checked' if i == 0 else ''}> {html.escape(user)}</label></p>"
        for i, user in enumerate(sorted(membership.users))
    )
    body = (
        f'<form method="post" action="/oauth/authorize">{hidden}'
        f"<fieldset><legend>Sign in as</legend>{choices}</fieldset>"
        '<button type="submit" name="decision" value="allow">Sign in and allow</button> '
        '<button type="submit" name="decision" value="deny">Cancel</button>'
        "</form>"
    )
    return _page("Sign in to LG (simulated)", body)


def _content_type(request: web.Request) -> str:
    """The media type; "" when the header cannot be parsed (aiohttp hands it to the email
    parser, which raises UnicodeEncodeError when bytes that are not UTF-8 sit next to
    non-ASCII text)."""
    try:
        return request.content_type
    except ValueError:
        return ""


async def _form(request: web.Request) -> dict[str, str]:
    """The posted form, or OAuthFailure (invalid_request) when the body cannot be read as
    one: text that is not in its charset, a charset Python does not know, broken multipart."""
    try:
        posted = await request.post()
    except (ValueError, LookupError, RuntimeError, HttpProcessingError, AssertionError):
        # UnicodeDecodeError is a ValueError; aiohttp's multipart reader raises
        # InvalidHeader (an HttpProcessingError) for a broken part header, RuntimeError for
        # an unknown encoding, and asserts on some malformed bodies.
        raise OAuthFailure("invalid_request", "the form body could not be read") from None
    return {k: str(v) for k, v in posted.items()}


async def authorize_submit(request: web.Request) -> web.Response:
    membership = request.app[MEMBERSHIP]
    try:
        form = await _form(request)
        client_id, redirect_uri, state = _authorize_params(form)
        membership.check_client_redirect(client_id, redirect_uri)
    except OAuthFailure as failure:
        return _page("Sign-in request refused", f"<p>{html.escape(failure.description)}</p>", 400)
    if form.get("decision") != "allow":
        raise web.HTTPFound(_with_query(redirect_uri, {"error": "access_denied", "state": state}))
    try:
        code = membership.issue_code(client_id, redirect_uri, form.get("user", ""))
    except OAuthFailure as failure:
        location = _with_query(redirect_uri, {"error": failure.error, "state": state})
        raise web.HTTPFound(location) from None
    raise web.HTTPFound(_with_query(redirect_uri, {"code": code, "state": state}))


def _token_error(failure: OAuthFailure) -> web.Response:
    response = web.json_response(
        {"error": failure.error, "error_description": failure.description},
        status=failure.status,
    )
    response.headers["Cache-Control"] = "no-store"
    if failure.status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="oauth"'
    return response


def _client_credentials(request: web.Request, form: dict[str, str]) -> tuple[str, str]:
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
            client_id, _, secret = decoded.partition(":")
            return client_id, secret
        except (ValueError, UnicodeDecodeError):
            raise OAuthFailure("invalid_client", "malformed Basic credentials", 401) from None
    return form.get("client_id", ""), form.get("client_secret", "")


async def token(request: web.Request) -> web.Response:
    membership = request.app[MEMBERSHIP]
    try:
        if not _content_type(request).startswith("application/x-www-form-urlencoded"):
            raise OAuthFailure("invalid_request", "body must be application/x-www-form-urlencoded")
        form = await _form(request)
        client_id, secret = _client_credentials(request, form)
        membership.authenticate_client(client_id, secret)
        grant_type = form.get("grant_type", "")
        if grant_type == "authorization_code":
            if not form.get("code") or not form.get("redirect_uri"):
                raise OAuthFailure("invalid_request", "code and redirect_uri are required")
            issued = membership.exchange_code(client_id, form["code"], form["redirect_uri"])
        elif grant_type == "refresh_token":
            if not form.get("refresh_token"):
                raise OAuthFailure("invalid_request", "refresh_token is required")
            issued = membership.refresh(client_id, form["refresh_token"])
        else:
            raise OAuthFailure("unsupported_grant_type", f"grant_type {grant_type!r}")
    except OAuthFailure as failure:
        return _token_error(failure)
    response = web.json_response(issued)
    response.headers["Cache-Control"] = "no-store"
    return response


async def sim_revoke(request: web.Request) -> web.Response:
    """``POST /sim/oauth/revoke {"user"}``: revoke that user's grants (ours, for tests)."""
    try:
        body = await read_json(request)  # strict: bad UTF-8, NaN, deep nesting -> BadJson
    except BadJson:
        body = None
    user = body.get("user") if isinstance(body, dict) else None
    if not isinstance(user, str) or not user:
        return web.json_response({"error": "bad_request", "reason": "user is required"}, status=400)
    return web.json_response({"revoked": request.app[MEMBERSHIP].revoke_user(user)})


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/oauth/authorize", authorize_form)
    router.add_post("/oauth/authorize", authorize_submit)
    router.add_post("/oauth/token", token)
    router.add_post("/sim/oauth/revoke", sim_revoke)
