"""The open chat-widget sockets, and how a frame reaches all of one user's sockets.

A user may have the widget open in several tabs, and with several Rasa processes behind
one address those tabs may be connected to different processes. :class:`LiveSockets`
holds this process's sockets by sender id; :class:`Broadcaster` sends a frame to every
socket of a sender: directly when this process is alone, through a Redis pub/sub
channel (every process subscribed, each sending to its own sockets) when Redis is
configured. If Redis cannot be reached, this process's sockets still get the frame.

Frames are best effort by design: every message is stored before it is broadcast, and a
widget that missed a frame gets the message in its history when it reconnects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from typing import Any, Protocol

log = logging.getLogger(__name__)

SEND_TIMEOUT_SECONDS = 5.0


class Socket(Protocol):
    async def send(self, message: str) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class LiveSockets:
    """This process's open widget sockets, by sender id."""

    def __init__(self) -> None:
        self._by_sender: dict[str, set[Socket]] = defaultdict(set)

    def __repr__(self) -> str:
        return f"LiveSockets({self.count()} open)"

    def add(self, sender_id: str, socket: Socket) -> None:
        self._by_sender[sender_id].add(socket)

    def remove(self, sender_id: str, socket: Socket) -> None:
        sockets = self._by_sender.get(sender_id)
        if sockets is None:
            return
        sockets.discard(socket)
        if not sockets:
            del self._by_sender[sender_id]

    def count(self, sender_id: str | None = None) -> int:
        if sender_id is not None:
            return len(self._by_sender.get(sender_id, ()))
        return sum(len(s) for s in self._by_sender.values())

    async def send(self, sender_id: str, frame: dict[str, Any]) -> int:
        """Send ``frame`` to the sender's sockets here; returns how many took it."""
        sockets = list(self._by_sender.get(sender_id, ()))
        if not sockets:
            return 0
        data = json.dumps(frame)
        results = await asyncio.gather(*(self._send_one(s, data) for s in sockets))
        for socket, ok in zip(sockets, results, strict=True):
            if not ok:
                self.remove(sender_id, socket)
        return sum(results)

    @staticmethod
    async def _send_one(socket: Socket, data: str) -> bool:
        try:
            await asyncio.wait_for(socket.send(data), SEND_TIMEOUT_SECONDS)
            return True
        except asyncio.TimeoutError:
            # A browser that stops reading must not hold up the others; it reconnects
            # and reads the history.
            log.info("widget socket too slow to take a message; closing it")
            try:
                await asyncio.wait_for(socket.close(1013, "too slow"), 1.0)
            except Exception:  # it is being dropped either way
                pass
            return False
        except Exception:  # a closed socket; its session ends by itself
            return False


class Broadcaster:
    """Sends a frame to every open socket of a sender, in any process."""

    def __init__(
        self,
        sockets: LiveSockets,
        redis_url: str | None = None,
        channel: str = "lgconn:widget-live",
    ) -> None:
        self.sockets = sockets
        self._redis_url = redis_url
        self._channel = channel
        self._redis: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._redis_down_logged = False

    def __repr__(self) -> str:
        return f"Broadcaster({'redis' if self._redis_url else 'in-process'}, {self.sockets!r})"

    async def start(self) -> None:
        """With Redis: subscribe, so frames published by other processes reach ours."""
        if self._redis_url is None or self._listener is not None:
            return
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(self._redis_url)
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

    async def send(self, sender_id: str, frame: dict[str, Any]) -> None:
        if self._redis is None:
            await self.sockets.send(sender_id, frame)
            return
        try:
            await self._redis.publish(
                self._channel, json.dumps({"sender_id": sender_id, "frame": frame})
            )
            self._redis_up()
        except Exception as error:  # any Redis failure: deliver locally
            self._redis_down(error)
            await self.sockets.send(sender_id, frame)

    async def _listen(self) -> None:
        """Forward published frames to this process's sockets; resubscribe after errors."""
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._redis_up()
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    try:
                        published = json.loads(item["data"])
                        sender_id, frame = published["sender_id"], published["frame"]
                    except (ValueError, KeyError, TypeError):
                        log.warning("ignored a malformed frame on %s", self._channel)
                        continue
                    await self.sockets.send(sender_id, frame)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis went away: wait and retry
                self._redis_down(error)
                await asyncio.sleep(1.0)
            finally:
                try:
                    await pubsub.close()
                except Exception:  # the connection is gone anyway
                    pass

    def _redis_down(self, error: BaseException) -> None:
        if not self._redis_down_logged:
            self._redis_down_logged = True
            log.warning(
                "widget broadcast: Redis unavailable (%s); only this process's sockets are "
                "reached until it is back",
                type(error).__name__,
            )

    def _redis_up(self) -> None:
        if self._redis_down_logged:
            self._redis_down_logged = False
            log.info("widget broadcast: Redis is back")
