"""The simulator's stand-in for LG's membership login (simulator/oauth.py) over HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.oauth_support import OAuthSim, oauth_simulator, query_of, sign_in

REDIRECT = "http://127.0.0.1:9/link/callback"


@pytest.fixture
async def sim() -> AsyncIterator[OAuthSim]:
    async with oauth_simulator(REDIRECT) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def token_request(
    http: httpx.AsyncClient, sim: OAuthSim, secret: str | None = None, **form: str
) -> httpx.Response:
    body = {"client_id": sim.client_id, "client_secret": secret or sim.client_secret, **form}
    return await http.post(f"{sim.url}/oauth/token", data=body)


async def code_for(http: httpx.AsyncClient, sim: OAuthSim, user: str = "demo") -> str:
    location = await sign_in(http, sim.authorize_url("state-42"), user)
    assert location.startswith(REDIRECT + "?")
    query = query_of(location)
    assert query["state"] == "state-42"
    return query["code"]


async def exchange(http: httpx.AsyncClient, sim: OAuthSim, code: str) -> httpx.Response:
    return await token_request(
        http, sim, grant_type="authorization_code", code=code, redirect_uri=REDIRECT
    )


async def devices_with(http: httpx.AsyncClient, sim: OAuthSim, token: str) -> httpx.Response:
    return await http.get(f"{sim.url}/devices", headers=sim.thinq_headers(token))


async def test_login_form_is_marked_as_a_stand_in_and_offers_the_users(sim, http):
    page = await http.get(sim.authorize_url())
    assert page.status_code == 200
    assert "stand-in" in page.text.lower() and "Not LG" in page.text
    assert 'value="demo"' in page.text and 'value="neighbour"' in page.text
    assert page.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "query",
    [
        "response_type=code&client_id=nobody&redirect_uri=" + REDIRECT + "&state=s",
        "response_type=code&client_id={client}&redirect_uri=http://evil.example/cb&state=s",
    ],
    ids=["unknown client", "unregistered redirect"],
)
async def test_bad_client_or_redirect_gets_a_page_and_no_redirect(sim, http, query):
    page = await http.get(
        f"{sim.url}/oauth/authorize?{query.format(client=sim.client_id)}", follow_redirects=False
    )
    assert page.status_code == 400
    assert "Location" not in page.headers


async def test_code_exchange_gives_tokens_that_open_the_users_devices(sim, http):
    answer = await exchange(http, sim, await code_for(http, sim))
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "user_number"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["user_number"] == "demo"
    listed = await devices_with(http, sim, body["access_token"])
    assert listed.status_code == 200
    assert len(listed.json()["response"]) == 9
    # The configured demo token still works next to the issued ones.
    assert (await devices_with(http, sim, sim.demo_token)).status_code == 200
    # OAuth calls are not ThinQ calls: the call log shows the /devices calls only.
    calls = (await http.get(f"{sim.url}/sim/calls")).json()
    assert [c["path"] for c in calls] == ["/devices", "/devices"]


async def test_second_user_gets_only_their_own_household(sim, http):
    body = (await exchange(http, sim, await code_for(http, sim, "neighbour"))).json()
    assert body["user_number"] == "neighbour"
    listed = (await devices_with(http, sim, body["access_token"])).json()["response"]
    assert [d["deviceInfo"]["alias"] for d in listed] == ["Neighbour AC"]


async def test_code_is_single_use_and_a_replay_revokes_what_it_issued(sim, http):
    code = await code_for(http, sim)
    first = (await exchange(http, sim, code)).json()
    again = await exchange(http, sim, code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert (await devices_with(http, sim, first["access_token"])).json()["error"]["code"] == "1302"
    refreshed = await token_request(
        http, sim, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_expired_code_is_refused(sim, http):
    code = await code_for(http, sim)
    real_now = sim.membership.now
    sim.membership.now = lambda: real_now() + sim.membership.code_seconds + 1
    answer = await exchange(http, sim, code)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant")


async def test_wrong_redirect_uri_is_refused_and_the_code_survives(sim, http):
    code = await code_for(http, sim)
    wrong = await token_request(
        http,
        sim,
        grant_type="authorization_code",
        code=code,
        redirect_uri="http://127.0.0.1:9/other",
    )
    assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
    assert (await exchange(http, sim, code)).status_code == 200


async def test_wrong_client_secret_is_401_and_the_code_survives(sim, http):
    code = await code_for(http, sim)
    wrong = await token_request(
        http,
        sim,
        secret="not-the-secret",
        grant_type="authorization_code",
        code=code,
        redirect_uri=REDIRECT,
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert (await exchange(http, sim, code)).status_code == 200


async def test_client_credentials_may_come_as_http_basic(sim, http):
    code = await code_for(http, sim)
    basic = base64.b64encode(f"{sim.client_id}:{sim.client_secret}".encode()).decode()
    answer = await http.post(
        f"{sim.url}/oauth/token",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert answer.status_code == 200


async def test_refresh_rotates_the_pair(sim, http):
    first = (await exchange(http, sim, await code_for(http, sim))).json()
    second = await token_request(
        http, sim, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert second.status_code == 200
    second = second.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert (await devices_with(http, sim, second["access_token"])).status_code == 200
    reused = await token_request(
        http, sim, grant_type="refresh_token", refresh_token=first["refresh_token"]
    )
    assert (reused.status_code, reused.json()["error"]) == (400, "invalid_grant")


async def test_expired_access_token_is_refused(sim, http):
    body = (await exchange(http, sim, await code_for(http, sim))).json()
    real_now = sim.membership.now
    sim.membership.now = lambda: real_now() + 3601
    refused = await devices_with(http, sim, body["access_token"])
    assert (refused.status_code, refused.json()["error"]["code"]) == (401, "1302")


async def test_revoking_a_user_ends_their_tokens(sim, http):
    body = (await exchange(http, sim, await code_for(http, sim))).json()
    revoked = await http.post(f"{sim.url}/sim/oauth/revoke", json={"user": "demo"})
    assert revoked.json() == {"revoked": 1}
    assert (await devices_with(http, sim, body["access_token"])).status_code == 401
    refreshed = await token_request(
        http, sim, grant_type="refresh_token", refresh_token=body["refresh_token"]
    )
    assert refreshed.json()["error"] == "invalid_grant"
    # The configured demo token is not an OAuth grant: it keeps working.
    assert (await devices_with(http, sim, sim.demo_token)).status_code == 200


async def test_cancel_redirects_with_access_denied_and_the_state(sim, http):
    location = await sign_in(http, sim.authorize_url("st-9"), decision="deny")
    assert query_of(location) == {"error": "access_denied", "state": "st-9"}


@pytest.mark.parametrize(
    "form, error",
    [
        ({"grant_type": "password"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        (
            {"grant_type": "authorization_code", "code": "nope", "redirect_uri": REDIRECT},
            "invalid_grant",
        ),
    ],
)
async def test_malformed_token_requests(sim, http, form, error):
    answer = await token_request(http, sim, **form)
    assert (answer.status_code, answer.json()["error"]) == (400, error)
