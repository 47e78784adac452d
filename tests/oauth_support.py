"""A simulator with its membership-login stand-in set up for one OAuth client, and a
browser-like walk through its login form (tests of simulator/oauth.py and account linking)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
from aiohttp import web

from lgcloud.message_id import new_message_id
from simulator.app import create_app
from simulator.clock import SimClock
from simulator.config import OAuthClient, SimulatorConfig
from simulator.oauth import MEMBERSHIP, MembershipStandIn


@dataclass
class OAuthSim:
    url: str
    service_id: str
    service_key: str
    demo_token: str
    client_id: str
    client_secret: str
    redirect_uri: str
    membership: MembershipStandIn

    def authorize_url(self, state: str = "st-1") -> str:
        return (
            f"{self.url}/oauth/authorize?response_type=code&client_id={self.client_id}"
            f"&redirect_uri={self.redirect_uri}&state={state}"
        )

    def thinq_headers(self, token: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token}",
            "x-country-code": "US",
            "x-message-id": new_message_id(),
            "x-service-id": self.service_id,
            "x-service-key": self.service_key,
        }


@contextlib.asynccontextmanager
async def oauth_simulator(redirect_uri: str, access_seconds: int = 3600) -> AsyncIterator[OAuthSim]:
    client_id, client_secret = "assistant-" + secrets.token_hex(4), secrets.token_urlsafe(24)
    demo_token = secrets.token_hex(48)
    config = SimulatorConfig(
        port=0,
        time_scale=0,
        service_id=secrets.token_hex(12),
        service_key=secrets.token_urlsafe(40),
        tokens={demo_token: "demo"},
        oauth_clients={client_id: OAuthClient(client_secret, (redirect_uri,))},
        oauth_access_seconds=access_seconds,
    )
    app = create_app(config, SimClock(0))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield OAuthSim(
            f"http://127.0.0.1:{port}",
            config.service_id,
            config.service_key,
            demo_token,
            client_id,
            client_secret,
            redirect_uri,
            app[MEMBERSHIP],
        )
    finally:
        await runner.cleanup()


async def sign_in(
    http: httpx.AsyncClient, authorize_url: str, user: str = "demo", decision: str = "allow"
) -> str:
    """Open the login form at ``authorize_url``, submit it as ``user``; the redirect URL."""
    form_page = await http.get(authorize_url)
    assert form_page.status_code == 200, form_page.text
    query = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
    parts = urlsplit(authorize_url)
    submitted = await http.post(
        f"{parts.scheme}://{parts.netloc}/oauth/authorize",
        data={
            "client_id": query["client_id"],
            "redirect_uri": query["redirect_uri"],
            "state": query["state"],
            "user": user,
            "decision": decision,
        },
        follow_redirects=False,
    )
    assert submitted.status_code == 302, submitted.text
    return submitted.headers["Location"]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
