"""The durable part of proactive delivery: LG callbacks as received, and the outbox.

* ``lg_callbacks``: every accepted callback, written before LG gets its 2xx; the
  message id is the primary key, so a redelivered callback is recognised.
* ``outbox``: one row per conversation to tell, unique per (callback, sender), with
  its delivery state: pending -> sending -> delivered, or failed with the reason.

State changes are compare-and-set UPDATEs, so two workers handed the same row
(a redelivered queue entry) cannot both send it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from assistant.notifications import Notice
from assistant.storage.db import dialect_insert
from assistant.storage.models import LgCallbackRecord, OutboxMessage

_callbacks = LgCallbackRecord.__table__
_outbox = OutboxMessage.__table__

PENDING, SENDING, DELIVERED, FAILED = "pending", "sending", "delivered", "failed"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class OutboxRow:
    id: str
    message_id: str
    sender_id: str
    channel: str | None
    device_id: str
    response: str
    text: str
    state: str
    attempts: int
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


def _row(r: Any) -> OutboxRow:
    return OutboxRow(
        id=r.id,
        message_id=r.message_id,
        sender_id=r.sender_id,
        channel=r.channel,
        device_id=r.device_id,
        response=r.response,
        text=r.text,
        state=r.state,
        attempts=r.attempts,
        last_error=r.last_error,
        created_at=r.created_at,
        delivered_at=r.delivered_at,
    )


class OutboxStore:
    def __init__(self, session_factory: sessionmaker) -> None:
        self._sessions = session_factory

    # --- callbacks ------------------------------------------------------------------------

    async def record_callback(
        self, message_id: str, push_type: str, device_id: str, body: dict[str, Any]
    ) -> bool:
        """Store a callback; False if this message id was stored before (a redelivery)."""
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(
                    insert(_callbacks).values(
                        message_id=message_id,
                        push_type=push_type,
                        device_id=device_id,
                        body=body,
                        received_at=utcnow(),
                        state="received",
                    )
                )
        except IntegrityError:
            return False
        return True

    async def callback_body(self, message_id: str) -> tuple[str, dict[str, Any]] | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(_callbacks.c.state, _callbacks.c.body).where(
                        _callbacks.c.message_id == message_id
                    )
                )
            ).first()
            return None if row is None else (row.state, row.body)

    async def save_plan(self, message_id: str, notices: Iterable[Notice]) -> list[str]:
        """Add one outbox row per notice (a replay adds none) and mark the callback planned.

        Returns the ids of this callback's rows still waiting to be sent.
        """
        now = utcnow()
        async with self._sessions() as session, session.begin():
            for notice in notices:
                statement = dialect_insert(session, _outbox).values(
                    id=str(uuid.uuid4()),
                    message_id=message_id,
                    sender_id=notice.sender_id,
                    channel=notice.channel,
                    thinq_user=notice.thinq_user,
                    device_id=notice.device_id,
                    kind=notice.kind,
                    response=notice.response,
                    params=notice.params,
                    text=notice.text,
                    state=PENDING,
                    attempts=0,
                    next_attempt_at=None,
                    created_at=now,
                )
                await session.execute(statement.on_conflict_do_nothing())
            await session.execute(
                update(_callbacks)
                .where(_callbacks.c.message_id == message_id)
                .values(state="planned", planned_at=now)
            )
            rows = await session.execute(
                select(_outbox.c.id)
                .where(_outbox.c.message_id == message_id, _outbox.c.state == PENDING)
                .order_by(_outbox.c.sender_id)
            )
            return [r.id for r in rows]

    async def unplanned(self, older_than: timedelta, limit: int = 500) -> list[str]:
        """Callbacks stored but never planned (the process died before): to queue again."""
        cutoff = utcnow() - older_than
        async with self._sessions() as session:
            rows = await session.execute(
                select(_callbacks.c.message_id)
                .where(_callbacks.c.state == "received", _callbacks.c.received_at <= cutoff)
                .order_by(_callbacks.c.received_at)
                .limit(limit)
            )
            return [r.message_id for r in rows]

    # --- outbox rows --------------------------------------------------------------------------

    async def claim(self, row_id: str, reclaim_after: timedelta) -> OutboxRow | None:
        """Take a row for one delivery attempt, or None if it is not ours to send.

        A pending row is taken; a 'sending' row only when its claim is older than
        ``reclaim_after`` (the worker that took it died mid-send).
        """
        now = utcnow()
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_outbox)
                .where(
                    _outbox.c.id == row_id,
                    or_(
                        _outbox.c.state == PENDING,
                        (_outbox.c.state == SENDING)
                        & (_outbox.c.claimed_at <= now - reclaim_after),
                    ),
                )
                .values(
                    state=SENDING,
                    claimed_at=now,
                    next_attempt_at=None,
                    attempts=_outbox.c.attempts + 1,
                )
            )
            if result.rowcount != 1:
                return None
            row = (await session.execute(select(_outbox).where(_outbox.c.id == row_id))).one()
            return _row(row)

    async def mark_delivered(self, row_id: str) -> None:
        await self._finish(row_id, state=DELIVERED, delivered_at=utcnow(), last_error=None)

    async def mark_failed(self, row_id: str, reason: str) -> None:
        await self._finish(row_id, state=FAILED, last_error=reason[:1000])

    async def schedule_retry(self, row_id: str, reason: str, at: datetime) -> None:
        await self._finish(row_id, state=PENDING, last_error=reason[:1000], next_attempt_at=at)

    async def _finish(self, row_id: str, **values: Any) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(_outbox)
                .where(_outbox.c.id == row_id, _outbox.c.state == SENDING)
                .values(claimed_at=None, **values)
            )

    async def take_due_retries(self, limit: int = 200) -> list[str]:
        """Pending rows whose retry time has come, each handed out once (compare-and-set)."""
        now = utcnow()
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(_outbox.c.id, _outbox.c.next_attempt_at)
                    .where(_outbox.c.state == PENDING, _outbox.c.next_attempt_at <= now)
                    .order_by(_outbox.c.next_attempt_at)
                    .limit(limit)
                )
            ).all()
        taken = []
        for row in rows:
            async with self._sessions() as session, session.begin():
                result = await session.execute(
                    update(_outbox)
                    .where(_outbox.c.id == row.id, _outbox.c.next_attempt_at == row.next_attempt_at)
                    .values(next_attempt_at=None)
                )
                if result.rowcount == 1:
                    taken.append(row.id)
        return taken

    async def release_stale_claims(self, older_than: timedelta) -> int:
        """'sending' rows whose worker died: pending again, due now (same id, so idempotent)."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_outbox)
                .where(_outbox.c.state == SENDING, _outbox.c.claimed_at <= now - older_than)
                .values(state=PENDING, claimed_at=None, next_attempt_at=now)
            )
            return result.rowcount

    async def requeue_orphans(self, older_than: timedelta) -> int:
        """Pending rows with no retry time that nobody took (lost with a dead process)."""
        now = utcnow()
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_outbox)
                .where(
                    _outbox.c.state == PENDING,
                    _outbox.c.next_attempt_at.is_(None),
                    _outbox.c.created_at <= now - older_than,
                )
                .values(next_attempt_at=now)
            )
            return result.rowcount

    async def counts(self) -> dict[str, int]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(_outbox.c.state, func.count()).group_by(_outbox.c.state)
            )
            return {state: count for state, count in rows}

    async def rows(
        self, *, sender_id: str | None = None, state: str | None = None, limit: int = 50
    ) -> list[OutboxRow]:
        query = select(_outbox).order_by(_outbox.c.created_at.desc()).limit(limit)
        if sender_id:
            query = query.where(_outbox.c.sender_id == sender_id)
        if state:
            query = query.where(_outbox.c.state == state)
        async with self._sessions() as session:
            return [_row(r) for r in await session.execute(query)]
