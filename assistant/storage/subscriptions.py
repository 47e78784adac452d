"""Which conversations asked to hear about which devices, and how to reach them.

Also the lookups proactive delivery needs: who subscribed to a device, which
senders a ThinQ user has (with the channel each last used), and which users
have a device cached. Plain Core SQL: the callback receiver runs these per message.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import sessionmaker

from assistant.storage.db import dialect_insert
from assistant.storage.models import CachedDevice, LinkedAccount, NotificationSubscription

_subs = NotificationSubscription.__table__
_accounts = LinkedAccount.__table__
_devices = CachedDevice.__table__

KINDS = ("push", "pcc")
# Values per IN list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500


@dataclass(frozen=True)
class Recipient:
    """A conversation to tell something, and the channel its user last wrote from."""

    sender_id: str
    thinq_user: str
    channel: str | None


@dataclass(frozen=True)
class CachedCopy:
    """One user's cached view of a device (a device may be shared by several users)."""

    thinq_user: str
    device_type: str
    alias: str


@dataclass(frozen=True)
class DeviceAudience:
    """Everyone a device's pushes can concern (see SubscriptionRepository.audiences)."""

    subscribers: dict[str, list[Recipient]]  # by kind ("push", "pcc"), sender order
    copies: dict[str, CachedCopy]  # by ThinQ user

    def subscribed(self, kind: str) -> list[Recipient]:
        _check_kind(kind)
        return self.subscribers.get(kind, [])


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")


class SubscriptionRepository:
    def __init__(self, session_factory: sessionmaker, engine: AsyncEngine) -> None:
        self._sessions = session_factory
        # The lookups the connector makes per callback batch use plain connections: an
        # ORM session around a single SELECT costs more than the SELECT.
        self._engine = engine

    async def add(
        self, sender_id: str, thinq_user: str, device_id: str, kind: str, now: datetime
    ) -> bool:
        """Record the subscription; False if this conversation already had it."""
        _check_kind(kind)
        async with self._sessions() as session, session.begin():
            insert = dialect_insert(session, _subs).values(
                sender_id=sender_id,
                device_id=device_id,
                kind=kind,
                thinq_user=thinq_user,
                created_at=now,
            )
            result = await session.execute(insert.on_conflict_do_nothing())
            return result.rowcount > 0

    async def remove(self, sender_id: str, device_id: str, kind: str) -> bool:
        _check_kind(kind)
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(_subs).where(
                    _subs.c.sender_id == sender_id,
                    _subs.c.device_id == device_id,
                    _subs.c.kind == kind,
                )
            )
            return result.rowcount > 0

    async def for_sender(self, sender_id: str) -> list[tuple[str, str]]:
        """``(device_id, kind)`` pairs this conversation subscribed to, oldest first."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(_subs.c.device_id, _subs.c.kind)
                .where(_subs.c.sender_id == sender_id)
                .order_by(_subs.c.created_at, _subs.c.device_id, _subs.c.kind)
            )
            return [(row.device_id, row.kind) for row in rows]

    async def still_wanted(self, thinq_user: str, device_id: str, kind: str) -> bool:
        """Does any conversation of ``thinq_user`` still want this device's messages?

        LG's subscription is one per service, user and device, so it is dropped only
        when the user's last conversation lets go.
        """
        _check_kind(kind)
        async with self._sessions() as session:
            count = (
                await session.execute(
                    select(func.count())
                    .select_from(_subs)
                    .where(
                        _subs.c.thinq_user == thinq_user,
                        _subs.c.device_id == device_id,
                        _subs.c.kind == kind,
                    )
                )
            ).scalar_one()
            return bool(count)

    async def audiences(self, device_ids: Iterable[str]) -> dict[str, DeviceAudience]:
        """Who hears about each device: its subscribers by kind (conversations still
        linked to the LG user who subscribed, with their last channel) and every user's
        cached copy. Two queries for the
        whole batch, whatever its size, because the delivery worker plans callbacks in
        batches. Every requested device has an entry (empty if nobody wants it)."""
        wanted = sorted(set(device_ids))
        found: dict[str, DeviceAudience] = {d: DeviceAudience({}, {}) for d in wanted}
        async with self._engine.connect() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                subscribers = await conn.execute(
                    select(
                        _subs.c.device_id,
                        _subs.c.kind,
                        _subs.c.sender_id,
                        _subs.c.thinq_user,
                        _accounts.c.channel,
                    )
                    # Only while the conversation is still linked to the user who
                    # subscribed: one relinked to another LG account must stop hearing
                    # about the first account's appliances.
                    .join(
                        _accounts,
                        (_accounts.c.sender_id == _subs.c.sender_id)
                        & (_accounts.c.thinq_user == _subs.c.thinq_user),
                    )
                    .where(_subs.c.device_id.in_(chunk))
                    .order_by(_subs.c.device_id, _subs.c.kind, _subs.c.sender_id)
                )
                for r in subscribers:
                    found[r.device_id].subscribers.setdefault(r.kind, []).append(
                        Recipient(r.sender_id, r.thinq_user, r.channel)
                    )
                copies = await conn.execute(
                    select(
                        _devices.c.device_id,
                        _devices.c.thinq_user,
                        _devices.c.device_type,
                        _devices.c.alias,
                    ).where(_devices.c.device_id.in_(chunk))
                )
                for r in copies:
                    found[r.device_id].copies[r.thinq_user] = CachedCopy(
                        r.thinq_user, r.device_type, r.alias
                    )
        return found

    async def linked_senders(self, thinq_users: Iterable[str]) -> list[Recipient]:
        """Every conversation linked to any of the users (no tokens are decrypted)."""
        users = sorted(set(thinq_users))
        if not users:
            return []
        async with self._sessions() as session:
            rows = await session.execute(
                select(_accounts.c.sender_id, _accounts.c.thinq_user, _accounts.c.channel)
                .where(_accounts.c.thinq_user.in_(users))
                .order_by(_accounts.c.sender_id)
            )
            return [Recipient(r.sender_id, r.thinq_user, r.channel) for r in rows]

    async def any_linked(self, thinq_users: Iterable[str]) -> bool:
        users = sorted(set(thinq_users))
        if not users:
            return False
        async with self._sessions() as session:
            found = await session.execute(
                select(_accounts.c.sender_id).where(_accounts.c.thinq_user.in_(users)).limit(1)
            )
            return found.first() is not None

    async def cached_copies(self, device_id: str) -> list[CachedCopy]:
        """Each user's cached entry for the device (empty if nobody has it cached)."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(_devices.c.thinq_user, _devices.c.device_type, _devices.c.alias)
                .where(_devices.c.device_id == device_id)
                .order_by(_devices.c.thinq_user)
            )
            return [CachedCopy(r.thinq_user, r.device_type, r.alias) for r in rows]

    async def device_known(self, device_id: str) -> bool:
        """Cached for some user, or subscribed by some conversation."""
        # One statement: the callback receiver asks this for every burst of callbacks.
        known = or_(
            exists().where(_devices.c.device_id == device_id),
            exists().where(_subs.c.device_id == device_id),
        )
        async with self._engine.connect() as conn:
            return bool((await conn.execute(select(known))).scalar_one())

    async def forget_device(self, thinq_users: Iterable[str], device_id: str) -> int:
        """Drop every subscription to a device the users no longer have."""
        users = sorted(set(thinq_users))
        if not users:
            return 0
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                delete(_subs).where(_subs.c.device_id == device_id, _subs.c.thinq_user.in_(users))
            )
            return result.rowcount
