"""Keeps every linked ThinQ user's event subscription alive, so status events keep
``device_states`` fresh (``assistant/storage/device_states.py``).

The connector's worker role runs one :class:`EventRenewer` per process; every
``EVENT_RENEW_INTERVAL_SECONDS`` each tries to hold the database lease ``event-renewer``
(three intervals long, extended on every pass and before every LG call). Only the
holder works, so however many workers run, one subscribes. A pass:

1. adds a row to ``event_subscriptions`` for every ThinQ user with a linked account
   who has none (a newly linked user is subscribed on the next pass);
2. takes the rows that are due: never subscribed, or expiring within
   ``EVENT_RENEW_MARGIN_SECONDS``, and not waiting out a backoff;
3. for each, calls LG's v2 ``event-async`` (``PlacementClient.subscribe_events``, all
   of the user's devices, ``EVENT_SUBSCRIPTION_HOURS``) with the token of a linked
   sender of that user (users whose senders were all unlinked are left alone), and
   records ``expires_at = now + hours``; a failure is recorded (``last_error``,
   ``attempts``) and retried after an exponential backoff with jitter. A user LG
   rate-limits (1306) raises ``RateLimited``, also before any call while the shared call
   budget backs them off: it is a failure like any other, retried after the backoff.

Everything lives in the database, nothing in the process: a restarted renewer (new
instance, new owner id) continues where the last one stopped, and one that stopped
gracefully releases the lease so the next need not wait it out. Two renewers never
subscribe in the same pass; should a holder stall for longer than the lease (and another
take over meanwhile), the worst case is one extra renewal, which LG treats as a renewal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from assistant.settings import EventSettings
from assistant.storage.accounts import Account, AccountRepository
from assistant.storage.device_states import (
    DeviceStateRepository,
    EventSubscriptionRepository,
    LeaseRepository,
    Subscription,
)
from assistant.storage.models import utcnow
from connector.worker import backoff_seconds
from lgcloud.call_budget import user_label
from lgcloud.errors import ThinQError
from lgcloud.placement import PlacementClient
from lgcloud.thinq import ThinQAuth

log = logging.getLogger(__name__)

LEASE_NAME = "event-renewer"
RETRY_BASE_SECONDS = 60.0
RETRY_MAX_SECONDS = 30 * 60.0
MAX_USERS_PER_PASS = 100

Clock = Callable[[], datetime]
Fresh = Callable[[Account], Awaitable[Account]]


def new_owner_id() -> str:
    """Names this process's renewer in the lease (host, pid and a random part)."""
    return f"{socket.gethostname()[:64]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass
class PassResult:
    """What one pass did: whether it held the lease, whom it subscribed or failed."""

    held: bool
    subscribed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class RenewerStats:
    passes: int = 0
    held: int = 0
    subscribed: int = 0
    failed: int = 0
    errors: int = 0

    def __str__(self) -> str:
        return ", ".join(f"{name} {value}" for name, value in vars(self).items())


