"""Asking for notifications by chat: the action, the runtime and the simulator's LG side.

Runs on SQLite and PostgreSQL (the ``runtime`` fixture); every test checks both our
own record and what the simulated LG cloud shows under /sim/subscriptions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest
from rasa_sdk.events import SlotSet

from actions.actions import ActionAnswerPending, ActionManageNotifications
from assistant.runtime import use_runtime
from tests.test_actions import run, said

WASHER_EVENTS = "the wash finishes or the wash stops with an error"


@pytest.fixture(autouse=True)
async def installed_runtime(runtime) -> AsyncIterator[None]:
    use_runtime(runtime)
    yield
    use_runtime(None)


async def lg_subscriptions(simulator) -> dict[str, list[str]]:
    return (await simulator.sim("GET", "/sim/subscriptions")).json()


async def test_notify_me_when_the_washer_is_done(simulator, runtime):
    washer = (await simulator.devices())["Washer"]["deviceId"]
    messages, events = await run(
        ActionManageNotifications(), "subscribe_push", {"device": "washer"}
    )
    assert said(messages) == [
        ("utter_subscribed_push", {"device": "Washer", "events": WASHER_EVENTS})
    ]
    assert events == [SlotSet("context_devices", [washer])]
    assert (await lg_subscriptions(simulator))["push"] == [washer]
    assert await runtime.storage.subscriptions.for_sender("user-1") == [(washer, "push")]


async def test_subscribing_twice_is_harmless(simulator, runtime):
    washer = (await simulator.devices())["Washer"]["deviceId"]
    await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    messages, _ = await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    assert said(messages) == [
        ("utter_already_subscribed_push", {"device": "Washer", "events": WASHER_EVENTS})
    ]
    assert (await lg_subscriptions(simulator))["push"] == [washer]
    assert await runtime.storage.subscriptions.for_sender("user-1") == [(washer, "push")]


async def test_pcc_for_the_fridge(simulator):
    fridge = (await simulator.devices())["Fridge"]["deviceId"]
    messages, _ = await run(ActionManageNotifications(), "subscribe_pcc", {"device": "fridge"})
    assert said(messages) == [("utter_subscribed_pcc", {"device": "Fridge"})]
    assert (await lg_subscriptions(simulator))["pcc"] == [fridge]


async def test_pcc_is_not_offered_for_an_air_conditioner(simulator, runtime):
    messages, _ = await run(
        ActionManageNotifications(), "subscribe_pcc", {"device": "living room AC"}
    )
    assert said(messages) == [("utter_pcc_not_supported", {"device": "Living Room AC"})]
    assert (await lg_subscriptions(simulator))["pcc"] == []
    assert await runtime.storage.subscriptions.for_sender("user-1") == []


async def test_ambiguous_device_offers_buttons_that_repeat_the_request(simulator):
    messages, _ = await run(ActionManageNotifications(), "subscribe_push", {"device": "AC"})
    assert said(messages) == [
        (
            "utter_ask_which_device_to_watch",
            {
                "options": "Bedroom AC or Living Room AC",
                "buttons": [
                    ("Bedroom AC", '/subscribe_push{"device": "Bedroom AC"}'),
                    ("Living Room AC", '/subscribe_push{"device": "Living Room AC"}'),
                ],
            },
        )
    ]
    assert (await lg_subscriptions(simulator))["push"] == []


async def test_unsubscribe_uses_the_only_subscribed_device_and_tells_lg(simulator, runtime):
    washer = (await simulator.devices())["Washer"]["deviceId"]
    await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    messages, _ = await run(ActionManageNotifications(), "unsubscribe_push")
    assert said(messages) == [("utter_unsubscribed_push", {"device": "Washer"})]
    assert (await lg_subscriptions(simulator))["push"] == []
    assert await runtime.storage.subscriptions.for_sender("user-1") == []
    assert washer  # the device still exists; only the subscription went


async def test_lg_stays_subscribed_while_another_conversation_wants_it(simulator, runtime):
    washer = (await simulator.devices())["Washer"]["deviceId"]
    now = datetime.now(timezone.utc)
    await runtime.storage.subscriptions.add("other-conversation", "demo", washer, "push", now)
    await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    await run(ActionManageNotifications(), "unsubscribe_push", {"device": "washer"})
    assert (await lg_subscriptions(simulator))["push"] == [washer]


async def test_unsubscribing_a_device_never_subscribed(simulator):
    messages, _ = await run(ActionManageNotifications(), "unsubscribe_pcc", {"device": "oven"})
    assert said(messages) == [("utter_not_subscribed_pcc", {"device": "Oven"})]


async def test_list_subscriptions(simulator):
    assert said((await run(ActionManageNotifications(), "list_subscriptions"))[0]) == [
        ("utter_no_subscriptions", {})
    ]
    await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    await run(ActionManageNotifications(), "subscribe_pcc", {"device": "dishwasher"})
    messages, _ = await run(ActionManageNotifications(), "list_subscriptions")
    assert said(messages) == [
        (
            "utter_subscription_list",
            {
                "items": f"the Washer (when {WASHER_EVENTS}); "
                "the Dishwasher (problems LG's diagnosis finds)"
            },
        )
    ]


async def test_unknown_device_is_not_guessed(simulator):
    messages, _ = await run(ActionManageNotifications(), "subscribe_push", {"device": "toaster"})
    assert said(messages)[0][0] == "utter_device_not_found"
    assert (await lg_subscriptions(simulator))["push"] == []


async def test_unlinking_ends_the_conversations_notifications(simulator, runtime):
    devices = await simulator.devices()
    washer, fridge = devices["Washer"]["deviceId"], devices["Fridge"]["deviceId"]
    now = datetime.now(timezone.utc)
    await runtime.storage.subscriptions.add("other-conversation", "demo", washer, "push", now)
    await run(ActionManageNotifications(), "subscribe_push", {"device": "washer"})
    await run(ActionManageNotifications(), "subscribe_pcc", {"device": "fridge"})
    assert fridge in (await lg_subscriptions(simulator))["pcc"]

    messages, _ = await run(
        ActionAnswerPending(), "affirm", slots={"pending": {"kind": "confirm_unlink"}}
    )
    assert said(messages) == [("utter_unlinked_demo", {})]
    assert await runtime.storage.subscriptions.for_sender("user-1") == []
    # LG keeps the washer for the other conversation; the fridge's PCC ends with the link.
    lg = await lg_subscriptions(simulator)
    assert lg["push"] == [washer] and lg["pcc"] == []
