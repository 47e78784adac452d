"""connector.outputs and connector.history against real HTTP endpoints on loopback."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import aiohttp
import pytest
from aiohttp import web

from assistant.notifications import Notice
from assistant.storage import Storage
from connector.history import HistoryRecorder
from connector.outputs import CallbackChannelSender, OutgoingMessage, Outputs, build_outputs
from connector.store import DELIVERED, AttemptOutcome, DeliveryStore, NewCallback
from tests.db_fixtures import make_settings

SECRET_QUERY = "token=do-not-log-me"


def message(
    channel: str | None = "callback", outbox_id: str = "0f0e0d0c-0000-4000-8000-000000000001"
):
    return OutgoingMessage(
        outbox_id=outbox_id,
        message_id="lg-1",
        sender_id="sender-1",
        channel=channel,
        text="Your Washer has finished washing.",
        response="utter_notify_washing_is_complete",
    )


def callback_sender(http: aiohttp.ClientSession, url: str, timeout: float = 1.0) -> Outputs:
    outputs = Outputs()
    outputs.register("callback", CallbackChannelSender(url, http, timeout))
    return outputs


async def test_callback_channel_posts_rasa_shape_with_idempotency_key(sink, http) -> None:
    outputs = callback_sender(http, sink.url)
    result = await outputs.send(message())
    assert result.delivered and result.reason is None
    assert sink.messages("sender-1") == [
        {
            "recipient_id": "sender-1",
            "text": "Your Washer has finished washing.",
            "message_id": "0f0e0d0c-0000-4000-8000-000000000001",
        }
    ]
    assert sink.headers[0]["Idempotency-Key"] == "0f0e0d0c-0000-4000-8000-000000000001"
    # Sent again (a redelivery after a crash): the idempotent partner keeps it once.
    assert (await outputs.send(message())).delivered
    assert len(sink.messages("sender-1")) == 1 and sink.redeliveries() == 1


@pytest.mark.parametrize(
    ("status", "retryable", "reason"),
    [
        (503, True, "the callback channel answered HTTP 503"),
        (500, True, "the callback channel answered HTTP 500"),
        (429, True, "the callback channel answered HTTP 429"),
        (400, False, 'the callback channel refused it with HTTP 400: {"error": "switched off"}'),
        (404, False, 'the callback channel refused it with HTTP 404: {"error": "switched off"}'),
    ],
)
async def test_failures_are_classified(sink, http, status, retryable, reason) -> None:
    sink.status = status
    result = await callback_sender(http, sink.url).send(message())
    assert (result.delivered, result.retryable, result.reason) == (False, retryable, reason)


async def test_unreachable_and_slow_channels_are_retryable_without_leaking_the_url(
    sink, http, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{sink.url}?{SECRET_QUERY}"
    sink.delay = 0.5
    slow = await callback_sender(http, url, timeout=0.1).send(message())
    assert (slow.delivered, slow.retryable) == (False, True)
    assert slow.reason == "the callback channel did not answer within 0.1 s"
    await sink.stop()
    down = await callback_sender(http, url).send(message())
    assert (down.delivered, down.retryable) == (False, True)
    assert down.reason == "the callback channel is unreachable (ClientConnectorError)"
    assert "do-not-log-me" not in caplog.text


@pytest.mark.parametrize("channel", ["rest", None, "telepathy"])
async def test_channels_that_cannot_carry_proactive_messages_fail_permanently(
    tmp_path, http, channel
) -> None:
    outputs = build_outputs(
        make_settings(tmp_path, CALLBACK_URL="http://127.0.0.1:9/x").connector, http
    )
    result = await outputs.send(message(channel))
    assert (result.delivered, result.retryable) == (False, False)
    name = channel or "unknown"
    assert result.reason == f"the {name} channel cannot carry messages the assistant starts"


async def test_callback_channel_without_callback_url_fails_permanently(tmp_path, http) -> None:
    outputs = build_outputs(make_settings(tmp_path).connector, http)
    result = await outputs.send(message())
    assert (result.delivered, result.retryable, result.reason) == (
        False,
        False,
        "CALLBACK_URL is not configured",
    )


# -- conversation history --------------------------------------------------------------------


class FakeRasa:
    """Stands for Rasa's HTTP API: POST /conversations/{id}/tracker/events."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str], list[dict]]] = []
        self.status = 200
        self.app = web.Application()
        self.app.router.add_post("/conversations/{sender}/tracker/events", self.events)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def events(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.json_response({"error": "down"}, status=self.status)
        self.calls.append((request.match_info["sender"], dict(request.query), await request.json()))
        return web.json_response({"sender_id": request.match_info["sender"]})

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def delivered_rows(store: DeliveryStore, senders: list[str]) -> list[str]:
    now = datetime.now(timezone.utc)
    await store.record_callbacks(
        [NewCallback("lg-1", "DEVICE_PUSH", "washer-1", {"messageId": "lg-1"})], now
    )
    notices = [
        Notice(
            s,
            "callback",
            "user-1",
            "washer-1",
            "push",
            "utter_notify_washing_is_complete",
            {"device": "Washer"},
            f"Washer done ({s})",
        )
        for s in senders
    ]
    rows = await store.plan_callbacks({"lg-1": notices}, now)
    await store.finish([AttemptOutcome(r.id, r.attempts, DELIVERED) for r in rows], now)
    return [r.id for r in rows]


async def test_history_records_delivered_messages_in_the_conversation(
    storage: Storage, http, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    rasa = FakeRasa()
    await rasa.start()
    try:
        store = DeliveryStore(storage.engine)
        ids = await delivered_rows(store, ["sender/1", "sender-2"])
        recorder = HistoryRecorder(store, http, rasa.url, "rasa-token-do-not-log")
        assert await recorder.record_pending() == (2, 0)
        by_sender = {sender: (query, events) for sender, query, events in rasa.calls}
        query, events = by_sender["sender/1"]  # the id is quoted into the path
        assert query == {"include_events": "NONE", "token": "rasa-token-do-not-log"}
        assert events == [
            {
                "event": "bot",
                "text": "Washer done (sender/1)",
                "metadata": {
                    "proactive": True,
                    "lg_message_id": "lg-1",
                    "response": "utter_notify_washing_is_complete",
                },
            },
            {"event": "slot", "name": "context_devices", "value": ["washer-1"]},
        ]
        assert [(await store.get(i)).history_recorded_at is not None for i in ids] == [True] * 2
        assert await recorder.record_pending() == (0, 0)  # recorded once

        # Rasa down: the rows are handed back and recorded once it is up again.
        await store.release_history(ids)
        rasa.status = 500
        rasa.calls.clear()
        recorder = HistoryRecorder(store, http, rasa.url, "rasa-token-do-not-log", attempts=2)
        assert await recorder.record_pending() == (0, 2)
        assert [(await store.get(i)).history_recorded_at for i in ids] == [None, None]
        rasa.status = 200
        assert await recorder.record_pending() == (2, 0)
        assert "rasa-token-do-not-log" not in caplog.text
        assert "Rasa answered HTTP 500" in caplog.text
    finally:
        await rasa.stop()


async def test_history_loop_runs_until_stopped(storage: Storage, http) -> None:
    rasa = FakeRasa()
    await rasa.start()
    try:
        store = DeliveryStore(storage.engine)
        recorder = HistoryRecorder(store, http, rasa.url, None, interval_seconds=0.05)
        stop = asyncio.Event()
        loop = asyncio.create_task(recorder.run(stop))
        await delivered_rows(store, ["s1"])
        recorder.poke()
        for _ in range(100):
            if rasa.calls:
                break
            await asyncio.sleep(0.02)
        assert [(sender, query) for sender, query, _ in rasa.calls] == [
            ("s1", {"include_events": "NONE"})
        ]
        stop.set()
        await asyncio.wait_for(loop, 2)
    finally:
        await rasa.stop()
