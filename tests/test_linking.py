"""Account linking end to end over HTTP, outside demo mode, on SQLite and PostgreSQL.

The assistant's runtime hands out the sign-in link; a browser-like client signs in at the
simulator's membership-login stand-in; the connector's /link/callback exchanges the code
and keeps the tokens encrypted, showing a one-time code; typed back in the same chat, the
code links the account and ThinQ calls then work with the tokens. A code typed in another
chat, a wrong code, or an old one links nothing. Also: refused states
store nothing, tokens are refreshed before expiry, a revoked sign-in asks to link again,
and unlinking deletes the tokens.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from actions.actions import ActionListDevices
from assistant.linking import LinkConfirmed, RelinkRequired
from assistant.runtime import Runtime, use_runtime
from assistant.settings import load_settings
from assistant.storage import TokenCipher
from assistant.storage.models import utcnow
from assistant.storage.pending_links import MAX_CODE_ATTEMPTS, CodeRefused
from connector.service import ConnectorService, Roles
from devstack.processes import free_port
from simulator.config import config_from_env
from tests.oauth_support import OAuthSim, oauth_simulator, query_of, sign_in
from tests.test_account_actions import run

SENDER = "telegram:1001"


@dataclass
class Linking:
    sim: OAuthSim
    runtime: Runtime
    callback_url: str
    http: httpx.AsyncClient
    service: ConnectorService  # serves /link/callback

    async def start(self, sender: str = SENDER) -> str:
        return await self.runtime.linking.start(sender, "telegram")

    async def signed_in(self, sender: str = SENDER, user: str = "demo") -> httpx.Response:
        """The browser round: sign-in link, login form, callback page (with the code)."""
        redirect = await sign_in(self.http, await self.start(sender), user)
        return await self.http.get(redirect)

    async def link(self, sender: str = SENDER, user: str = "demo") -> httpx.Response:
        """The whole round: signed in, then the page's code typed in the sender's chat."""
        page = await self.signed_in(sender, user)
        assert page.status_code == 200, page.text
        confirmed = await self.runtime.linking.confirm(sender, code_on(page))
        assert isinstance(confirmed, LinkConfirmed), confirmed
        return page

    async def raw_rows(self) -> list[bytes]:
        """Every value of every linked-account and refresh-token row, as bytes."""
        values: list[bytes] = []
        async with self.runtime.storage.engine.connect() as conn:
            for table in (
                "linked_accounts",
                "linked_account_refresh_tokens",
                "link_requests",
                "pending_links",
            ):
                for row in await conn.execute(text(f"SELECT * FROM {table}")):
                    for value in row:
                        if isinstance(value, bytes | memoryview):
                            values.append(bytes(value))
                        elif value is not None:
                            values.append(str(value).encode())
        return values

    async def refresh_rows(self) -> int:
        async with self.runtime.storage.engine.connect() as conn:
            query = text("SELECT count(*) FROM linked_account_refresh_tokens")
            return (await conn.execute(query)).scalar_one()

    async def devices_seen(self, sender: str = SENDER) -> list[str]:
        session = await self.runtime.session_for(sender, "telegram")
        assert session is not None
        listed = await self.runtime.client.list_devices(session.auth)
        return [d.alias for d in listed]


def code_on(page: httpx.Response) -> str:
    """The code the callback page shows ("482 913" -> "482913")."""
    found = re.search(r'id="link-code">([0-9 ]+)<', page.text)
    assert found, page.text
    return found.group(1).replace(" ", "")


@pytest.fixture
async def linking(tmp_path: Path, database_url: str) -> AsyncIterator[Linking]:
    port = free_port()
    callback_url = f"http://127.0.0.1:{port}/link/callback"
    async with oauth_simulator(callback_url) as sim:
        env = {
            "STATE_DIR": str(tmp_path / "state"),
            "DEMO_MODE": "0",
            "THINQ_SERVICE_ID": sim.service_id,
            "THINQ_SERVICE_KEY": sim.service_key,
            "THINQ_BASE_URL": sim.url,
            "THINQ_TIMEOUT_SECONDS": "3",
            "DATABASE_URL": database_url,
            "TOKEN_ENCRYPTION_KEY": TokenCipher.generate_key(),
            "LG_CALLBACK_SECRET": "s3cret-" + "x" * 32,
            "LG_OAUTH_AUTHORIZE_URL": f"{sim.url}/oauth/authorize",
            "LG_OAUTH_TOKEN_URL": f"{sim.url}/oauth/token",
            "LG_OAUTH_CLIENT_ID": sim.client_id,
            "LG_OAUTH_CLIENT_SECRET": sim.client_secret,
            "LINK_CALLBACK_URL": callback_url,
        }
        settings = load_settings(env)
        assert not settings.demo_mode
        assert sim.client_secret not in repr(settings)
        runtime = await Runtime.create(settings)
        service = ConnectorService(settings, Roles(), port=port, storage=runtime.storage)
        try:
            await service.start()
            async with httpx.AsyncClient(timeout=5) as http:
                yield Linking(sim, runtime, callback_url, http, service)
        finally:
            await service.stop()
            await runtime.close()


async def test_start_sign_in_callback_stores_encrypted_tokens_that_work(linking: Linking):
    url = await linking.start()
    parts, query = urlsplit(url), query_of(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{linking.sim.url}/oauth/authorize"
    assert query["response_type"] == "code"
    assert query["client_id"] == linking.sim.client_id
    assert query["redirect_uri"] == linking.callback_url
    assert len(query["state"]) >= 40

    redirect = await sign_in(linking.http, url, "demo")
    assert redirect.startswith(linking.callback_url + "?")
    page = await linking.http.get(redirect)
    assert page.status_code == 200
    assert "One more step" in page.text and "Never give this code to anyone" in page.text
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    code = code_on(page)
    # Nothing is linked until the code comes back through the chat that asked.
    assert await linking.runtime.storage.accounts.get(SENDER) is None
    pending = b"\n".join(await linking.raw_rows())
    assert code.encode() not in pending

    confirmed = await linking.runtime.linking.confirm(SENDER, f"the code is {code[:3]} {code[3:]}")
    assert confirmed == LinkConfirmed(SENDER, "demo")
    account = await linking.runtime.storage.accounts.get(SENDER)
    assert account is not None
    assert (account.thinq_user, account.channel, account.country_code) == (
        "demo",
        "telegram",
        "US",
    )
    assert account.refresh_token and account.token != linking.sim.demo_token
    expires_in = account.token_expires_at - utcnow()
    assert timedelta(minutes=59) < expires_in <= timedelta(hours=1)

    # The raw rows hold neither token (nor the state), only ciphertext.
    raw = b"\n".join(await linking.raw_rows())
    for secret in (account.token, account.refresh_token, query["state"]):
        assert secret.encode() not in raw

    assert len(await linking.devices_seen()) == 9


async def test_a_second_user_links_to_their_own_household(linking: Linking):
    assert (await linking.link(user="neighbour")).status_code == 200
    assert await linking.devices_seen() == ["Neighbour AC"]


async def test_a_forwarded_sign_in_link_links_nobody_without_the_code(linking: Linking):
    """The attacker asks for a link and gets a victim to sign in with it: the victim sees a
    code they are told never to give away; the attacker's guesses run out."""
    attacker = "telegram:666"
    page = await linking.signed_in(attacker, user="demo")
    code = code_on(page)
    wrong = "000000" if code != "000000" else "111111"
    for left in range(MAX_CODE_ATTEMPTS - 1, 0, -1):
        assert await linking.runtime.linking.confirm(attacker, wrong) == CodeRefused("wrong", left)
    assert await linking.runtime.linking.confirm(attacker, wrong) == CodeRefused("locked")
    # Even the right code is useless now, and nothing was ever linked.
    assert await linking.runtime.linking.confirm(attacker, code) == CodeRefused("none")
    assert await linking.runtime.storage.accounts.get(attacker) is None


