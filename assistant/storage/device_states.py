"""Device states kept fresh by LG's status events, the event subscriptions behind them,
and named leases (tables ``device_states``, ``event_subscriptions``, ``leases``).

When may a stored state answer "is the washer done?" instead of asking LG
(:func:`trusted`)? Only when nothing can have changed unseen since it was complete:

* the user's event subscription is live (``expires_at`` in the future);
* the device was covered by it: LG confirmed the device (DEVICE_EVENT_SUBSCRIBED for
  it) for a request of the current unbroken stretch (``covered_at >= subscribed_at``);
  a device added to the account after the last request gets no events until the next
  renewal, and is asked of LG meanwhile;
* a whole state was read from LG after that (``full_at >= covered_at``), so every later
  change reached us as an event merged into it; a row made from events alone never
  qualifies;
* we have not controlled the device since without an event telling us the result
  (``stale``), nor found it offline (a device that goes offline sends no events);
* the whole state was read within ``max_age`` (``EVENT_STATE_MAX_AGE_SECONDS``): an
  offline device is silent, so it is asked of LG now and then.

Writers: :meth:`DeviceStateRepository.merge_event` (the connector's receiver, for every
status event: a deep merge, i.e. the report's flat keys replace the stored ones),
:meth:`DeviceStateRepository.store_full` (a status read, compare-and-set on ``version``
so a read that raced an event never overwrites the newer state),
:meth:`DeviceStateRepository.mark_stale` (after a control), and
:meth:`DeviceStateRepository.confirm_covered` (LG's per-device answer to a subscription).

Every write goes through :func:`~assistant.storage.db.write_transaction` (SQLite: the
write lock first; PostgreSQL: ``SELECT … FOR UPDATE`` on the row), so concurrent writers
of one device take turns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assistant.storage.db import write_transaction
from assistant.storage.models import (
    CachedDevice,
    DeviceState,
    EventRenewalRequest,
    EventSubscription,
    Lease,
    LinkedAccount,
    PlacementResult,
    utcnow,
)

_states = DeviceState.__table__
_subs = EventSubscription.__table__
_leases = Lease.__table__
_accounts = LinkedAccount.__table__
_renewals = EventRenewalRequest.__table__
_cached = CachedDevice.__table__
_results = PlacementResult.__table__

DEVICE_EVENT_SUBSCRIBED = "DEVICE_EVENT_SUBSCRIBED"
RECENT_EVENTS_KEPT = 32
MAX_ERROR_CHARS = 500


def _aware(value: datetime, name: str = "now") -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware (UTC) datetime; got {value!r}")
    return value


def _insert(engine: AsyncEngine) -> Any:
    return pg_insert if engine.dialect.name == "postgresql" else sqlite_insert


@dataclass(frozen=True)
class Subscription:
    """One row of ``event_subscriptions``."""

    thinq_user: str
    expires_at: datetime | None
    subscribed_at: datetime | None
    last_error: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_request_id: str | None
    last_request_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at > now


def _subscription(row: Any) -> Subscription:
    return Subscription(
        thinq_user=row.thinq_user,
        expires_at=row.expires_at,
        subscribed_at=row.subscribed_at,
        last_error=row.last_error,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_request_id=row.last_request_id,
        last_request_at=row.last_request_at,
    )


@dataclass(frozen=True)
class StoredState:
    """One row of ``device_states``."""

    device_id: str
    thinq_user: str
    state: dict[str, Any]
    updated_at: datetime
    full_at: datetime | None
    covered_at: datetime | None
    stale: bool
    version: int


def _stored(row: Any) -> StoredState:
    return StoredState(
        device_id=row.device_id,
        thinq_user=row.thinq_user,
        state=dict(row.state or {}),
        updated_at=row.updated_at,
        full_at=row.full_at,
        covered_at=row.covered_at,
        stale=bool(row.stale),
        version=int(row.version),
    )


def trusted(
    stored: StoredState | None,
    subscription: Subscription | None,
    thinq_user: str,
    now: datetime,
    max_age: timedelta | None = None,
) -> bool:
    """Whether ``stored`` may answer for the device now (the rules in the module doc)."""
    if stored is None or subscription is None or stored.thinq_user != thinq_user:
        return False
    if not subscription.active(now) or subscription.subscribed_at is None:
        return False
    if stored.covered_at is None or stored.covered_at < subscription.subscribed_at:
        return False
    if stored.full_at is None or stored.full_at < stored.covered_at:
        return False
    if max_age is not None and stored.full_at < now - max_age:
        return False  # an offline device is silent: read it from LG now and then
    return not stored.stale


@dataclass(frozen=True)
class Lookup:
    """What a status read found: the state when it may be used, and the row's version
    (None: no row) for :meth:`DeviceStateRepository.store_full`'s compare-and-set."""

    state: dict[str, Any] | None
    version: int | None


