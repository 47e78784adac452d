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

from assistant.pubsub import PubSubChannel

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
        self._pubsub = (
            PubSubChannel(redis_url, channel, self._published, "widget broadcast")
            if redis_url
            else None
        )

    def __repr__(self) -> str:
        return f"Broadcaster({'redis' if self._pubsub else 'in-process'}, {self.sockets!r})"

    async def start(self) -> None:
        """With Redis: subscribe, so frames published by other processes reach ours."""
        if self._pubsub is not None:
            await self._pubsub.start()

    async def close(self) -> None:
        if self._pubsub is not None:
            await self._pubsub.close()

    async def send(self, sender_id: str, frame: dict[str, Any]) -> None:
        published = self._pubsub is not None and await self._pubsub.publish(
            json.dumps({"sender_id": sender_id, "frame": frame})
        )
        if not published:
            # Alone, or Redis is down: this process's sockets still get it.
            await self.sockets.send(sender_id, frame)

    async def _published(self, data: bytes) -> None:
        try:
            published = json.loads(data)
            sender_id, frame = published["sender_id"], published["frame"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed widget frame on Redis")
            return
        await self.sockets.send(sender_id, frame)
