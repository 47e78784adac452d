"""Per-sender retention shared by the message stores that keep a bounded log per sender
(:mod:`assistant.storage.alexa_inbox`, :mod:`assistant.storage.widget_messages`).

Such a store keeps each sender's newest ``keep_per_sender`` rows (trimmed in the
transaction that adds one, so a sender who never comes back cannot grow the table) and
treats rows older than ``keep_days`` as expired. The pieces here are what those stores
would otherwise each spell out, and must keep spelling out the same way:

* :class:`Retention`: the two limits, validated once, and the expiry :meth:`~Retention.cutoff`.
* :func:`aware_now`: the ``now`` a caller passes in (tests pin the clock), refusing a naive
  value rather than guessing its zone.
* :func:`lock_sender`: on PostgreSQL, writers of one sender take turns on an advisory
  lock, so a second insert of the same key sees the first committed and two trims never
  lock rows in opposite orders (deadlock); SQLite's single write lock, taken by
  :func:`~assistant.storage.db.write_transaction`, already serialises every writer.
* :func:`trim_to_newest`: the trim itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import BigInteger, Table, delete, func, literal, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import ColumnElement

from assistant.storage.models import utcnow


def _positive_int(name: str, value: object) -> int:
    # bool is an int subclass, but keep_days=True is a mistake, not "1 day".
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


@dataclass(frozen=True)
class Retention:
    """How much of each sender's log a store keeps: its newest ``keep_per_sender`` rows,
    none older than ``keep_days``. Both must be positive integers (ValueError otherwise):
    a cap of zero would make every add delete what it just stored."""

    keep_per_sender: int
    keep_days: int

    def __post_init__(self) -> None:
        _positive_int("keep_per_sender", self.keep_per_sender)
        _positive_int("keep_days", self.keep_days)

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Rows created before this (``keep_days`` before ``now``, or before the current
        time) are expired."""
        return aware_now(now) - timedelta(days=self.keep_days)


def aware_now(now: object = None) -> datetime:
    """``now`` in UTC, or the current time when None; a naive value is refused
    (ValueError): its zone would be a guess, and comparing it with the stored UTC times
    would shift expiry by the machine's offset."""
    if now is None:
        return utcnow()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")
    return now.astimezone(timezone.utc)


def sender_lock_id(table_name: str, sender_id: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock id for ``sender_id`` in ``table_name``
    (the table name keeps two stores' locks for one sender apart)."""
    digest = hashlib.blake2b(f"{table_name}:{sender_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_sender(conn: AsyncConnection, table_name: str, sender_id: str) -> None:
    """Make this transaction's writes of ``sender_id`` in ``table_name`` take turns with
    other transactions' (released at commit or rollback).

    On PostgreSQL that is a transaction-scoped advisory lock: concurrent adds of one
    sender would otherwise trim each other's rows in opposite orders and deadlock, or
    both miss a key the other is about to commit. On SQLite it does nothing: the
    transaction from :func:`~assistant.storage.db.write_transaction` already holds the
    database's only write lock.
    """
    if conn.dialect.name != "postgresql":
        return
    lock_id = literal(sender_lock_id(table_name, sender_id), BigInteger)
    await conn.execute(select(func.pg_advisory_xact_lock(lock_id)))


async def trim_to_newest(
    conn: AsyncConnection,
    table: Table,
    sender_id: str,
    keep: int,
    *order_columns: ColumnElement,
) -> None:
    """Delete ``sender_id``'s rows of ``table`` except its newest ``keep``.

    "Newest" is by ``order_columns`` descending (by ``id`` when none are given); end them
    with ``id`` so rows with equal times still have one order and the same rows go
    whichever transaction trims. ``table`` needs ``id`` and ``sender_id`` columns. Call it
    after :func:`lock_sender` in the adding transaction, so the log never exceeds the cap.
    """
    columns = order_columns or (table.c.id,)
    newest = (
        select(table.c.id)
        .where(table.c.sender_id == sender_id)
        .order_by(*(column.desc() for column in columns))
        .limit(keep)
    )
    # Fewer rows than the cap: every id is among the newest and nothing matches.
    await conn.execute(
        delete(table).where(
            table.c.sender_id == sender_id, table.c.id.not_in(newest.scalar_subquery())
        )
    )