async def test_the_code_works_only_in_the_chat_that_asked(linking: Linking):
    page = await linking.signed_in(SENDER, user="demo")
    code = code_on(page)
    other = "telegram:2002"
    assert await linking.runtime.linking.confirm(other, code) == CodeRefused("none")
    assert await linking.runtime.storage.accounts.get(other) is None
    assert await linking.runtime.linking.confirm(SENDER, "no digits here") == CodeRefused(
        "unreadable"
    )
    assert isinstance(await linking.runtime.linking.confirm(SENDER, code), LinkConfirmed)
    # Used once: typing it again finds nothing waiting.
    assert await linking.runtime.linking.confirm(SENDER, code) == CodeRefused("none")


async def test_an_old_code_has_expired(linking: Linking, monkeypatch: pytest.MonkeyPatch):
    page = await linking.signed_in(SENDER, user="demo")
    later = utcnow() + timedelta(minutes=11)
    monkeypatch.setattr(linking.runtime.linking, "_now", lambda: later)
    assert await linking.runtime.linking.confirm(SENDER, code_on(page)) == CodeRefused("expired")
    assert await linking.runtime.storage.accounts.get(SENDER) is None


async def test_a_newer_sign_in_replaces_the_waiting_one(linking: Linking):
    first = code_on(await linking.signed_in(SENDER, user="demo"))
    second = code_on(await linking.signed_in(SENDER, user="neighbour"))
    if first != second:
        assert (await linking.runtime.linking.confirm(SENDER, first)).reason == "wrong"
    assert await linking.runtime.linking.confirm(SENDER, second) == LinkConfirmed(
        SENDER, "neighbour"
    )


