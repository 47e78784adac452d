"""LG sign-ins waiting for their confirmation code (table ``pending_links``).

:meth:`PendingLinkRepository.put` keeps what LG's token endpoint gave for a sender, with
a fresh one-time code (only its digest, bound to the sender, is stored) and an expiry.
:meth:`PendingLinkRepository.take` hands the grant over once, to the same sender typing
the right code: compare-and-set on ``attempts`` and ``code_digest``, so concurrent
attempts never both succeed and never lose a wrong try. After MAX_CODE_ATTEMPTS wrong
codes the pending link is dropped (a 6-digit code with 5 tries: one chance in 200 000).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import sessionmaker

from assistant.storage.crypto import TokenCipher
from assistant.storage.db import dialect_insert
from assistant.storage.models import PendingLink, utcnow

_table = PendingLink.__table__
MAX_CODE_ATTEMPTS = 5
CODE_DIGITS = 6


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(sender_id: str, code: str) -> str:
    return hashlib.sha256(f"{sender_id}\0{code}".encode()).hexdigest()


@dataclass(frozen=True)
class PendingGrant:
    """What LG's token endpoint answered for one sender's sign-in."""

    sender_id: str
    channel: str | None
    thinq_user: str
    token: str = field(repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    token_expires_at: datetime | None = None


@dataclass(frozen=True)
class CodeRefused:
    """Why a code linked nothing: ``none`` (no sign-in waits for this sender), ``expired``,
    ``wrong`` (``attempts_left`` more tries) or ``locked`` (that was the last try)."""

    reason: str
    attempts_left: int = 0


class PendingLinkRepository:
    def __init__(self, session_factory: sessionmaker, cipher: TokenCipher) -> None:
        self._sessions = session_factory
        self._cipher = cipher

    def __repr__(self) -> str:
        return "PendingLinkRepository()"

    async def put(
        self, grant: PendingGrant, code: str, ttl: timedelta, now: datetime | None = None
    ) -> None:
        """Keep ``grant`` until ``code`` is typed by its sender (replacing an older one)."""
        if not grant.sender_id or len(grant.sender_id) > 255:
            raise ValueError("sender_id must be a non-empty string of at most 255 characters")
        if not (code.isdigit() and len(code) == CODE_DIGITS):
            raise ValueError(f"code must be {CODE_DIGITS} digits")
        now = now or utcnow()
        values = {
            "channel": grant.channel,
            "thinq_user": grant.thinq_user,
            "token_ciphertext": self._cipher.encrypt(grant.token),
            "refresh_token_ciphertext": (
                self._cipher.encrypt(grant.refresh_token) if grant.refresh_token else None
            ),
            "token_expires_at": grant.token_expires_at,
            "code_digest": code_digest(grant.sender_id, code),
            "attempts": 0,
            "created_at": now,
            "expires_at": now + ttl,
        }
        async with self._sessions() as session, session.begin():
            statement = dialect_insert(session, _table).values(sender_id=grant.sender_id, **values)
            await session.execute(
                statement.on_conflict_do_update(index_elements=[_table.c.sender_id], set_=values)
            )

    async def take(
        self, sender_id: str, code: str, now: datetime | None = None
    ) -> PendingGrant | CodeRefused:
        """The sender's grant if ``code`` is right (then it is gone); else why not."""
        now = now or utcnow()
        async with self._sessions() as session, session.begin():
            row = (
                await session.execute(select(_table).where(_table.c.sender_id == sender_id))
            ).first()
            if row is None:
                return CodeRefused("none")
            mine = (_table.c.sender_id == sender_id) & (_table.c.attempts == row.attempts)
            if row.expires_at <= now:
                await session.execute(delete(_table).where(mine))
                return CodeRefused("expired")
            if not hmac.compare_digest(row.code_digest, code_digest(sender_id, code)):
                attempts = row.attempts + 1
                if attempts >= MAX_CODE_ATTEMPTS:
                    await session.execute(delete(_table).where(mine))
                    return CodeRefused("locked")
                changed = await session.execute(
                    update(_table).where(mine).values(attempts=attempts)
                )
                if changed.rowcount != 1:
                    # Another try (or a new sign-in) changed the row meanwhile: count this
                    # one as wrong without knowing how many are left.
                    return CodeRefused("wrong", 1)
                return CodeRefused("wrong", MAX_CODE_ATTEMPTS - attempts)
            taken = await session.execute(
                delete(_table).where(mine, _table.c.code_digest == row.code_digest)
            )
            if taken.rowcount != 1:
                return CodeRefused("none")  # taken by a concurrent confirmation
        return PendingGrant(
            sender_id=sender_id,
            channel=row.channel,
            thinq_user=row.thinq_user,
            token=self._cipher.decrypt(row.token_ciphertext),
            refresh_token=(
                self._cipher.decrypt(row.refresh_token_ciphertext)
                if row.refresh_token_ciphertext
                else None
            ),
            token_expires_at=row.token_expires_at,
        )

    async def waiting(self, sender_id: str, now: datetime | None = None) -> bool:
        """Whether a sign-in waits for this sender's code."""
        now = now or utcnow()
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(_table.c.expires_at).where(_table.c.sender_id == sender_id)
                )
            ).first()
        return row is not None and row.expires_at > now
