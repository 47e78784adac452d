"""The demo's CALLBACK_URL receiver: what Rasa's callback channel sends a user ends up here.

It prints each bot message (so a demo user sees proactive messages arrive),
keeps them in memory for tests (``GET /messages?sender=ID``), and answers 200.
Bad input gets a 400 with a reason. Run: ``python -m devstack.sink`` (port SINK_PORT, 8701).

It stands for a partner's idempotent receiver: a message carrying an id (the connector's
``message_id`` / ``Idempotency-Key``) that was already received is answered 200 but kept
only once; ``GET /redeliveries`` counts how often that happened, per id.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections import OrderedDict, defaultdict
from typing import Any

from aiohttp import web

logger = logging.getLogger("devstack.sink")
MAX_KEPT_PER_SENDER = 1000
MAX_REMEMBERED_IDS = 100_000
MESSAGES: web.AppKey[dict[str, list[dict[str, Any]]]] = web.AppKey("messages", dict)
# Times each message id was received, oldest id first (bounded).
SEEN: web.AppKey[OrderedDict[str, int]] = web.AppKey("seen", OrderedDict)


def _message_key(request: web.Request, body: dict[str, Any]) -> str | None:
    key = body.get("message_id") or request.headers.get("Idempotency-Key")
    return key if isinstance(key, str) and key else None


async def receive(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.json_response({"error": "body is not JSON"}, status=400)
    if not isinstance(body, dict) or not isinstance(body.get("recipient_id"), str):
        return web.json_response({"error": "expected an object with recipient_id"}, status=400)
    key = _message_key(request, body)
    if key is not None:
        seen = request.app[SEEN]
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:
            # Already shown: acknowledge, so the sender stops, but keep it once.
            logger.info("redelivery %d of message %s dropped", seen[key] - 1, key)
            return web.json_response({"ok": True, "duplicate": True})
        while len(seen) > MAX_REMEMBERED_IDS:
            seen.popitem(last=False)
    kept = request.app[MESSAGES][body["recipient_id"]]
    kept.append(body)
    del kept[:-MAX_KEPT_PER_SENDER]
    print(f"[to {body['recipient_id']}] {body.get('text') or body}", flush=True)
    return web.json_response({"ok": True})


async def messages(request: web.Request) -> web.Response:
    sender = request.query.get("sender")
    store = request.app[MESSAGES]
    if sender is None:
        return web.json_response({k: v for k, v in store.items()})
    return web.json_response(store.get(sender, []))


async def redeliveries(request: web.Request) -> web.Response:
    """How many redeliveries were dropped, in total and per message id."""
    repeated = {key: count - 1 for key, count in request.app[SEEN].items() if count > 1}
    return web.json_response({"total": sum(repeated.values()), "by_message": repeated})


async def clear(request: web.Request) -> web.Response:
    request.app[MESSAGES].clear()
    request.app[SEEN].clear()
    return web.json_response({"ok": True})


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app() -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[MESSAGES] = defaultdict(list)
    app[SEEN] = OrderedDict()
    app.router.add_post("/callback", receive)
    app.router.add_get("/messages", messages)
    app.router.add_delete("/messages", clear)
    app.router.add_get("/redeliveries", redeliveries)
    app.router.add_get("/health", health)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    port = int(os.environ.get("SINK_PORT", "8701"))
    web.run_app(create_app(), host="127.0.0.1", port=port, print=None)


if __name__ == "__main__":
    main()
