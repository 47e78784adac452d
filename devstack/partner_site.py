"""A sample partner website embedding the assistant's chat widget.

It plays the part of a partner (say, a home-services site) whose signed-in users chat with
the LG assistant: the page loads ``widget.js`` from the assistant and mounts it; the widget
asks this site's own server for a short-lived sign-in token (``POST /widget-token``), which
is signed with the secret shared with the assistant (connector/widget_token.py).

The partner's real login is out of scope. A visitor without a session becomes a guest
(``guest-<8 hex>``); ``/?user=<id>`` signs the visitor in as ``<id>`` (demo only: anybody
can claim any id); ``/sign-out`` ends the session.

Run: ``python -m devstack.partner_site`` (PARTNER_SITE_HOST/PARTNER_SITE_PORT, default
127.0.0.1:8080; the assistant's address from ASSISTANT_PUBLIC_URL).
"""

from __future__ import annotations

import html
import logging
import re
import secrets
import sys
from collections import OrderedDict
from string import Template
from urllib.parse import urlsplit

from aiohttp import web

from assistant.settings import SettingsError, WidgetSettings, load_widget_settings
from connector.widget_token import issue_token

logger = logging.getLogger("devstack.partner_site")

SESSION_COOKIE = "partner_session"
TOKEN_TTL_SECONDS = 600
USER_ID = re.compile(r"[A-Za-z0-9._@-]{1,64}")
MAX_SESSIONS = 10_000  # guests are created per visit: bound the memory they take
WIDGET_HEADER = "X-Requested-With"
WIDGET_HEADER_VALUE = "widget"

SETTINGS: web.AppKey[WidgetSettings] = web.AppKey("settings", WidgetSettings)
# session id -> user id, oldest session first
SESSIONS: web.AppKey[OrderedDict[str, str]] = web.AppKey("sessions", OrderedDict)

PAGE = Template("""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example Home — your LG appliances</title>
<style nonce="$nonce">
  body { margin: 0; font-family: Georgia, "Times New Roman", serif; color: #222;
         background: #faf8f4; line-height: 1.6; }
  header { background: #2f4f3e; color: #fff; padding: 16px 24px; display: flex;
           align-items: center; justify-content: space-between; flex-wrap: wrap; gap: 8px; }
  header a { color: #fff; }
  header p { margin: 0; }
  .brand { font-size: 1.4rem; font-weight: bold; margin: 0; }
  main { max-width: 760px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 2rem; line-height: 1.25; }
  .hint { font-size: 0.9rem; color: #555; border-top: 1px solid #ddd; padding-top: 12px; }
  code { background: #eee; padding: 0 4px; }
</style>
</head>
<body>
<header>
  <p class="brand">Example Home</p>
  <p>Signed in as <strong>$user</strong> · <a href="/sign-out">Sign out</a></p>
</header>
<main>
  <h1>Example Home — your LG appliances</h1>
  <p>Welcome back. Everything in your home that is connected to LG ThinQ — the washer,
  the dryer, the fridge, the air conditioner — can now be checked and controlled right
  here, without switching apps.</p>
  <p>Open the chat in the corner and ask the LG assistant things like “Is the washer
  done?”, “Set the living room air conditioner to 22 degrees” or “What does error OE
  mean?”. It will also tell you when a cycle finishes, even if the chat was closed.</p>
  <p class="hint">Sample site: sign in as another user with
  <code>?user=&lt;id&gt;</code> (letters, digits and <code>. _ @ -</code>).</p>
</main>
<script src="$widget_js" defer></script>
<script nonce="$nonce">
  document.addEventListener("DOMContentLoaded", function () {
    if (!window.LGAssistantWidget) {
      console.warn("The LG assistant is not reachable; the chat is not shown.");
      return;
    }
    window.lgAssistant = window.LGAssistantWidget.mount({
      getToken: async function () {
        const response = await fetch("/widget-token", {
          method: "POST",
          headers: { "X-Requested-With": "widget" },
          credentials: "same-origin",
        });
        if (!response.ok) throw new Error("widget token request failed: " + response.status);
        const body = await response.json();
        return body.token;
      },
    });
  });
</script>
</body>
</html>
""")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _socket_origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"


