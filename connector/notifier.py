"""The connector process: LG callback receiver and delivery worker, wired together."""

from __future__ import annotations

import asyncio
import logging
import signal

import httpx
from aiohttp import web

from assistant.notifications import NotificationPlanner
from assistant.settings import Settings
from assistant.storage import Storage
from connector.deliverer import DeliveryWorker
from connector.dispatch import DeliveryQueue, InProcessQueue, RedisStreamQueue
from connector.lg_receiver import CallbackReceiver
from connector.outbox_store import OutboxStore
from connector.senders import CallbackUrlSender, Senders

logger = logging.getLogger(__name__)


class ConfigurationError(RuntimeError):
    pass


def make_queue(settings: Settings, *, receiver: bool, worker: bool) -> DeliveryQueue:
    connector = settings.connector
    if connector.redis_url:
        return RedisStreamQueue(
            connector.redis_url, reclaim_after_ms=int(connector.reclaim_after_seconds * 1000)
        )
    if not (receiver and worker):
        raise ConfigurationError(
            "without REDIS_URL the receiver and the delivery worker share an in-process queue, "
            "so they must run in the same process (drop --no-receiver / --no-worker)"
        )
    return InProcessQueue()


async def serve(settings: Settings, *, receiver: bool = True, worker: bool = True) -> None:
    connector = settings.connector
    if receiver and not connector.callback_secret:
        raise ConfigurationError(
            "LG_CALLBACK_SECRET is not set: the callback receiver will not accept "
            "unauthenticated callbacks (register the callback URL with ?secret=<it> at LG)"
        )
    queue = make_queue(settings, receiver=receiver, worker=worker)
    storage = await Storage.open(settings)
    http = httpx.AsyncClient(
        timeout=connector.send_timeout_seconds,
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=50),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner: web.AppRunner | None = None
    try:
        store = OutboxStore(storage.sessions)
        planner = NotificationPlanner.create(storage)
        senders = Senders()
        if connector.callback_url:
            senders.register("callback", CallbackUrlSender(connector.callback_url, http))
        app = web.Application(client_max_size=128 * 1024)
        if receiver:
            CallbackReceiver(connector.callback_secret or "", store, planner, queue).routes(app)
        else:
            app.router.add_get("/health", _health)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, connector.host, connector.port).start()
        logger.info(
            "connector listening on %s:%s (receiver=%s, worker=%s, queue=%s)",
            connector.host,
            connector.port,
            receiver,
            worker,
            type(queue).__name__,
        )
        if worker:
            await DeliveryWorker(
                store, planner, queue, senders, connector, sole_worker=not connector.redis_url
            ).run(stop)
        else:
            await stop.wait()
    finally:
        if runner is not None:
            await runner.cleanup()
        await http.aclose()
        await queue.close()
        await storage.close()


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