@dataclass(frozen=True)
class Merged:
    """What :meth:`DeviceStateRepository.merge_event` did: ``merged``, ``duplicate``
    (that message id was merged before) or ``unknown_device`` (no row, and no user to
    file it under)."""

    outcome: str
    thinq_user: str | None = None


class DeviceStateRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"DeviceStateRepository({self._engine.dialect.name})"

    # --- reads ---------------------------------------------------------------------------------

    async def get(self, device_id: str) -> StoredState | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_states).where(_states.c.device_id == device_id))
            ).first()
        return _stored(row) if row is not None else None

    async def lookup(
        self, thinq_user: str, device_id: str, now: datetime, max_age: timedelta | None = None
    ) -> Lookup:
        """The device's state if :func:`trusted` now (read whole from LG within
        ``max_age``), and the row's version."""
        _aware(now)
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_states).where(_states.c.device_id == device_id))
            ).first()
            sub = (
                await conn.execute(select(_subs).where(_subs.c.thinq_user == thinq_user))
            ).first()
        if row is None:
            return Lookup(None, None)
        stored = _stored(row)
        subscription = _subscription(sub) if sub is not None else None
        ok = trusted(stored, subscription, thinq_user, now, max_age)
        return Lookup(stored.state if ok else None, stored.version)

    # --- writes --------------------------------------------------------------------------------

    async def store_full(
        self,
        thinq_user: str,
        device_id: str,
        state: Mapping[str, Any],
        read_at: datetime,
        expected_version: int | None,
    ) -> bool:
        """Store a whole state read from LG (the read started at ``read_at``), unless the
        row changed since ``expected_version`` was seen (then nothing is written: an event
        or a control came in between and the next read asks LG again). True if stored."""
        _aware(read_at, "read_at")
        now = utcnow()
        async with write_transaction(self._engine) as conn:
            if expected_version is None:
                inserted = await conn.execute(
                    _insert(self._engine)(_states)
                    .values(
                        device_id=device_id,
                        thinq_user=thinq_user,
                        state=dict(state),
                        updated_at=now,
                        full_at=read_at,
                        covered_at=None,
                        stale=False,
                        version=1,
                        recent_events=[],
                    )
                    .on_conflict_do_nothing(index_elements=[_states.c.device_id])
                )
                return inserted.rowcount > 0
            row = await _row_for_update(conn, device_id)
            if row is None or row.version != expected_version:
                return False
            values: dict[str, Any] = {
                "state": dict(state),
                "thinq_user": thinq_user,
                "updated_at": now,
                "full_at": read_at,
                "stale": False,
                "version": row.version + 1,
            }
            if row.thinq_user != thinq_user:
                values["covered_at"] = None  # another owner's subscription covered it
            await conn.execute(
                update(_states).where(_states.c.device_id == device_id).values(**values)
            )
            return True

    async def merge_event(
        self,
        device_id: str,
        changes: Mapping[str, Any],
        message_id: str,
        *,
        thinq_user: str | None = None,
        now: datetime | None = None,
    ) -> Merged:
        """Deep-merge one status event's report (as flat keys) into the device's state;
        a row is made from the report alone when there is none (not complete: reads still
        ask LG until a whole state is stored)."""
        now = _aware(now or utcnow())
        async with write_transaction(self._engine) as conn:
            row = await _row_for_update(conn, device_id)
            if row is None:
                owner = thinq_user or await _cached_owner(conn, device_id)
                if owner is None:
                    return Merged("unknown_device")
                await conn.execute(
                    _insert(self._engine)(_states)
                    .values(
                        device_id=device_id,
                        thinq_user=owner,
                        state={},
                        updated_at=now,
                        full_at=None,
                        covered_at=None,
                        stale=False,
                        version=0,
                        recent_events=[],
                    )
                    .on_conflict_do_nothing(index_elements=[_states.c.device_id])
                )
                row = await _row_for_update(conn, device_id)
                assert row is not None
            recent = list(row.recent_events or [])
            if message_id in recent:
                return Merged("duplicate", row.thinq_user)
            owner = thinq_user or row.thinq_user
            values: dict[str, Any] = {
                "state": {**(row.state or {}), **changes},
                "thinq_user": owner,
                "updated_at": now,
                "stale": False,
                "version": row.version + 1,
                "recent_events": [*recent, message_id][-RECENT_EVENTS_KEPT:],
            }
            if owner != row.thinq_user:
                # The device changed hands: what we knew was under another subscription.
                values.update(full_at=None, covered_at=None)
            await conn.execute(
                update(_states).where(_states.c.device_id == device_id).values(**values)
            )
            return Merged("merged", owner)

    async def mark_stale(self, device_id: str) -> None:
        """We changed the device: its stored state no longer answers until an event (or a
        read) brings the result. The version moves, so a read in flight stores nothing."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(_states)
                .where(_states.c.device_id == device_id)
                .values(stale=True, version=_states.c.version + 1)
            )

    async def forget(self, device_id: str) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(_states).where(_states.c.device_id == device_id))

    async def confirm_covered(
        self, request_id: str, device_id: str, now: datetime | None = None
    ) -> bool:
        """LG confirmed ``device_id`` for our subscription request ``request_id``: from
        that request on, its changes reach us as events. False when the request is not
        (or no longer) the user's latest; the renewer applies answers that arrived
        before it recorded the request (:meth:`confirm_request`)."""
        now = _aware(now or utcnow())
        async with write_transaction(self._engine) as conn:
            sub = (
                await conn.execute(select(_subs).where(_subs.c.last_request_id == request_id))
            ).first()
            if sub is None or sub.last_request_at is None or sub.subscribed_at is None:
                return False
            row = await _row_for_update(conn, device_id)
            if row is None:
                await conn.execute(
                    _insert(self._engine)(_states)
                    .values(
                        device_id=device_id,
                        thinq_user=sub.thinq_user,
                        state={},
                        updated_at=now,
                        full_at=None,
                        covered_at=sub.last_request_at,
                        stale=False,
                        version=0,
                        recent_events=[],
                    )
                    .on_conflict_do_nothing(index_elements=[_states.c.device_id])
                )
                return True
            if row.thinq_user != sub.thinq_user:
                await conn.execute(
                    update(_states)
                    .where(_states.c.device_id == device_id)
                    .values(
                        thinq_user=sub.thinq_user,
                        full_at=None,
                        covered_at=sub.last_request_at,
                        version=row.version + 1,
                    )
                )
            elif row.covered_at is None or row.covered_at < sub.subscribed_at:
                # The first request of this stretch to cover the device; later renewals
                # keep it (events have flowed without a break since).
                await conn.execute(
                    update(_states)
                    .where(_states.c.device_id == device_id)
                    .values(covered_at=sub.last_request_at)
                )
            return True

    async def confirm_request(self, request_id: str, now: datetime | None = None) -> int:
        """Apply LG's per-device answers to ``request_id`` already stored (they may come
        before our request is recorded); returns how many devices were confirmed."""
        async with self._engine.connect() as conn:
            devices = (
                await conn.execute(
                    select(_results.c.device_id).where(
                        _results.c.request_id == request_id,
                        _results.c.push_type == DEVICE_EVENT_SUBSCRIBED,
                        _results.c.ok.is_(True),
                    )
                )
            ).scalars()
            device_ids = list(devices)
        confirmed = 0
        for device_id in device_ids:
            confirmed += await self.confirm_covered(request_id, device_id, now)
        return confirmed


async def _row_for_update(conn: AsyncConnection, device_id: str) -> Any:
    # FOR UPDATE on PostgreSQL; SQLite has none and needs none (write_transaction holds
    # the database's write lock).
    return (
        await conn.execute(
            select(_states).where(_states.c.device_id == device_id).with_for_update()
        )
    ).first()


async def _cached_owner(conn: AsyncConnection, device_id: str) -> str | None:
    """The one ThinQ user whose cached device list holds ``device_id`` (None: none or
    several)."""
    owners = (
        await conn.execute(
            select(_cached.c.thinq_user).where(_cached.c.device_id == device_id).limit(2)
        )
    ).scalars()
    found = list(owners)
    return found[0] if len(found) == 1 else None


class EventSubscriptionRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"EventSubscriptionRepository({self._engine.dialect.name})"

    async def get(self, thinq_user: str) -> Subscription | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_subs).where(_subs.c.thinq_user == thinq_user))
            ).first()
        return _subscription(row) if row is not None else None

    async def all(self) -> list[Subscription]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(_subs).order_by(_subs.c.thinq_user))
            return [_subscription(row) for row in rows]

    async def add_linked_users(self, now: datetime) -> int:
        """A row (never subscribed) for every ThinQ user with a linked account and none
        yet; returns how many were added."""
        _aware(now)
        async with self._engine.connect() as conn:
            missing = (
                await conn.execute(
                    select(_accounts.c.thinq_user)
                    .where(~exists().where(_subs.c.thinq_user == _accounts.c.thinq_user))
                    .distinct()
                )
            ).scalars()
            users = list(missing)
        if not users:
            return 0
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                _insert(self._engine)(_subs)
                .values([{"thinq_user": u, "attempts": 0, "created_at": now} for u in users])
                .on_conflict_do_nothing(index_elements=[_subs.c.thinq_user])
            )
        return max(int(result.rowcount or 0), 0)

    async def due(self, now: datetime, margin: timedelta, limit: int = 100) -> list[Subscription]:
        """Users with a linked account whose subscription is missing or expires within
        ``margin``, and not waiting out a backoff; never subscribed ones first, then by
        expiry."""
        _aware(now)
        linked = exists().where(_accounts.c.thinq_user == _subs.c.thinq_user)
        asked = exists().where(_renewals.c.thinq_user == _subs.c.thinq_user)
        query = (
            select(_subs)
            .where(
                or_(_subs.c.expires_at.is_(None), _subs.c.expires_at <= now + margin, asked),
                or_(_subs.c.next_attempt_at.is_(None), _subs.c.next_attempt_at <= now),
                linked,
            )
            .order_by(_subs.c.expires_at.is_(None).desc(), _subs.c.expires_at, _subs.c.thinq_user)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [_subscription(row) for row in await conn.execute(query)]

    async def record_success(
        self,
        thinq_user: str,
        *,
        requested_at: datetime,
        accepted_at: datetime,
        hours: int,
        request_id: str,
    ) -> Subscription:
        """LG accepted our subscription request (made at ``requested_at``, answered at
        ``accepted_at``): events until ``requested_at + hours``. A renewal before expiry
        continues the stretch (``subscribed_at`` kept); after a lapse a new one starts."""
        _aware(requested_at, "requested_at")
        _aware(accepted_at, "accepted_at")
        async with write_transaction(self._engine) as conn:
            row = (
                await conn.execute(
                    select(_subs).where(_subs.c.thinq_user == thinq_user).with_for_update()
                )
            ).first()
            continuous = (
                row is not None
                and row.expires_at is not None
                and row.subscribed_at is not None
                and row.expires_at > requested_at
            )
            values = {
                "expires_at": requested_at + timedelta(hours=hours),
                "subscribed_at": row.subscribed_at if continuous else requested_at,
                "last_error": None,
                "attempts": 0,
                "next_attempt_at": None,
                "last_request_id": request_id,
                "last_request_at": accepted_at,
            }
            if row is None:
                await conn.execute(
                    _insert(self._engine)(_subs).values(
                        thinq_user=thinq_user, created_at=accepted_at, **values
                    )
                )
            else:
                await conn.execute(
                    update(_subs).where(_subs.c.thinq_user == thinq_user).values(**values)
                )
            # A renewal asked for before this request is done by it (one asked for since,
            # e.g. a device added meanwhile, stays for the next pass).
            await conn.execute(
                delete(_renewals).where(
                    _renewals.c.thinq_user == thinq_user, _renewals.c.requested_at <= requested_at
                )
            )
            found = (
                await conn.execute(select(_subs).where(_subs.c.thinq_user == thinq_user))
            ).first()
        return _subscription(found)

    async def request_renewal(self, thinq_user: str, now: datetime) -> None:
        """Renew ``thinq_user``'s subscription at the next pass (a device was added: LG's
        event-async covers the devices there when it is requested)."""
        _aware(now)
        async with write_transaction(self._engine) as conn:
            updated = await conn.execute(
                update(_renewals)
                .where(_renewals.c.thinq_user == thinq_user)
                .values(requested_at=now)
            )
            if not updated.rowcount:
                await conn.execute(
                    _insert(self._engine)(_renewals)
                    .values(thinq_user=thinq_user, requested_at=now)
                    .on_conflict_do_nothing(index_elements=[_renewals.c.thinq_user])
                )

    async def renewal_requested(self, thinq_user: str) -> bool:
        async with self._engine.connect() as conn:
            found = await conn.execute(
                select(_renewals.c.thinq_user).where(_renewals.c.thinq_user == thinq_user)
            )
            return found.first() is not None

    async def forget(self, thinq_user: str) -> bool:
        """Drop the user's subscription record (its last conversation was unlinked and LG
        was told to stop); the renewer leaves the user alone from now on."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(_renewals).where(_renewals.c.thinq_user == thinq_user))
            removed = await conn.execute(delete(_subs).where(_subs.c.thinq_user == thinq_user))
        return bool(removed.rowcount)

    async def record_failure(
        self, thinq_user: str, error: str, next_attempt_at: datetime
    ) -> Subscription | None:
        """An attempt failed: say why, count it, and wait until ``next_attempt_at``."""
        _aware(next_attempt_at, "next_attempt_at")
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(_subs)
                .where(_subs.c.thinq_user == thinq_user)
                .values(
                    last_error=error[:MAX_ERROR_CHARS],
                    attempts=_subs.c.attempts + 1,
                    next_attempt_at=next_attempt_at,
                )
            )
            row = (
                await conn.execute(select(_subs).where(_subs.c.thinq_user == thinq_user))
            ).first()
        return _subscription(row) if row is not None else None


