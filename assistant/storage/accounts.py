"""Which ThinQ account each chat sender is linked to.

The ThinQ token (and, for accounts linked through LG's OAuth, the refresh token, in
``linked_account_refresh_tokens``) is stored only as Fernet ciphertext (see
:mod:`.crypto`); an :class:`Account` carries the decrypted tokens in memory and keeps
them out of ``repr()`` so they never reach a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import sessionmaker

from assistant.storage.crypto import TokenCipher
from assistant.storage.db import dialect_insert
from assistant.storage.models import LinkedAccount, LinkedAccountRefreshToken, utcnow

_table = LinkedAccount.__table__
_refresh = LinkedAccountRefreshToken.__table__


@dataclass(frozen=True)
class Account:
    sender_id: str
    thinq_user: str
    country_code: str
    region: str
    token: str = field(repr=False)
    token_expires_at: datetime | None = None
    channel: str | None = None
    # Only accounts linked through LG's OAuth flow have one (see assistant/linking.py).
    refresh_token: str | None = field(default=None, repr=False)

    def token_expired(self, now: datetime) -> bool:
        """True when the token has a known expiry at or before ``now``."""
        return self.token_expires_at is not None and self.token_expires_at <= now


def _require_aware(value: datetime | None, name: str) -> None:
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{name} must be timezone-aware (UTC); got naive {value.isoformat()}")


def _check_sender(sender_id: str) -> None:
    if not isinstance(sender_id, str) or not sender_id or len(sender_id) > 255:
        raise ValueError("sender_id must be a non-empty string of at most 255 characters")


def _check_channel(channel: str | None) -> None:
    if channel is not None and (not isinstance(channel, str) or len(channel) > 64):
        raise ValueError("channel must be None or a string of at most 64 characters")


class AccountRepository:
    def __init__(self, session_factory: sessionmaker, cipher: TokenCipher) -> None:
        self._sessions = session_factory
        self._cipher = cipher

    def __repr__(self) -> str:
        return "AccountRepository()"

    def _to_account(self, row: LinkedAccount, refresh_ciphertext: bytes | None = None) -> Account:
        return Account(
            sender_id=row.sender_id,
            thinq_user=row.thinq_user,
            country_code=row.country_code,
            region=row.region,
            token=self._cipher.decrypt(row.token_ciphertext),
            token_expires_at=row.token_expires_at,
            channel=row.channel,
            refresh_token=(
                None if refresh_ciphertext is None else self._cipher.decrypt(refresh_ciphertext)
            ),
        )

    async def get(self, sender_id: str) -> Account | None:
        """The sender's account, or None. Raises TokenDecryptError if the key was lost."""
        async with self._sessions() as session:
            found = (
                await session.execute(
                    select(LinkedAccount, _refresh.c.refresh_token_ciphertext)
                    .outerjoin(_refresh, _refresh.c.sender_id == LinkedAccount.sender_id)
                    .where(LinkedAccount.sender_id == sender_id)
                )
            ).first()
            if found is None:
                return None
            row, refresh_ciphertext = found
            return self._to_account(
                row, None if refresh_ciphertext is None else bytes(refresh_ciphertext)
            )

    async def link(
        self,
        sender_id: str,
        thinq_user: str,
        token: str,
        country_code: str,
        region: str,
        channel: str | None = None,
        token_expires_at: datetime | None = None,
        refresh_token: str | None = None,
    ) -> Account:
        """Link (or re-link) ``sender_id``; safe against concurrent calls for one sender.

        A ``channel`` of None keeps the channel stored by an earlier link. The refresh
        token is replaced too: a link without one (demo) leaves none behind.
        """
        _check_sender(sender_id)
        _check_channel(channel)
        if not thinq_user or len(thinq_user) > 255:
            raise ValueError("thinq_user must be a non-empty string of at most 255 characters")
        if not token:
            raise ValueError("token must not be empty")
        country_code = (country_code or "").upper()
        if len(country_code) != 2 or not country_code.isalpha():
            raise ValueError(f"country_code must be ISO 3166 alpha-2; got {country_code!r}")
        if not region:
            raise ValueError("region must not be empty")
        _require_aware(token_expires_at, "token_expires_at")

        now = utcnow()
        async with self._sessions() as session, session.begin():
            insert = dialect_insert(session, _table).values(
                sender_id=sender_id,
                channel=channel,
                thinq_user=thinq_user,
                country_code=country_code,
                region=region,
                token_ciphertext=self._cipher.encrypt(token),
                token_expires_at=token_expires_at,
                created_at=now,
                updated_at=now,
            )
            excluded = insert.excluded
            await session.execute(
                insert.on_conflict_do_update(
                    index_elements=[_table.c.sender_id],
                    set_={
                        "thinq_user": excluded.thinq_user,
                        "country_code": excluded.country_code,
                        "region": excluded.region,
                        "token_ciphertext": excluded.token_ciphertext,
                        "token_expires_at": excluded.token_expires_at,
                        "channel": func.coalesce(excluded.channel, _table.c.channel),
                        "updated_at": excluded.updated_at,
                    },
                )
            )
            await self._store_refresh(session, sender_id, refresh_token, now)
            stored_channel = (
                await session.execute(
                    select(_table.c.channel).where(_table.c.sender_id == sender_id)
                )
            ).scalar_one()
        return Account(
            sender_id=sender_id,
            thinq_user=thinq_user,
            country_code=country_code,
            region=region,
            token=token,
            token_expires_at=token_expires_at,
            channel=stored_channel,
            refresh_token=refresh_token,
        )

    async def _store_refresh(
        self, session: AsyncSession, sender_id: str, refresh_token: str | None, now: datetime
    ) -> None:
        if not refresh_token:
            await session.execute(delete(_refresh).where(_refresh.c.sender_id == sender_id))
            return
        insert = dialect_insert(session, _refresh).values(
            sender_id=sender_id,
            refresh_token_ciphertext=self._cipher.encrypt(refresh_token),
            updated_at=now,
        )
        await session.execute(
            insert.on_conflict_do_update(
                index_elements=[_refresh.c.sender_id],
                set_={
                    "refresh_token_ciphertext": insert.excluded.refresh_token_ciphertext,
                    "updated_at": insert.excluded.updated_at,
                },
            )
        )

    async def unlink(self, sender_id: str) -> bool:
        """Forget the sender's link and delete its tokens; False if there was none."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(_refresh).where(_refresh.c.sender_id == sender_id))
            result = await session.execute(delete(_table).where(_table.c.sender_id == sender_id))
            return result.rowcount > 0

    async def set_channel(self, sender_id: str, channel: str | None) -> bool:
        """Record the input channel the sender last used; False if not linked."""
        _check_channel(channel)
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(_table)
                .where(_table.c.sender_id == sender_id)
                .values(channel=channel, updated_at=utcnow())
            )
            return result.rowcount > 0

    async def senders_for_user(self, thinq_user: str) -> list[Account]:
        """Every sender linked to ``thinq_user`` (for proactive delivery), by sender_id."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(LinkedAccount)
                    .where(LinkedAccount.thinq_user == thinq_user)
                    .order_by(LinkedAccount.sender_id)
                )
            ).scalars()
            return [self._to_account(row) for row in rows]
