"""The connector: LG callback receiver, outbox and delivery worker, over real HTTP.

Storage runs on SQLite and PostgreSQL (``database_url``); the queue is the
in-process one and, in the Redis tests, a real Redis stream. The channel is a
small aiohttp sink on loopback that can be switched to fail.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import httpx
import pytest
from aiohttp import web
from sqlalchemy import func, select

from assistant.notifications import NotificationPlanner
from assistant.settings import load_settings
from assistant.storage import DeviceRecord, Storage, TokenCipher
from assistant.storage.models import LgCallbackRecord, OutboxMessage
from connector.deliverer import DeliveryWorker
from connector.dispatch import InProcessQueue, RedisStreamQueue
from connector.lg_receiver import CALLBACK_PATH, CallbackReceiver
from connector.outbox_store import OutboxStore
from connector.senders import CallbackUrlSender, Senders

SECRET = "s3cret-" + uuid.uuid4().hex
NOW = datetime(2026, 11, 23, 12, tzinfo=timezone.utc)


class ChannelSink:
    """Stands for CALLBACK_URL; ``status`` switches it to failing."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.status = 200

    async def receive(self, request: web.Request) -> web.Response:
        if self.status != 200:
            return web.json_response({"down": True}, status=self.status)
        self.messages.append(await request.json())
        return web.json_response({"ok": True})


@dataclasses.dataclass
class Connector:
    url: str
    sink: ChannelSink
    storage: Storage
    store: OutboxStore

    async def post(self, body: object, secret: str | None = SECRET, raw: bytes | None = None):
        params = {"secret": secret} if secret is not None else {}
        async with httpx.AsyncClient() as http:
            if raw is not None:
                return await http.post(self.url, params=params, content=raw)
            return await http.post(self.url, params=params, json=body)

    async def stored(self) -> tuple[int, int]:
        async with self.storage.sessions() as session:
            callbacks = (
                await session.execute(select(func.count()).select_from(LgCallbackRecord))
            ).scalar_one()
            rows = (
                await session.execute(select(func.count()).select_from(OutboxMessage))
            ).scalar_one()
        return callbacks, rows

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict]:
        for _ in range(int(timeout / 0.05)):
            if len(self.sink.messages) >= count:
                break
            await asyncio.sleep(0.05)
        return self.sink.messages


async def _serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, runner.addresses[0][1]


async def start_connector(database_url: str, tmp_path, queue_factory) -> AsyncIterator[Connector]:
    storage = await Storage.open_url(database_url, TokenCipher([TokenCipher.generate_key()]))
    await storage.accounts.link(
        "alice", thinq_user="u1", token="t" * 40, country_code="US", region="aic",
        channel="callback",
    )  # fmt: skip
    await storage.accounts.link(
        "bob-rest", thinq_user="u1", token="t" * 40, country_code="US", region="aic",
        channel="rest",
    )  # fmt: skip
    washer = DeviceRecord("washer-1", "DEVICE_WASHER", "F3", "Washer", True)
    await storage.devices.replace_device_list("u1", [washer], NOW)
    await storage.subscriptions.add("alice", "u1", "washer-1", "push", NOW)

    sink = ChannelSink()
    sink_app = web.Application()
    sink_app.router.add_post("/callback", sink.receive)
    sink_runner, sink_port = await _serve(sink_app)

    settings = load_settings(
        {
            "STATE_DIR": str(tmp_path / "state"),
            "DATABASE_URL": database_url,
            "CALLBACK_URL": f"http://127.0.0.1:{sink_port}/callback",
            "LG_CALLBACK_SECRET": SECRET,
            "DELIVERY_RETRY_BASE_SECONDS": "0.1",
            "DELIVERY_RETRY_MAX_SECONDS": "0.2",
            "DELIVERY_MAX_ATTEMPTS": "30",
            "DELIVERY_RECLAIM_AFTER_SECONDS": "1",
        }
    ).connector
    store = OutboxStore(storage.sessions)
    planner = NotificationPlanner.create(storage)
    queue = queue_factory()
    http = httpx.AsyncClient(timeout=2)
    senders = Senders()
    senders.register("callback", CallbackUrlSender(settings.callback_url or "", http))
    app = web.Application()
    CallbackReceiver(SECRET, store, planner, queue).routes(app)
    runner, port = await _serve(app)
    stop = asyncio.Event()
    worker = DeliveryWorker(
        store, planner, queue, senders, settings, sole_worker=isinstance(queue, InProcessQueue)
    )
    task = asyncio.create_task(worker.run(stop))
    try:
        yield Connector(f"http://127.0.0.1:{port}{CALLBACK_PATH}", sink, storage, store)
    finally:
        stop.set()
        await task
        await runner.cleanup()
        await sink_runner.cleanup()
        await http.aclose()
        await queue.close()
        await storage.close()


@pytest.fixture
async def connector(database_url, tmp_path) -> AsyncIterator[Connector]:
    async for running in start_connector(database_url, tmp_path, InProcessQueue):
        yield running


def washer_done(message_id: str = "m-1", **push) -> dict:
    return {
        "messageId": message_id,
        "timestamp": "2026-11-23T12:00:00.000000",
        "push": {
            "pushType": "DEVICE_PUSH",
            "serviceId": "svc",
            "deviceId": "washer-1",
            "pushCode": "WASHING_IS_COMPLETE",
            "deviceType": "DEVICE_WASHER",
            "userList": ["u1"],
            **push,
        },
    }