class LeaseRepository:
    """Named leases: one holder at a time, until it lets go or its time runs out."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    def __repr__(self) -> str:
        return f"LeaseRepository({self._engine.dialect.name})"

    async def acquire(self, name: str, owner: str, ttl: timedelta, now: datetime) -> bool:
        """Take or extend ``name`` until ``now + ttl`` if it is free, expired or already
        ``owner``'s (one compare-and-set statement); True if ``owner`` holds it now."""
        _aware(now)
        if ttl <= timedelta(0):
            raise ValueError("ttl must be positive")
        async with write_transaction(self._engine) as conn:
            insert = _insert(self._engine)(_leases).values(name=name, owner=owner, until=now + ttl)
            await conn.execute(
                insert.on_conflict_do_update(
                    index_elements=[_leases.c.name],
                    set_={"owner": insert.excluded.owner, "until": insert.excluded.until},
                    where=or_(_leases.c.owner == owner, _leases.c.until <= now),
                )
            )
            holder = (
                await conn.execute(select(_leases.c.owner).where(_leases.c.name == name))
            ).scalar_one()
        return holder == owner

    async def release(self, name: str, owner: str) -> bool:
        """Let go of ``name`` if ``owner`` holds it (the next one need not wait it out)."""
        async with write_transaction(self._engine) as conn:
            result = await conn.execute(
                delete(_leases).where(and_(_leases.c.name == name, _leases.c.owner == owner))
            )
        return result.rowcount > 0

    async def holder(self, name: str, now: datetime) -> str | None:
        """Who holds ``name`` at ``now`` (None: nobody, or the lease ran out)."""
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_leases).where(_leases.c.name == name))).first()
        return row.owner if row is not None and row.until > now else None
