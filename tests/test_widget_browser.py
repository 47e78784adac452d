"""The chat widget in a real browser (Debian's headless Chromium, driven by Playwright),
on the sample partner page of the whole running stack.

A person opens the partner page, opens the widget, types "turn on express mode on my
fridge", sees the answer and the fridge changes in the simulated cloud; answers a
clarification with a quick-reply button; asks to be told when the washer is done, and the
push arrives in the open widget; one that arrives while the widget is closed is shown
when it reopens; a forged sign-in token is refused. Screenshots of the widget are saved
in reports/screenshots/ (CI keeps them as artifacts).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, async_playwright, expect

from connector.widget_token import issue_token
from devstack.processes import ROOT, Stack
from tests.stack_fixtures import full_stack, telegram_api  # noqa: F401 - fixtures by name

pytestmark = pytest.mark.stack

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "reports" / "screenshots"
TURN_SECONDS = 60_000  # ms: a first turn loads Rasa's policies
PUSH_SECONDS = 30_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: run scripts/browser.sh"  # noqa: ASYNC240
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox"], headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


def sim(stack: Stack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"http://127.0.0.1:{stack.ports.simulator}{path}", timeout=30, **kwargs
    )


def push(stack: Stack, device_id: str) -> httpx.Response:
    return sim(
        stack, "POST", f"/sim/devices/{device_id}/push", json={"pushCode": "WASHING_IS_COMPLETE"}
    )


def device(stack: Stack, alias: str) -> dict[str, Any]:
    return {d["alias"]: d for d in sim(stack, "GET", "/sim/devices").json()}[alias]


async def open_widget(
    browser: Browser, stack: Stack, user: str, token: str | None = None, **context: Any
) -> Page:
    """The partner page signed in as ``user``, widget open. ``token``: what the page's
    token endpoint answers instead of its own (a forgery)."""
    page = await (await browser.new_context(**context)).new_page()
    if token is not None:

        async def forge(route: Any) -> None:
            await route.fulfill(json={"token": token, "expires_in": 600})

        await page.route("**/widget-token", forge)
    await page.goto(f"http://127.0.0.1:{stack.ports.partner}/?user={user}")
    await page.get_by_role("button", name="Open LG assistant chat").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    return page


async def say(page: Page, text: str) -> None:
    box = page.get_by_role("textbox", name="Message")
    await expect(box).to_be_focused()
    await expect(page.get_by_role("button", name="Send")).to_be_enabled(timeout=30_000)
    await box.fill(text)
    await box.press("Enter")


def bot_messages(page: Page) -> Locator:
    return page.locator(".lgw-msg.lgw-bot")


async def test_a_person_controls_the_fridge_and_gets_pushes_in_the_widget(
    browser: Browser,
    full_stack: Stack,  # noqa: F811
) -> None:
    stack = full_stack
    sim(stack, "POST", "/sim/reset")
    user = f"browser-{uuid.uuid4().hex[:8]}"
    page = await open_widget(browser, stack, user, viewport={"width": 1280, "height": 800})

    assert device(stack, "Fridge")["state"]["refrigeration.expressMode"] is False
    await say(page, "turn on express mode on my fridge")
    await expect(bot_messages(page).last).to_contain_text(
        "express mode is now on", timeout=TURN_SECONDS
    )
    assert device(stack, "Fridge")["state"]["refrigeration.expressMode"] is True

    # A clarification answered with a quick-reply button.
    await say(page, "set the AC to 22")
    await expect(bot_messages(page).last).to_contain_text("Which one", timeout=TURN_SECONDS)
    replies = page.get_by_role("group", name="Quick replies").last
    await replies.get_by_role("button", name="Bedroom AC").click()
    await expect(page.locator(".lgw-msg.lgw-user").last).to_contain_text("Bedroom AC")
    await expect(replies.get_by_role("button", name="Bedroom AC")).to_be_disabled()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if device(stack, "Bedroom AC")["state"]["temperatureInUnits.targetTemperatureC"] == 22:
            break
        await page.wait_for_timeout(250)
    assert device(stack, "Bedroom AC")["state"]["temperatureInUnits.targetTemperatureC"] == 22
    assert device(stack, "Living Room AC")["state"]["temperatureInUnits.targetTemperatureC"] == 24

    # A push while the widget is open appears in it.
    await say(page, "notify me when the washer is done")
    await expect(bot_messages(page).last).to_contain_text("Washer", timeout=TURN_SECONDS)
    washer = device(stack, "Washer")["deviceId"]
    sent = push(stack, washer)
    assert sent.status_code == 200, sent.text
    pushed = page.locator(".lgw-msg.lgw-proactive")
    await expect(pushed.last).to_contain_text("Washer", timeout=PUSH_SECONDS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "widget-e2e-desktop.png"))

    # One that arrives while the widget is closed waits, counted on the launcher.
    count = await pushed.count()
    await page.keyboard.press("Escape")
    launcher = page.get_by_role("button", name="Open LG assistant chat")
    await expect(launcher).to_be_focused()
    sent = push(stack, washer)
    assert sent.status_code == 200, sent.text
    await expect(launcher).to_contain_text("1", timeout=PUSH_SECONDS)
    await launcher.click()
    await expect(pushed).to_have_count(count + 1)
    await expect(page.get_by_text("New messages")).to_be_visible()

    # A reload (or another visit) shows the conversation from the server's log.
    await page.reload()
    await page.get_by_role("button", name="Open LG assistant chat").click()
    await expect(bot_messages(page).filter(has_text="express mode is now on")).to_have_count(1)
    await expect(page.locator(".lgw-msg.lgw-proactive")).to_have_count(count + 1)
    await page.context.close()


async def test_the_widget_fits_a_phone_screen(browser: Browser, full_stack: Stack) -> None:  # noqa: F811
    page = await open_widget(
        browser,
        full_stack,
        f"phone-{uuid.uuid4().hex[:8]}",
        viewport={"width": 375, "height": 667},
        is_mobile=True,
        has_touch=True,
    )
    await say(page, "what devices do I have")
    await expect(bot_messages(page).last).to_contain_text("Fridge", timeout=TURN_SECONDS)
    box = await page.get_by_role("dialog").bounding_box()
    assert box is not None and box["width"] >= 370 and box["height"] >= 600
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "widget-e2e-phone.png"))
    await page.context.close()


async def test_a_forged_token_is_refused_and_nothing_runs(
    browser: Browser,
    full_stack: Stack,  # noqa: F811
) -> None:
    stack = full_stack
    sim(stack, "POST", "/sim/reset")
    forged = issue_token("an-attacker-guessed-this-secret-0123456789", "sample-partner", "victim")
    # The page's own token endpoint is replaced: the widget presents the forged token.
    page = await open_widget(browser, stack, "victim", token=forged)
    status = page.get_by_role("status").filter(has_text="refused")
    await expect(status).to_contain_text("signature", timeout=20_000)
    await expect(page.get_by_role("button", name="Send")).to_be_disabled()
    assert device(stack, "Fridge")["state"]["refrigeration.expressMode"] is False
    async with httpx.AsyncClient(timeout=10) as http:
        answer = await http.get(
            f"http://127.0.0.1:{stack.ports.rasa}/conversations/widget:sample-partner:victim/tracker"
        )
    tracker = answer.json()
    assert not [e for e in tracker.get("events", []) if e.get("event") == "user"]
    await page.context.close()
