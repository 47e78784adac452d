"""A user's appliances: the device list and profiles (cached), live status, and control.

The cache lives in the database so every action-server process shares it:
the device list is refreshed after ``device_list_ttl_seconds`` (and at once
when LG reports a device added, removed or renamed), profiles after
``profile_ttl_seconds``. Status is never cached here: a question about state
gets LG's current answer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from assistant.storage.device_cache import DeviceCacheRepository, DeviceRecord
from lgcloud.profile import DeviceProfile, ProfileError, flatten_status, parse_profile
from lgcloud.thinq import ThinQAuth, ThinQClient

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Appliance:
    device_id: str
    device_type: str
    alias: str
    model_name: str
    profile: DeviceProfile | None  # None when LG would not give us a usable profile


def _now() -> datetime:
    return datetime.now(timezone.utc)


class HouseholdService:
    def __init__(
        self,
        client: ThinQClient,
        cache: DeviceCacheRepository,
        *,
        list_ttl_seconds: int,
        profile_ttl_seconds: int,
    ) -> None:
        self._client = client
        self._cache = cache
        self._list_ttl = timedelta(seconds=list_ttl_seconds)
        self._profile_ttl = timedelta(seconds=profile_ttl_seconds)
        # One refresh at a time per user inside this process; other processes may
        # refresh too, which is harmless (the cache writes are idempotent upserts).
        self._refresh_locks: dict[str, asyncio.Lock] = {}

    async def appliances(
        self, thinq_user: str, auth: ThinQAuth, *, force_refresh: bool = False
    ) -> list[Appliance]:
        lock = self._refresh_locks.setdefault(thinq_user, asyncio.Lock())
        async with lock:
            refreshed_at = await self._cache.list_refreshed_at(thinq_user)
            if force_refresh or refreshed_at is None or _now() - refreshed_at > self._list_ttl:
                summaries = await self._client.list_devices(auth)
                await self._cache.replace_device_list(
                    thinq_user,
                    [
                        DeviceRecord(
                            device_id=s.device_id,
                            device_type=s.device_type,
                            model_name=s.model_name,
                            alias=s.alias,
                            reportable=s.reportable,
                            profile=None,
                            profile_fetched_at=None,
                        )
                        for s in summaries
                    ],
                    _now(),
                )
            records = await self._cache.list_devices(thinq_user)
            stale = [r for r in records if self._profile_stale(r)]
            if stale:
                fetched = await asyncio.gather(
                    *(self._client.get_profile(auth, r.device_id) for r in stale),
                    return_exceptions=True,
                )
                for record, profile in zip(stale, fetched, strict=True):
                    if isinstance(profile, BaseException):
                        if not isinstance(profile, Exception):
                            raise profile
                        # One bad profile must not hide the rest of the household.
                        logger.warning(
                            "profile of %s unavailable: %s",
                            record.device_id,
                            type(profile).__name__,
                        )
                        continue
                    await self._cache.save_profile(thinq_user, record.device_id, profile, _now())
                records = await self._cache.list_devices(thinq_user)
        return [self._appliance(r) for r in records]

    def _profile_stale(self, record: DeviceRecord) -> bool:
        return record.profile is None or (
            record.profile_fetched_at is None
            or _now() - record.profile_fetched_at > self._profile_ttl
        )

    @staticmethod
    def _appliance(record: DeviceRecord) -> Appliance:
        profile = None
        if record.profile is not None:
            try:
                profile = parse_profile(record.profile)
            except ProfileError as exc:
                logger.warning("profile of %s unreadable: %s", record.device_id, exc)
        return Appliance(
            device_id=record.device_id,
            device_type=record.device_type,
            alias=record.alias,
            model_name=record.model_name,
            profile=profile,
        )

    async def status(self, auth: ThinQAuth, appliance: Appliance) -> dict[str, Any]:
        """The appliance's current state as ``{flat key: value}``."""
        return flatten_status(await self._client.get_status(auth, appliance.device_id))

    async def send(
        self, auth: ThinQAuth, appliance: Appliance, bodies: list[dict[str, Any]]
    ) -> None:
        for body in bodies:
            await self._client.control(auth, appliance.device_id, body)

    async def forget_list(self, thinq_user: str) -> None:
        """Make the next read fetch the device list again (a device vanished or appeared)."""
        await self._cache.invalidate(thinq_user)
