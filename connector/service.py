"""The connector process: LG callback receiver and delivery worker, wired from settings.

The worker role also runs the event-subscription renewer (``connector/renewer.py``; one
across all workers, by a database lease); the receiver role merges status events into
``device_states`` (``connector/event_intake.py``).

One process can run both (the default; required without Redis, whose absence means an
in-process queue), or only one role (``--no-receiver`` / ``--no-worker``) to scale them
separately; any number of either may run at once against one Redis and one PostgreSQL.
Receivers on one host may share a port (SO_REUSEPORT: the kernel spreads connections).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import aiohttp
from aiohttp import web

from assistant.correlation import InProcessWaker, RedisWaker, Waker
from assistant.late_answers import LateAnswers
from assistant.linking import LinkingService
from assistant.notifications import Wording
from assistant.settings import ConnectorSettings, Settings
from assistant.storage import Storage
from assistant.storage.device_states import (
    DeviceStateRepository,
    EventSubscriptionRepository,
    LeaseRepository,
)
from assistant.storage.placement import PlacementRepository
from assistant.vocabulary import load_vocabulary
from connector import linking as link_callback
from connector.event_intake import EventIntake
from connector.history import HistoryRecorder
from connector.outputs import build_outputs, redacted
from connector.placement_intake import PlacementIntake
from connector.queue import DeliveryQueue, InProcessQueue, RedisStreamQueue
from connector.receiver import (
    AcceptanceCache,
    CallbackIntake,
    CallbackReceiver,
    PathOnlyAccessLogger,
    create_app,
)
from connector.renewer import EventRenewer
from connector.store import DeliveryStore
from connector.worker import DeliveryWorker
from lgcloud.call_budget import CallBudget
from lgcloud.placement import PlacementClient

log = logging.getLogger(__name__)

# Seconds a stopping receiver gives requests in flight to finish.
RECEIVER_GRACE_SECONDS = 10.0


class StartupError(Exception):
    """The configuration cannot work; the message says what to change."""


@dataclass(frozen=True)
class Roles:
    receiver: bool = True
    worker: bool = True


def check_configuration(settings: ConnectorSettings, roles: Roles) -> None:
    if not (roles.receiver or roles.worker):
        raise StartupError("--no-receiver and --no-worker together leave nothing to run")
    if roles.receiver and not settings.callback_secret:
        raise StartupError(
            "LG_CALLBACK_SECRET is not set: the receiver cannot tell LG's callbacks from "
            "anyone else's. Set it to a long random value and register the callback URL "
            "with ?secret=<that value>."
        )
    if not settings.redis_url and not (roles.receiver and roles.worker):
        raise StartupError(
            "without REDIS_URL the receiver and the worker share an in-process queue, so "
            "they must run in the same process: drop --no-receiver/--no-worker or set REDIS_URL"
        )
    if roles.worker and settings.send_timeout_seconds >= settings.reclaim_after_seconds:
        raise StartupError(
            "DELIVERY_SEND_TIMEOUT_SECONDS must be shorter than DELIVERY_RECLAIM_AFTER_SECONDS: "
            "otherwise a slow send could be taken over by another worker and sent twice"
        )


def build_queue(settings: ConnectorSettings) -> DeliveryQueue:
    if settings.redis_url:
        return RedisStreamQueue.from_url(
            settings.redis_url,
            prefix=settings.redis_prefix,
            reclaim_after_seconds=settings.reclaim_after_seconds,
        )
    return InProcessQueue()


class ConnectorService:
    """Everything one connector process runs; :meth:`start` then :meth:`stop`."""

    def __init__(
        self,
        settings: Settings,
        roles: Roles = Roles(),  # frozen: sharing the default is safe
        *,
        port: int | None = None,
        storage: Storage | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``port`` overrides the configured one (0: any free port, for tests);
        ``storage`` is used instead of opening one (and is then left open by stop);
        ``clock`` is the event renewer's now (tests tie it to the simulated clock)."""
        check_configuration(settings.connector, roles)
        self.settings = settings
        self.roles = roles
        self._port = settings.connector.port if port is None else port
        self._given_storage = storage
        self.storage: Storage | None = None
        self.store: DeliveryStore | None = None
        self.queue: DeliveryQueue | None = None
        self.worker: DeliveryWorker | None = None
        self.intake: CallbackIntake | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._worker_stop = asyncio.Event()
        self._worker_task: asyncio.Task[None] | None = None
        self.bound_port: int | None = None
        # Serves /link/callback (account linking) in the receiver role.
        self.linking: LinkingService | None = None
        # Wakes turns waiting for v2 placement answers (in other processes through Redis).
        self.waker: Waker | None = None
        # Reads the LG call counts for /metrics (every process's through Redis).
        self.budget: CallBudget | None = None
        # Worker role: keeps the linked users' event subscriptions alive.
        self.renewer: EventRenewer | None = None
        self._renewer_clock = clock
        self._renewer_stop = asyncio.Event()
        self._renewer_task: asyncio.Task[None] | None = None
        self._renewer_closers: list[Callable[[], Awaitable[object]]] = []

    async def start(self) -> None:
        # Imported here: the planner loads the domain's wording, which only a running
        # service needs (the outbox CLI does not).
        from assistant.notifications import NotificationPlanner

        connector = self.settings.connector
        self.storage = self._given_storage or await Storage.open(self.settings)
        self.store = DeliveryStore(self.storage.engine)
        planner = NotificationPlanner.create(self.storage)
        self.queue = build_queue(connector)
        await self.queue.start()

        if self.roles.worker:
            # One HTTP session for every send: keep-alive connections to each channel.
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, ttl_dns_cache=300)
            )
            history = None
            if connector.rasa_url:
                history = HistoryRecorder(
                    self.store, self._http, connector.rasa_url, connector.rasa_token
                )
            self.worker = DeliveryWorker(
                self.store,
                self.queue,
                planner,
                build_outputs(
                    connector, self._http, self.storage.alexa_inbox, self.settings.widget
                ),
                connector,
                history=history,
            )
            ready = asyncio.Event()
            self._worker_task = asyncio.create_task(
                self.worker.run(self._worker_stop, ready=ready), name="delivery-worker"
            )
            await _first_of(ready, self._worker_task)
            if self.settings.events.enabled:
                self._start_renewer()

        if self.roles.receiver:
            assert connector.callback_secret is not None
            self.intake = CallbackIntake(self.store, self.queue)
            self.waker = (
                RedisWaker(connector.redis_url, connector.redis_prefix)
                if connector.redis_url
                else InProcessWaker()
            )
            await self.waker.start()
            self.budget = CallBudget(connector.redis_url, connector.redis_prefix)
            receiver = CallbackReceiver(
                connector.callback_secret,
                self.intake,
                AcceptanceCache(planner),
                self.store,
                PlacementIntake(
                    PlacementRepository(self.storage.engine),
                    self.waker,
                    self.store,
                    LateAnswers(self.storage.devices, load_vocabulary(), Wording.from_domain()),
                ),
                budget=self.budget,
                events=EventIntake(DeviceStateRepository(self.storage.engine)),
            )
            app = create_app(receiver)
            # Account linking: LG's membership login redirects the browser here.
            self.linking = LinkingService.create(self.settings, self.storage)
            link_callback.add_routes(app, self.linking)
            self._runner = web.AppRunner(
                app,
                access_log_class=PathOnlyAccessLogger,
                handle_signals=False,
            )
            await self._runner.setup()
            site = web.TCPSite(
                self._runner,
                connector.host,
                self._port,
                shutdown_timeout=RECEIVER_GRACE_SECONDS,
                reuse_port=self._port != 0,
            )
            await site.start()
            self.bound_port = self._runner.addresses[0][1]
        log.info(
            "connector ready: %s; queue %s; channel sends to %s",
            f"receiver on http://{connector.host}:{self.bound_port}/lg/callbacks"
            if self.roles.receiver
            else "no receiver",
            "Redis stream" if connector.redis_url else "in-process",
            redacted(connector.callback_url) if connector.callback_url else "(no CALLBACK_URL)",
        )

    def _start_renewer(self) -> None:
        assert self.storage is not None
        connector, thinq = self.settings.connector, self.settings.thinq
        budget = CallBudget(connector.redis_url, connector.redis_prefix)
        placement = PlacementClient(
            thinq.base_url,
            thinq.service_id,
            thinq.service_key,
            timeout_seconds=thinq.timeout_seconds,
            budget=budget,
            circuit=thinq.circuit(),
        )
        linking = LinkingService.create(self.settings, self.storage)
        self._renewer_closers = [placement.aclose, budget.aclose, linking.aclose]
        engine = self.storage.engine
        extra = {"clock": self._renewer_clock} if self._renewer_clock is not None else {}
        self.renewer = EventRenewer(
            EventSubscriptionRepository(engine),
            DeviceStateRepository(engine),
            LeaseRepository(engine),
            self.storage.accounts,
            placement,
            self.settings.events,
            fresh=linking.fresh,
            **extra,
        )
        self._renewer_task = asyncio.create_task(
            self.renewer.run(self._renewer_stop), name="event-renewer"
        )

    async def _stop_renewer(self) -> None:
        if self._renewer_task is not None:
            self._renewer_stop.set()
            try:
                # A pass in hand finishes (its LG call is bounded by THINQ_TIMEOUT_SECONDS).
                await asyncio.wait_for(asyncio.shield(self._renewer_task), RECEIVER_GRACE_SECONDS)
            except asyncio.TimeoutError:
                self._renewer_task.cancel()
                await asyncio.gather(self._renewer_task, return_exceptions=True)
            except Exception:
                log.exception("the event renewer failed")
        for close in self._renewer_closers:
            try:
                await close()
            except Exception as error:
                log.warning("closing the renewer's clients failed: %s", type(error).__name__)
        self._renewer_closers = []

    async def stop(self) -> None:
        """Graceful: stop taking callbacks, finish storing and queueing those in hand,
        then let the worker finish its sends and acknowledge them."""
        try:
            await self._stop_renewer()
            if self._runner is not None:
                await self._runner.cleanup()
            if self.intake is not None:
                await self.intake.drain()
            if self._worker_task is not None:
                self._worker_stop.set()
                await asyncio.gather(self._worker_task, return_exceptions=True)
        finally:
            if self._http is not None:
                await self._http.close()
            if self.linking is not None:
                await self.linking.aclose()
            if self.waker is not None:
                await self.waker.close()
            if self.budget is not None:
                await self.budget.aclose()
            if self.queue is not None:
                await self.queue.close()
            if self.storage is not None and self._given_storage is None:
                await self.storage.close()

    async def wait_worker(self) -> None:
        """Returns if the worker ends on its own (it only does on a crash)."""
        if self._worker_task is not None:
            await asyncio.shield(self._worker_task)
        else:
            await asyncio.Event().wait()


async def _first_of(event: asyncio.Event, task: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(event.wait())
    await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # the worker failed while starting: raise its error here
        raise RuntimeError("the delivery worker ended while starting")


async def serve(settings: Settings, roles: Roles) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    service = ConnectorService(settings, roles)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
        crashed = asyncio.ensure_future(service.wait_worker())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait([crashed, stopping], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if crashed.done():
            crashed.result()
        else:
            crashed.cancel()
            log.info("stopping: finishing work in hand")
    finally:
        await service.stop()
