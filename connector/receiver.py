"""The HTTP endpoint LG's cloud calls back, and the connector's health check.

``POST /lg/callbacks?secret=<shared secret>``
    One LG callback (DEVICE_PUSH, DEVICE_REGISTERED, DEVICE_UNREGISTERED,
    DEVICE_ALIAS_CHANGED under ``push``; PCC_EVENT under ``event``).

    DEVICE_STATUS events (``event``) are not stored for delivery: their report is merged
    into the device's stored state at once (``connector/event_intake.py``), answered 200
    ``{"status": "merged"|"duplicate", "messageId"}``; malformed: 400; a device we cannot
    file under a user: 404 ``unknown_device``. v2 placement answers go to
    ``connector/placement_intake.py`` (and event-subscription ones also to the event
    intake).

    * LG registers a URL and cannot add headers, so the shared secret is the registered
      URL's ``secret`` query parameter, compared in constant time. Missing or wrong:
      401 ``{"error": "unauthorized", "reason": ...}``.
    * Body: at most 64 KiB (413), JSON (400; also for nesting deeper than the parser goes
      and integers too long for Python to read), nothing the databases cannot keep (400: a
      NUL or a lone surrogate in a string, NaN or an infinity), a callback we accept (400
      with the parser's reason), about a device or user we know (404 ``unknown_device``).
      None of these stores anything.
    * Otherwise the callback is stored, and only once that is committed the answer is
      200 ``{"status": "accepted", "messageId": ...}``; a message id stored before gets
      200 ``{"status": "duplicate", ...}`` and queues nothing (LG retried; the user is
      told once). If the database is down: 503, so LG tries again.
    * Then the delivery queue is told. If that fails the callback is still stored and
      the worker's sweeper queues it later, so the 200 stands.

``GET /health``
    200 ``{"status": "ok", "outbox": {state: count}}``; counts only, no content.

``GET /metrics``
    Prometheus text (0.0.4): our LG calls and backoffs (``lgcloud.call_budget``: every
    process's through Redis, else this process's), the outbox counts of ``/health``, and
    the delivery and callback lag (age of the oldest message or callback still waiting).

Storing uses group commit: requests arriving while a commit is in flight are written
together by the next one, so under load one transaction (one fsync) serves many
callbacks, and an idle receiver commits each callback at once.

Logs name message ids and push types only: never the secret, a token or a body.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import random
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, Protocol

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from assistant.storage.models import utcnow
from connector.event_intake import EventIntake
from connector.placement_intake import PlacementIntake
from connector.queue import INBOUND, DeliveryQueue
from connector.store import DeliveryStore, NewCallback
from connector.validation import storable
from lgcloud.call_budget import (
    PROMETHEUS_CONTENT_TYPE,
    CallBudget,
    MetricsText,
    add_budget_metrics,
)
from lgcloud.callbacks import (
    CallbackRejected,
    LgCallback,
    StatusEvent,
    parse_callback,
    parse_status_event,
)
from lgcloud.placement_callbacks import PlacementResult, parse_placement_callback

log = logging.getLogger(__name__)

CALLBACK_PATH = "/lg/callbacks"
MAX_BODY_BYTES = 64 * 1024
HEALTH_CACHE_SECONDS = 1.0


class Checker(Protocol):
    """What the receiver needs of assistant.notifications.NotificationPlanner."""

    async def check(self, callback: LgCallback) -> str | None: ...


class AcceptanceCache:
    """Remembers for up to half a minute that the planner accepted a callback's device/users.

    LG sends bursts about the same appliances, and the check costs database reads on
    every request. Only acceptance is remembered: a device linked a moment ago is
    accepted at once, while one removed in the last ``ttl_seconds`` may still have a
    callback stored, for which the planner then finds nobody to tell.
    """

    def __init__(self, checker: Checker, ttl_seconds: float = 30.0, max_entries: int = 10_000):
        self._checker = checker
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._accepted: dict[tuple[str, str, tuple[str, ...]], float] = {}

    async def check(self, callback: LgCallback) -> str | None:
        key = (callback.push_type, callback.device_id, callback.user_numbers)
        now = time.monotonic()
        until = self._accepted.get(key)
        if until is not None and until > now:
            return None
        problem = await self._checker.check(callback)
        if problem is None:
            if len(self._accepted) >= self._max_entries:
                self._accepted = {k: t for k, t in self._accepted.items() if t > now}
                if len(self._accepted) >= self._max_entries:
                    self._accepted.clear()
            # Spread over the second half of the TTL: entries made in one burst must
            # not all expire at once and send a burst of lookups to the database.
            self._accepted[key] = now + self._ttl * random.uniform(0.5, 1.0)
        return problem


class CallbackIntake:
    """Stores callbacks with group commit, then queues the new ones for the workers."""

    def __init__(self, store: DeliveryStore, queue: DeliveryQueue, *, max_batch: int = 500):
        self._store = store
        self._queue = queue
        self._max_batch = max_batch
        self._waiting: list[tuple[NewCallback, asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._publishing: set[asyncio.Task[None]] = set()

    async def submit(self, callback: NewCallback) -> bool:
        """Store ``callback``; True if it was new, False if its message id was known.

        Returns once the transaction holding it has committed; raises if it failed.
        """
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((callback, future))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        while self._waiting:
            # One turn of the loop lets requests that arrived together join this batch.
            await asyncio.sleep(0)
            batch = self._waiting[: self._max_batch]
            del self._waiting[: len(batch)]
            try:
                new = await self._store.record_callbacks([c for c, _ in batch], utcnow())
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            answered: set[str] = set()
            fresh: list[str] = []
            for callback, future in batch:
                is_new = callback.message_id in new and callback.message_id not in answered
                answered.add(callback.message_id)
                if is_new:
                    fresh.append(callback.message_id)
                if not future.done():
                    future.set_result(is_new)
            if fresh:
                # Off the commit path: a slow queue must not hold up the next commit.
                task = asyncio.create_task(self._publish(fresh))
                self._publishing.add(task)
                task.add_done_callback(self._publishing.discard)

    async def _publish(self, message_ids: Sequence[str]) -> None:
        try:
            await self._queue.publish([(INBOUND, message_id) for message_id in message_ids])
        except Exception as error:
            # Stored already: the worker's sweeper queues them after reclaim_after.
            log.warning(
                "queueing %d stored callback(s) failed (%s); the sweeper will pick them up",
                len(message_ids),
                type(error).__name__,
            )

    async def drain(self) -> None:
        """Wait for commits and queue publishes under way (graceful stop)."""
        while (self._committer is not None and not self._committer.done()) or self._publishing:
            pending = [*self._publishing]
            if self._committer is not None and not self._committer.done():
                pending.append(self._committer)
            await asyncio.gather(*pending, return_exceptions=True)


def _unstorable(body: Any) -> str | None:
    """Why the databases cannot keep ``body`` (None: they can): a NUL character or a lone
    surrogate (``"\\u0000"``, ``"\\ud800"``) in a text column, NaN or an infinity (Python
    reads ``NaN``, ``Infinity`` and ``1e999``) in a JSON one. Refused up front with a 400,
    such a callback would otherwise get a 503 on every retry."""
    pending = [body]
    while pending:  # iterative: the body may be nested as deep as the parser allows
        value = pending.pop()
        if isinstance(value, str):
            if not storable(value):
                return "the body holds a NUL character or an unpaired surrogate"
        elif isinstance(value, float):
            if not math.isfinite(value):
                return "the body holds NaN or an infinite number"
        elif isinstance(value, dict):
            pending.extend(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return None


def _problem(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def _problem_unread(status: int, error: str, reason: str) -> web.Response:
    """A refusal sent before the body was read: the connection closes with it. (aiohttp
    would keep it open, and a sender still writing a large body then waits out the
    keep-alive timeout before its next request on that connection.)"""
    refused = _problem(status, error, reason)
    refused.force_close()
    return refused


class CallbackReceiver:
    def __init__(
        self,
        secret: str,
        intake: CallbackIntake,
        checker: Checker,
        store: DeliveryStore,
        placement: PlacementIntake | None = None,
        *,
        budget: CallBudget | None = None,
        events: EventIntake | None = None,
    ) -> None:
        if not secret:
            raise ValueError("the callback secret must not be empty")
        self._events = events
        self._secret = secret.encode()
        self._intake = intake
        self._checker = checker
        self._store = store
        self._placement = placement
        self._budget = budget
        self._health: tuple[float, dict[str, int]] | None = None

    def __repr__(self) -> str:
        return "CallbackReceiver(<secret hidden>)"

    def _authorized(self, request: web.Request) -> str | None:
        """None when the secret matches; otherwise why not."""
        given = request.query.get("secret")
        if not given:
            return "the secret query parameter is missing"
        if not hmac.compare_digest(given.encode(), self._secret):
            return "the secret does not match"
        return None

    async def handle_callback(self, request: web.Request) -> web.Response:
        problem = self._authorized(request)
        if problem is not None:
            log.info("refused a callback: %s", problem)
            return _problem_unread(401, "unauthorized", problem)
        too_large = f"the body is larger than {MAX_BODY_BYTES} bytes"
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem_unread(413, "too_large", too_large)
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _problem_unread(413, "too_large", too_large)
        try:
            body: Any = json.loads(raw)
        # ValueError: also an integer of more than 4300 digits; RecursionError: deep nesting
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError):
            return _problem(400, "bad_request", "the body is not valid JSON")
        unstorable = _unstorable(body)
        if unstorable is not None:
            return _problem(400, "bad_request", unstorable)
        # Answers a turn is waiting for (v2 placement, by requestId), then status events
        # (merged into the device's state): both stored at once, never queued for delivery.
        special: tuple[tuple[str, Any, Any], ...] = (
            ("placement callback", parse_placement_callback, self._accept_placement),
            ("status event", parse_status_event, self._accept_status_event),
        )
        for kind, parse, accept in special:
            try:
                parsed = parse(body)
            except CallbackRejected as rejected:
                log.info("refused a %s: %s", kind, rejected.reason)
                return _problem(400, "bad_request", rejected.reason)
            if parsed is not None:
                return await accept(parsed)
        try:
            callback = parse_callback(body)
        except CallbackRejected as rejected:
            log.info("refused a callback: %s", rejected.reason)
            return _problem(400, "bad_request", rejected.reason)
        try:
            unknown = await self._checker.check(callback)
        except Exception:
            log.exception("checking callback %s failed", callback.message_id)
            return _problem(503, "unavailable", "the callback could not be checked; try again")
        if unknown is not None:
            log.info(
                "refused callback %s (%s): %s", callback.message_id, callback.push_type, unknown
            )
            return _problem(404, "unknown_device", unknown)
        record = NewCallback(
            message_id=callback.message_id,
            push_type=callback.push_type,
            device_id=callback.device_id,
            body=body,
        )
        try:
            is_new = await self._intake.submit(record)
        except Exception as error:
            log.error("storing callback %s failed: %s", callback.message_id, type(error).__name__)
            return _problem(503, "unavailable", "the callback could not be stored; try again")
        status = "accepted" if is_new else "duplicate"
        log.debug("callback %s (%s) %s", callback.message_id, callback.push_type, status)
        return web.json_response({"status": status, "messageId": callback.message_id})

    async def _accept_placement(self, placement: PlacementResult) -> web.Response:
        if self._placement is None:
            return _problem(503, "unavailable", "placement answers are not accepted here")
        try:
            recorded = await self._placement.accept(placement)
            if self._events is not None:
                # Idempotent: a redelivered answer confirms the same device again.
                await self._events.placement_answer(placement)
        except Exception as error:
            log.error(
                "storing placement answer %s/%s failed: %s",
                placement.request_id,
                placement.device_id,
                type(error).__name__,
            )
            return _problem(503, "unavailable", "the callback could not be stored; try again")
        return web.json_response(
            {
                "status": "accepted" if recorded.new else "duplicate",
                "messageId": placement.message_id,
                "requestId": placement.request_id,
            }
        )

    async def _accept_status_event(self, event: StatusEvent) -> web.Response:
        if self._events is None:
            return _problem(503, "unavailable", "status events are not accepted here")
        try:
            merged = await self._events.accept(event)
        except Exception as error:
            log.error("merging status event %s failed: %s", event.message_id, type(error).__name__)
            return _problem(503, "unavailable", "the event could not be stored; try again")
        if merged.outcome == "unknown_device":
            log.info("refused status event %s: unknown device", event.message_id)
            return _problem(404, "unknown_device", "no user is known for this device")
        return web.json_response({"status": merged.outcome, "messageId": event.message_id})

    async def _outbox_counts(self) -> dict[str, int] | None:
        """Outbox rows per state (cached for a second); None while the database is down."""
        now = time.monotonic()
        if self._health is None or now - self._health[0] > HEALTH_CACHE_SECONDS:
            try:
                self._health = (now, await self._store.count_by_state())
            except Exception as error:
                log.warning("health check: database unavailable (%s)", type(error).__name__)
                return None
        return self._health[1]

    async def handle_health(self, request: web.Request) -> web.Response:
        outbox = await self._outbox_counts()
        if outbox is None:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok", "outbox": outbox})

    async def handle_metrics(self, request: web.Request) -> web.Response:
        """Prometheus text: LG call counts and backoffs, outbox rows by state."""
        out = MetricsText()
        if self._budget is not None:
            add_budget_metrics(out, await self._budget.snapshot())
        outbox = await self._outbox_counts()
        out.family("connector_database_up", "gauge", "1 when the outbox counts could be read.")
        out.sample("connector_database_up", 0 if outbox is None else 1)
        if outbox is not None:
            out.family("connector_outbox_messages", "gauge", "Outbox rows by delivery state.")
            for state, count in sorted(outbox.items()):
                out.sample("connector_outbox_messages", count, state=state)
            await self._add_lag(out)
        return web.Response(
            body=out.text().encode(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE}
        )

    async def _add_lag(self, out: MetricsText) -> None:
        try:
            oldest_message, oldest_callback = await self._store.oldest_waiting()
        except Exception as error:
            log.warning("metrics: lag unavailable (%s)", type(error).__name__)
            return
        now = datetime.now(timezone.utc)
        out.family(
            "connector_delivery_lag_seconds",
            "gauge",
            "Age of the oldest message still waiting for delivery (0: none waiting).",
        )
        out.sample("connector_delivery_lag_seconds", _age(oldest_message, now))
        out.family(
            "connector_callback_lag_seconds",
            "gauge",
            "Age of the oldest LG callback stored but not yet planned (0: none).",
        )
        out.sample("connector_callback_lag_seconds", _age(oldest_callback, now))


def _age(since: datetime | None, now: datetime) -> float:
    return max((now - since).total_seconds(), 0.0) if since is not None else 0.0


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without the query string: it carries LG's shared secret."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %.1fms", request.method, request.path, response.status, time * 1000
        )


def create_app(receiver: CallbackReceiver) -> web.Application:
    # aiohttp refuses larger bodies itself (413) before they are read into memory.
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_post(CALLBACK_PATH, receiver.handle_callback)
    app.router.add_get("/health", receiver.handle_health)
    app.router.add_get("/metrics", receiver.handle_metrics)
    return app
