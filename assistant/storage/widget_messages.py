"""The chat widget's message log (tables ``widget_messages`` and ``widget_read_markers``).

A browser chat widget is closed most of the time and reloaded often. So that it can show
what arrived while it was closed (a proactive "your washer is done") and, after a reload,
the recent conversation, every message of a widget conversation, the user's and the
bot's, is logged here, and each conversation has a read marker: the id of the newest
message it has seen, from which the widget's unread badge is counted.

* :meth:`WidgetMessageRepository.append` is idempotent by ``key`` (``INSERT … ON CONFLICT
  DO NOTHING``, then the stored row is returned): the delivery worker may hand the same
  outbox row over twice, and the browser must see one message with one id.
* Each conversation's log is capped at its newest ``keep_per_sender`` messages (trimmed in
  the appending transaction) and messages older than ``keep_days`` are removed by
  :meth:`WidgetMessageRepository.prune`: the log is for showing recent context, not an
  archive.
* Ids only grow (AUTOINCREMENT on SQLite, a sequence on PostgreSQL), so the browser can
  ask for "everything after the id I have" and a read marker stays meaningful.

Writes go through :func:`~assistant.storage.db.write_transaction`: on SQLite it holds the
database's write lock from the first statement, on PostgreSQL appends of one sender take
turns on an advisory lock, so concurrent appends of the same key store one row and their
trims never lock rows in opposite orders. Plain SQLAlchemy Core over the engine (one
short transaction per call), like :mod:`assistant.storage.alexa_inbox`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from assistant.storage.db import write_transaction
from assistant.storage.models import WidgetMessageRecord, WidgetReadMarker, utcnow
from assistant.storage.retention import Retention, aware_now, lock_sender, trim_to_newest

_messages = WidgetMessageRecord.__table__
_markers = WidgetReadMarker.__table__

USER = "user"
BOT = "bot"
ROLES = (USER, BOT)
MAX_SENDER_CHARS = 255
MAX_KEY_CHARS = 128
MAX_TEXT_CHARS = 4000
MAX_BUTTONS = 10
MAX_TITLE_CHARS = 80
MAX_PAYLOAD_CHARS = 1000
MAX_LIMIT = 1000
DEFAULT_KEEP_PER_SENDER = 200
DEFAULT_KEEP_DAYS = 30


@dataclass(frozen=True)
class WidgetMessage:
    """A logged widget message, as the repository hands it out."""

    id: int
    sender_id: str
    role: str
    text: str
    buttons: tuple[dict[str, str], ...]
    proactive: bool
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """What the browser gets: no sender id (the browser knows its own conversation),
        ``created_at`` as ISO-8601 UTC with a ``Z`` (what JavaScript's ``Date`` emits)."""
        created_at = self.created_at.astimezone(timezone.utc).replace(tzinfo=None)
        return {
            "id": self.id,
            "role": self.role,
            "text": self.text,
            "buttons": [dict(button) for button in self.buttons],
            "proactive": self.proactive,
            "created_at": created_at.isoformat(timespec="milliseconds") + "Z",
        }


# -- validation -----------------------------------------------------------------------


def _check_sender(sender_id: object) -> str:
    if not isinstance(sender_id, str) or not sender_id or len(sender_id) > MAX_SENDER_CHARS:
        raise ValueError(
            f"sender_id must be a non-empty string of at most {MAX_SENDER_CHARS} characters"
        )
    return sender_id


def _check_key(key: object) -> str | None:
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS):
        raise ValueError(
            f"key must be None or a non-empty string of at most {MAX_KEY_CHARS} characters"
        )
    return key


def _check_role(role: object) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}; got {role!r}")
    return role  # type: ignore[return-value]


def _check_text(text: object) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"text must be at most {MAX_TEXT_CHARS} characters; got {len(text)}")
    return text


def _check_buttons(buttons: object) -> tuple[dict[str, str], ...]:
    """The buttons as plain ``{"title", "payload"}`` dicts (other keys are dropped: the
    widget renders only these two)."""
    if isinstance(buttons, (str, bytes, Mapping)) or not isinstance(buttons, Sequence):
        raise ValueError("buttons must be a list of {'title': str, 'payload': str} mappings")
    if len(buttons) > MAX_BUTTONS:
        raise ValueError(f"at most {MAX_BUTTONS} buttons are allowed; got {len(buttons)}")
    checked = []
    for index, button in enumerate(buttons):
        if not isinstance(button, Mapping):
            raise ValueError(f"button {index} must be a mapping with 'title' and 'payload'")
        title, payload = button.get("title"), button.get("payload")
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
            raise ValueError(
                f"button {index}: title must be a non-empty string of at most "
                f"{MAX_TITLE_CHARS} characters"
            )
        if not isinstance(payload, str) or not payload or len(payload) > MAX_PAYLOAD_CHARS:
            raise ValueError(
                f"button {index}: payload must be a non-empty string of at most "
                f"{MAX_PAYLOAD_CHARS} characters"
            )
        checked.append({"title": title, "payload": payload})
    return tuple(checked)


