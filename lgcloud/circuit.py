"""A circuit breaker around each LG cloud (purgatory, in-process state).

When LG stops answering (timeouts, refused connections, HTTP 5xx) every user's turn
would otherwise wait out the full timeout, call after call, and hammer a struggling
service. After ``threshold`` such failures in a row the circuit for that cloud opens:
calls fail at once with :class:`LgUnavailable` (nothing was sent, so a command is known
not to have happened) for ``open_seconds``; then calls go through again, and the first
failure re-opens it while a success closes it. Refusals that prove LG is working (a
device offline, a bad value, a rate limit) do not count.

State is per process (purgatory's Redis store needs redis>=5; Rasa pins redis<5); each
process learns LG's health from its own calls within ``threshold`` of them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from lgcloud.errors import ThinQError, ThinQTransportError

logger = logging.getLogger(__name__)
T = TypeVar("T")

CIRCUIT_OPEN = "CIRCUIT_OPEN"
DEFAULT_THRESHOLD = 5
DEFAULT_OPEN_SECONDS = 30.0


class LgUnavailable(ThinQError):
    """Not sent: LG failed repeatedly just now and its circuit is open."""


class Trouble(Exception):
    """Raised inside :meth:`LgCircuit.guard` for an answer that counts as LG failing
    (HTTP 5xx); :meth:`LgCircuit.call` catches it right outside and returns its answer."""

    def __init__(self, answer: object) -> None:
        super().__init__("LG answered with a server failure")
        self.answer = answer


class LgCircuit:
    def __init__(
        self, threshold: int = DEFAULT_THRESHOLD, open_seconds: float = DEFAULT_OPEN_SECONDS
    ) -> None:
        if threshold < 1 or open_seconds <= 0:
            raise ValueError("a circuit needs threshold >= 1 and open_seconds > 0")
        self.threshold = threshold
        self.open_seconds = open_seconds
        # Cancellation is the caller giving up, not LG failing; LG's own refusals (and
        # our budget's) prove it answers. Only transport failures and Trouble count.
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=threshold,
            default_ttl=open_seconds,
            exclude=[
                asyncio.CancelledError,
                (ThinQError, lambda exc: not isinstance(exc, ThinQTransportError)),
            ],
        )
        self._states: dict[str, str] = {}
        self._breakers.add_listener(self._on_event)

    def __repr__(self) -> str:
        return f"LgCircuit(threshold={self.threshold}, open_seconds={self.open_seconds:g})"

    def _on_event(self, name: str, event_type: str, event: object) -> None:
        if event_type == "circuit_breaker_created":
            self._states.setdefault(name, "closed")
        elif event_type == "state_changed":
            state = str(getattr(event, "state", ""))
            if self._states.get(name) != state:
                logger.warning("LG circuit %s is now %s", name, state)
            self._states[name] = state

    def is_open(self, name: str) -> bool:
        return self._states.get(name) == "opened"

    def states(self) -> dict[str, str]:
        """Each circuit's state (``closed``, ``opened``, ``half-opened``), for metrics."""
        return dict(self._states)

    async def call(
        self, name: str, exchange: Callable[[], Awaitable[T]], failed: Callable[[T], bool]
    ) -> T:
        """``exchange()`` under the ``name`` circuit; an answer ``failed`` says is LG
        failing (HTTP 5xx) counts against it but is still returned to the caller."""
        try:
            async with self.guard(name):
                answer = await exchange()
                if failed(answer):
                    raise Trouble(answer)
                return answer
        except Trouble as trouble:
            return trouble.answer  # type: ignore[return-value]

    @asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Run one LG exchange under the ``name`` circuit (``thinq``, ``becon``)."""
        breaker = await self._breakers.get_breaker(name)
        try:
            async with breaker:
                yield
        except OpenedState:
            raise LgUnavailable(
                CIRCUIT_OPEN,
                f"{name}: {self.threshold} failures in a row; not calling it for "
                f"{self.open_seconds:g} s",
            ) from None
