"""The LG callback receiver over HTTP, with the real planner, store and worker.

Every test runs on SQLite with the in-process queue, and on PostgreSQL with the in-process
queue and with Redis streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from assistant.storage import Storage, TokenCipher
from assistant.storage.models import LgCallbackRecord, OutboxMessage
from connector.service import ConnectorService, Roles
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

SECRET = "s3cret-" + "x" * 32


class Running:
    def __init__(self, service: ConnectorService, sink: ChannelSink, storage: Storage) -> None:
        self.service = service
        self.sink = sink
        self.storage = storage
        self.base = f"http://127.0.0.1:{service.bound_port}"
        self.http = httpx.AsyncClient(timeout=10)

    async def post(
        self, body: object, *, secret: str | None = SECRET, raw: bytes | None = None
    ) -> httpx.Response:
        params = {} if secret is None else {"secret": secret}
        content = raw if raw is not None else json.dumps(body).encode()
        return await self.http.post(
            f"{self.base}/lg/callbacks",
            params=params,
            content=content,
            headers={"content-type": "application/json"},
        )

    async def count(self, table: type) -> int:
        async with self.storage.engine.connect() as conn:
            return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


@pytest.fixture
async def running(
    tmp_path: Path,
    storage: Storage,
    database_url: str,
    token_cipher: TokenCipher,
    queue_env: dict[str, str],
) -> AsyncIterator[Running]:
    sink = ChannelSink()
    await sink.start()
    await seed_subscriber(storage, sender="alice", user="user-a", device="washer-a")
    env = connector_env(tmp_path, database_url, TokenCipher.generate_key(), sink.url, **queue_env)
    service = ConnectorService(connector_settings(env), Roles(), port=0, storage=storage)
    await service.start()
    running = Running(service, sink, storage)
    try:
        yield running
    finally:
        await running.http.aclose()
        await service.stop()
        await sink.stop()


async def assert_nothing_stored(running: Running) -> None:
    assert await running.count(LgCallbackRecord) == 0
    assert await running.count(OutboxMessage) == 0


async def test_missing_or_wrong_secret_is_401_and_stores_nothing(running: Running) -> None:
    for secret in (None, "", "wrong", SECRET + "x", SECRET[:-1], SECRET.upper()):
        response = await running.post(push_body("washer-a", "user-a"), secret=secret)
        assert response.status_code == 401, secret
        body = response.json()
        assert body["error"] == "unauthorized"
        missing = "the secret query parameter is missing"
        assert body["reason"] == (missing if not secret else "the secret does not match")
    await assert_nothing_stored(running)


MALFORMED = [
    (b"{not json", "the body is not valid JSON"),
    (b"\xff\xfe", "the body is not valid JSON"),
    (b"[]", "the body must be a JSON object"),
    (b'{"push": {"pushType": "DEVICE_PUSH"}}', "messageId is missing"),
    (
        b'{"messageId": "m1", "push": {"pushType": "DEVICE_PUSH", "deviceId": "washer-a"}}',
        "pushCode is missing",
    ),
    (
        b'{"messageId": "m1", "push": {"pushType": "NOPE", "deviceId": "d"}}',
        "pushType 'NOPE' is not one we accept under 'push'",
    ),
    (
        b'{"messageId": "m1", "event": {"pushType": "PCC_EVENT", "deviceId": "washer-a", '
        b'"diagnosisType": "X", "contentUrl": "javascript:alert(1)"}}',
        "contentUrl must be an http(s) URL",
    ),
]


async def test_malformed_bodies_are_400_with_a_reason_and_store_nothing(running: Running) -> None:
    for raw, reason in MALFORMED:
        response = await running.post(None, raw=raw)
        assert response.status_code == 400, raw
        assert response.json() == {"error": "bad_request", "reason": reason}
    await assert_nothing_stored(running)


async def test_too_large_a_body_is_413(running: Running) -> None:
    body = push_body("washer-a", "user-a")
    body["padding"] = "x" * (64 * 1024)
    response = await running.post(body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    await assert_nothing_stored(running)


async def test_unknown_device_is_404_and_stores_nothing(running: Running) -> None:
    response = await running.post(push_body("someone-elses-washer", "user-a"))
    assert response.status_code == 404
    assert response.json() == {
        "error": "unknown_device",
        "reason": "unknown device: no linked account has this device",
    }
    await assert_nothing_stored(running)


async def test_valid_callback_is_stored_before_200_and_delivered(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = push_body("washer-a", "user-a", message_id="lg-msg-1")
    response = await running.post(body)
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "messageId": "lg-msg-1"}
    # Stored by the time the 200 arrived, whatever the worker has done since.
    stored = await running.service.store.load_callbacks(["lg-msg-1"])
    assert stored["lg-msg-1"].body == body

    await wait_for(lambda: _delivered(running, 1))
    [message] = running.sink.messages("alice")
    assert message["text"] == "Your Washer has finished washing."
    [row] = await running.service.store.list_outbox(sender_id="alice")
    assert (row.state, row.attempts, row.channel, row.message_id) == (
        "delivered",
        1,
        "callback",
        "lg-msg-1",
    )
    assert message["message_id"] == row.id
    # The connector's and aiohttp's log lines (the test's own HTTP client logs its URL).
    ours = [r for r in caplog.records if r.name.startswith(("connector", "aiohttp"))]
    assert any(r.name == "aiohttp.access" for r in ours)
    assert not any(SECRET in r.getMessage() for r in ours)


async def test_duplicate_message_id_is_200_duplicate_and_told_once(running: Running) -> None:
    body = push_body("washer-a", "user-a", message_id="lg-dup")
    first = await running.post(body)
    assert first.json() == {"status": "accepted", "messageId": "lg-dup"}
    await wait_for(lambda: _delivered(running, 1))
    # LG retries (it did not see our 200), later and concurrently.
    again = await asyncio.gather(*(running.post(body) for _ in range(5)))
    assert {r.status_code for r in again} == {200}
    assert {r.json()["status"] for r in again} == {"duplicate"}
    await asyncio.sleep(0.2)
    assert await running.count(OutboxMessage) == 1
    assert len(running.sink.messages("alice")) == 1
    assert sum(running.sink.raw.values()) == 1


async def test_concurrent_callbacks_share_commits_and_each_is_told_once(
    running: Running,
) -> None:
    bodies = [push_body("washer-a", "user-a", message_id=f"lg-burst-{i}") for i in range(40)]
    # The same id twice in one burst: one "accepted", one "duplicate".
    responses = await asyncio.gather(*(running.post(b) for b in [*bodies, bodies[0]]))
    statuses = sorted(r.json()["status"] for r in responses)
    assert statuses == ["accepted"] * 40 + ["duplicate"]
    await wait_for(lambda: _delivered(running, 40))
    assert len(running.sink.messages("alice")) == 40
    assert running.sink.redeliveries() == 0


async def test_health_reports_outbox_counts_only(running: Running) -> None:
    await running.post(push_body("washer-a", "user-a", message_id="lg-h"))
    await wait_for(lambda: _delivered(running, 1))
    response = await running.http.get(f"{running.base}/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "outbox": {"pending": 0, "sending": 0, "delivered": 1, "failed": 0},
    }


async def _delivered(running: Running, count: int) -> bool:
    return (await running.service.store.count_by_state())["delivered"] >= count


@pytest.mark.parametrize("secret", [None, SECRET])
async def test_a_large_body_refused_unread_closes_the_connection(
    running: Running, secret: str | None
) -> None:
    # aiohttp keeps the connection after a response to a body the handler never read; a
    # sender that is still writing a large body would then wait out its keep-alive (10 s)
    # before the next callback on that connection. "Connection: close" ends it at once.
    huge = b'{"padding": "' + b"x" * (512 * 1024) + b'"}'
    refused = await running.post(None, raw=huge, secret=secret)
    assert refused.status_code == (401 if secret is None else 413)
    assert refused.headers.get("connection", "").lower() == "close"
    accepted = await running.post(push_body("washer-a", "user-a"))
    assert accepted.status_code == 200