def _check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bounds = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ValueError(f"{name} must be an integer {bounds}; got {value!r}")
    return value


def _message(row: Row) -> WidgetMessage:
    return WidgetMessage(
        id=row.id,
        sender_id=row.sender_id,
        role=row.role,
        text=row.text,
        buttons=tuple(
            {"title": str(b["title"]), "payload": str(b["payload"])}
            for b in json.loads(row.buttons or "[]")
        ),
        proactive=bool(row.proactive),
        created_at=row.created_at,
    )


class WidgetMessageRepository:
    """Repository over ``widget_messages`` and ``widget_read_markers``; safe to share within
    a process.

    ``keep_per_sender`` caps each conversation's log (the oldest messages go first) and
    ``keep_days`` is how long :meth:`prune` keeps a message.
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
        return f"WidgetMessageRepository({self._engine.dialect.name})"

    # -- writing --------------------------------------------------------------------

    async def append(
        self,
        sender_id: str,
        role: str,
        text: str,
        buttons: Sequence[Mapping[str, str]] = (),
        *,
        key: str | None = None,
        proactive: bool = False,
        now: datetime | None = None,
    ) -> WidgetMessage:
        """Log a message of ``sender_id``'s conversation and return it with its id.

        With a ``key`` already stored, nothing is inserted and the stored message is
        returned (same id, stored text), so a redelivered proactive message shows once.
        A key stored for another conversation is refused (ValueError) rather than
        handing that conversation's message out. The sender's log is trimmed to its
        newest ``keep_per_sender`` messages in the same transaction.
        """
        _check_sender(sender_id)
        _check_key(key)
        _check_role(role)
        _check_text(text)
        checked_buttons = _check_buttons(buttons)
        if not isinstance(proactive, bool):
            raise ValueError(f"proactive must be a bool; got {proactive!r}")
        created_at = aware_now(now)
        values = {
            "key": key,
            "sender_id": sender_id,
            "role": role,
            "text": text,
            "buttons": json.dumps(list(checked_buttons), ensure_ascii=False),
            "proactive": proactive,
            "created_at": created_at,
        }
        async with write_transaction(self._engine) as conn:
            # Appends of one sender take turns: a second append of the same key then finds
            # the first one committed, and two trims never lock rows in opposite orders.
            await lock_sender(conn, _messages.name, sender_id)
            # Twice at most: on PostgreSQL a conflicting row may be deleted (pruned) between
            # the insert that saw it and the read; the second insert then succeeds.
            for _attempt in range(2):
                new_id = await self._insert(conn, values)
                if new_id is not None:
                    await trim_to_newest(conn, _messages, sender_id, self.retention.keep_per_sender)
                    return WidgetMessage(
                        id=new_id,
                        sender_id=sender_id,
                        role=role,
                        text=text,
                        buttons=checked_buttons,
                        proactive=proactive,
                        created_at=created_at,
                    )
                row = (await conn.execute(select(_messages).where(_messages.c.key == key))).first()
                if row is not None:
                    if row.sender_id != sender_id:
                        raise ValueError(f"key {key!r} is already used by another conversation")
                    return _message(row)
        raise RuntimeError(f"widget message with key {key!r} was neither stored nor found")

    async def _insert(self, conn: AsyncConnection, values: dict[str, Any]) -> int | None:
        """The new row's id, or None when ``values["key"]`` is already stored."""
        insert = pg_insert if self._postgres else sqlite_insert
        # A NULL key never conflicts: messages without a key are always inserted.
        statement = (
            insert(_messages).values(**values).on_conflict_do_nothing(index_elements=["key"])
        )
        if self._postgres:
            return (await conn.execute(statement.returning(_messages.c.id))).scalar_one_or_none()
        result = await conn.execute(statement)
        return int(result.lastrowid) if result.rowcount > 0 else None

    async def mark_read(self, sender_id: str, up_to_id: int) -> int:
        """Record that the conversation has seen its messages up to ``up_to_id``; returns
        the stored marker.

        The marker never moves back (a stale tab reporting an old id must not bring back
        the unread badge) and never past the sender's newest message (an id the browser
        made up, or another conversation's, must not hide messages not yet written).
        """
        _check_sender(sender_id)
        _check_int("up_to_id", up_to_id, 0)
        now = utcnow()
        current = select(_markers.c.last_read_id).where(_markers.c.sender_id == sender_id)
        async with write_transaction(self._engine) as conn:
            newest = (
                await conn.execute(
                    select(func.max(_messages.c.id)).where(_messages.c.sender_id == sender_id)
                )
            ).scalar()
            target = min(up_to_id, newest or 0)
            if target > 0:
                insert = pg_insert if self._postgres else sqlite_insert
                statement = insert(_markers).values(
                    sender_id=sender_id, last_read_id=target, updated_at=now
                )
                larger = func.greatest if self._postgres else func.max  # SQLite: scalar max()
                statement = statement.on_conflict_do_update(
                    index_elements=[_markers.c.sender_id],
                    set_={
                        "last_read_id": larger(
                            _markers.c.last_read_id, statement.excluded.last_read_id
                        ),
                        "updated_at": now,
                    },
                )
                await conn.execute(statement)
            stored = (await conn.execute(current)).scalar_one_or_none()
        return int(stored or 0)

    async def prune(self, now: datetime | None = None) -> int:
        """Delete every conversation's messages older than ``keep_days``, and the read
        markers of conversations left without messages; how many rows (of both) went.

        The log is context for a reopened widget, not an archive; a periodic sweep keeps
        conversations nobody reopens from lingering.
        """
        cutoff = self.retention.cutoff(now)
        expired = select(_messages.c.id).where(_messages.c.created_at < cutoff)
        if self._postgres:
            # Rows another transaction holds are being deleted (trimmed) already; skipping
            # them means prune never waits for, or deadlocks with, an append.
            expired = expired.with_for_update(skip_locked=True)
        has_messages = (
            select(_messages.c.id)
            .where(_messages.c.sender_id == _markers.c.sender_id)
            .correlate(_markers)
            .exists()
        )
        async with write_transaction(self._engine) as conn:
            messages = await conn.execute(
                delete(_messages).where(_messages.c.id.in_(expired.scalar_subquery()))
            )
            markers = await conn.execute(delete(_markers).where(~has_messages))
        return max(messages.rowcount, 0) + max(markers.rowcount, 0)

    # -- reading --------------------------------------------------------------------

    async def recent(self, sender_id: str, limit: int = 50) -> list[WidgetMessage]:
        """The conversation's newest ``limit`` messages, oldest first (a reloaded widget
        shows them top to bottom)."""
        _check_sender(sender_id)
        _check_int("limit", limit, 1, MAX_LIMIT)
        statement = (
            select(_messages)
            .where(_messages.c.sender_id == sender_id)
            .order_by(_messages.c.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_message(row) for row in reversed(rows)]

    async def after(self, sender_id: str, after_id: int, limit: int = 100) -> list[WidgetMessage]:
        """The conversation's messages with an id above ``after_id``, oldest first: what a
        widget holding messages up to ``after_id`` has missed (page on with the last id)."""
        _check_sender(sender_id)
        _check_int("after_id", after_id, 0)
        _check_int("limit", limit, 1, MAX_LIMIT)
        statement = (
            select(_messages)
            .where(_messages.c.sender_id == sender_id, _messages.c.id > after_id)
            .order_by(_messages.c.id)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(statement)).all()
        return [_message(row) for row in rows]

    async def last_read(self, sender_id: str) -> int:
        """The conversation's read marker; 0 when it has none (nothing read yet)."""
        _check_sender(sender_id)
        async with self._engine.connect() as conn:
            stored = (
                await conn.execute(
                    select(_markers.c.last_read_id).where(_markers.c.sender_id == sender_id)
                )
            ).scalar_one_or_none()
        return int(stored or 0)

    async def unread_count(self, sender_id: str) -> int:
        """How many bot messages came after the read marker (the widget's badge; the
        user's own messages are never unread)."""
        _check_sender(sender_id)
        marker = (
            select(_markers.c.last_read_id)
            .where(_markers.c.sender_id == sender_id)
            .scalar_subquery()
        )
        statement = (
            select(func.count())
            .select_from(_messages)
            .where(
                _messages.c.sender_id == sender_id,
                _messages.c.role == BOT,
                _messages.c.id > func.coalesce(marker, 0),
            )
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(statement)).scalar_one())
