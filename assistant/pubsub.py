"""One Redis pub/sub channel: publish to it, and hand every message to a callback.

Used where several processes must hear about something at once but the truth is kept
elsewhere (the database): live chat-widget frames, placement answers arriving. So a lost
message is never a lost fact, and Redis trouble never fails the caller: ``publish``
answers False, the listener reconnects every second, and the outage is logged once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

OnMessage = Callable[[bytes], Awaitable[None]]
RECONNECT_SECONDS = 1.0


class PubSubChannel:
    def __init__(self, redis_url: str, channel: str, on_message: OnMessage, purpose: str) -> None:
        self._url = redis_url
        self.channel = channel
        self._on_message = on_message
        self._purpose = purpose  # for the log line: "widget broadcast", ...
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._down_logged = False

    def __repr__(self) -> str:
        return f"PubSubChannel({self.channel})"

    async def start(self) -> None:
        if self._redis is not None:
            return
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self._url)
        self._listener = asyncio.ensure_future(self._listen())

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            try:
                await self._listener
            except (asyncio.CancelledError, Exception):  # shutting down
                pass
            self._listener = None
        if self._redis is not None:
            await self._redis.close()
            self._redis = None

    async def publish(self, payload: str) -> bool:
        """True when Redis took the message; False (logged once) when it could not."""
        if self._redis is None:
            return False
        try:
            await self._redis.publish(self.channel, payload)
        except Exception as error:  # any Redis failure: the caller falls back
            self._down(error)
            return False
        self._up()
        return True

    async def _listen(self) -> None:
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._up()
                async for item in pubsub.listen():
                    if item.get("type") == "message":
                        await self._on_message(item["data"])
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis went away: wait and subscribe again
                self._down(error)
                await asyncio.sleep(RECONNECT_SECONDS)
            finally:
                try:
                    await pubsub.close()
                except Exception:  # the connection is gone anyway
                    pass

    def _down(self, error: BaseException) -> None:
        if not self._down_logged:
            self._down_logged = True
            log.warning(
                "%s: Redis unavailable (%s); falling back until it is back",
                self._purpose,
                type(error).__name__,
            )

    def _up(self) -> None:
        if self._down_logged:
            self._down_logged = False
            log.info("%s: Redis is back", self._purpose)
