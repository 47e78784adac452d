"""Account-linking flows in progress: the OAuth ``state`` each sender is waiting for.

:meth:`LinkRequestRepository.create` makes a random state bound to a sender and stores
only its SHA-256 digest with an expiry; :meth:`LinkRequestRepository.consume` takes it
back exactly once (compare-and-set on ``used_at``), so a state that is unknown,
expired or already used never links anything.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import sessionmaker

from assistant.storage.models import LinkRequest, utcnow

_table = LinkRequest.__table__
# Used and expired rows are kept this long (to say "already used" rather than "unknown").
KEEP_FINISHED = timedelta(days=1)
MAX_STATE_CHARS = 256


def state_digest(state: str) -> str:
    return hashlib.sha256(state.encode("utf-8", "replace")).hexdigest()


@dataclass(frozen=True)
class ConsumedRequest:
    sender_id: str
    channel: str | None


@dataclass(frozen=True)
class StateRefused:
    """Why a state was refused: ``unknown``, ``expired`` or ``used``."""

    reason: str


class LinkRequestRepository:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    def __repr__(self) -> str:
        return "LinkRequestRepository()"

    async def create(
        self, sender_id: str, channel: str | None, ttl: timedelta, now: datetime | None = None
    ) -> str:
        """A new state for ``sender_id``, valid for ``ttl``; purges long-finished ones."""
        if not sender_id or len(sender_id) > 255:
            raise ValueError("sender_id must be a non-empty string of at most 255 characters")
        now = now or utcnow()
        state = secrets.token_urlsafe(32)
        async with self._sessions() as session, session.begin():
            await session.execute(delete(_table).where(_table.c.expires_at < now - KEEP_FINISHED))
            await session.execute(
                _table.insert().values(
                    state_digest=state_digest(state),
                    sender_id=sender_id,
                    channel=channel,
                    created_at=now,
                    expires_at=now + ttl,
                    used_at=None,
                )
            )
        return state

    async def consume(
        self, state: str, now: datetime | None = None
    ) -> ConsumedRequest | StateRefused:
        """The flow ``state`` belongs to, marked used; or why it cannot be used."""
        if not state or len(state) > MAX_STATE_CHARS:
            return StateRefused("unknown")
        now = now or utcnow()
        digest = state_digest(state)
        async with self._sessions() as session, session.begin():
            row = (
                await session.execute(select(_table).where(_table.c.state_digest == digest))
            ).first()
            if row is None:
                return StateRefused("unknown")
            if row.used_at is not None:
                return StateRefused("used")
            if row.expires_at <= now:
                return StateRefused("expired")
            claimed = await session.execute(
                update(_table)
                .where(_table.c.state_digest == digest, _table.c.used_at.is_(None))
                .values(used_at=now)
            )
            if claimed.rowcount != 1:  # another request took it between our read and now
                return StateRefused("used")
            return ConsumedRequest(row.sender_id, row.channel)
