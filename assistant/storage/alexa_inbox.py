"""Messages waiting for an Alexa user's next launch (table ``alexa_inbox``).

Alexa speaks only when asked, so a notification for an Alexa user, or the late reply of a
time-boxed turn, is stored here and read out at the user's next LaunchRequest. Two
operations matter:

* :meth:`AlexaInboxRepository.add` is idempotent by ``key`` (``INSERT … ON CONFLICT DO
  NOTHING``): the delivery worker may hand the same outbox row over twice.
* :meth:`AlexaInboxRepository.take_all` returns the sender's oldest messages and deletes
  them in the same transaction, so two launches at once never read the same message:
  on PostgreSQL the ``DELETE … RETURNING`` rows are the ones this transaction removed
  (candidates another transaction holds are skipped, rows it removed first are not
  returned); on SQLite the transaction starts with ``BEGIN IMMEDIATE`` and so holds the
  database's single write lock from its first read to its commit.

The inbox is bounded, because a user who never launches the skill again would otherwise
collect notifications forever: ``add`` keeps only the sender's newest ``keep_per_sender``
messages, and messages older than ``keep_days`` are never read out (a week-old "your
washer is done" is noise). ``take_all`` drops the sender's expired messages as it reads;
:meth:`AlexaInboxRepository.prune` drops everyone's (for a periodic sweep).

Plain SQLAlchemy Core over the engine (one short transaction per call), like the
connector's delivery store; usable from the connector and from the Rasa process alike.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assistant.storage.db import write_transaction
from assistant.storage.models import AlexaInboxMessage
from assistant.storage.retention import Retention, aware_now, lock_sender, trim_to_newest

_inbox = AlexaInboxMessage.__table__

NOTIFICATION = "notification"
LATE_REPLY = "late_reply"
KINDS = (NOTIFICATION, LATE_REPLY)
MAX_KEY_CHARS = 128
MAX_SENDER_CHARS = 255
DEFAULT_KEEP_PER_SENDER = 20
DEFAULT_KEEP_DAYS = 7


@dataclass(frozen=True)
class InboxMessage:
    key: str
    sender_id: str
    kind: str
    text: str
    created_at: datetime


def _check(sender_id: str, key: str | None = None, kind: str | None = None) -> None:
    if not isinstance(sender_id, str) or not sender_id or len(sender_id) > MAX_SENDER_CHARS:
        raise ValueError(
            f"sender_id must be a non-empty string of at most {MAX_SENDER_CHARS} characters"
        )
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS):
        raise ValueError(f"key must be a non-empty string of at most {MAX_KEY_CHARS} characters")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")


class AlexaInboxRepository:
    """Repository over ``alexa_inbox``; safe to share within a process.

    ``keep_per_sender`` caps each sender's inbox (the oldest messages go first) and
    ``keep_days`` is how long a message stays worth reading out.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        keep_per_sender: int = DEFAULT_KEEP_PER_SENDER,
        keep_days: int = DEFAULT_KEEP_DAYS,
    ) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self.retention = Retention(keep_per_sender, keep_days)

    def __repr__(self) -> str:
        return f"AlexaInboxRepository({self._engine.dialect.name})"

    def _writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction; on SQLite it holds the database write lock from the start."""
        return write_transaction(self._engine)

    async def add(
        self,
        key: str,
        sender_id: str,
        text: str,
        kind: str = NOTIFICATION,
        now: datetime | None = None,
    ) -> bool:
        """Queue ``text`` for ``sender_id``; False if ``key`` was already stored.

        Adding trims the sender's inbox to its newest ``keep_per_sender`` messages in the
        same transaction, so the inbox never grows past the cap however long the user
        stays away.
        """
        _check(sender_id, key, kind)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must not be empty")
        now = aware_now(now)
        async with self._writing() as conn:
            # Adds for one sender take turns, so their trims never lock each other's rows
            # in opposite orders.
            await lock_sender(conn, _inbox.name, sender_id)
            insert = pg_insert if self._postgres else sqlite_insert
            statement = (
                insert(_inbox)
                .values(key=key, sender_id=sender_id, kind=kind, text=text, created_at=now)
                .on_conflict_do_nothing(index_elements=[_inbox.c.key])
            )
            result = await conn.execute(statement)
            if result.rowcount == 0:
                return False
            await trim_to_newest(
                conn,
                _inbox,
                sender_id,
                self.retention.keep_per_sender,
                _inbox.c.created_at,
                _inbox.c.id,
            )
            return True

    async def take_all(
        self, sender_id: str, limit: int | None = None, *, now: datetime | None = None
    ) -> list[InboxMessage]:
        """The sender's messages, oldest first (at most ``limit``), deleted as they are read.

        Each message is returned to exactly one caller, however many call at once. Messages
        older than ``keep_days`` (at ``now``) are deleted unread: stale news is noise.
        """
        _check(sender_id)
        cutoff = self.retention.cutoff(now)
        if limit is not None and limit <= 0:
            return []
        oldest = (
            select(_inbox)
            .where(_inbox.c.sender_id == sender_id, _inbox.c.created_at >= cutoff)
            .order_by(_inbox.c.created_at, _inbox.c.id)
        )
        if limit is not None:
            oldest = oldest.limit(limit)
        expired = select(_inbox.c.id).where(
            _inbox.c.sender_id == sender_id, _inbox.c.created_at < cutoff
        )
        async with self._writing() as conn:
            if self._postgres:
                # Rows a concurrent taker holds are its to delete; never wait for them.
                await conn.execute(
                    delete(_inbox).where(
                        _inbox.c.id.in_(expired.with_for_update(skip_locked=True).scalar_subquery())
                    )
                )
                # SKIP LOCKED: rows a concurrent taker holds are its own; without it this
                # statement would wait for them and then find them gone anyway.
                candidates = (
                    oldest.with_only_columns([_inbox.c.id])
                    .with_for_update(skip_locked=True)
                    .scalar_subquery()
                )
                statement = delete(_inbox).where(_inbox.c.id.in_(candidates)).returning(*_inbox.c)
                rows = list((await conn.execute(statement)).all())
            else:
                # Under BEGIN IMMEDIATE nobody else can write between this read and the delete.
                await conn.execute(delete(_inbox).where(_inbox.c.id.in_(expired.scalar_subquery())))
                rows = list((await conn.execute(oldest)).all())
                if rows:
                    await conn.execute(delete(_inbox).where(_inbox.c.id.in_([r.id for r in rows])))
        rows.sort(key=lambda row: (row.created_at, row.id))
        return [
            InboxMessage(
                key=row.key,
                sender_id=row.sender_id,
                kind=row.kind,
                text=row.text,
                created_at=row.created_at,
            )
            for row in rows
        ]

    async def count(self, sender_id: str, *, now: datetime | None = None) -> int:
        """How many messages wait for ``sender_id`` (expired ones will never be read: not
        counted)."""
        _check(sender_id)
        cutoff = self.retention.cutoff(now)
        async with self._engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(_inbox)
                        .where(_inbox.c.sender_id == sender_id, _inbox.c.created_at >= cutoff)
                    )
                ).scalar_one()
            )

    async def prune(self, now: datetime | None = None) -> int:
        """Delete every sender's messages older than ``keep_days``; how many were deleted.

        ``take_all`` only expires the launching sender's messages; this sweeps the users
        who never launch again.
        """
        cutoff = self.retention.cutoff(now)
        expired = select(_inbox.c.id).where(_inbox.c.created_at < cutoff)
        async with self._writing() as conn:
            if self._postgres:
                # Rows a taker holds are being deleted already; skipping them means prune
                # never waits for (or deadlocks with) a launch.
                expired = expired.with_for_update(skip_locked=True)
            result = await conn.execute(
                delete(_inbox).where(_inbox.c.id.in_(expired.scalar_subquery()))
            )
            return max(result.rowcount, 0)
