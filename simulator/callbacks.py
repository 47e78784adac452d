"""Delivery of push and PCC callbacks to the partner's callback URL."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

log = logging.getLogger(__name__)

CALLBACK_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Delivery:
    sent: bool
    reason: str | None = None


def redacted(url: str) -> str:
    """The URL without query or credentials: a callback URL may carry a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class CallbackSender:
    """One shared HTTP session, with a timeout, for every callback POST."""

    def __init__(self, url: str | None, timeout: float = CALLBACK_TIMEOUT_SECONDS) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(self, message: dict[str, Any]) -> Delivery:
        """POST one message. Never raises: a failing partner must not stop the simulator."""
        if not self.url:
            return Delivery(False, "no callback URL is configured")
        await self.start()
        assert self._session is not None
        try:
            async with self._session.post(self.url, json=message) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return Delivery(True)
                reason = f"callback endpoint answered HTTP {response.status}"
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            reason = f"callback endpoint failed: {type(exc).__name__}"
        log.warning("callback to %s not delivered: %s", redacted(self.url), reason)
        return Delivery(False, reason)
