"""Cache of each ThinQ user's device list and device profiles.

The device list is cheap to refetch but the profiles (capability descriptions) are
large and rarely change, so refreshing the list keeps the cached profile of every
device that is still listed, unless its model or type changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, delete, func, null, select, update
from sqlalchemy.orm import sessionmaker

from assistant.storage.db import dialect_insert
from assistant.storage.models import CachedDevice, DeviceListRefresh

_devices = CachedDevice.__table__
_refreshes = DeviceListRefresh.__table__

_LIST_FIELDS = ("device_id", "device_type", "model_name", "alias", "reportable")


@dataclass(frozen=True)
class DeviceRecord:
    device_id: str
    device_type: str
    model_name: str
    alias: str
    reportable: bool
    profile: dict | None = None
    profile_fetched_at: datetime | None = None


def _require_aware(value: datetime, name: str = "now") -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware (UTC) datetime; got {value!r}")


def _optional(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _list_fields(device: Any) -> dict[str, Any]:
    """The device-list columns of a DeviceRecord, a similar object or a mapping."""
    if isinstance(device, Mapping):
        values = {name: device[name] for name in _LIST_FIELDS}
    else:
        values = {name: getattr(device, name) for name in _LIST_FIELDS}
    if not values["device_id"]:
        raise ValueError("device_id must not be empty")
    values["model_name"] = values["model_name"] or ""
    values["alias"] = values["alias"] or ""
    values["reportable"] = bool(values["reportable"])
    return values


def _same_model(excluded: Any) -> Any:
    return and_(
        _devices.c.model_name == excluded.model_name,
        _devices.c.device_type == excluded.device_type,
    )


def _record(row: CachedDevice) -> DeviceRecord:
    return DeviceRecord(
        device_id=row.device_id,
        device_type=row.device_type,
        model_name=row.model_name,
        alias=row.alias,
        reportable=row.reportable,
        profile=row.profile_json,
        profile_fetched_at=row.profile_fetched_at,
    )


class DeviceCacheRepository:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    async def replace_device_list(
        self, thinq_user: str, devices: Iterable[Any], now: datetime
    ) -> None:
        """Make the cached list exactly ``devices`` and mark it refreshed at ``now``.

        One transaction: listed devices are upserted (keeping their cached profile
        unless model or type changed), unlisted ones deleted.
        """
        _require_aware(now)
        by_id: dict[str, dict[str, Any]] = {}
        for device in devices:
            values = _list_fields(device)
            by_id[values["device_id"]] = values  # a duplicated id: the last one wins

        async with self._sessions() as session, session.begin():
            # The refresh row goes first: its upsert row-locks (PostgreSQL) or takes the
            # database write lock (SQLite), so concurrent refreshes of one user run one
            # after the other, and the DELETE below (a new snapshot under READ COMMITTED)
            # sees what the previous refresh committed. Writes only, no read-then-write.
            insert = dialect_insert(session, _refreshes).values(
                thinq_user=thinq_user, refreshed_at=now
            )
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[_refreshes.c.thinq_user],
                    set_={"refreshed_at": insert.excluded.refreshed_at},
                )
            )

            prune = delete(_devices).where(_devices.c.thinq_user == thinq_user)
            if by_id:
                prune = prune.where(_devices.c.device_id.notin_(list(by_id)))
            await session.execute(prune)

            if by_id:
                insert = dialect_insert(session, _devices).values(
                    [
                        {**values, "thinq_user": thinq_user, "listed_at": now}
                        for values in by_id.values()
                    ]
                )
                await session.execute(
                    insert.on_conflict_do_update(
                        index_elements=[_devices.c.thinq_user, _devices.c.device_id],
                        set_=self._list_update(insert.excluded),
                    )
                )

    @staticmethod
    def _list_update(excluded: Any) -> dict[str, Any]:
        same = _same_model(excluded)
        return {
            "device_type": excluded.device_type,
            "model_name": excluded.model_name,
            "alias": excluded.alias,
            "reportable": excluded.reportable,
            "listed_at": excluded.listed_at,
            "profile_json": case((same, _devices.c.profile_json), else_=null()),
            "profile_fetched_at": case((same, _devices.c.profile_fetched_at), else_=null()),
        }

    async def list_devices(self, thinq_user: str) -> list[DeviceRecord]:
        """The cached devices of ``thinq_user``, ordered by alias (case-insensitively)."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CachedDevice)
                    .where(CachedDevice.thinq_user == thinq_user)
                    .order_by(
                        func.lower(CachedDevice.alias), CachedDevice.alias, CachedDevice.device_id
                    )
                )
            ).scalars()
            return [_record(row) for row in rows]

    async def get_device(self, thinq_user: str, device_id: str) -> DeviceRecord | None:
        async with self._sessions() as session:
            row = await session.get(CachedDevice, (thinq_user, device_id))
            return None if row is None else _record(row)

    async def list_refreshed_at(self, thinq_user: str) -> datetime | None:
        """When the list was last replaced; None if never or since :meth:`invalidate`."""
        async with self._sessions() as session:
            return (
                await session.execute(
                    select(_refreshes.c.refreshed_at).where(_refreshes.c.thinq_user == thinq_user)
                )
            ).scalar_one_or_none()

    async def save_profile(
        self, thinq_user: str, device_id: str, profile: dict, now: datetime
    ) -> bool:
        """Cache a device's profile; False if the device is not in the cached list."""
        _require_aware(now)
        if profile is None:
            raise ValueError("profile must not be None")
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_devices)
                .where(_devices.c.thinq_user == thinq_user, _devices.c.device_id == device_id)
                .values(profile_json=profile, profile_fetched_at=now)
            )
            return result.rowcount > 0

    async def upsert_device(self, thinq_user: str, record: Any, now: datetime) -> None:
        """Add or update one device (e.g. after a "device registered" push).

        A profile on ``record`` is stored (fetched at ``record.profile_fetched_at`` or
        ``now``); without one the cached profile is kept as in a list refresh. The
        list's refreshed_at is left alone.
        """
        _require_aware(now)
        values = {**_list_fields(record), "thinq_user": thinq_user, "listed_at": now}
        profile = _optional(record, "profile")
        async with self._sessions() as session, session.begin():
            if profile is not None:
                fetched_at = _optional(record, "profile_fetched_at") or now
                _require_aware(fetched_at, "profile_fetched_at")
                values |= {"profile_json": profile, "profile_fetched_at": fetched_at}
            insert = dialect_insert(session, _devices).values(**values)
            set_ = self._list_update(insert.excluded)
            if profile is not None:
                set_ |= {
                    "profile_json": insert.excluded.profile_json,
                    "profile_fetched_at": insert.excluded.profile_fetched_at,
                }
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[_devices.c.thinq_user, _devices.c.device_id], set_=set_
                )
            )

    async def remove_device(self, thinq_user: str, device_id: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(_devices).where(
                    _devices.c.thinq_user == thinq_user, _devices.c.device_id == device_id
                )
            )
            return result.rowcount > 0

    async def rename_device(self, thinq_user: str, device_id: str, alias: str) -> bool:
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_devices)
                .where(_devices.c.thinq_user == thinq_user, _devices.c.device_id == device_id)
                .values(alias=alias or "")
            )
            return result.rowcount > 0

    async def invalidate(self, thinq_user: str) -> None:
        """Forget when the list was refreshed, so the next read refetches it."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(_refreshes).where(_refreshes.c.thinq_user == thinq_user))

    async def clear_user(self, thinq_user: str) -> int:
        """Drop everything cached for ``thinq_user`` (e.g. after the last unlink)."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(_devices).where(_devices.c.thinq_user == thinq_user)
            )
            await session.execute(delete(_refreshes).where(_refreshes.c.thinq_user == thinq_user))
            return result.rowcount