async def test_reused_state_is_400_and_changes_nothing(linking: Linking):
    redirect = await sign_in(linking.http, await linking.start(), "demo")
    page = await linking.http.get(redirect)
    assert page.status_code == 200
    assert isinstance(await linking.runtime.linking.confirm(SENDER, code_on(page)), LinkConfirmed)
    before = await linking.runtime.storage.accounts.get(SENDER)

    again = await linking.http.get(redirect)
    assert again.status_code == 400
    assert "already been used" in again.text
    assert await linking.runtime.storage.accounts.get(SENDER) == before


@pytest.mark.parametrize(
    "query, reason",
    [
        ("", "incomplete"),
        ("?code=abc", "incomplete"),
        ("?code=abc&state=not-a-state-we-made", "not one we handed out"),
    ],
)
async def test_missing_or_unknown_state_is_400_and_stores_nothing(
    linking: Linking, query: str, reason: str
):
    page = await linking.http.get(linking.callback_url + query)
    assert page.status_code == 400
    assert reason in page.text
    assert await linking.runtime.storage.accounts.get(SENDER) is None


async def test_expired_state_is_400_and_stores_nothing(linking: Linking):
    url = await linking.start()
    redirect = await sign_in(linking.http, url, "demo")
    # The flow was started longer ago than LINK_REQUEST_TTL_SECONDS (600 s).
    later = utcnow() + timedelta(seconds=601)
    linking.service.linking._now = lambda: later  # the callback runs in the connector
    page = await linking.http.get(redirect)
    assert page.status_code == 400
    assert "expired" in page.text
    assert await linking.runtime.storage.accounts.get(SENDER) is None
    assert await linking.refresh_rows() == 0


async def test_cancelled_sign_in_is_400_and_stores_nothing(linking: Linking):
    redirect = await sign_in(linking.http, await linking.start(), "demo", decision="deny")
    page = await linking.http.get(redirect)
    assert page.status_code == 400
    assert "cancelled" in page.text
    assert await linking.runtime.storage.accounts.get(SENDER) is None


async def test_code_refused_by_lg_is_400_and_stores_nothing(linking: Linking):
    redirect = await sign_in(linking.http, await linking.start(), "demo")
    query = query_of(redirect)
    # A forged code with a genuine state: the state is used up, LG refuses the code.
    page = await linking.http.get(f"{linking.callback_url}?code=forged&state={query['state']}")
    assert page.status_code == 400
    assert "LG did not accept" in page.text
    assert await linking.runtime.storage.accounts.get(SENDER) is None


