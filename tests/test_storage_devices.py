"""DeviceCacheRepository on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from assistant.storage import DeviceRecord, Storage

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)
USER = "thinq-user-1"
PROFILE = {"property": {"runState": {"currentState": {"type": "enum", "mode": ["r"]}}}}


def device(device_id: str, alias: str, **changes) -> DeviceRecord:
    fields = {
        "device_id": device_id,
        "device_type": "DEVICE_WASHER",
        "model_name": f"MODEL-{device_id}",
        "alias": alias,
        "reportable": True,
    }
    return DeviceRecord(**{**fields, **changes})


async def test_empty_cache(storage: Storage) -> None:
    assert await storage.devices.list_devices(USER) == []
    assert await storage.devices.list_refreshed_at(USER) is None
    assert await storage.devices.get_device(USER, "nope") is None


async def test_replace_lists_devices_ordered_by_alias(storage: Storage) -> None:
    await storage.devices.replace_device_list(
        USER, [device("d1", "washer"), device("d2", "Air purifier"), device("d3", "Dryer")], T0
    )
    listed = await storage.devices.list_devices(USER)
    assert [d.alias for d in listed] == ["Air purifier", "Dryer", "washer"]
    assert listed[0] == device("d2", "Air purifier")
    assert await storage.devices.list_refreshed_at(USER) == T0
    # Other users are unaffected.
    assert await storage.devices.list_devices("someone-else") == []


async def test_replace_keeps_profiles_of_listed_devices_and_drops_removed(
    storage: Storage,
) -> None:
    await storage.devices.replace_device_list(
        USER, [device("d1", "Washer"), device("d2", "Dryer")], T0
    )
    assert await storage.devices.save_profile(USER, "d1", PROFILE, T0 + timedelta(seconds=1))
    assert await storage.devices.save_profile(USER, "d2", {"other": 1}, T0)

    later = T0 + timedelta(minutes=10)
    await storage.devices.replace_device_list(
        USER,
        [device("d1", "Laundry washer", reportable=False), device("d4", "Fridge")],
        later,
    )
    listed = {d.device_id: d for d in await storage.devices.list_devices(USER)}
    assert set(listed) == {"d1", "d4"}
    assert listed["d1"].alias == "Laundry washer"
    assert listed["d1"].reportable is False
    assert listed["d1"].profile == PROFILE
    assert listed["d1"].profile_fetched_at == T0 + timedelta(seconds=1)
    assert listed["d4"].profile is None
    assert listed["d4"].profile_fetched_at is None
    assert await storage.devices.list_refreshed_at(USER) == later

    # d2 came back: its old profile is gone with it.
    await storage.devices.replace_device_list(USER, [device("d2", "Dryer")], later)
    assert [(d.device_id, d.profile) for d in await storage.devices.list_devices(USER)] == [
        ("d2", None)
    ]


async def test_replace_drops_profile_when_model_changes(storage: Storage) -> None:
    await storage.devices.replace_device_list(USER, [device("d1", "Washer")], T0)
    await storage.devices.save_profile(USER, "d1", PROFILE, T0)
    await storage.devices.replace_device_list(
        USER, [device("d1", "Washer", model_name="OTHER-MODEL")], T0
    )
    (only,) = await storage.devices.list_devices(USER)
    assert only.model_name == "OTHER-MODEL"
    assert only.profile is None
    assert only.profile_fetched_at is None


async def test_replace_with_empty_list_clears_devices_but_marks_refreshed(
    storage: Storage,
) -> None:
    await storage.devices.replace_device_list(USER, [device("d1", "Washer")], T0)
    await storage.devices.replace_device_list(USER, [], T0 + timedelta(hours=1))
    assert await storage.devices.list_devices(USER) == []
    assert await storage.devices.list_refreshed_at(USER) == T0 + timedelta(hours=1)


async def test_replace_accepts_mappings_and_duplicate_ids(storage: Storage) -> None:
    await storage.devices.replace_device_list(
        USER,
        [
            {
                "device_id": "d1",
                "device_type": "DEVICE_AIR_CONDITIONER",
                "model_name": None,
                "alias": "AC (old)",
                "reportable": 1,
            },
            device("d1", "AC"),
        ],
        T0,
    )
    (only,) = await storage.devices.list_devices(USER)
    assert only.alias == "AC"


async def test_concurrent_refreshes_of_one_user(storage: Storage) -> None:
    lists = [[device(f"d{i}", f"Device {i}"), device("common", "Common")] for i in range(6)]
    await asyncio.gather(
        *(
            storage.devices.replace_device_list(USER, devices, T0 + timedelta(seconds=i))
            for i, devices in enumerate(lists)
        )
    )
    ids = {d.device_id for d in await storage.devices.list_devices(USER)}
    # Transactions serialise: the result is exactly one of the lists, never a mix.
    assert ids in [{d.device_id for d in devices} for devices in lists]


async def test_save_profile_for_unknown_device(storage: Storage) -> None:
    assert await storage.devices.save_profile(USER, "ghost", PROFILE, T0) is False
    assert await storage.devices.list_devices(USER) == []


async def test_upsert_device(storage: Storage) -> None:
    await storage.devices.replace_device_list(USER, [device("d1", "Washer")], T0)
    await storage.devices.save_profile(USER, "d1", PROFILE, T0)

    later = T0 + timedelta(minutes=5)
    await storage.devices.upsert_device(USER, device("d2", "New dryer"), later)
    await storage.devices.upsert_device(USER, device("d1", "Renamed washer"), later)
    listed = {d.device_id: d for d in await storage.devices.list_devices(USER)}
    assert listed["d1"].alias == "Renamed washer"
    assert listed["d1"].profile == PROFILE  # kept
    assert listed["d2"].profile is None
    # A single upsert does not count as a list refresh.
    assert await storage.devices.list_refreshed_at(USER) == T0

    with_profile = device("d2", "New dryer", profile={"p": 2})
    await storage.devices.upsert_device(USER, with_profile, later)
    stored = await storage.devices.get_device(USER, "d2")
    assert stored.profile == {"p": 2}
    assert stored.profile_fetched_at == later


async def test_rename_remove_invalidate(storage: Storage) -> None:
    await storage.devices.replace_device_list(
        USER, [device("d1", "Washer"), device("d2", "Dryer")], T0
    )
    assert await storage.devices.rename_device(USER, "d1", "Big washer") is True
    assert await storage.devices.rename_device(USER, "ghost", "x") is False
    assert await storage.devices.rename_device("other-user", "d1", "x") is False
    assert (await storage.devices.get_device(USER, "d1")).alias == "Big washer"

    assert await storage.devices.remove_device(USER, "d2") is True
    assert await storage.devices.remove_device(USER, "d2") is False
    assert [d.device_id for d in await storage.devices.list_devices(USER)] == ["d1"]

    await storage.devices.invalidate(USER)
    assert await storage.devices.list_refreshed_at(USER) is None
    # Invalidating forgets the refresh time only, not the devices.
    assert [d.device_id for d in await storage.devices.list_devices(USER)] == ["d1"]
    await storage.devices.invalidate(USER)  # idempotent


async def test_clear_user(storage: Storage) -> None:
    await storage.devices.replace_device_list(USER, [device("d1", "W"), device("d2", "D")], T0)
    await storage.devices.replace_device_list("other", [device("d1", "W")], T0)
    assert await storage.devices.clear_user(USER) == 2
    assert await storage.devices.list_devices(USER) == []
    assert await storage.devices.list_refreshed_at(USER) is None
    assert len(await storage.devices.list_devices("other")) == 1


async def test_timestamps_are_timezone_aware_utc(storage: Storage) -> None:
    seoul = timezone(timedelta(hours=9))
    at = datetime(2025, 3, 1, 21, 0, tzinfo=seoul)
    await storage.devices.replace_device_list(USER, [device("d1", "Washer")], at)
    await storage.devices.save_profile(USER, "d1", PROFILE, at)
    (only,) = await storage.devices.list_devices(USER)
    refreshed = await storage.devices.list_refreshed_at(USER)
    for value in (only.profile_fetched_at, refreshed):
        assert value == at
        assert value.utcoffset() == timedelta(0)
        assert value.hour == 12


async def test_naive_datetimes_are_rejected(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.devices.replace_device_list(USER, [device("d1", "W")], datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.devices.save_profile(USER, "d1", PROFILE, datetime(2025, 1, 1))
    assert await storage.devices.list_devices(USER) == []