def content_security_policy(settings: WidgetSettings, nonce: str) -> str:
    """Scripts from here, the assistant and the page's nonce; sockets to the assistant."""
    assistant = _origin(settings.assistant_public_url)
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' {assistant} 'nonce-{nonce}'",
            f"style-src 'self' {assistant} 'nonce-{nonce}'",
            f"connect-src 'self' {_socket_origin(settings.assistant_public_url)}",
            "img-src 'self' data:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def render_page(settings: WidgetSettings, user_id: str, nonce: str) -> str:
    return PAGE.substitute(
        user=html.escape(user_id),
        nonce=nonce,
        widget_js=html.escape(f"{settings.assistant_public_url}/webhooks/widget/widget.js"),
    )


def _current_user(request: web.Request) -> str | None:
    session = request.cookies.get(SESSION_COOKIE)
    return request.app[SESSIONS].get(session) if session else None


def _start_session(request: web.Request, response: web.StreamResponse, user_id: str) -> None:
    """A fresh session id for ``user_id`` (never reuse the visitor's old one)."""
    sessions = request.app[SESSIONS]
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        sessions.pop(old, None)
    session = secrets.token_urlsafe(32)
    sessions[session] = user_id
    while len(sessions) > MAX_SESSIONS:
        sessions.popitem(last=False)
    response.set_cookie(
        SESSION_COOKIE,
        session,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=request.secure,
    )


def _security_headers(response: web.StreamResponse) -> None:
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "strict-origin-when-cross-origin"


async def home(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    wanted = request.query.get("user")
    if wanted is not None:
        # The sample's stand-in for the partner's own login.
        if not USER_ID.fullmatch(wanted):
            return web.Response(
                status=400,
                text="user must be 1-64 characters of A-Z, a-z, 0-9, . _ @ -\n",
            )
        response = web.Response(status=303, headers={"Location": "/"})
        _start_session(request, response, wanted)
        logger.info("signed in as %s", wanted)
        return response
    nonce = secrets.token_urlsafe(18)
    user_id = _current_user(request)
    response = web.Response(content_type="text/html", charset="utf-8")
    if user_id is None:
        user_id = f"guest-{secrets.token_hex(4)}"
        _start_session(request, response, user_id)
    response.text = render_page(settings, user_id, nonce)
    response.headers["Content-Security-Policy"] = content_security_policy(settings, nonce)
    response.headers["Cache-Control"] = "no-store"
    _security_headers(response)
    return response


async def sign_out(request: web.Request) -> web.StreamResponse:
    session = request.cookies.get(SESSION_COOKIE)
    if session:
        request.app[SESSIONS].pop(session, None)
    response = web.Response(status=303, headers={"Location": "/"})
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def widget_token(request: web.Request) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    user_id = _current_user(request)
    if user_id is None:
        return _no_store(
            web.json_response(
                {"error": "unauthorized", "reason": "not signed in on this site"}, status=401
            )
        )
    if request.headers.get(WIDGET_HEADER) != WIDGET_HEADER_VALUE:
        # A cross-site form cannot set this header; a cross-site fetch that sets it needs a
        # CORS preflight, which this site never grants.
        return _no_store(
            web.json_response(
                {"error": "forbidden", "reason": f"the {WIDGET_HEADER} header is missing"},
                status=403,
            )
        )
    if not settings.token_secret:
        return _no_store(
            web.json_response(
                {"error": "unavailable", "reason": "WIDGET_TOKEN_SECRET is not set"}, status=503
            )
        )
    ttl = int(min(TOKEN_TTL_SECONDS, settings.max_token_seconds))
    token = issue_token(settings.token_secret, settings.issuer, user_id, ttl)
    logger.info("widget token issued for %s (valid %d s)", user_id, ttl)
    return _no_store(web.json_response({"token": token, "expires_in": ttl}))


def _no_store(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Cache-Control"] = "no-store"
    _security_headers(response)
    return response


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def build_app(settings: WidgetSettings) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[SESSIONS] = OrderedDict()
    app.router.add_get("/", home)
    app.router.add_get("/sign-out", sign_out)
    app.router.add_post("/widget-token", widget_token)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        settings = load_widget_settings()
    except SettingsError as error:
        sys.exit(f"partner site: {error}")
    if not settings.token_secret:
        sys.exit("partner site: WIDGET_TOKEN_SECRET is not set")
    print(
        f"Sample partner site on http://{settings.partner_host}:{settings.partner_port}/ "
        f"(assistant at {settings.assistant_public_url})",
        flush=True,
    )
    web.run_app(
        build_app(settings), host=settings.partner_host, port=settings.partner_port, print=None
    )


if __name__ == "__main__":
    main()
