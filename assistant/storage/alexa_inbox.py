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
from assistant.storage.models import AlexaInboxMessage, utcnow

_inbox = AlexaInboxMessage.__table__

NOTIFICATION = "notification"
LATE_REPLY = "late_reply"
KINDS = (NOTIFICATION, LATE_REPLY)
MAX_KEY_CHARS = 128
MAX_SENDER_CHARS = 255


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
    """Repository over ``alexa_inbox``; safe to share within a process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

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
        """Queue ``text`` for ``sender_id``; False if ``key`` was already stored."""
        _check(sender_id, key, kind)
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must not be empty")
        now = now or utcnow()
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware (UTC)")
        async with self._writing() as conn:
            insert = pg_insert if self._postgres else sqlite_insert
            statement = (
                insert(_inbox)
                .values(key=key, sender_id=sender_id, kind=kind, text=text, created_at=now)
                .on_conflict_do_nothing(index_elements=[_inbox.c.key])
            )
            result = await conn.execute(statement)
            return result.rowcount > 0

    async def take_all(self, sender_id: str, limit: int | None = None) -> list[InboxMessage]:
        """The sender's messages, oldest first (at most ``limit``), deleted as they are read.

        Each message is returned to exactly one caller, however many call at once.
        """
        _check(sender_id)
        if limit is not None and limit <= 0:
            return []
        oldest = (
            select(_inbox)
            .where(_inbox.c.sender_id == sender_id)
            .order_by(_inbox.c.created_at, _inbox.c.id)
        )
        if limit is not None:
            oldest = oldest.limit(limit)
        async with self._writing() as conn:
            if self._postgres:
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

    async def count(self, sender_id: str) -> int:
        """How many messages wait for ``sender_id``."""
        _check(sender_id)
        async with self._engine.connect() as conn:
            return int(
                (
                    await conn.execute(
                        select(func.count())
                        .select_from(_inbox)
                        .where(_inbox.c.sender_id == sender_id)
                    )
                ).scalar_one()
            )
