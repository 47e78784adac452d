"""Delivery of push and PCC callbacks to the partner's callback URL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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


CALLBACK_SCHEMES = ("http", "https")
MAX_CALLBACK_URL_LENGTH = 2048


def redacted(url: str) -> str:
    """The URL without query, fragment or credentials: a callback URL may carry a secret."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # out-of-range port: leave it out rather than fail while logging
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def callback_url_problem(url: object) -> str | None:
    """Why ``url`` cannot be a callback URL, or None when it can.

    The reason never quotes the URL: it may carry a secret.
    """
    if not isinstance(url, str):
        return "url must be a string or null"
    if len(url) > MAX_CALLBACK_URL_LENGTH:
        return f"url must be at most {MAX_CALLBACK_URL_LENGTH} characters"
    if any(char.isspace() or not char.isprintable() for char in url):
        return "url must not contain whitespace or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port outside 0..65535
    except ValueError:
        return "url is not a valid URL"
    if parts.scheme not in CALLBACK_SCHEMES:
        return "url must be an http or https URL"
    if not parts.hostname:
        return "url must name a host"
    return None


class CallbackSender:
    """One shared HTTP session, with a timeout, for every callback POST."""

    def __init__(self, url: str | None, timeout: float = CALLBACK_TIMEOUT_SECONDS) -> None:
        self.url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        # Asked before each send (simulator/faults.py): a reason means "lose this one".
        self.dropper: Callable[[dict[str, Any]], str | None] | None = None

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
        dropped = self.dropper(message) if self.dropper is not None else None
        if dropped is not None:
            return Delivery(False, dropped)
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
