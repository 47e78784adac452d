"""The URL LG calls back: ``POST /lg/callbacks?secret=<shared secret>``.

Authentication: LG registers a partner's callback URL once and cannot add headers,
so the shared secret rides in the registered URL's query string; it is compared
in constant time and never logged (log lines carry the path only). Then the body
is validated, the device or user must be one of ours, and the callback is stored
before the 200: a 4xx (with a reason) stores nothing, a 200 means it is durable.
A messageId seen before answers 200 "duplicate" and queues nothing.
"""

from __future__ import annotations

import hmac
import json
import logging

from aiohttp import web

from assistant.notifications import NotificationPlanner
from connector.deliverer import CALLBACK_ITEM
from connector.dispatch import DeliveryQueue
from connector.outbox_store import OutboxStore
from lgcloud.callbacks import CallbackRejected, parse_callback

logger = logging.getLogger(__name__)

CALLBACK_PATH = "/lg/callbacks"
MAX_BODY_BYTES = 64 * 1024


def _problem(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


class CallbackReceiver:
    def __init__(
        self,
        secret: str,
        store: OutboxStore,
        planner: NotificationPlanner,
        queue: DeliveryQueue,
    ) -> None:
        self._secret = secret.encode()
        self._store = store
        self._planner = planner
        self._queue = queue

    def routes(self, app: web.Application) -> None:
        app.router.add_post(CALLBACK_PATH, self.receive)
        app.router.add_get("/health", self.health)

    def _authentic(self, request: web.Request) -> bool:
        given = request.query.get("secret", "")
        return hmac.compare_digest(given.encode("utf-8", "replace"), self._secret)

    async def receive(self, request: web.Request) -> web.Response:
        if not self._authentic(request):
            logger.warning("LG callback refused: missing or wrong secret")
            return _problem(401, "unauthorized", "the callback secret is missing or wrong")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return _problem(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        raw = await request.content.read(MAX_BODY_BYTES + 1)
        if len(raw) > MAX_BODY_BYTES:
            return _problem(413, "too_large", f"the body is over {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "bad_request", "the body is not JSON")
        try:
            callback = parse_callback(body)
        except CallbackRejected as exc:
            logger.info("LG callback refused: %s", exc.reason)
            return _problem(400, "bad_request", exc.reason)
        problem = await self._planner.check(callback)
        if problem:
            logger.info("LG callback %s refused: %s", callback.message_id, problem)
            return _problem(404, "unknown_device", problem)
        new = await self._store.record_callback(
            callback.message_id, callback.push_type, callback.device_id, body
        )
        if new:
            try:
                await self._queue.publish([CALLBACK_ITEM + callback.message_id])
            except Exception:
                # Stored already: the sweeper queues it. LG must not send it again.
                logger.exception("queueing callback %s failed", callback.message_id)
        status = "accepted" if new else "duplicate"
        return web.json_response({"status": status, "messageId": callback.message_id})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "outbox": await self._store.counts()})
