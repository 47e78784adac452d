"""The sample partner site (devstack/partner_site.py): its page, sessions and widget tokens."""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from assistant.settings import WidgetSettings
from connector.widget_token import verify_token
from devstack.partner_site import SESSION_COOKIE, build_app, render_page

SECRET = secrets.token_urlsafe(32)  # random per run
ISSUER = "example-home"
ASSISTANT = "https://assistant.example.test:8443"


def widget_settings(**overrides: object) -> WidgetSettings:
    values: dict[str, object] = {
        "token_secret": SECRET,
        "issuer": ISSUER,
        "max_token_seconds": 900.0,
        "allowed_origins": ("http://127.0.0.1:8080",),
        "notify_secret": secrets.token_urlsafe(32),
        "redis_url": None,
        "redis_prefix": "test",
        "assistant_public_url": ASSISTANT,
        "partner_host": "127.0.0.1",
        "partner_port": 8080,
    }
    values.update(overrides)
    return WidgetSettings(**values)  # type: ignore[arg-type]


async def start(settings: WidgetSettings) -> TestClient:
    client = TestClient(TestServer(build_app(settings)))
    await client.start_server()
    return client


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    client = await start(widget_settings())
    try:
        yield client
    finally:
        await client.close()


async def sign_in(client: TestClient, user: str) -> None:
    response = await client.get(f"/?user={user}", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"]
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


async def test_page_embeds_the_widget_from_the_assistant(client: TestClient) -> None:
    response = await client.get("/")
    assert response.status == 200
    page = await response.text()
    assert "Example Home — your LG appliances" in page
    assert f'<script src="{ASSISTANT}/webhooks/widget/widget.js"' in page
    assert "LGAssistantWidget.mount" in page
    assert "/widget-token" in page and '"X-Requested-With": "widget"' in page
    # A first visit is a guest with a fresh session.
    assert re.search(r"Signed in as <strong>guest-[0-9a-f]{8}</strong>", page)
    assert SESSION_COOKIE in response.cookies
    assert 'href="/sign-out"' in page
    assert response.headers["Cache-Control"] == "no-store"


async def test_content_security_policy_allows_the_assistant_and_the_nonce(
    client: TestClient,
) -> None:
    response = await client.get("/")
    csp = response.headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    nonce = re.search(r"'nonce-([^']+)'", directives["script-src"]).group(1)  # type: ignore[union-attr]
    assert "'self'" in directives["script-src"] and ASSISTANT in directives["script-src"]
    assert "'unsafe-inline'" not in csp
    assert "wss://assistant.example.test:8443" in directives["connect-src"]
    assert ASSISTANT in directives["style-src"]  # the widget's stylesheet
    page = await response.text()
    assert f'<script nonce="{nonce}">' in page
    # A new nonce for every page.
    again = (await client.get("/")).headers["Content-Security-Policy"]
    assert f"'nonce-{nonce}'" not in again


async def test_plain_http_assistant_gets_a_ws_connect_source() -> None:
    client = await start(widget_settings(assistant_public_url="http://127.0.0.1:5005"))
    try:
        csp = (await client.get("/")).headers["Content-Security-Policy"]
        assert "connect-src 'self' ws://127.0.0.1:5005" in csp
        assert "script-src 'self' http://127.0.0.1:5005 " in csp
    finally:
        await client.close()


async def test_sign_in_as_a_user_and_sign_out(client: TestClient) -> None:
    await sign_in(client, "alice.smith@example.com")
    page = await (await client.get("/")).text()
    assert "Signed in as <strong>alice.smith@example.com</strong>" in page

    response = await client.get("/sign-out", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/"
    page = await (await client.get("/")).text()
    assert "alice.smith@example.com" not in page
    assert re.search(r"Signed in as <strong>guest-[0-9a-f]{8}</strong>", page)


@pytest.mark.parametrize(
    "user",
    ["%3Cscript%3Ealert(1)%3C/script%3E", "", "a%20b", "x" * 65, "bob%22%3E", "caf%C3%A9"],
)
async def test_bad_user_id_is_refused(client: TestClient, user: str) -> None:
    response = await client.get(f"/?user={user}", allow_redirects=False)
    assert response.status == 400
    assert "<script>" not in await response.text()
    assert SESSION_COOKIE not in response.cookies


def test_the_user_id_is_html_escaped_on_the_page() -> None:
    # Valid ids cannot hold markup, but the page escapes whatever it is given.
    page = render_page(widget_settings(), '<img src=x onerror="alert(1)">', "n0nce")
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


async def test_token_requires_a_session(client: TestClient) -> None:
    response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "unauthorized" and body["reason"]
    # An unknown session id is no session either.
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: "made-up"})
    response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
    assert response.status == 401


async def test_token_requires_the_widget_header(client: TestClient) -> None:
    await sign_in(client, "alice")
    response = await client.post("/widget-token")
    assert response.status == 403
    assert (await response.json())["error"] == "forbidden"
    response = await client.post("/widget-token", headers={"X-Requested-With": "XMLHttpRequest"})
    assert response.status == 403
    # Only POST: a link or an <img> cannot fetch a token.
    assert (await client.get("/widget-token")).status == 405


async def test_token_names_the_signed_in_user(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    await sign_in(client, "alice@example.com")
    with caplog.at_level(logging.DEBUG):
        response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert body["expires_in"] == 600
    identity = verify_token(body["token"], SECRET, ISSUER, 900)
    assert identity.sender_id == f"widget:{ISSUER}:alice@example.com"
    # The issue is logged, by user id; the token never is.
    assert "alice@example.com" in caplog.text
    assert body["token"] not in caplog.text
    for part in body["token"].split("."):
        assert part not in caplog.text


async def test_guest_gets_a_token_too(client: TestClient) -> None:
    page = await (await client.get("/")).text()
    guest = re.search(r"guest-[0-9a-f]{8}", page).group(0)  # type: ignore[union-attr]
    response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
    assert response.status == 200
    token = (await response.json())["token"]
    assert verify_token(token, SECRET, ISSUER, 900).subject == guest


async def test_token_lifetime_never_exceeds_the_maximum() -> None:
    client = await start(widget_settings(max_token_seconds=300.0))
    try:
        await sign_in(client, "bob")
        response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
        body = await response.json()
        assert body["expires_in"] == 300
        identity = verify_token(body["token"], SECRET, ISSUER, 300)
        assert identity.subject == "bob"
    finally:
        await client.close()


async def test_sign_in_replaces_the_session(client: TestClient) -> None:
    await (await client.get("/")).text()
    guest_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
    await sign_in(client, "carol")
    new_cookie = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE]
    assert new_cookie.value != guest_cookie.value
    # The guest's old session no longer works.
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({SESSION_COOKIE: guest_cookie.value})
    response = await client.post("/widget-token", headers={"X-Requested-With": "widget"})
    assert response.status == 401


async def test_health(client: TestClient) -> None:
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
