"""Delivery bookkeeping: the callbacks LG sent us and the outbox of proactive messages.

SQLAlchemy Core over ``lg_callbacks`` and ``outbox`` (see assistant/storage/models.py),
every method one short transaction, batched so that one commit serves many messages.

State changes that two workers might attempt at once are compare-and-set:

* PostgreSQL: ``UPDATE … RETURNING`` / ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (row
  locks decide; the loser's WHERE no longer matches).
* SQLite: the transaction starts with ``BEGIN IMMEDIATE``, which takes the database's single
  write lock before anything is read, so read-then-write inside it cannot interleave with
  another writer. Writers of this process also queue on an asyncio lock, because SQLite's
  own busy wait sleeps in steps of up to 100 ms.

Every ``now`` is passed in by the caller (timezone-aware UTC), which keeps tests exact.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.elements import ColumnElement

from assistant.storage.db import write_transaction
from assistant.storage.models import LgCallbackRecord, OutboxMessage, UTCDateTime

RECEIVED = "received"
PLANNED = "planned"

PENDING = "pending"
SENDING = "sending"
DELIVERED = "delivered"
FAILED = "failed"
OUTBOX_STATES = (PENDING, SENDING, DELIVERED, FAILED)

_callbacks = LgCallbackRecord.__table__
_outbox = OutboxMessage.__table__

# Rows per statement (bounds statement and IN-list sizes).
_CHUNK = 500

# PostgreSQL bulk inserts: one statement text whatever the batch size, with one array per
# column. SQLAlchemy 1.4 compiles a multi-row VALUES insert anew on every call (about 1 ms
# per row of CPU), and each distinct row count would be a new server-side prepared
# statement; unnest() makes both a cached constant.
_PG_INSERT_CALLBACKS = text(
    """
    INSERT INTO lg_callbacks (message_id, push_type, device_id, body, received_at, state)
    SELECT m, p, d, CAST(b AS JSON), :now, 'received'
    FROM unnest(
        CAST(:ids AS VARCHAR[]), CAST(:push_types AS VARCHAR[]),
        CAST(:devices AS VARCHAR[]), CAST(:bodies AS TEXT[])
    ) AS u(m, p, d, b)
    ON CONFLICT (message_id) DO NOTHING
    RETURNING message_id
    """
).bindparams(bindparam("now", type_=UTCDateTime))

_PG_OUTBOX_ARRAYS = (
    "id",
    "message_id",
    "sender_id",
    "channel",
    "thinq_user",
    "device_id",
    "kind",
    "response",
    "text",
)
_PG_INSERT_OUTBOX = text(
    """
    INSERT INTO outbox (
        id, message_id, sender_id, channel, thinq_user, device_id, kind, response, text,
        params, state, attempts, next_attempt_at, claimed_at, created_at
    )
    SELECT i, m, s, c, u, d, k, r, t, CAST(p AS JSON),
        :state, :attempts, :next_attempt_at, :claimed_at, :created_at
    FROM unnest(
        CAST(:id AS VARCHAR[]), CAST(:message_id AS VARCHAR[]), CAST(:sender_id AS VARCHAR[]),
        CAST(:channel AS VARCHAR[]), CAST(:thinq_user AS VARCHAR[]),
        CAST(:device_id AS VARCHAR[]), CAST(:kind AS VARCHAR[]), CAST(:response AS VARCHAR[]),
        CAST(:text AS TEXT[]), CAST(:params AS TEXT[])
    ) AS x(i, m, s, c, u, d, k, r, t, p)
    ON CONFLICT (message_id, sender_id) DO NOTHING
    RETURNING id
    """
).bindparams(
    bindparam("next_attempt_at", type_=UTCDateTime),
    bindparam("claimed_at", type_=UTCDateTime),
    bindparam("created_at", type_=UTCDateTime),
)


class NoticeLike(Protocol):
    """What the planner produces for one conversation (assistant.notifications.Notice)."""

    @property
    def sender_id(self) -> str: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def thinq_user(self) -> str: ...
    @property
    def device_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def response(self) -> str: ...
    @property
    def params(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class NewCallback:
    """A validated callback about to be stored."""

    message_id: str
    push_type: str
    device_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class StoredCallback:
    message_id: str
    push_type: str
    device_id: str
    body: dict[str, Any]
    received_at: datetime
    state: str
    planned_at: datetime | None


@dataclass(frozen=True)
class OutboxRow:
    id: str
    message_id: str
    sender_id: str
    channel: str | None
    thinq_user: str
    device_id: str
    kind: str
    response: str
    params: dict[str, str]
    text: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    claimed_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    history_recorded_at: datetime | None


@dataclass(frozen=True)
class AttemptOutcome:
    """How one claimed attempt ended.

    ``attempt`` is the row's ``attempts`` value when it was claimed: it fences the
    update, so a worker whose claim was taken over cannot overwrite the new owner's state.
    """

    outbox_id: str
    attempt: int
    state: str  # DELIVERED, PENDING (retry at next_attempt_at) or FAILED
    error: str | None = None
    next_attempt_at: datetime | None = None


def _require_aware(value: datetime, name: str = "now") -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware (UTC) datetime; got {value!r}")


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _stored_callback(row: Row) -> StoredCallback:
    return StoredCallback(
        message_id=row.message_id,
        push_type=row.push_type,
        device_id=row.device_id,
        body=row.body,
        received_at=row.received_at,
        state=row.state,
        planned_at=row.planned_at,
    )


def _outbox_row(row: Row) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        message_id=row.message_id,
        sender_id=row.sender_id,
        channel=row.channel,
        thinq_user=row.thinq_user,
        device_id=row.device_id,
        kind=row.kind,
        response=row.response,
        params=dict(row.params or {}),
        text=row.text,
        state=row.state,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        claimed_at=row.claimed_at,
        last_error=row.last_error,
        created_at=row.created_at,
        delivered_at=row.delivered_at,
        history_recorded_at=row.history_recorded_at,
    )


class DeliveryStore:
    """Repository over ``lg_callbacks`` and ``outbox``; safe to share within a process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        return f"DeliveryStore({self._engine.dialect.name})"

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def _writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """A write transaction; on SQLite it holds the database write lock from the start."""
        return write_transaction(self._engine)

    async def _update_returning(
        self,
        conn: AsyncConnection,
        where: ColumnElement[bool],
        values: Mapping[str, Any],
    ) -> list[Row]:
        """``UPDATE outbox SET values WHERE where``; the updated rows, as they are now."""
        if self._postgres:
            statement = update(_outbox).where(where).values(**values).returning(*_outbox.c)
            return list((await conn.execute(statement)).all())
        # Under BEGIN IMMEDIATE nobody else can write between this read and the update.
        ids = list((await conn.execute(select(_outbox.c.id).where(where))).scalars())
        if not ids:
            return []
        await conn.execute(update(_outbox).where(_outbox.c.id.in_(ids)).values(**values))
        return list((await conn.execute(select(_outbox).where(_outbox.c.id.in_(ids)))).all())

    # -- inbound callbacks ------------------------------------------------------------

    async def record_callbacks(self, callbacks: Sequence[NewCallback], now: datetime) -> set[str]:
        """Store the callbacks in one transaction; the message ids that were new.

        A message id already stored (LG retried, or a duplicate within ``callbacks``)
        is not stored again and is absent from the result.
        """
        _require_aware(now)
        unique: dict[str, NewCallback] = {}
        for callback in callbacks:
            unique.setdefault(callback.message_id, callback)
        if not unique:
            return set()
        rows = [
            {
                "message_id": c.message_id,
                "push_type": c.push_type,
                "device_id": c.device_id,
                "body": c.body,
                "received_at": now,
                "state": RECEIVED,
                "planned_at": None,
            }
            for c in unique.values()
        ]
        new: set[str] = set()
        async with self._writing() as conn:
            for chunk in _chunks(rows):
                new |= await self._insert_new_callbacks(conn, chunk)
        return new

    async def _insert_new_callbacks(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> set[str]:
        if self._postgres:
            result = await conn.execute(
                _PG_INSERT_CALLBACKS,
                {
                    "ids": [row["message_id"] for row in rows],
                    "push_types": [row["push_type"] for row in rows],
                    "devices": [row["device_id"] for row in rows],
                    "bodies": [json.dumps(row["body"]) for row in rows],
                    "now": rows[0]["received_at"],
                },
            )
            return set(result.scalars())
        ids = [row["message_id"] for row in rows]
        existing = set(
            (
                await conn.execute(
                    select(_callbacks.c.message_id).where(_callbacks.c.message_id.in_(ids))
                )
            ).scalars()
        )
        fresh = [row for row in rows if row["message_id"] not in existing]
        if fresh:
            await conn.execute(_callbacks.insert(), fresh)
        return {row["message_id"] for row in fresh}

    async def load_callbacks(self, message_ids: Iterable[str]) -> dict[str, StoredCallback]:
        ids = list(dict.fromkeys(message_ids))
        found: dict[str, StoredCallback] = {}
        if not ids:
            return found
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                result = await conn.execute(
                    select(_callbacks).where(_callbacks.c.message_id.in_(chunk))
                )
                for row in result:
                    found[row.message_id] = _stored_callback(row)
        return found

    async def plan_callbacks(
        self,
        planned: Mapping[str, Sequence[NoticeLike]],
        now: datetime,
        *,
        claim: bool = True,
    ) -> list[OutboxRow]:
        """Add the outbox rows of planned callbacks and mark those callbacks planned.

        One transaction. A (message id, sender) pair already in the outbox is left
        alone, so planning a callback twice never makes a second message. With
        ``claim`` the new rows are inserted already claimed for their first attempt
        (state sending, attempts 1): inserting them is the compare-and-set, as nobody
        else can hold a row that did not exist. Returns the rows this call inserted.
        """
        _require_aware(now)
        rows: list[dict[str, Any]] = []
        for message_id, notices in planned.items():
            seen: set[str] = set()
            for notice in notices:
                if notice.sender_id in seen:
                    continue  # one message per conversation, whatever the planner says
                seen.add(notice.sender_id)
                rows.append(
                    {
                        "id": str(uuid.uuid4()),
                        "message_id": message_id,
                        "sender_id": notice.sender_id,
                        "channel": notice.channel,
                        "thinq_user": notice.thinq_user,
                        "device_id": notice.device_id,
                        "kind": notice.kind,
                        "response": notice.response,
                        "params": dict(notice.params),
                        "text": notice.text,
                        "state": SENDING if claim else PENDING,
                        "attempts": 1 if claim else 0,
                        "next_attempt_at": None if claim else now,
                        "claimed_at": now if claim else None,
                        "last_error": None,
                        "created_at": now,
                        "delivered_at": None,
                        "history_recorded_at": None,
                    }
                )
        inserted: list[OutboxRow] = []
        message_ids = list(planned)
        async with self._writing() as conn:
            for chunk in _chunks(rows):
                inserted += await self._insert_new_outbox(conn, chunk)
            for chunk in _chunks(message_ids):
                await conn.execute(
                    update(_callbacks)
                    .where(_callbacks.c.message_id.in_(chunk), _callbacks.c.state == RECEIVED)
                    .values(state=PLANNED, planned_at=now)
                )
        return inserted

    async def _insert_new_outbox(
        self, conn: AsyncConnection, rows: Sequence[dict[str, Any]]
    ) -> list[OutboxRow]:
        if self._postgres:
            first = rows[0]
            result = await conn.execute(
                _PG_INSERT_OUTBOX,
                {
                    **{column: [row[column] for row in rows] for column in _PG_OUTBOX_ARRAYS},
                    "params": [json.dumps(row["params"]) for row in rows],
                    # One plan_callbacks call inserts every row in the same state.
                    "state": first["state"],
                    "attempts": first["attempts"],
                    "next_attempt_at": first["next_attempt_at"],
                    "claimed_at": first["claimed_at"],
                    "created_at": first["created_at"],
                },
            )
            inserted = set(result.scalars())
            return [OutboxRow(**row) for row in rows if row["id"] in inserted]
        message_ids = list({row["message_id"] for row in rows})
        existing = {
            (row.message_id, row.sender_id)
            for row in await conn.execute(
                select(_outbox.c.message_id, _outbox.c.sender_id).where(
                    _outbox.c.message_id.in_(message_ids)
                )
            )
        }
        fresh = [row for row in rows if (row["message_id"], row["sender_id"]) not in existing]
        if not fresh:
            return []
        await conn.execute(_outbox.insert(), fresh)
        return [OutboxRow(**row) for row in fresh]

    async def stale_received(self, before: datetime, limit: int = 500) -> list[str]:
        """Callbacks still waiting to be planned that arrived before ``before``, oldest first."""
        _require_aware(before, "before")
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(_callbacks.c.message_id)
                .where(_callbacks.c.state == RECEIVED, _callbacks.c.received_at < before)
                .order_by(_callbacks.c.received_at)
                .limit(limit)
            )
            return list(result.scalars())

    # -- outbox attempts --------------------------------------------------------------

    async def claim(
        self,
        outbox_ids: Iterable[str],
        now: datetime,
        *,
        only_due: bool = False,
        takeover_before: datetime | None = None,
    ) -> list[OutboxRow]:
        """Claim rows for an attempt: pending -> sending, attempts + 1, claimed_at = now.

        Only rows still pending are taken (and, with ``only_due``, only those whose
        next_attempt_at has come). With ``takeover_before``, a row left 'sending' by a
        claim older than that is taken over too (its worker is presumed dead). Returns
        the rows this call claimed; a row another worker holds is simply not among them.
        """
        _require_aware(now)
        ids = list(dict.fromkeys(outbox_ids))
        if not ids:
            return []
        takeable: ColumnElement[bool] = _outbox.c.state == PENDING
        if only_due:
            takeable = and_(takeable, _outbox.c.next_attempt_at <= now)
        if takeover_before is not None:
            _require_aware(takeover_before, "takeover_before")
            takeable = or_(
                takeable,
                and_(_outbox.c.state == SENDING, _outbox.c.claimed_at < takeover_before),
            )
        claimed: list[OutboxRow] = []
        async with self._writing() as conn:
            for chunk in _chunks(ids):
                rows = await self._update_returning(
                    conn,
                    and_(_outbox.c.id.in_(chunk), takeable),
                    {
                        "state": SENDING,
                        "attempts": _outbox.c.attempts + 1,
                        "claimed_at": now,
                        "next_attempt_at": None,
                    },
                )
                claimed += [_outbox_row(row) for row in rows]
        return claimed

    async def finish(self, outcomes: Sequence[AttemptOutcome], now: datetime) -> None:
        """Record how attempts ended, in one transaction.

        Delivered wins over anything but an earlier delivery (a message that reached the
        channel has been delivered, whoever sent it). Retries and failures only apply if
        the row is still held by the same claim (state sending, same attempt number).
        """
        _require_aware(now)
        delivered = [o.outbox_id for o in outcomes if o.state == DELIVERED]
        others = [
            {
                "b_id": o.outbox_id,
                "b_attempt": o.attempt,
                "b_state": o.state,
                "b_error": o.error,
                "b_next": o.next_attempt_at,
            }
            for o in outcomes
            if o.state != DELIVERED
        ]
        for outcome in outcomes:
            if outcome.state not in (DELIVERED, PENDING, FAILED):
                raise ValueError(f"an attempt cannot end in state {outcome.state!r}")
            if outcome.state == PENDING and outcome.next_attempt_at is None:
                raise ValueError("a retry needs next_attempt_at")
        async with self._writing() as conn:
            for chunk in _chunks(delivered):
                await conn.execute(
                    update(_outbox)
                    .where(_outbox.c.id.in_(chunk), _outbox.c.state != DELIVERED)
                    .values(state=DELIVERED, delivered_at=now, next_attempt_at=None)
                )
            if others:
                # executemany: one round trip for every retry and failure of the batch.
                await conn.execute(
                    update(_outbox)
                    .where(
                        _outbox.c.id == bindparam("b_id"),
                        _outbox.c.state == SENDING,
                        _outbox.c.attempts == bindparam("b_attempt"),
                    )
                    .values(
                        state=bindparam("b_state"),
                        last_error=bindparam("b_error"),
                        next_attempt_at=bindparam("b_next"),
                    ),
                    others,
                )

    async def reserve_due(self, now: datetime, hold_until: datetime, limit: int = 500) -> list[str]:
        """Pending rows whose retry time has come, reserved for re-queueing by this caller.

        Reserving moves next_attempt_at to ``hold_until`` (compare-and-set on the row
        still being due), so among concurrent schedulers exactly one re-queues a row;
        if that queue item is lost, the row becomes due again at ``hold_until``.
        """
        _require_aware(now)
        _require_aware(hold_until, "hold_until")
        due = (
            select(_outbox.c.id)
            .where(_outbox.c.state == PENDING, _outbox.c.next_attempt_at <= now)
            .order_by(_outbox.c.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._writing() as conn:
            rows = await self._update_returning(
                conn,
                and_(
                    _outbox.c.id.in_(due),
                    _outbox.c.state == PENDING,
                    _outbox.c.next_attempt_at <= now,
                ),
                {"next_attempt_at": hold_until},
            )
        return [row.id for row in rows]

    async def release_stale_sending(self, before: datetime, now: datetime) -> list[str]:
        """Rows claimed before ``before`` and never finished (their worker died): pending now.

        Returns their ids so the caller can queue them at once.
        """
        _require_aware(before, "before")
        _require_aware(now)
        async with self._writing() as conn:
            rows = await self._update_returning(
                conn,
                and_(_outbox.c.state == SENDING, _outbox.c.claimed_at < before),
                {"state": PENDING, "next_attempt_at": now},
            )
        return [row.id for row in rows]

    async def unfinished_for(self, message_ids: Iterable[str]) -> list[str]:
        """Outbox ids of these callbacks not yet delivered or failed."""
        ids = list(dict.fromkeys(message_ids))
        found: list[str] = []
        if not ids:
            return found
        async with self._engine.connect() as conn:
            for chunk in _chunks(ids):
                result = await conn.execute(
                    select(_outbox.c.id).where(
                        _outbox.c.message_id.in_(chunk),
                        _outbox.c.state.in_((PENDING, SENDING)),
                    )
                )
                found += list(result.scalars())
        return found

    # -- conversation history -----------------------------------------------------------

    async def claim_history(
        self, delivered_since: datetime, now: datetime, limit: int = 200
    ) -> list[OutboxRow]:
        """Delivered rows not yet in the conversation history, claimed by setting
        history_recorded_at = now (compare-and-set on it being NULL), oldest first."""
        _require_aware(delivered_since, "delivered_since")
        _require_aware(now)
        waiting = (
            select(_outbox.c.id)
            .where(
                _outbox.c.state == DELIVERED,
                _outbox.c.history_recorded_at.is_(None),
                _outbox.c.delivered_at >= delivered_since,
            )
            .order_by(_outbox.c.delivered_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        async with self._writing() as conn:
            rows = await self._update_returning(
                conn,
                and_(_outbox.c.id.in_(waiting), _outbox.c.history_recorded_at.is_(None)),
                {"history_recorded_at": now},
            )
        return sorted((_outbox_row(row) for row in rows), key=lambda r: (r.delivered_at, r.id))

    async def release_history(self, outbox_ids: Iterable[str]) -> None:
        """Undo :meth:`claim_history` for rows whose history could not be recorded."""
        ids = list(dict.fromkeys(outbox_ids))
        if not ids:
            return
        async with self._writing() as conn:
            for chunk in _chunks(ids):
                await conn.execute(
                    update(_outbox).where(_outbox.c.id.in_(chunk)).values(history_recorded_at=None)
                )

    # -- inspection ---------------------------------------------------------------------

    async def get(self, outbox_id: str) -> OutboxRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(_outbox).where(_outbox.c.id == outbox_id))).first()
        return None if row is None else _outbox_row(row)

    async def count_by_state(self) -> dict[str, int]:
        """Outbox rows per state, every state present (0 when none)."""
        counts = dict.fromkeys(OUTBOX_STATES, 0)
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(_outbox.c.state, func.count()).group_by(_outbox.c.state)
            )
            for state, count in result:
                counts[state] = int(count)
        return counts

    async def oldest_waiting(self) -> tuple[datetime | None, datetime | None]:
        """When the oldest message still waiting for delivery (pending or sending) was
        made, and when the oldest callback not yet planned arrived (None: none waiting)."""
        async with self._engine.connect() as conn:
            outbox = await conn.execute(
                select(func.min(_outbox.c.created_at)).where(
                    _outbox.c.state.in_((PENDING, SENDING))
                )
            )
            callbacks = await conn.execute(
                select(func.min(_callbacks.c.received_at)).where(_callbacks.c.state == RECEIVED)
            )
            return _aware_or_none(outbox.scalar()), _aware_or_none(callbacks.scalar())

    async def count_callbacks_by_state(self) -> dict[str, int]:
        counts = dict.fromkeys((RECEIVED, PLANNED), 0)
        async with self._engine.connect() as conn:
            result = await conn.execute(
                select(_callbacks.c.state, func.count()).group_by(_callbacks.c.state)
            )
            for state, count in result:
                counts[state] = int(count)
        return counts

    async def list_outbox(
        self,
        *,
        sender_id: str | None = None,
        state: str | None = None,
        message_id: str | None = None,
        limit: int = 50,
    ) -> list[OutboxRow]:
        """Outbox rows, newest first, optionally for one sender / state / callback."""
        if state is not None and state not in OUTBOX_STATES:
            raise ValueError(f"state must be one of {', '.join(OUTBOX_STATES)}; got {state!r}")
        statement = select(_outbox)
        if sender_id is not None:
            statement = statement.where(_outbox.c.sender_id == sender_id)
        if state is not None:
            statement = statement.where(_outbox.c.state == state)
        if message_id is not None:
            statement = statement.where(_outbox.c.message_id == message_id)
        statement = statement.order_by(_outbox.c.created_at.desc(), _outbox.c.id).limit(limit)
        async with self._engine.connect() as conn:
            return [_outbox_row(row) for row in await conn.execute(statement)]


def _aware_or_none(value: datetime | None) -> datetime | None:
    """min() over a UTCDateTime column bypasses its type on SQLite: mark naive as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