class EventRenewer:
    def __init__(
        self,
        subscriptions: EventSubscriptionRepository,
        states: DeviceStateRepository,
        leases: LeaseRepository,
        accounts: AccountRepository,
        placement: PlacementClient,
        settings: EventSettings,
        *,
        owner: str | None = None,
        clock: Clock = utcnow,
        fresh: Fresh | None = None,
        retry_base_seconds: float = RETRY_BASE_SECONDS,
        retry_max_seconds: float = RETRY_MAX_SECONDS,
        max_users_per_pass: int = MAX_USERS_PER_PASS,
        rng: random.Random | None = None,
    ) -> None:
        """``clock`` is the renewer's notion of now (tests tie it to the simulated clock);
        ``fresh`` (optional) refreshes an account's token before it is used, e.g.
        :meth:`assistant.linking.LinkingService.fresh`."""
        self._subscriptions = subscriptions
        self._states = states
        self._leases = leases
        self._accounts = accounts
        self._placement = placement
        self._settings = settings
        self.owner = owner or new_owner_id()
        self._clock = clock
        self._fresh = fresh
        self._retry_base = retry_base_seconds
        self._retry_max = retry_max_seconds
        self._limit = max_users_per_pass
        self._rng = rng or random.Random()
        self._interval = settings.renew_interval_seconds
        self._lease_ttl = timedelta(seconds=3 * settings.renew_interval_seconds)
        self._margin = timedelta(seconds=settings.renew_margin_seconds)
        self.stats = RenewerStats()

    def __repr__(self) -> str:
        return f"EventRenewer(owner={self.owner!r})"

    # --- the loop --------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """A pass now and every interval until ``stop`` is set; then let go of the lease."""
        log.info("event renewer %s started (every %.0f s)", self.owner, self._interval)
        try:
            while not stop.is_set():
                try:
                    await self.run_once(stop)
                except Exception as error:
                    self.stats.errors += 1
                    log.warning("an event renewal pass failed: %s", type(error).__name__)
                await _sleep_or_stop(stop, self._interval)
        finally:
            await self.release()
            log.info("event renewer %s stopped: %s", self.owner, self.stats)

    async def release(self) -> None:
        try:
            await self._leases.release(LEASE_NAME, self.owner)
        except Exception as error:  # it runs out on its own within three intervals
            log.warning("releasing the renewer lease failed: %s", type(error).__name__)

    async def run_once(self, stop: asyncio.Event | None = None) -> PassResult:
        """One pass (see the module doc); does nothing unless this renewer holds the lease."""
        self.stats.passes += 1
        if not await self._hold():
            return PassResult(held=False)
        self.stats.held += 1
        result = PassResult(held=True)
        now = self._clock()
        added = await self._subscriptions.add_linked_users(now)
        if added:
            log.info("%d newly linked user(s) will be subscribed to events", added)
        for subscription in await self._subscriptions.due(now, self._margin, self._limit):
            if stop is not None and stop.is_set():
                break
            if not await self._hold():  # stalled past the lease: another renewer took over
                log.warning("event renewer %s lost its lease mid-pass", self.owner)
                break
            await self._renew(subscription, result)
        return result

    async def _hold(self) -> bool:
        return await self._leases.acquire(LEASE_NAME, self.owner, self._lease_ttl, self._clock())

    # --- one user ----------------------------------------------------------------------------

    async def _renew(self, subscription: Subscription, result: PassResult) -> None:
        user = subscription.thinq_user
        senders = await self._accounts.senders_for_user(user)
        if not senders:
            result.skipped.append(user)  # unlinked since the due query
            return
        auth = await self._auth(senders)
        requested_at = self._clock()
        if auth is None:
            await self._failed(subscription, "no linked sender has a usable token", requested_at)
            result.failed.append(user)
            return
        hours = self._settings.subscription_hours
        try:
            request_id = await self._placement.subscribe_events(auth, hours=hours)
        except ThinQError as error:
            await self._failed(
                subscription, f"{error.code} {error.name}: {error.message}", requested_at
            )
            result.failed.append(user)
            return
        accepted_at = self._clock()
        recorded = await self._subscriptions.record_success(
            user,
            requested_at=requested_at,
            accepted_at=accepted_at,
            hours=hours,
            request_id=request_id,
        )
        # LG's per-device answers may have come before the request was recorded.
        await self._states.confirm_request(request_id)
        self.stats.subscribed += 1
        result.subscribed.append(user)
        log.info(
            "events of user %s subscribed until %s (request %s)",
            user_label(user),
            recorded.expires_at.isoformat() if recorded.expires_at else "?",
            request_id,
        )

    async def _auth(self, senders: Sequence[Account]) -> ThinQAuth | None:
        """The first linked sender's token that is (made) usable."""
        for account in senders:
            if self._fresh is not None:
                try:
                    account = await self._fresh(account)
                except Exception as error:
                    log.info("a linked sender's token is unusable: %s", type(error).__name__)
                    continue
            if account.token_expired(utcnow()):  # token expiries are real (wall) time
                continue
            return ThinQAuth(account.token, account.country_code, user=account.thinq_user)
        return None

    async def _failed(self, subscription: Subscription, reason: str, now: datetime) -> None:
        attempts = subscription.attempts + 1
        delay = backoff_seconds(attempts, self._retry_base, self._retry_max, self._rng)
        await self._subscriptions.record_failure(
            subscription.thinq_user, reason, now + timedelta(seconds=delay)
        )
        self.stats.failed += 1
        log.warning(
            "event subscription of user %s failed (attempt %d: %s); next try in %.0f s",
            user_label(subscription.thinq_user),
            attempts,
            reason,
            delay,
        )


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=max(seconds, 0.0))
    except asyncio.TimeoutError:
        pass
