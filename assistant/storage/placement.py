"""v2 placement requests and their per-device results (tables ``placement_requests`` and
``placement_results``).

The connector's callback receiver calls :meth:`PlacementRepository.record` for every
placement callback, whenever it comes: duplicates are stored once (``INSERT … ON CONFLICT
DO NOTHING`` on request and device), and a result after the request's deadline is kept
and marked late rather than dropped. The turn that made the request registers it with
:meth:`PlacementRepository.expect` and reads :meth:`PlacementRepository.results` while it
gathers (``assistant/correlation.py``). The database is the meeting point because the
receiver (connector) and the waiter (action server) are different processes; Redis, when
configured, only wakes the waiter up sooner.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from assistant.storage.db import write_transaction
from assistant.storage.models import PlacementRequest, PlacementResult, utcnow

_requests = PlacementRequest.__table__
_results = PlacementResult.__table__
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class DeviceResult:
    """One device's answer to a placement request."""

    request_id: str
    device_id: str
    push_type: str
    ok: bool
    device_type: str | None = None
    error_code: str | None = None
    result: Any = field(default=None, compare=False)
    received_at: datetime | None = None


@dataclass(frozen=True)
class ExpectedRequest:
    request_id: str
    thinq_user: str
    kind: str
    expected: tuple[str, ...]
    deadline: datetime
    sender_id: str | None
    channel: str | None
    reported_missing: tuple[str, ...] | None


@dataclass(frozen=True)
class Recorded:
    """What :meth:`PlacementRepository.record` did: ``new`` (not a duplicate) and
    ``late`` (after the request's deadline; False when no request is registered yet)."""

    new: bool
    late: bool
    request: ExpectedRequest | None


def _check_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS:
        raise ValueError(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters")
    return value


def _request(row: Any) -> ExpectedRequest:
    return ExpectedRequest(
        request_id=row.request_id,
        thinq_user=row.thinq_user,
        kind=row.kind,
        expected=tuple(row.expected or ()),
        deadline=row.deadline,
        sender_id=row.sender_id,
        channel=row.channel,
        reported_missing=(
            tuple(row.reported_missing) if row.reported_missing is not None else None
        ),
    )


class PlacementRepository:
    """Repository over the two placement tables; safe to share within a process."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"

    def __repr__(self) -> str:
        return f"PlacementRepository({self._engine.dialect.name})"

    async def expect(
        self,
        request_id: str,
        thinq_user: str,
        kind: str,
        device_ids: Sequence[str],
        deadline: datetime,
        *,
        sender_id: str | None = None,
        channel: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Register a request whose callbacks a turn is about to gather."""
        _check_id("request_id", request_id)
        if deadline.tzinfo is None:
            raise ValueError("deadline must be timezone-aware (UTC)")
        async with write_transaction(self._engine) as conn:
            insert = pg_insert if self._postgres else sqlite_insert
            await conn.execute(
                insert(_requests)
                .values(
                    request_id=request_id,
                    thinq_user=thinq_user,
                    kind=kind,
                    expected=list(device_ids),
                    deadline=deadline,
                    sender_id=sender_id,
                    channel=channel,
                    reported_missing=None,
                    created_at=now or utcnow(),
                )
                .on_conflict_do_nothing(index_elements=[_requests.c.request_id])
            )

    async def record(self, result: DeviceResult, now: datetime | None = None) -> Recorded:
        """Store one device's callback (once); says whether it was new and late."""
        _check_id("request_id", result.request_id)
        _check_id("device_id", result.device_id)
        now = now or utcnow()
        async with write_transaction(self._engine) as conn:
            insert = pg_insert if self._postgres else sqlite_insert
            inserted = await conn.execute(
                insert(_results)
                .values(
                    request_id=result.request_id,
                    device_id=result.device_id,
                    device_type=result.device_type,
                    push_type=result.push_type,
                    ok=result.ok,
                    error_code=result.error_code,
                    result=result.result,
                    received_at=now,
                )
                .on_conflict_do_nothing(
                    index_elements=[_results.c.request_id, _results.c.device_id]
                )
            )
            row = (
                await conn.execute(
                    select(_requests).where(_requests.c.request_id == result.request_id)
                )
            ).first()
        request = _request(row) if row is not None else None
        late = request is not None and now > request.deadline
        return Recorded(new=inserted.rowcount > 0, late=late, request=request)

    async def results(self, request_id: str) -> list[DeviceResult]:
        """Every device's stored answer to ``request_id``, in arrival order."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(_results).where(_results.c.request_id == request_id).order_by(_results.c.id)
            )
            return [
                DeviceResult(
                    request_id=r.request_id,
                    device_id=r.device_id,
                    push_type=r.push_type,
                    ok=r.ok,
                    device_type=r.device_type,
                    error_code=r.error_code,
                    result=r.result,
                    received_at=r.received_at,
                )
                for r in rows
            ]

    async def request(self, request_id: str) -> ExpectedRequest | None:
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_requests).where(_requests.c.request_id == request_id))
            ).first()
        return _request(row) if row is not None else None

    async def report_missing(self, request_id: str, device_ids: Sequence[str]) -> None:
        """Remember which devices the user was told did not answer."""
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                update(_requests)
                .where(_requests.c.request_id == request_id)
                .values(reported_missing=list(device_ids))
            )

    async def prune(self, older_than: timedelta, now: datetime | None = None) -> int:
        """Forget requests and results older than ``older_than``; returns rows deleted."""
        cutoff = (now or utcnow()) - older_than
        async with write_transaction(self._engine) as conn:
            results = await conn.execute(delete(_results).where(_results.c.received_at < cutoff))
            requests = await conn.execute(delete(_requests).where(_requests.c.created_at < cutoff))
        return int(results.rowcount or 0) + int(requests.rowcount or 0)