async def test_token_near_expiry_is_refreshed_and_the_new_pair_stored(linking: Linking):
    assert (await linking.link()).status_code == 200
    accounts = linking.runtime.storage.accounts
    old = await accounts.get(SENDER)
    # Make it expire within the refresh margin (300 s by default).
    await accounts.link(
        SENDER,
        old.thinq_user,
        old.token,
        old.country_code,
        old.region,
        token_expires_at=utcnow() + timedelta(seconds=120),
        refresh_token=old.refresh_token,
    )

    assert len(await linking.devices_seen()) == 9  # session_for refreshed first

    new = await accounts.get(SENDER)
    assert new.token != old.token and new.refresh_token != old.refresh_token
    assert new.token_expires_at - utcnow() > timedelta(minutes=59)
    raw = b"\n".join(await linking.raw_rows())
    assert new.token.encode() not in raw and new.refresh_token.encode() not in raw
    # Rotation: LG no longer takes the old refresh token; the new access token works.
    assert linking.sim.membership.user_for_token(new.token) == "demo"
    refused = await linking.http.post(
        f"{linking.sim.url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": old.refresh_token,
            "client_id": linking.sim.client_id,
            "client_secret": linking.sim.client_secret,
        },
    )
    assert refused.json()["error"] == "invalid_grant"
    # A token far from expiry is left alone.
    assert len(await linking.devices_seen()) == 9
    assert await accounts.get(SENDER) == new


async def test_revoked_sign_in_deletes_the_tokens_and_asks_to_link_again(linking: Linking):
    assert (await linking.link()).status_code == 200
    accounts = linking.runtime.storage.accounts
    old = await accounts.get(SENDER)
    await accounts.link(
        SENDER,
        old.thinq_user,
        old.token,
        old.country_code,
        old.region,
        token_expires_at=utcnow() + timedelta(seconds=60),
        refresh_token=old.refresh_token,
    )
    await linking.http.post(f"{linking.sim.url}/sim/oauth/revoke", json={"user": "demo"})

    with pytest.raises(RelinkRequired):
        await linking.runtime.session_for(SENDER, "telegram")
    assert await accounts.get(SENDER) is None
    assert await linking.refresh_rows() == 0
    # Outside demo mode nothing links the sender again by itself.
    assert await linking.runtime.session_for(SENDER, "telegram") is None


async def test_unlink_deletes_the_stored_tokens(linking: Linking):
    assert (await linking.link()).status_code == 200
    assert (await linking.link("telegram:2002")).status_code == 200
    assert await linking.refresh_rows() == 2

    assert await linking.runtime.linking.unlink(SENDER) is True
    assert await linking.runtime.storage.accounts.get(SENDER) is None
    assert await linking.refresh_rows() == 1
    assert await linking.runtime.session_for(SENDER, "telegram") is None
    assert await linking.runtime.linking.unlink(SENDER) is False
    # The other sender is untouched.
    assert len(await linking.devices_seen("telegram:2002")) == 9


async def test_revoked_sign_in_tells_the_user_to_link_again(linking: Linking):
    assert (await linking.link("user-7")).status_code == 200
    accounts = linking.runtime.storage.accounts
    old = await accounts.get("user-7")
    await accounts.link(
        "user-7",
        old.thinq_user,
        old.token,
        old.country_code,
        old.region,
        token_expires_at=utcnow() + timedelta(seconds=60),
        refresh_token=old.refresh_token,
    )
    await linking.http.post(f"{linking.sim.url}/sim/oauth/revoke", json={"user": "demo"})
    use_runtime(linking.runtime)
    try:
        assert await run(ActionListDevices(), "list_devices") == (
            [("utter_link_expired", {})],
            [],
        )
        assert await run(ActionListDevices(), "list_devices") == ([("utter_not_linked", {})], [])
    finally:
        use_runtime(None)


def test_demo_defaults_of_the_assistant_and_the_simulator_agree(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIR", str(tmp_path))
    monkeypatch.setenv("CONNECTOR_PORT", "9123")
    for name in ("SIM_OAUTH_CLIENT_ID", "SIM_OAUTH_CLIENT_SECRET", "SIM_OAUTH_REDIRECT_URIS"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings({"STATE_DIR": str(tmp_path), "CONNECTOR_PORT": "9123"})
    assert settings.demo_mode and settings.oauth.missing() is None
    client = config_from_env().oauth_clients[settings.oauth.client_id]
    assert client.secret == settings.oauth.client_secret
    assert client.redirect_uris == (settings.oauth.callback_url,)
    assert settings.oauth.callback_url == "http://127.0.0.1:9123/link/callback"
    assert settings.oauth.authorize_url == "http://127.0.0.1:8700/oauth/authorize"
    assert settings.oauth.client_secret not in repr(settings)
