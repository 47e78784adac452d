"""AccountRepository on SQLite and PostgreSQL (every test runs on both)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from assistant.storage import Account, AccountRepository, Storage, TokenCipher, TokenDecryptError
from assistant.storage.models import LinkedAccount

TOKEN = "a1b2c3-secret-emp-token"


async def raw_row(storage: Storage, sender_id: str) -> LinkedAccount | None:
    async with storage.sessions() as session:
        return await session.get(LinkedAccount, sender_id)


async def count_rows(storage: Storage) -> int:
    async with storage.sessions() as session:
        return (await session.execute(select(func.count()).select_from(LinkedAccount))).scalar()


async def test_link_get_unlink(storage: Storage) -> None:
    assert await storage.accounts.get("tg:1") is None
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    linked = await storage.accounts.link(
        "tg:1", "user-1", TOKEN, "us", "aic", channel="telegram", token_expires_at=expires
    )
    assert linked == Account("tg:1", "user-1", "US", "aic", TOKEN, expires, "telegram")

    fetched = await storage.accounts.get("tg:1")
    assert fetched == linked
    assert fetched.token_expires_at.tzinfo is not None
    assert fetched.token_expires_at == expires

    assert await storage.accounts.unlink("tg:1") is True
    assert await storage.accounts.get("tg:1") is None
    assert await storage.accounts.unlink("tg:1") is False


async def test_token_is_not_in_repr(storage: Storage) -> None:
    account = await storage.accounts.link("s", "u", TOKEN, "KR", "kic")
    assert TOKEN not in repr(account)
    assert TOKEN not in str(account)


async def test_token_is_stored_only_encrypted(storage: Storage) -> None:
    await storage.accounts.link("s", "u", TOKEN, "US", "aic")
    row = await raw_row(storage, "s")
    ciphertext = bytes(row.token_ciphertext)
    assert ciphertext != TOKEN.encode()
    assert TOKEN.encode() not in ciphertext
    assert storage.cipher.decrypt(ciphertext) == TOKEN
    # No other column carries the token either.
    for column in LinkedAccount.__table__.columns:
        value = getattr(row, column.key)
        if isinstance(value, str):
            assert TOKEN not in value


async def test_link_is_an_idempotent_upsert(storage: Storage) -> None:
    first = await storage.accounts.link("s", "u", TOKEN, "US", "aic", channel="rest")
    created_at = (await raw_row(storage, "s")).created_at
    await asyncio.sleep(0.01)
    again = await storage.accounts.link("s", "u", TOKEN, "US", "aic", channel="rest")
    assert again == first
    assert await count_rows(storage) == 1

    # Re-linking replaces the account, keeps created_at, bumps updated_at, and
    # keeps the earlier channel when none is given.
    relinked = await storage.accounts.link("s", "other-user", "new-token", "GB", "eic")
    assert relinked == Account("s", "other-user", "GB", "eic", "new-token", None, "rest")
    assert await storage.accounts.get("s") == relinked
    row = await raw_row(storage, "s")
    assert row.created_at == created_at
    assert row.updated_at > created_at
    assert await count_rows(storage) == 1


async def test_concurrent_first_messages_link_once(storage: Storage) -> None:
    results = await asyncio.gather(
        *(
            storage.accounts.link("web:42", "user-42", f"token-{i}", "US", "aic", channel="rest")
            for i in range(10)
        )
    )
    assert len(results) == 10
    assert await count_rows(storage) == 1
    stored = await storage.accounts.get("web:42")
    assert stored.thinq_user == "user-42"
    assert stored.token in {f"token-{i}" for i in range(10)}


async def test_set_channel(storage: Storage) -> None:
    assert await storage.accounts.set_channel("nobody", "rest") is False
    await storage.accounts.link("s", "u", TOKEN, "US", "aic", channel="rest")
    assert await storage.accounts.set_channel("s", "socketio") is True
    assert (await storage.accounts.get("s")).channel == "socketio"


async def test_senders_for_user(storage: Storage) -> None:
    await storage.accounts.link("b", "shared", "t-b", "US", "aic", channel="rest")
    await storage.accounts.link("a", "shared", "t-a", "US", "aic", channel="telegram")
    await storage.accounts.link("c", "someone-else", "t-c", "US", "aic")
    senders = await storage.accounts.senders_for_user("shared")
    assert [(a.sender_id, a.channel, a.token) for a in senders] == [
        ("a", "telegram", "t-a"),
        ("b", "rest", "t-b"),
    ]
    assert await storage.accounts.senders_for_user("nobody") == []


async def test_wrong_key_raises_token_decrypt_error(storage: Storage) -> None:
    await storage.accounts.link("s", "u", TOKEN, "US", "aic")
    stranger = AccountRepository(storage.sessions, TokenCipher([TokenCipher.generate_key()]))
    with pytest.raises(TokenDecryptError):
        await stranger.get("s")
    with pytest.raises(TokenDecryptError):
        await stranger.senders_for_user("u")


async def test_rotated_key_still_reads_old_tokens(storage: Storage) -> None:
    old_key, new_key = TokenCipher.generate_key(), TokenCipher.generate_key()
    before = AccountRepository(storage.sessions, TokenCipher([old_key]))
    await before.link("s", "u", TOKEN, "US", "aic")

    after = AccountRepository(storage.sessions, TokenCipher.from_string(f"{new_key},{old_key}"))
    assert (await after.get("s")).token == TOKEN
    # A relink after rotation writes ciphertext of the new key.
    await after.link("s", "u", TOKEN, "US", "aic")
    row = await raw_row(storage, "s")
    assert TokenCipher([new_key]).decrypt(row.token_ciphertext) == TOKEN
    with pytest.raises(TokenDecryptError):
        await before.get("s")


async def test_timestamps_are_timezone_aware_utc(storage: Storage) -> None:
    before = datetime.now(timezone.utc)
    plus_two = timezone(timedelta(hours=2))
    expires_local = datetime(2031, 6, 1, 14, 0, tzinfo=plus_two)
    await storage.accounts.link("s", "u", TOKEN, "US", "aic", token_expires_at=expires_local)
    row = await raw_row(storage, "s")
    for value in (row.created_at, row.updated_at, row.token_expires_at):
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)
    assert row.token_expires_at == expires_local
    assert row.token_expires_at.hour == 12
    assert before - timedelta(seconds=5) <= row.created_at <= datetime.now(timezone.utc)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"country_code": "USA"}, "country_code"),
        ({"sender_id": ""}, "sender_id"),
        ({"sender_id": "x" * 256}, "sender_id"),
        ({"token": ""}, "token"),
        ({"thinq_user": ""}, "thinq_user"),
        ({"channel": "c" * 65}, "channel"),
        ({"token_expires_at": datetime(2030, 1, 1)}, "timezone-aware"),
    ],
)
async def test_link_validates_arguments(storage: Storage, kwargs: dict, message: str) -> None:
    arguments = {
        "sender_id": "s",
        "thinq_user": "u",
        "token": TOKEN,
        "country_code": "US",
        "region": "aic",
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        await storage.accounts.link(**arguments)
    assert await count_rows(storage) == 0
