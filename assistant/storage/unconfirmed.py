"""Commands whose outcome is unknown (``unconfirmed_controls``).

A control that timed out, or that LG answered with a server error or 2209 "device
response delay", may or may not have reached the appliance. It is recorded here; the next
command to that appliance reads its state first (``ApplianceAssistant._execute``), so a
user who says it again never gets the command done twice blindly. A confirmed command
clears the record; records older than ``ttl`` are ignored (by then the state has long
shown what happened).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from assistant.storage.db import write_transaction
from assistant.storage.models import UnconfirmedControl

_table = UnconfirmedControl.__table__
DEFAULT_TTL = timedelta(minutes=15)


class UnconfirmedControlRepository:
    def __init__(self, engine: AsyncEngine, ttl: timedelta = DEFAULT_TTL) -> None:
        self._engine = engine
        self._ttl = ttl

    def __repr__(self) -> str:
        return f"UnconfirmedControlRepository({self._engine.dialect.name})"

    async def record(
        self, device_id: str, thinq_user: str, changes: dict[str, Any], now: datetime
    ) -> None:
        values = {"thinq_user": thinq_user, "changes": changes, "sent_at": now}
        insert = pg_insert if self._engine.dialect.name == "postgresql" else sqlite_insert
        async with write_transaction(self._engine) as conn:
            await conn.execute(
                insert(_table)
                .values(device_id=device_id, **values)
                .on_conflict_do_update(index_elements=[_table.c.device_id], set_=values)
            )

    async def get(self, device_id: str, now: datetime) -> dict[str, Any] | None:
        """The changes of the device's unconfirmed command, if one is recent."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(_table).where(_table.c.device_id == device_id))
            ).first()
        if row is None or row.sent_at < now - self._ttl:
            return None
        return dict(row.changes or {})

    async def clear(self, device_id: str) -> None:
        async with write_transaction(self._engine) as conn:
            await conn.execute(delete(_table).where(_table.c.device_id == device_id))
