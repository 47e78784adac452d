"""A user's appliances: the device list and profiles (cached), live status, and control.

The cache lives in the database so every action-server process shares it:
the device list is refreshed after ``device_list_ttl_seconds`` (and at once
when LG reports a device added, removed or renamed), profiles after
``profile_ttl_seconds``. Status is answered from ``device_states`` only while LG's
status events are known to keep it complete and current (the user's event subscription
is live, the device is covered by it and a whole state was read since, and we have not
changed the device since without an event telling us the result; see
``assistant/storage/device_states.py``); otherwise it is LG's current answer, which is
then stored so later events merge into a whole state.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from assistant.storage.device_cache import DeviceCacheRepository, DeviceRecord
from assistant.storage.device_states import DeviceStateRepository, Lookup
from assistant.storage.unconfirmed import UnconfirmedControlRepository
from lgcloud.errors import ThinQServerError, ThinQTransportError
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


# Parsed profiles by device and fetch time (a refetched profile gets a new key). Every turn
# reads the household's devices; parsing all their profiles each time was most of a turn's
# CPU under load. DeviceProfile is immutable, so one parse serves every turn.
_PARSED_PROFILES: OrderedDict[tuple[str, datetime], DeviceProfile] = OrderedDict()
_PARSED_PROFILES_MAX = 4096


def _parsed_profile(record: DeviceRecord) -> DeviceProfile:
    assert record.profile is not None
    if record.profile_fetched_at is None:  # no version to key it by
        return parse_profile(record.profile)
    key = (record.device_id, record.profile_fetched_at)
    parsed = _PARSED_PROFILES.get(key)
    if parsed is None:
        parsed = parse_profile(record.profile)  # ProfileError is not cached: logged each time
        _PARSED_PROFILES[key] = parsed
        while len(_PARSED_PROFILES) > _PARSED_PROFILES_MAX:
            _PARSED_PROFILES.popitem(last=False)
    else:
        _PARSED_PROFILES.move_to_end(key)
    return parsed


class HouseholdService:
    def __init__(
        self,
        client: ThinQClient,
        cache: DeviceCacheRepository,
        *,
        list_ttl_seconds: int,
        profile_ttl_seconds: int,
        states: DeviceStateRepository | None = None,
        clock: Callable[[], datetime] | None = None,
        state_max_age_seconds: float | None = None,
        unconfirmed: UnconfirmedControlRepository | None = None,
    ) -> None:
        """``states`` (optional) lets status reads use the event-fed device states, each
        for at most ``state_max_age_seconds`` after its last whole read; ``clock`` is now
        for that (tests tie it to the simulated clock)."""
        self._client = client
        self._cache = cache
        self._states = states
        self._unconfirmed = unconfirmed
        self._state_max_age = (
            timedelta(seconds=state_max_age_seconds) if state_max_age_seconds else None
        )
        self._clock = clock or _now
        self._list_ttl = timedelta(seconds=list_ttl_seconds)
        self._profile_ttl = timedelta(seconds=profile_ttl_seconds)
        # One refresh at a time per user inside this process; other processes may
        # refresh too, which is harmless (the cache writes are idempotent upserts).
        self._refresh_locks: dict[str, asyncio.Lock] = {}

    async def appliances(
        self, thinq_user: str, auth: ThinQAuth, *, force_refresh: bool = False
    ) -> list[Appliance]:
        if not force_refresh:
            # Nearly every turn finds the cache fresh: it need not queue behind the others
            # of this household for the refresh lock.
            fresh = await self._fresh_records(thinq_user)
            if fresh is not None:
                return [self._appliance(r) for r in fresh]
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

    async def _fresh_records(self, thinq_user: str) -> list[DeviceRecord] | None:
        """The cached devices if neither the list nor any profile needs fetching."""
        refreshed_at = await self._cache.list_refreshed_at(thinq_user)
        if refreshed_at is None or _now() - refreshed_at > self._list_ttl:
            return None
        records = await self._cache.list_devices(thinq_user)
        return None if any(self._profile_stale(r) for r in records) else records

    def _profile_stale(self, record: DeviceRecord) -> bool:
        return record.profile is None or (
            record.profile_fetched_at is None
            or _now() - record.profile_fetched_at > self._profile_ttl
        )

    @staticmethod
    def appliance_of(record: DeviceRecord) -> Appliance:
        """A cached device as an appliance (its profile parsed; None if unreadable)."""
        return HouseholdService._appliance(record)

    @staticmethod
    def _appliance(record: DeviceRecord) -> Appliance:
        profile = None
        if record.profile is not None:
            try:
                profile = _parsed_profile(record)
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
        user = auth.user
        if self._states is None or not user:
            return flatten_status(await self._client.get_status(auth, appliance.device_id))
        read_at = self._clock()
        try:
            found = await self._states.lookup(
                user, appliance.device_id, read_at, self._state_max_age
            )
        except Exception as error:  # the stored state is an optimisation: ask LG instead
            logger.warning("stored state of %s unreadable: %s", appliance.device_id, error)
            return flatten_status(await self._client.get_status(auth, appliance.device_id))
        if found.state is not None:
            return dict(found.state)
        state = flatten_status(await self._client.get_status(auth, appliance.device_id))
        await self._store(user, appliance.device_id, state, read_at, found)
        return state

    async def _store(
        self, user: str, device_id: str, state: dict[str, Any], read_at: datetime, found: Lookup
    ) -> None:
        assert self._states is not None
        try:
            # Not stored if an event or a control came while LG was answering.
            await self._states.store_full(user, device_id, state, read_at, found.version)
        except Exception as error:
            logger.warning("storing the state of %s failed: %s", device_id, type(error).__name__)

    async def send(
        self,
        auth: ThinQAuth,
        appliance: Appliance,
        bodies: list[dict[str, Any]],
        changes: dict[str, Any] | None = None,
    ) -> None:
        """Send the command's bodies in order. When LG's answer leaves the outcome unknown
        (timeout, server error, 2209), the command's ``changes`` are recorded so the next
        command to the appliance checks its state before anything is sent again."""
        attempted = False
        try:
            for body in bodies:
                attempted = True
                await self._client.control(auth, appliance.device_id, body)
            await self._forget_unconfirmed(appliance.device_id)
        except (ThinQTransportError, ThinQServerError):
            await self._remember_unconfirmed(auth, appliance.device_id, changes or {})
            raise
        finally:
            # Even a failed or timed-out command may have changed the device: the stored
            # state no longer answers until an event (or a read from LG) refreshes it.
            if attempted:
                await self._mark_stale(appliance.device_id)

    async def unconfirmed(self, device_id: str) -> dict[str, Any] | None:
        """The changes of a recent command to the device whose outcome is unknown."""
        if self._unconfirmed is None:
            return None
        try:
            return await self._unconfirmed.get(device_id, self._clock())
        except Exception as error:  # unreadable: treat as unknown, i.e. check first
            logger.error("unconfirmed commands unreadable: %s", type(error).__name__)
            return {}

    async def _remember_unconfirmed(
        self, auth: ThinQAuth, device_id: str, changes: dict[str, Any]
    ) -> None:
        if self._unconfirmed is None:
            return
        try:
            await self._unconfirmed.record(device_id, auth.user or "", changes, self._clock())
        except Exception as error:
            logger.error("could not record an unconfirmed command: %s", type(error).__name__)

    async def _forget_unconfirmed(self, device_id: str) -> None:
        if self._unconfirmed is None:
            return
        try:
            await self._unconfirmed.clear(device_id)
        except Exception as error:
            logger.error("could not clear an unconfirmed command: %s", type(error).__name__)

    async def settled(self, device_id: str) -> None:
        """The unknown outcome is known now (the state showed it): forget the record."""
        await self._forget_unconfirmed(device_id)

    async def mark_unreachable(self, device_id: str) -> None:
        """LG said the device is offline: its stored state answers for it no more (an
        offline device sends no events) until a read from LG refreshes it."""
        await self._mark_stale(device_id)

    async def _mark_stale(self, device_id: str) -> None:
        if self._states is None:
            return
        try:
            await self._states.mark_stale(device_id)
        except Exception as error:
            name = type(error).__name__
            logger.error("could not mark the state of %s stale: %s", device_id, name)

    async def forget_list(self, thinq_user: str) -> None:
        """Make the next read fetch the device list again (a device vanished or appeared)."""
        await self._cache.invalidate(thinq_user)
