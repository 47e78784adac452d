"""Callback -> notices: who is told what, and the device cache kept in step.

Real storage (SQLite and PostgreSQL through the ``database_url`` fixture), the real
domain.yml wording and the real notifications.yml table.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from assistant.notifications import Notice, NotificationCatalog, NotificationPlanner, Wording
from assistant.storage import DeviceRecord, Storage, TokenCipher
from lgcloud.callbacks import parse_callback

ROOT = Path(__file__).resolve().parent.parent
WASHER = "washer-1"
FRIDGE = "fridge-1"
STYLER = "styler-1"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    store = await Storage.open_url(database_url, TokenCipher([TokenCipher.generate_key()]))
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def planner(storage: Storage) -> NotificationPlanner:
    for sender, channel in (("alice-phone", "callback"), ("alice-web", "socketio")):
        await storage.accounts.link(
            sender, thinq_user="alice", token="t" * 40, country_code="US", region="aic",
            channel=channel,
        )  # fmt: skip
    await storage.accounts.link(
        "bob", thinq_user="bob", token="u" * 40, country_code="US", region="aic", channel="rest"
    )
    devices = [
        DeviceRecord(WASHER, "DEVICE_WASHER", "F3", "Washer", True),
        DeviceRecord(FRIDGE, "DEVICE_REFRIGERATOR", "R1", "Kitchen Fridge", True),
        DeviceRecord(STYLER, "DEVICE_STYLER", "S1", "Styler", True),
    ]
    await storage.devices.replace_device_list("alice", devices, NOW)
    return NotificationPlanner.create(storage)


def push(code: str, device: str = WASHER, device_type: str = "DEVICE_WASHER", **extra):
    return parse_callback(
        {
            "messageId": extra.pop("message_id", "m-1"),
            "timestamp": "2026-11-23T12:00:00.000000",
            "push": {
                "pushType": "DEVICE_PUSH",
                "serviceId": "svc",
                "deviceId": device,
                "pushCode": code,
                "deviceType": device_type,
                "userList": ["alice"],
                **extra,
            },
        }
    )


def registry(push_type: str, device: str, user: str = "alice", **fields):
    return parse_callback(
        {
            "messageId": f"reg-{push_type}",
            "timestamp": "2026-11-23T12:00:00.000000",
            "push": {"pushType": push_type, "deviceId": device, "userNumber": user, **fields},
        }
    )


def pcc(device: str, diagnosis: str, url: str = "https://lg.example/guide/1"):
    return parse_callback(
        {
            "messageId": "p-1",
            "timestamp": "2026-11-23T12:00:00.000000",
            "event": {
                "pushType": "PCC_EVENT",
                "deviceId": device,
                "deviceType": "DEVICE_REFRIGERATOR",
                "diagnosisType": diagnosis,
                "contentUrl": url,
                "diagnosisTimestamp": "2026-11-23T11:59:00.000000",
            },
        }
    )


def texts(notices: list[Notice]) -> list[tuple[str, str | None, str]]:
    return [(n.sender_id, n.channel, n.text) for n in notices]


# --- pushes go to the conversations that asked ----------------------------------------------


async def test_washing_complete_reaches_each_subscribed_conversation(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", WASHER, "push", NOW)
    await storage.subscriptions.add("alice-web", "alice", WASHER, "push", NOW)
    notices = await planner.plan(push("WASHING_IS_COMPLETE"))
    assert texts(notices) == [
        ("alice-phone", "callback", "Your Washer has finished washing."),
        ("alice-web", "socketio", "Your Washer has finished washing."),
    ]
    assert {(n.kind, n.response, n.device_id, n.thinq_user) for n in notices} == {
        ("push", "utter_notify_washing_is_complete", WASHER, "alice")
    }


async def test_nobody_subscribed_means_nobody_is_told(planner):
    assert await planner.plan(push("WASHING_IS_COMPLETE")) == []


async def test_wording_depends_on_device_type(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", STYLER, "push", NOW)
    await storage.subscriptions.add("alice-phone", "alice", WASHER, "push", NOW)
    styler = await planner.plan(push("ERROR_HAS_OCCURRED", STYLER, "DEVICE_STYLER"))
    assert styler[0].response == "utter_notify_styler_error"
    washer = await planner.plan(push("ERROR_HAS_OCCURRED"))  # not a washer code
    assert texts(washer) == [
        ("alice-phone", "callback", "Your Washer sent a notification: error has occurred.")
    ]


async def test_pcc_guidance_names_appliance_diagnosis_and_link(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", FRIDGE, "pcc", NOW)
    notices = await planner.plan(pcc(FRIDGE, "DOOR_OPEN_TOO_LONG"))
    assert texts(notices) == [
        (
            "alice-phone",
            "callback",
            "Your Kitchen Fridge may have a problem: a door that was open too long. "
            "LG's guide on what to do: https://lg.example/guide/1",
        )
    ]
    unknown = await planner.plan(pcc(FRIDGE, "EVAPORATOR_ICING"))
    assert "may have a problem: evaporator icing." in unknown[0].text


async def test_push_subscribers_are_not_told_pcc_events(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", FRIDGE, "push", NOW)
    assert await planner.plan(pcc(FRIDGE, "DOOR_OPEN_TOO_LONG")) == []


async def test_a_batch_is_planned_in_order_with_registry_changes_applied_between(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", WASHER, "push", NOW)
    await storage.subscriptions.add("alice-web", "alice", FRIDGE, "pcc", NOW)
    batch = [
        push("WASHING_IS_COMPLETE", message_id="m-1"),
        pcc(FRIDGE, "DOOR_OPEN_TOO_LONG"),
        registry("DEVICE_ALIAS_CHANGED", WASHER, alias="Laundry"),
        push("WASHING_IS_COMPLETE", "nobody-has-it", message_id="m-2"),
        push("ERROR_DURING_WASHING", message_id="m-3"),
    ]
    planned = await planner.plan_many(batch)
    assert [texts(notices) for notices in planned] == [
        [("alice-phone", "callback", "Your Washer has finished washing.")],
        [
            (
                "alice-web",
                "socketio",
                "Your Kitchen Fridge may have a problem: a door that was open too long. "
                "LG's guide on what to do: https://lg.example/guide/1",
            )
        ],
        [
            (sender, channel, 'Your washer "Washer" is now called "Laundry".')
            for sender, channel in (("alice-phone", "callback"), ("alice-web", "socketio"))
        ],
        [],
        # After the rename in the same batch: the new name.
        [
            (
                "alice-phone",
                "callback",
                "Your Laundry stopped with an error during the wash. "
                "Check its display for the error code.",
            )
        ],
    ]
    assert (await storage.devices.get_device("alice", WASHER)).alias == "Laundry"


# --- registry changes keep the cache right and tell everyone linked ---------------------


async def test_device_registered_is_cached_at_once_and_announced(planner, storage):
    callback = registry(
        "DEVICE_REGISTERED",
        "dish-1",
        deviceType="DEVICE_DISH_WASHER",
        alias="Kitchen Dishwasher",
        modelName="DFB424",
    )
    notices = await planner.plan(callback)
    assert texts(notices) == [
        (
            sender,
            channel,
            'A new dishwasher, "Kitchen Dishwasher", was added to your LG account. '
            "You can ask me about it now.",
        )
        for sender, channel in (("alice-phone", "callback"), ("alice-web", "socketio"))
    ]
    cached = await storage.devices.get_device("alice", "dish-1")
    assert (cached.alias, cached.device_type, cached.model_name) == (
        "Kitchen Dishwasher",
        "DEVICE_DISH_WASHER",
        "DFB424",
    )
    assert await storage.devices.get_device("bob", "dish-1") is None
    assert texts(await planner.plan(callback)) == texts(notices)  # a replay changes nothing


async def test_device_unregistered_leaves_cache_and_subscriptions(planner, storage):
    await storage.subscriptions.add("alice-phone", "alice", WASHER, "push", NOW)
    notices = await planner.plan(
        registry("DEVICE_UNREGISTERED", WASHER, deviceType="DEVICE_WASHER", alias="Washer")
    )
    assert [n.text for n in notices] == ['"Washer" (washer) was removed from your LG account.'] * 2
    assert await storage.devices.get_device("alice", WASHER) is None
    assert await storage.subscriptions.for_sender("alice-phone") == []


async def test_alias_change_renames_and_says_old_and_new(planner, storage):
    callback = registry("DEVICE_ALIAS_CHANGED", FRIDGE, alias="Garage Fridge")
    notices = await planner.plan(callback)
    assert notices[0].text == 'Your fridge "Kitchen Fridge" is now called "Garage Fridge".'
    assert (await storage.devices.get_device("alice", FRIDGE)).alias == "Garage Fridge"
    replay = await planner.plan(callback)
    assert replay[0].text == 'Your fridge is now called "Garage Fridge".'


# --- what the receiver may accept ----------------------------------------------------------


async def test_check_accepts_known_and_rejects_unknown(planner):
    assert await planner.check(push("WASHING_IS_COMPLETE")) is None
    assert "unknown device" in await planner.check(push("WASHING_IS_COMPLETE", "nope"))
    assert "unknown device" in await planner.check(pcc("nope", "DRAIN_ERROR"))
    new_device = registry("DEVICE_REGISTERED", "d2", deviceType="DEVICE_OVEN", alias="Oven")
    assert await planner.check(new_device) is None
    stranger = registry("DEVICE_REGISTERED", "d3", "carol", deviceType="DEVICE_OVEN", alias="O")
    assert "unknown user" in await planner.check(stranger)


# --- the wording table itself ------------------------------------------------------------------

# Push codes named by LG's published profiles and the issue (facts sheet §2.5).
PUBLISHED = {
    "DEVICE_WASHER": {"WASHING_IS_COMPLETE", "ERROR_DURING_WASHING"},
    "DEVICE_DRYER": {"DRYING_IS_COMPLETE", "DRYING_FAILED"},
    "DEVICE_STYLER": {"STYLING_IS_COMPLETE", "ERROR_HAS_OCCURRED"},
    "DEVICE_REFRIGERATOR": {
        "DOOR_IS_OPEN",
        "FROZEN_IS_COMPLETE",
        "TIME_TO_CHANGE_FILTER",
        "TIME_TO_CHANGE_WATER_FILTER",
    },
    "DEVICE_OVEN": {"PREHEATING_IS_COMPLETE", "COOKING_IS_COMPLETE"},
    "DEVICE_MICROWAVE_OVEN": {"PREHEATING_IS_COMPLETE", "COOKING_IS_COMPLETE", "TIMER_IS_COMPLETE"},
    "DEVICE_DEHUMIDIFIER": {"WATER_IS_FULL"},
    "DEVICE_KIMCHI_REFRIGERATOR": {"DOOR_IS_OPEN"},
    "DEVICE_AIR_CONDITIONER": {"WATER_IS_FULL"},
}


def test_every_published_push_code_has_its_own_wording():
    catalog = NotificationCatalog.load()
    for device_type, codes in PUBLISHED.items():
        listed = {e.code for e in catalog.push_events(device_type)}
        assert codes <= listed, device_type


def test_every_push_code_the_simulator_sends_has_wording():
    from simulator.appliance import COMPLETION_PUSH

    catalog = NotificationCatalog.load()
    for device_type, code in COMPLETION_PUSH.items():
        assert catalog.push_response(device_type, code) != catalog.unknown_push


def test_planner_refuses_a_table_naming_a_response_the_domain_lacks(storage):
    raw = yaml.safe_load((ROOT / "assistant" / "data" / "notifications.yml").read_text())
    raw["push"]["DEVICE_WASHER"]["WASHING_IS_COMPLETE"]["response"] = "utter_no_such_thing"
    with pytest.raises(ValueError, match="utter_no_such_thing"):
        NotificationPlanner(storage, Wording.from_domain(), NotificationCatalog(raw, _vocab()))


def test_wording_fills_placeholders_like_rasa():
    wording = Wording({"utter_x": "Hi {name}, {missing} stays"})
    assert wording.render("utter_x", {"name": "Ann"}) == "Hi Ann, {missing} stays"


def _vocab():
    from assistant.vocabulary import load_vocabulary

    return load_vocabulary()