async def test_a_push_is_stored_then_delivered_to_the_subscriber(connector):
    response = await connector.post(washer_done())
    assert response.status_code == 200
    assert response.json() == {"status": "accepted", "messageId": "m-1"}
    messages = await connector.wait_for(1)
    assert [(m["recipient_id"], m["text"]) for m in messages] == [
        ("alice", "Your Washer has finished washing.")
    ]
    rows = await connector.store.rows()
    assert [(r.sender_id, r.state, r.attempts, r.id) for r in rows] == [
        ("alice", "delivered", 1, messages[0]["message_id"])
    ]


async def test_the_same_message_id_twice_gives_one_message(connector):
    first = await connector.post(washer_done())
    second = await connector.post(washer_done())
    assert (first.json()["status"], second.json()["status"]) == ("accepted", "duplicate")
    await connector.wait_for(1)
    await asyncio.sleep(0.5)
    assert len(connector.sink.messages) == 1
    assert await connector.stored() == (1, 1)


@pytest.mark.parametrize(
    ("secret", "raw", "body", "status"),
    [
        (None, None, washer_done(), 401),
        ("wrong", None, washer_done(), 401),
        (SECRET[:-1], None, washer_done(), 401),
        (SECRET, b"{not json", None, 400),
        (SECRET, None, [], 400),
        (SECRET, None, {"messageId": "x"}, 400),
        (SECRET, None, washer_done(pushCode=None), 400),
        (SECRET, None, washer_done(deviceId=""), 400),
        (SECRET, None, washer_done(pushType="DEVICE_EXPLODED"), 400),
        (SECRET, None, washer_done(deviceId="someone-elses-device"), 404),
        (SECRET, b"{" + b'"a": "' + b"x" * 70000 + b'"}', None, 413),
    ],
)
async def test_bad_callbacks_get_4xx_with_a_reason_and_store_nothing(
    connector, secret, raw, body, status
):
    response = await connector.post(body, secret=secret, raw=raw)
    assert response.status_code == status, response.text
    assert response.json()["reason"]
    assert await connector.stored() == (0, 0)
    assert connector.sink.messages == []


async def test_a_message_for_a_channel_that_is_down_arrives_when_it_comes_back(connector):
    connector.sink.status = 503
    assert (await connector.post(washer_done())).status_code == 200
    for _ in range(100):
        rows = await connector.store.rows()
        if rows and rows[0].attempts >= 2:
            break
        await asyncio.sleep(0.05)
    assert rows[0].state in ("pending", "sending")
    assert rows[0].last_error == "callback URL answered HTTP 503"
    connector.sink.status = 200
    messages = await connector.wait_for(1)
    assert [m["text"] for m in messages] == ["Your Washer has finished washing."]
    await asyncio.sleep(0.3)
    assert len(connector.sink.messages) == 1
    assert (await connector.store.rows())[0].state == "delivered"


async def test_a_conversation_on_a_request_only_channel_fails_with_the_reason(connector):
    await connector.storage.subscriptions.add("bob-rest", "u1", "washer-1", "push", NOW)
    await connector.post(washer_done("m-2"))
    await connector.wait_for(1)
    await asyncio.sleep(0.3)
    by_sender = {r.sender_id: r for r in await connector.store.rows()}
    assert by_sender["alice"].state == "delivered"
    assert by_sender["bob-rest"].state == "failed"
    assert "rest channel cannot carry messages" in by_sender["bob-rest"].last_error


async def test_a_new_device_is_announced_to_every_linked_conversation(connector):
    body = {
        "messageId": "reg-1",
        "timestamp": "2026-11-23T12:00:00.000000",
        "push": {
            "pushType": "DEVICE_REGISTERED",
            "deviceId": "dish-1",
            "userNumber": "u1",
            "deviceType": "DEVICE_DISH_WASHER",
            "modelName": "D1",
            "alias": "Dishwasher",
        },
    }
    assert (await connector.post(body)).status_code == 200
    messages = await connector.wait_for(1)
    assert [m["recipient_id"] for m in messages] == ["alice"]
    assert (await connector.storage.devices.get_device("u1", "dish-1")).alias == "Dishwasher"


async def test_a_callback_stored_before_a_crash_is_delivered_after_restart(database_url, tmp_path):
    """Stored (acknowledged to LG) but never planned: the next start finds and sends it."""
    async for running in start_connector(database_url, tmp_path, InProcessQueue):
        body = washer_done("m-crash")
        await running.store.record_callback("m-crash", "DEVICE_PUSH", "washer-1", body)
        # Not queued: as if the process died right after the 200.
    async for running in start_connector(database_url, tmp_path, InProcessQueue):
        messages = await running.wait_for(1)
        assert [m["text"] for m in messages] == ["Your Washer has finished washing."]


async def test_redis_stream_queue_delivers_once(
    database_url, tmp_path, redis_url, redis_key_prefix
):
    prefix = f"{redis_key_prefix}:"

    def queue() -> RedisStreamQueue:
        return RedisStreamQueue(redis_url, reclaim_after_ms=1000, prefix=prefix)

    async for running in start_connector(database_url, tmp_path, queue):
        for i in range(20):
            assert (await running.post(washer_done(f"r-{i}"))).status_code == 200
        await running.post(washer_done("r-0"))  # a duplicate
        messages = await running.wait_for(20)
        await asyncio.sleep(0.3)
        assert len(messages) == 20
        assert len({m["message_id"] for m in messages}) == 20
        assert json.dumps(messages[0]["text"]) == '"Your Washer has finished washing."'
