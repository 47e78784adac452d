"""``GET /link/callback``: where LG's membership login sends the browser back.

Served by the connector process (it already listens on HTTP, 8702 by default, and is
the one place LG reaches us); the registered ``redirect_uri`` / ``LINK_CALLBACK_URL`` is
``http(s)://<connector>/link/callback``. The work is :meth:`LinkingService.complete`;
this module only turns its outcome into a small HTML page. The query string carries a
one-time code, so the connector's access log shows paths only and the pages tell the
browser not to cache them or pass them on as a referrer.
"""

from __future__ import annotations

import html

from aiohttp import web

from assistant.linking import LinkCompleted, LinkFailed, LinkingService

CALLBACK_PATH = "/link/callback"
LINKING = web.AppKey("linking", LinkingService)

_FAILURES = {
    "missing": "The sign-in answer is incomplete.",
    "unknown": "This sign-in link is not one we handed out.",
    "expired": "This sign-in link has expired.",
    "used": "This sign-in link has already been used.",
    "denied": "The LG sign-in was cancelled, so nothing was linked.",
    "refused": "LG did not accept this sign-in.",
    "unavailable": "We could not reach LG to finish the sign-in.",
}
_AGAIN = 'Nothing was stored. Ask the assistant for a new link: say "link my LG account".'

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title></head>
<body><main><h1>{title}</h1><p>{message}</p>{extra}</main></body></html>
"""
_CODE_PAGE = (
    '<p style="font-size:2em;letter-spacing:.2em" aria-label="Your code: {spelled}">'
    '<strong id="link-code">{code}</strong></p>'
    "<p>It works once, for {minutes} minutes.</p>"
    "<p><strong>Never give this code to anyone.</strong> Whoever types it in their chat "
    "can see and control your LG appliances. If you did not ask an assistant to link your "
    "LG account just now, close this page: nothing has been linked.</p>"
)


def page(title: str, message: str, status: int, extra: str = "") -> web.Response:
    response = web.Response(
        text=_PAGE.format(title=html.escape(title), message=html.escape(message), extra=extra),
        status=status,
        content_type="text/html",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def handle_callback(request: web.Request) -> web.Response:
    linking = request.app[LINKING]
    query = request.query
    outcome = await linking.complete(
        query.get("code"), query.get("state"), query.get("error") or None
    )
    if isinstance(outcome, LinkCompleted):
        # Not linked yet: the code must be typed in the chat that asked (see
        # assistant/linking.py), so a forwarded sign-in link cannot link this person.
        code = f"{outcome.code[:3]} {outcome.code[3:]}"
        return page(
            "One more step",
            "To finish linking your LG account, type this code in the chat where you asked for it:",
            200,
            _CODE_PAGE.format(
                code=html.escape(code),
                spelled=html.escape(" ".join(outcome.code)),
                minutes=linking.request_ttl_minutes,
            ),
        )
    assert isinstance(outcome, LinkFailed)
    message = f"{_FAILURES[outcome.reason]} {_AGAIN}"
    return page("Your LG account was not linked", message, outcome.status)


def add_routes(app: web.Application, linking: LinkingService) -> None:
    app[LINKING] = linking
    app.router.add_get(CALLBACK_PATH, handle_callback)
