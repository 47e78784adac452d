"""Rasa's Redis lock store with every ticket change made atomically.

Rasa 3.6's ``RedisLockStore`` changes a conversation's ticket queue by GET, change in Python,
SET. Two Rasa servers taking messages of one conversation at the same moment both read the
empty queue, both issue ticket 0, both believe they hold the lock, and both save their turn
on the same tracker: one user message is lost from the tracker store (seen in
``tests/test_scaleout_stack.py``). Likewise ``cleanup`` could delete the queue right after
another server joined it, which then fails with ``LockError``.

Here every read-change-write runs in a Redis optimistic transaction (WATCH the key, MULTI,
EXEC, retried by redis-py when another client changed the key in between), so issuing,
expiring, finishing and deleting are each one step as far as the other servers see.

A ticket is a lease renewed while its server lives: at every look while the server waits
its turn, and every third of its lifetime while the turn runs. Rasa counts a ticket's
lifetime from its issue, so when a server died holding a conversation, the messages queued
behind the dead ticket used up their own lifetimes waiting for it to expire and were then
dropped from the queue and answered with a LockError (HTTP 500) or waited forever; and a
turn longer than the lifetime let the next one in. Now a dead server's ticket ends one
lifetime (``TICKET_LOCK_LIFETIME``) after its last renewal, the living ones go on in order,
and a long turn keeps its conversation, so the lifetime can be short (10 s in our stacks):
it is how long the conversations of a crashed server wait.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any, Optional, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

Result = TypeVar("Result")
# How often a queued turn looks whether its conversation is free (one small Redis
# transaction per look).
POLL_SECONDS = 0.05
# A change gets the stored lock (None when there is none) and returns the lock to store
# (None deletes the key) and what the caller should get back.
Change = Callable[[Optional[TicketLock]], tuple[Optional[TicketLock], Result]]  # noqa: UP045


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose ticket queue changes cannot interleave."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # The lifetime each of this process's tickets was issued with, to renew it by.
        self._lifetimes: dict[tuple[str, int], float] = {}

    def _change(self, conversation_id: str, change: Change) -> Result:
        key = self.key_prefix + conversation_id

        def attempt(pipe) -> Result:  # type: ignore[no-untyped-def]
            stored = pipe.get(key)  # immediate: the pipeline is still watching
            lock = TicketLock.from_dict(json.loads(stored)) if stored else None
            changed, result = change(lock)
            pipe.multi()
            if changed is None:
                pipe.delete(key)
            else:
                pipe.set(key, changed.dumps())
            return result

        return self.red.transaction(attempt, key, value_from_callable=True)

    def issue_ticket(self, conversation_id: str, lock_lifetime: float = LOCK_LIFETIME) -> int:
        def issue(lock: TicketLock | None) -> tuple[TicketLock, int]:
            lock = lock or self.create_lock(conversation_id)
            return lock, lock.issue_ticket(lock_lifetime)

        try:
            ticket = self._change(conversation_id, issue)
        except Exception as error:  # the base class's contract: any failure is a LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error
        self._lifetimes[(conversation_id, ticket)] = lock_lifetime
        return ticket

    @asynccontextmanager
    async def lock(
        self,
        conversation_id: str,
        lock_lifetime: float = LOCK_LIFETIME,
        wait_time_in_seconds: float = 1,
    ) -> AsyncIterator[TicketLock]:
        ticket = self.issue_ticket(conversation_id, lock_lifetime)
        try:
            held = await self._acquire_lock(conversation_id, ticket, wait_time_in_seconds)
            renewer = asyncio.create_task(self._keep_renewed(conversation_id, ticket))
            try:
                yield held
            finally:
                renewer.cancel()
                with suppress(asyncio.CancelledError):
                    await renewer
        finally:
            self.cleanup(conversation_id, ticket)

    async def _keep_renewed(self, conversation_id: str, ticket: int) -> None:
        lifetime = self._lifetimes.get((conversation_id, ticket), LOCK_LIFETIME)
        while True:
            await asyncio.sleep(lifetime / 3)
            self._change(conversation_id, _renewal(ticket, lifetime))

    async def _acquire_lock(
        self, conversation_id: str, ticket: int, wait_time_in_seconds: float
    ) -> TicketLock:
        lifetime = self._lifetimes.get((conversation_id, ticket), LOCK_LIFETIME)
        # Rasa asks to look again after 1 s; a turn queued behind a short one (a delivered
        # notification being recorded) would idle for most of that second.
        poll_seconds = min(wait_time_in_seconds, POLL_SECONDS)
        while True:
            lock = self._change(conversation_id, _renewal(ticket, lifetime))
            if lock is None:
                # Only a process stalled for a whole lifetime loses its place.
                raise LockError(f"Could not acquire lock for conversation_id '{conversation_id}'.")
            if not lock.is_locked(ticket):
                return lock
            await asyncio.sleep(poll_seconds)

    def update_lock(self, conversation_id: str) -> None:
        def expire(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is not None:
                lock.remove_expired_tickets()
            return lock, None

        self._change(conversation_id, expire)

    def finish_serving(self, conversation_id: str, ticket_number: int) -> None:
        def finish(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is not None:
                lock.remove_ticket_for(ticket_number)
            return lock, None

        self._change(conversation_id, finish)

    def cleanup(self, conversation_id: str, ticket_number: int) -> None:
        self._lifetimes.pop((conversation_id, ticket_number), None)

        # Finishing and deleting the emptied queue in one step: a ticket issued in between
        # keeps the queue alive.
        def finish_and_drop_if_empty(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.is_someone_waiting() else None), None

        self._change(conversation_id, finish_and_drop_if_empty)


def _renewal(ticket: int, lifetime: float) -> Change:
    """Renew ``ticket`` for ``lifetime`` and drop expired tickets; answers the queue, or None
    when the ticket is no longer in it."""

    def renew_and_expire(lock: TicketLock | None) -> tuple[TicketLock | None, TicketLock | None]:
        if lock is None:
            return None, None
        mine = [t for t in lock.tickets if t.number == ticket]
        for held in mine:
            held.expires = time.time() + lifetime
        lock.remove_expired_tickets()
        return lock, (lock if mine else None)

    return renew_and_expire
