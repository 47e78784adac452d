"""The account-linking actions with real trackers and a real runtime (demo mode, simulator).

Each test runs the action as Rasa would and asserts the exact responses and events,
then what is stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from rasa_sdk import Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy import func, select

from actions.actions import (
    ActionAnswerPending,
    ActionConfirmLink,
    ActionLinkAccount,
    ActionListDevices,
    ActionUnlinkAccount,
)
from assistant.runtime import use_runtime
from assistant.storage.device_states import EventSubscriptionRepository
from assistant.storage.link_requests import state_digest
from assistant.storage.models import LinkRequest, utcnow
from assistant.storage.pending_links import PendingGrant
from tests.oauth_support import query_of
from tests.test_actions import said

SENDER = "user-7"
YES_NO = [("Yes", "/affirm"), ("No", "/deny")]
CONFIRM = {"kind": "confirm_unlink"}


@pytest.fixture(autouse=True)
async def installed_runtime(runtime) -> AsyncIterator[None]:
    use_runtime(runtime)
    yield
    use_runtime(None)


def tracker(intent: str, slots: dict[str, Any] | None = None) -> Tracker:
    return Tracker(
        sender_id=SENDER,
        slots=slots or {},
        latest_message={"intent": {"name": intent, "confidence": 1.0}, "entities": [], "text": ""},
        events=[{"event": "user", "input_channel": "telegram", "parse_data": {}}],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def run(action, intent: str, slots: dict[str, Any] | None = None):
    dispatcher = CollectingDispatcher()
    events = await action.run(dispatcher, tracker(intent, slots), {})
    return said(dispatcher.messages), events


async def link_demo(runtime) -> None:
    await runtime.storage.accounts.link(
        SENDER, runtime.settings.demo_thinq_user, runtime.settings.demo_thinq_token, "US", "aic"
    )


async def test_link_replies_with_a_single_use_sign_in_link(runtime):
    messages, events = await run(ActionLinkAccount(), "link_account")
    assert events == []
    [(response, params)] = messages
    assert response == "utter_link_account"
    assert params["minutes"] == 10
    url = params["url"]
    oauth = runtime.settings.oauth
    assert url.startswith(oauth.authorize_url + "?")
    query = query_of(url)
    assert query["client_id"] == oauth.client_id
    assert query["redirect_uri"] == oauth.callback_url
    assert oauth.client_secret not in url
    # The state is stored bound to this sender and channel, as a digest only.
    async with runtime.storage.sessions() as session:
        row = await session.get(LinkRequest, state_digest(query["state"]))
    assert (row.sender_id, row.channel, row.used_at) == (SENDER, "telegram", None)
    assert timedelta(minutes=9) < row.expires_at - utcnow() <= timedelta(minutes=10)


async def test_link_when_linking_is_not_configured(runtime, monkeypatch):
    monkeypatch.setattr(runtime.linking, "_oauth", None)
    assert await run(ActionLinkAccount(), "link_account") == (
        [("utter_link_unavailable", {})],
        [],
    )
    async with runtime.storage.sessions() as session:
        count = select(func.count()).select_from(LinkRequest)
        assert (await session.execute(count)).scalar() == 0


async def test_unlink_asks_first_and_changes_nothing_yet(runtime):
    await link_demo(runtime)
    messages, events = await run(ActionUnlinkAccount(), "unlink_account")
    assert messages == [("utter_confirm_unlink", {"buttons": YES_NO})]
    assert events == [SlotSet("pending", CONFIRM)]
    assert await runtime.storage.accounts.get(SENDER) is not None


async def test_unlink_with_nothing_linked(runtime):
    assert await run(ActionUnlinkAccount(), "unlink_account") == (
        [("utter_nothing_to_unlink", {})],
        [],
    )
    assert await runtime.storage.accounts.get(SENDER) is None  # no demo auto-link here


async def test_yes_unlinks_and_in_demo_mode_the_next_message_relinks(runtime):
    await link_demo(runtime)
    messages, events = await run(ActionAnswerPending(), "affirm", {"pending": CONFIRM})
    assert messages == [("utter_unlinked_demo", {})]
    assert events == [SlotSet("pending", None)]
    assert await runtime.storage.accounts.get(SENDER) is None

    messages, _ = await run(ActionListDevices(), "list_devices")
    assert [name for name, _ in messages] == ["utter_device_list"]
    assert (await runtime.storage.accounts.get(SENDER)).thinq_user == "demo"


async def test_yes_unlinks_and_outside_demo_mode_the_sender_stays_unlinked(runtime):
    await link_demo(runtime)
    object.__setattr__(runtime.settings, "demo_mode", False)
    messages, events = await run(ActionAnswerPending(), "affirm", {"pending": CONFIRM})
    assert messages == [("utter_unlinked", {})]
    assert events == [SlotSet("pending", None)]
    assert await run(ActionListDevices(), "list_devices") == ([("utter_not_linked", {})], [])


async def test_no_keeps_the_link(runtime):
    await link_demo(runtime)
    messages, events = await run(ActionAnswerPending(), "deny", {"pending": CONFIRM})
    assert messages == [("utter_unlink_cancelled", {})]
    assert events == [SlotSet("pending", None)]
    assert await runtime.storage.accounts.get(SENDER) is not None


async def test_another_answer_asks_for_yes_or_no_again(runtime):
    await link_demo(runtime)
    messages, events = await run(ActionAnswerPending(), "inform_device", {"pending": CONFIRM})
    assert messages == [("utter_ask_yes_no", {"buttons": YES_NO})]
    assert events == []
    assert await runtime.storage.accounts.get(SENDER) is not None


async def test_expired_sign_in_without_refresh_asks_to_link_again(runtime):
    await runtime.storage.accounts.link(
        SENDER,
        "demo",
        runtime.settings.demo_thinq_token,
        "US",
        "aic",
        token_expires_at=utcnow() - timedelta(seconds=1),
    )
    object.__setattr__(runtime.settings, "demo_mode", False)
    assert await run(ActionListDevices(), "list_devices") == ([("utter_link_expired", {})], [])
    assert await runtime.storage.accounts.get(SENDER) is None


def typed(text: str) -> Tracker:
    """A tracker whose latest message is ``text`` classified as link_code."""
    return Tracker(
        sender_id=SENDER,
        slots={},
        latest_message={
            "intent": {"name": "link_code", "confidence": 1.0},
            "entities": [],
            "text": text,
        },
        events=[{"event": "user", "input_channel": "telegram", "parse_data": {}}],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )


async def confirm(text: str) -> list[tuple[str, dict]]:
    dispatcher = CollectingDispatcher()
    assert await ActionConfirmLink().run(dispatcher, typed(text), {}) == []
    return said(dispatcher.messages)


async def wait_for_code(runtime, code: str = "482913") -> None:
    grant = PendingGrant(SENDER, "telegram", "neighbour", token=runtime.settings.demo_thinq_token)
    await runtime.storage.pending_links.put(grant, code, timedelta(minutes=10))


async def test_the_right_code_links_the_account_and_says_so(runtime):
    await wait_for_code(runtime)
    assert await confirm("the code is 482 913") == [("utter_link_confirmed", {})]
    assert (await runtime.storage.accounts.get(SENDER)).thinq_user == "neighbour"


async def test_a_wrong_code_says_how_many_tries_are_left_and_links_nothing(runtime):
    await wait_for_code(runtime)
    assert await confirm("111 222") == [("utter_link_code_wrong", {"attempts_left": 4})]
    assert await confirm("hmm") == [("utter_link_code_unreadable", {})]
    assert await runtime.storage.accounts.get(SENDER) is None


async def test_a_code_with_no_sign_in_waiting(runtime):
    assert await confirm("482913") == [("utter_link_code_none", {})]
    assert await runtime.storage.accounts.get(SENDER) is None


async def test_unlinking_the_last_conversation_ends_the_event_subscription(runtime, simulator):
    await link_demo(runtime)
    session = await runtime.linked_session(SENDER)
    assert session is not None
    events = EventSubscriptionRepository(runtime.storage.engine)
    now = utcnow()
    request_id = await runtime.placement.subscribe_events(session.auth, 24)
    await events.record_success(
        "demo", requested_at=now, accepted_at=now, hours=24, request_id=request_id
    )
    assert (await simulator.sim("GET", "/sim/subscriptions")).json()["event"]

    # Another conversation of the same LG user still wants the events: nothing ends.
    await runtime.storage.accounts.link(
        "user-8", thinq_user="demo", token=simulator.demo_token, country_code="US", region="aic"
    )
    assert await runtime.end_event_subscription(session, SENDER) is False
    await runtime.storage.accounts.unlink("user-8")

    messages, _ = await run(ActionAnswerPending(), "affirm", {"pending": CONFIRM})
    assert messages == [("utter_unlinked_demo", {})]
    assert (await simulator.sim("GET", "/sim/subscriptions")).json()["event"] == []
    assert await events.get("demo") is None
