"""Delivery through a real channel endpoint that fails, recovers, refuses; and restarts.

Each test runs with the in-process queue and with Redis streams, on SQLite and on
PostgreSQL. The channel is a small aiohttp sink on loopback standing in for
CALLBACK_URL; it can answer 503 / 400 or be stopped and started again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from assistant.storage import Storage, TokenCipher
from assistant.storage.models import utcnow
from connector.service import ConnectorService, Roles
from connector.store import NewCallback, OutboxRow
from tests.connector_support import (
    ChannelSink,
    connector_database_url,  # noqa: F401 - fixture, found by name
    connector_env,
    connector_queue_env,  # noqa: F401 - fixture, found by name
    connector_settings,
    connector_setup,  # noqa: F401 - fixture, found by name
    push_body,
    seed_subscriber,
    wait_for,
)
from tests.test_connector_outputs import FakeRasa

StartService = Callable[..., Awaitable[ConnectorService]]


@pytest.fixture
async def start_service(
    tmp_path: Path,
    storage: Storage,
    database_url: str,
    sink: ChannelSink,
    queue_env: dict[str, str],
) -> AsyncIterator[StartService]:
    started: list[ConnectorService] = []

    async def start(**env: str) -> ConnectorService:
        settings = connector_settings(
            connector_env(
                tmp_path,
                database_url,
                TokenCipher.generate_key(),
                sink.url,
                **queue_env,
                **env,
            )
        )
        service = ConnectorService(settings, Roles(), port=0, storage=storage)
        await service.start()
        started.append(service)
        return service

    yield start
    for service in started:
        await service.stop()


async def post(service: ConnectorService, body: dict) -> None:
    secret = service.settings.connector.callback_secret
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"http://127.0.0.1:{service.bound_port}/lg/callbacks",
            params={"secret": secret},
            json=body,
        )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"


async def only_row(service: ConnectorService, sender: str) -> OutboxRow | None:
    rows = await service.store.list_outbox(sender_id=sender)
    assert len(rows) <= 1
    return rows[0] if rows else None


def row_is(service: ConnectorService, sender: str, check: Callable[[OutboxRow], bool]):
    async def condition() -> bool:
        row = await only_row(service, sender)
        return row is not None and check(row)

    return condition


async def test_message_sent_while_the_channel_is_down_arrives_when_it_is_back(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="alice", user="user-a", device="washer-a")
    service = await start_service(DELIVERY_MAX_ATTEMPTS="100")
    await sink.stop()
    await post(service, push_body("washer-a", "user-a"))

    # While it is down the row says so: attempts, when the next one is, and why.
    await wait_for(row_is(service, "alice", lambda r: r.attempts >= 2 and r.state == "pending"))
    row = await only_row(service, "alice")
    assert row.last_error == "the callback channel is unreachable (ClientConnectorError)"
    assert row.next_attempt_at is not None and row.next_attempt_at > row.created_at
    assert row.delivered_at is None

    await sink.start()
    await wait_for(row_is(service, "alice", lambda r: r.state == "delivered"))
    assert [m["text"] for m in sink.messages("alice")] == ["Your Washer has finished washing."]
    assert sink.redeliveries() == 0


async def test_503_is_retried_with_backoff_and_visible_until_it_clears(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="bob", user="user-b", device="washer-b")
    service = await start_service(DELIVERY_MAX_ATTEMPTS="100")
    sink.status = 503
    await post(service, push_body("washer-b", "user-b"))
    await wait_for(row_is(service, "bob", lambda r: r.attempts >= 3))
    row = await only_row(service, "bob")
    assert row.state in ("pending", "sending")
    assert row.last_error == "the callback channel answered HTTP 503"
    counts = await service.store.count_by_state()
    assert counts["delivered"] == 0 and counts["failed"] == 0

    sink.status = None
    await wait_for(row_is(service, "bob", lambda r: r.state == "delivered"))
    assert len(sink.messages("bob")) == 1


async def test_refusals_and_channels_that_cannot_carry_fail_with_their_reason(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="carol", user="user-c", device="washer-c")
    await seed_subscriber(storage, sender="dave", user="user-d", device="washer-d", channel="rest")
    await seed_subscriber(storage, sender="erin", user="user-e", device="washer-e", channel=None)
    service = await start_service()
    sink.status = 400
    await post(service, push_body("washer-c", "user-c"))
    await post(service, push_body("washer-d", "user-d"))
    await post(service, push_body("washer-e", "user-e"))
    for sender in ("carol", "dave", "erin"):
        await wait_for(row_is(service, sender, lambda r: r.state == "failed"))
    carol, dave, erin = [await only_row(service, s) for s in ("carol", "dave", "erin")]
    assert carol.last_error == (
        'the callback channel refused it with HTTP 400: {"error": "switched off"}'
    )
    assert carol.attempts == 1  # a refusal is not retried
    assert dave.last_error == "the rest channel cannot carry messages the assistant starts"
    assert erin.last_error == "the unknown channel cannot carry messages the assistant starts"
    assert sink.messages() == []


async def test_gives_up_after_max_attempts_with_the_last_reason(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="frank", user="user-f", device="washer-f")
    service = await start_service(DELIVERY_MAX_ATTEMPTS="3")
    sink.status = 503
    await post(service, push_body("washer-f", "user-f"))
    await wait_for(row_is(service, "frank", lambda r: r.state == "failed"))
    row = await only_row(service, "frank")
    assert row.attempts == 3
    assert row.last_error == (
        "gave up after 3 attempts; last: the callback channel answered HTTP 503"
    )


async def test_a_restart_loses_nothing_acknowledged(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="gina", user="user-g", device="washer-g")
    await seed_subscriber(storage, sender="hank", user="user-h", device="washer-h")
    first = await start_service(DELIVERY_MAX_ATTEMPTS="100")
    # 1. Accepted while the channel is down: pending when the process stops.
    await sink.stop()
    await post(first, push_body("washer-g", "user-g"))
    await wait_for(row_is(first, "gina", lambda r: r.state == "pending"))
    await first.stop()
    # 2. Stored and answered 200, but the process died before queueing or planning it.
    body = push_body("washer-h", "user-h")
    stored = await first.store.record_callbacks(
        [NewCallback(body["messageId"], "DEVICE_PUSH", "washer-h", body)],
        utcnow() - timedelta(seconds=5),
    )
    assert stored == {body["messageId"]}

    await sink.start()
    second = await start_service(DELIVERY_MAX_ATTEMPTS="100")
    await wait_for(row_is(second, "gina", lambda r: r.state == "delivered"))
    await wait_for(row_is(second, "hank", lambda r: r.state == "delivered"), timeout=15)
    assert len(sink.messages("gina")) == 1 and len(sink.messages("hank")) == 1
    assert sink.redeliveries() == 0


async def test_delivered_messages_enter_the_conversation_history(
    storage: Storage, sink: ChannelSink, start_service: StartService, queue_env: dict[str, str]
) -> None:
    rasa = FakeRasa()
    await rasa.start()
    try:
        await seed_subscriber(storage, sender="ivy", user="user-i", device="washer-i")
        service = await start_service(RASA_URL=rasa.url, RASA_TOKEN="rasa-" + uuid.uuid4().hex)
        body = push_body("washer-i", "user-i")
        await post(service, body)

        async def recorded() -> bool:
            return bool(rasa.calls)

        await wait_for(recorded)
        sender, query, events = rasa.calls[0]
        assert sender == "ivy" and query["include_events"] == "NONE"
        assert events[0]["event"] == "bot"
        assert events[0]["metadata"]["lg_message_id"] == body["messageId"]
        assert events[1] == {"event": "slot", "name": "context_devices", "value": ["washer-i"]}
        await asyncio.sleep(0.1)
        row = await only_row(service, "ivy")
        assert row.history_recorded_at is not None
        assert len(rasa.calls) == 1
    finally:
        await rasa.stop()


async def test_a_new_device_is_cached_and_announced_to_each_linked_conversation(
    storage: Storage, sink: ChannelSink, start_service: StartService
) -> None:
    await seed_subscriber(storage, sender="jill", user="user-j", device="washer-j")
    await seed_subscriber(storage, sender="kim", user="user-k", device="washer-k")
    service = await start_service()
    await post(
        service,
        {
            "messageId": "reg-" + uuid.uuid4().hex[:18],
            "timestamp": "2026-11-23T12:00:00.000000",
            "push": {
                "pushType": "DEVICE_REGISTERED",
                "deviceId": "dish-j",
                "userNumber": "user-j",
                "deviceType": "DEVICE_DISH_WASHER",
                "modelName": "D1",
                "alias": "Dishwasher",
            },
        },
    )
    await wait_for(row_is(service, "jill", lambda r: r.state == "delivered"))
    assert len(sink.messages("jill")) == 1
    assert "Dishwasher" in sink.messages("jill")[0]["text"]
    assert sink.messages("kim") == []  # another user's conversation hears nothing
    cached = await storage.devices.get_device("user-j", "dish-j")
    assert cached is not None and cached.alias == "Dishwasher"
