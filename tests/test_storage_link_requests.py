"""Link requests (OAuth state) and refresh tokens in storage, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select

from assistant.storage import Storage
from assistant.storage.link_requests import ConsumedRequest, StateRefused, state_digest
from assistant.storage.models import LinkedAccountRefreshToken, LinkRequest, utcnow

TTL = timedelta(minutes=10)


async def test_state_is_consumed_once(storage: Storage) -> None:
    state = await storage.link_requests.create("tg:1", "telegram", TTL)
    assert await storage.link_requests.consume(state) == ConsumedRequest("tg:1", "telegram")
    assert await storage.link_requests.consume(state) == StateRefused("used")


async def test_unknown_and_expired_states_are_refused(storage: Storage) -> None:
    assert await storage.link_requests.consume("made-up") == StateRefused("unknown")
    assert await storage.link_requests.consume("") == StateRefused("unknown")
    assert await storage.link_requests.consume("x" * 300) == StateRefused("unknown")
    state = await storage.link_requests.create("tg:1", None, TTL)
    later = utcnow() + TTL + timedelta(seconds=1)
    assert await storage.link_requests.consume(state, now=later) == StateRefused("expired")


async def test_only_a_digest_of_the_state_is_stored(storage: Storage) -> None:
    state = await storage.link_requests.create("tg:1", None, TTL)
    async with storage.sessions() as session:
        rows = (await session.execute(select(LinkRequest))).scalars().all()
    assert [r.state_digest for r in rows] == [state_digest(state)]
    assert state not in repr([vars(r) for r in rows])


async def test_concurrent_callbacks_with_one_state_link_once(storage: Storage) -> None:
    state = await storage.link_requests.create("tg:1", None, TTL)
    results = await asyncio.gather(*(storage.link_requests.consume(state) for _ in range(5)))
    assert sum(isinstance(r, ConsumedRequest) for r in results) == 1
    assert all(r == StateRefused("used") for r in results if isinstance(r, StateRefused))


async def test_long_finished_requests_are_purged(storage: Storage) -> None:
    old = await storage.link_requests.create("tg:1", None, TTL, now=utcnow() - timedelta(days=2))
    await storage.link_requests.create("tg:2", None, TTL)
    assert await storage.link_requests.consume(old) == StateRefused("unknown")


async def refresh_rows(storage: Storage) -> list[bytes]:
    async with storage.sessions() as session:
        rows = (await session.execute(select(LinkedAccountRefreshToken))).scalars().all()
        return [bytes(r.refresh_token_ciphertext) for r in rows]


async def test_refresh_token_is_stored_encrypted_replaced_and_deleted(storage: Storage) -> None:
    linked = await storage.accounts.link("s", "u", "access-1", "US", "aic", refresh_token="rt-1")
    assert linked.refresh_token == "rt-1"
    assert "rt-1" not in repr(linked)
    assert (await storage.accounts.get("s")).refresh_token == "rt-1"
    [ciphertext] = await refresh_rows(storage)
    assert b"rt-1" not in ciphertext and storage.cipher.decrypt(ciphertext) == "rt-1"

    await storage.accounts.link("s", "u", "access-2", "US", "aic", refresh_token="rt-2")
    assert (await storage.accounts.get("s")).refresh_token == "rt-2"
    assert len(await refresh_rows(storage)) == 1

    # A link without one (the demo's) leaves none behind.
    await storage.accounts.link("s", "u", "demo-token", "US", "aic")
    assert (await storage.accounts.get("s")).refresh_token is None
    assert await refresh_rows(storage) == []

    await storage.accounts.link("s", "u", "access-3", "US", "aic", refresh_token="rt-3")
    assert await storage.accounts.unlink("s") is True
    assert await refresh_rows(storage) == []
    async with storage.sessions() as session:
        count = select(func.count()).select_from(LinkedAccountRefreshToken)
        assert (await session.execute(count)).scalar() == 0
