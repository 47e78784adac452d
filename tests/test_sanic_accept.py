"""A malformed Accept header (connector/sanic_accept.py): Sanic's 404 and 405 stay 404 and
405 instead of becoming a 500, and good headers still choose the error page's format."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from sanic import Blueprint, response
from sanic.request import Request

from connector.sanic_accept import SANIC_ACCEPT, tolerate_malformed_accept
from tests import sanic_support
from tests.sanic_support import serve_blueprint

MALFORMED = ["0", "a/b;q=x", "text/html;q=", "a/b;;", "a/b, c", "\x7f/\x7f;q=1.5.5"]


def app_blueprint() -> Blueprint:
    blueprint = Blueprint(f"accept-test-{id(object())}")

    @blueprint.get("/hello")
    async def hello(_: Request) -> response.HTTPResponse:
        return response.json({"hello": "world"})

    return blueprint


async def answers(accept: str) -> list[int]:
    async with (
        serve_blueprint(app_blueprint(), "/t", name="accept-test") as base,
        httpx.AsyncClient(timeout=10) as client,
    ):
        headers = {"Accept": accept}
        return [
            (await client.get(f"{base}/t/nope", headers=headers)).status_code,
            (await client.post(f"{base}/t/hello", headers=headers)).status_code,
            (await client.get(f"{base}/t/hello", headers=headers)).status_code,
        ]


@pytest.fixture
def tolerant() -> None:
    tolerate_malformed_accept()
    tolerate_malformed_accept()  # installing twice changes nothing
    assert Request.accept is not SANIC_ACCEPT


@pytest.mark.parametrize("accept", MALFORMED)
async def test_a_malformed_accept_keeps_404_and_405(tolerant: None, accept: str) -> None:
    assert await answers(accept) == [404, 405, 200]


async def test_sanic_alone_answered_them_500(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Request, "accept", SANIC_ACCEPT)
    monkeypatch.setattr(sanic_support, "tolerate_malformed_accept", lambda: None)
    assert await answers("a/b, c") == [500, 500, 200]


async def test_a_good_accept_still_picks_the_error_format(tolerant: None) -> None:
    async with (
        serve_blueprint(app_blueprint(), "/t", name="accept-test") as base,
        httpx.AsyncClient(timeout=10) as client,
    ):
        as_json = await client.get(f"{base}/t/nope", headers={"Accept": "application/json"})
        as_html = await client.get(f"{base}/t/nope", headers={"Accept": "text/html"})
    assert as_json.status_code == as_html.status_code == 404
    assert as_json.headers["content-type"].startswith("application/json")
    assert as_html.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(
    "setup",
    [
        "import rasa_ext",  # what Rasa imports for our endpoints and pipeline
        # rasa_sdk's plugin hook, as the action server runs it
        "import sanic, rasa_sdk_plugins; "
        "rasa_sdk_plugins.attach_sanic_app_extensions(sanic.Sanic('actions'))",
    ],
)
def test_the_rasa_and_action_servers_install_it(setup: str) -> None:
    check = (
        "from sanic.request import Request; from connector.sanic_accept import SANIC_ACCEPT; "
        f"{setup}; print(Request.accept is not SANIC_ACCEPT)"
    )
    ran = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=True
    )
    assert ran.stdout.strip().splitlines()[-1] == "True", ran.stderr[-2000:]
