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
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Optional, TypeVar

from rasa.core.lock import TicketLock
from rasa.core.lock_store import LOCK_LIFETIME, LockError, RedisLockStore

Result = TypeVar("Result")
# A change gets the stored lock (None when there is none) and returns the lock to store
# (None deletes the key) and what the caller should get back.
Change = Callable[[Optional[TicketLock]], tuple[Optional[TicketLock], Result]]  # noqa: UP045


class AtomicRedisLockStore(RedisLockStore):
    """``RedisLockStore`` whose ticket queue changes cannot interleave."""

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
            return self._change(conversation_id, issue)
        except Exception as error:  # the base class's contract: any failure is a LockError
            raise LockError(f"Error while acquiring lock. Error:\n{error}") from error

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
        # Finishing and deleting the emptied queue in one step: a ticket issued in between
        # keeps the queue alive.
        def finish_and_drop_if_empty(lock: TicketLock | None) -> tuple[TicketLock | None, None]:
            if lock is None:
                return None, None
            lock.remove_ticket_for(ticket_number)
            return (lock if lock.is_someone_waiting() else None), None

        self._change(conversation_id, finish_and_drop_if_empty)
