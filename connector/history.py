"""Recording delivered proactive messages in the Rasa conversation, after the fact.

The user saw the message through their channel; Rasa did not send it, so its tracker
does not know. For each delivered outbox row we append to the conversation a bot event
(with ``proactive: true`` and the LG message id in its metadata) and set the
``context_devices`` slot to the device, so "start it again" refers to that appliance.

Best effort and off the delivery path: a loop claims delivered rows whose
``history_recorded_at`` is NULL (compare-and-set, so with several workers each row is
posted by one of them), posts one request per conversation with that conversation's
events in delivery order, and hands the rows back if Rasa could not take them. While
Rasa fails, the loop slows down and logs once; rows delivered more than
``max_age_seconds`` ago are no longer offered (late history would confuse more than help).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import aiohttp

from assistant.storage.models import utcnow
from connector.outputs import redacted
from connector.store import DeliveryStore, OutboxRow

log = logging.getLogger(__name__)


def history_events(rows: list[OutboxRow]) -> list[dict[str, Any]]:
    """Rasa tracker events for one conversation's delivered rows, oldest first."""
    events: list[dict[str, Any]] = []
    for row in rows:
        events.append(
            {
                "event": "bot",
                "text": row.text,
                "metadata": {
                    "proactive": True,
                    "lg_message_id": row.message_id,
                    "response": row.response,
                },
            }
        )
        events.append({"event": "slot", "name": "context_devices", "value": [row.device_id]})
    return events


class HistoryRecorder:
    def __init__(
        self,
        store: DeliveryStore,
        session: aiohttp.ClientSession,
        rasa_url: str,
        rasa_token: str | None,
        *,
        interval_seconds: float = 1.0,
        concurrency: int = 8,
        attempts: int = 3,
        timeout_seconds: float = 5.0,
        max_age_seconds: float = 3600.0,
        batch: int = 200,
    ) -> None:
        self._store = store
        self._session = session
        self._rasa_url = rasa_url.rstrip("/")
        self._token = rasa_token
        self._interval = interval_seconds
        self._limit = asyncio.Semaphore(concurrency)
        self._attempts = attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._max_age = timedelta(seconds=max_age_seconds)
        self._batch = batch
        self._failing = False
        self._wake = asyncio.Event()

    def __repr__(self) -> str:
        return f"HistoryRecorder({redacted(self._rasa_url)})"

    def poke(self) -> None:
        """New deliveries were recorded: look now rather than at the next interval."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = self._interval
        while not stop.is_set():
            try:
                recorded, failed = await self.record_pending()
            except Exception as error:  # the database may be briefly unavailable
                log.warning("conversation history pass failed: %s", type(error).__name__)
                recorded, failed = 0, 1
            # Slow down while Rasa (or the database) fails; back to normal on success.
            delay = min(delay * 2, 60.0) if failed and not recorded else self._interval
            if recorded >= self._batch:
                continue  # more are waiting
            self._wake.clear()
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()

    async def record_pending(self) -> tuple[int, int]:
        """One pass; (rows recorded, rows handed back for a later pass)."""
        now = utcnow()
        rows = await self._store.claim_history(now - self._max_age, now, limit=self._batch)
        if not rows:
            return 0, 0
        by_sender: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_sender[row.sender_id].append(row)
        results = await asyncio.gather(
            *(self._record(sender, sender_rows) for sender, sender_rows in by_sender.items())
        )
        failed = [row.id for ok, sender_rows in results if not ok for row in sender_rows]
        if failed:
            await self._store.release_history(failed)
        return len(rows) - len(failed), len(failed)

    async def _record(self, sender_id: str, rows: list[OutboxRow]) -> tuple[bool, list[OutboxRow]]:
        url = f"{self._rasa_url}/conversations/{quote(sender_id, safe='')}/tracker/events"
        params = {"include_events": "NONE"}
        if self._token:
            params["token"] = self._token
        events = history_events(rows)
        problem = ""
        async with self._limit:
            for attempt in range(self._attempts):
                if attempt:
                    await asyncio.sleep(0.25 * 2**attempt)
                try:
                    async with self._session.post(
                        url, params=params, json=events, timeout=self._timeout
                    ) as response:
                        await response.read()
                        if 200 <= response.status < 300:
                            self._recovered()
                            return True, rows
                        problem = f"Rasa answered HTTP {response.status}"
                        if response.status < 500 and response.status not in (408, 429):
                            break  # e.g. a wrong token: trying again will not help
                except asyncio.TimeoutError:
                    problem = "Rasa did not answer in time"
                except aiohttp.ClientError as error:
                    # Only the type: the error's text may contain the URL with the token.
                    problem = f"Rasa is unreachable ({type(error).__name__})"
        self._failed(problem)
        return False, rows

    def _failed(self, problem: str) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "could not record proactive messages in the conversation history at %s: %s; "
                "retrying in the background",
                redacted(self._rasa_url),
                problem,
            )

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("recording proactive messages in the conversation history works again")
