"""Gathering the per-device callbacks of a v2 placement request, no Rasa.

LG answers a placement call ("status of all my devices", "turn off every air
conditioner") with 202 and a ``requestId``, then calls our callback URL once per device,
in any order, maybe twice, maybe late, maybe never. The connector's receiver stores each
callback (``PlacementRepository.record``) and rings a :class:`Waker`; the turn that made
the request waits in :meth:`Gatherer.gather` until every expected device answered or the
deadline passes, then reports honestly what it has and what is missing. Missing devices
are remembered, so a late answer can be followed up.

The database is the meeting point (receiver and waiter are different processes, and a
result must not be lost because nobody was waiting at that instant). The waker only
shortens the wait: :class:`InProcessWaker` when both sides share a process,
:class:`RedisWaker` (pub/sub) across processes; without either, the gatherer re-reads the
results every ``poll_seconds``, which it does anyway as a safety net for a lost wake-up.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

from assistant.pubsub import PubSubChannel
from assistant.storage.models import utcnow
from assistant.storage.placement import DeviceResult, PlacementRepository

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gathered:
    """What came back for one request by its deadline."""

    request_id: str
    expected: tuple[str, ...]
    answers: dict[str, DeviceResult]  # the first answer of each expected device
    missing: tuple[str, ...]  # expected devices that did not answer in time
    unexpected: tuple[str, ...]  # devices that answered but were not expected

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def confirmed(self) -> list[str]:
        return [device for device, answer in self.answers.items() if answer.ok]

    @property
    def refused(self) -> dict[str, DeviceResult]:
        return {device: answer for device, answer in self.answers.items() if not answer.ok}


class Waker:
    """Wakes the waiters of a request id when a result for it is stored (in this process)."""

    def __init__(self) -> None:
        self._events: dict[str, set[asyncio.Event]] = defaultdict(set)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({sum(len(e) for e in self._events.values())} waiting)"

    async def start(self) -> None:
        """Nothing to start in-process."""

    async def close(self) -> None:
        """Nothing to close in-process."""

    async def notify(self, request_id: str) -> None:
        self._wake(request_id)

    def _wake(self, request_id: str) -> None:
        for event in self._events.get(request_id, ()):
            event.set()

    @asynccontextmanager
    async def listen(self, request_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when a result for ``request_id`` is stored; clear it after use."""
        event = asyncio.Event()
        self._events[request_id].add(event)
        try:
            yield event
        finally:
            waiters = self._events.get(request_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._events[request_id]


class InProcessWaker(Waker):
    """Receiver and waiter in one process (tests, a single-process deployment)."""


class RedisWaker(Waker):
    """Across processes: results are announced on a Redis pub/sub channel; every process
    listens and wakes its own waiters. A lost message only costs one poll interval."""

    def __init__(self, redis_url: str, prefix: str = "lgconn") -> None:
        super().__init__()
        self._pubsub = PubSubChannel(
            redis_url, f"{prefix}:placement-results", self._published, "placement wake-ups"
        )

    async def start(self) -> None:
        await self._pubsub.start()

    async def close(self) -> None:
        await self._pubsub.close()

    async def notify(self, request_id: str) -> None:
        self._wake(request_id)  # waiters in this process need no round trip
        # Not published: the waiters poll the database anyway.
        await self._pubsub.publish(json.dumps({"requestId": request_id}))

    async def _published(self, data: bytes) -> None:
        try:
            self._wake(str(json.loads(data)["requestId"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed placement wake-up on Redis")


class Gatherer:
    def __init__(
        self, repository: PlacementRepository, waker: Waker, poll_seconds: float = 0.1
    ) -> None:
        self._repository = repository
        self._waker = waker
        self._poll = poll_seconds

    def __repr__(self) -> str:
        return f"Gatherer({self._waker!r}, poll {self._poll:g} s)"

    async def gather(
        self,
        request_id: str,
        expected: Sequence[str],
        timeout_seconds: float,
        *,
        thinq_user: str,
        kind: str,
        sender_id: str | None = None,
        channel: str | None = None,
    ) -> Gathered:
        """Wait until every ``expected`` device answered ``request_id`` or the time is up."""
        wanted = tuple(dict.fromkeys(expected))
        started = time.monotonic()
        await self._repository.expect(
            request_id,
            thinq_user,
            kind,
            wanted,
            utcnow() + timedelta(seconds=timeout_seconds),
            sender_id=sender_id,
            channel=channel,
        )
        async with self._waker.listen(request_id) as woken:
            while True:
                woken.clear()
                results = await self._repository.results(request_id)
                answers = _first_answers(results, wanted)
                left = timeout_seconds - (time.monotonic() - started)
                if len(answers) == len(wanted) or left <= 0:
                    break
                try:
                    await asyncio.wait_for(woken.wait(), min(left, self._poll))
                except asyncio.TimeoutError:
                    pass
        missing = tuple(device for device in wanted if device not in answers)
        if missing:
            await self._repository.report_missing(request_id, missing)
            log.info(
                "placement %s: %d of %d answered in %.1f s",
                request_id,
                len(answers),
                len(wanted),
                time.monotonic() - started,
            )
        unexpected = tuple(
            dict.fromkeys(r.device_id for r in results if r.device_id not in set(wanted))
        )
        return Gathered(request_id, wanted, answers, missing, unexpected)


def _first_answers(
    results: Iterable[DeviceResult], wanted: Sequence[str]
) -> dict[str, DeviceResult]:
    expected = set(wanted)
    answers: dict[str, DeviceResult] = {}
    for result in results:
        if result.device_id in expected and result.device_id not in answers:
            answers[result.device_id] = result
    return answers
