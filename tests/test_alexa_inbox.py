"""The connector's ``alexa`` sender: a proactive message for an Alexa user goes to the
user's inbox (read out at the next launch), once per outbox id, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from assistant.storage import AlexaInboxRepository, Storage, create_engine
from connector.alexa_sender import AlexaInboxSender
from connector.outputs import OutgoingMessage, build_outputs
from tests.db_fixtures import make_settings

SENDER = "alexa:amzn1.ask.account.TESTUSER"


def message(
    outbox_id: str = "0b7c7d1e-0000-4000-8000-000000000001", **changes: str
) -> OutgoingMessage:
    fields = {
        "outbox_id": outbox_id,
        "message_id": "lg-msg-1",
        "sender_id": SENDER,
        "channel": "alexa",
        "text": "Your **Washer** has finished.",
        "response": "utter_notify_washer_done",
        "device_id": "washer-1",
        "kind": "push",
        **changes,
    }
    return OutgoingMessage(**fields)  # type: ignore[arg-type]


async def test_a_message_is_stored_once_per_outbox_id(storage: Storage) -> None:
    sender = AlexaInboxSender(storage.alexa_inbox)
    first = await sender.send(message())
    again = await sender.send(message())  # the worker handed the same row over twice
    assert first.delivered and again.delivered
    await sender.send(message("0b7c7d1e-0000-4000-8000-000000000002", text="The Dryer is done."))
    taken = await storage.alexa_inbox.take_all(SENDER)
    assert [(m.key, m.kind, m.text) for m in taken] == [
        ("0b7c7d1e-0000-4000-8000-000000000001", "notification", "Your **Washer** has finished."),
        ("0b7c7d1e-0000-4000-8000-000000000002", "notification", "The Dryer is done."),
    ]


async def test_an_unreachable_database_is_worth_retrying(storage: Storage) -> None:
    # A PostgreSQL nobody listens on (port 1).
    down = create_engine("postgresql://nobody@127.0.0.1:1/none")
    try:
        result = await AlexaInboxSender(AlexaInboxRepository(down)).send(message())
    finally:
        await down.dispose()
    assert not result.delivered and result.retryable
    assert result.reason and "127.0.0.1" not in result.reason
    assert await storage.alexa_inbox.count(SENDER) == 0


async def test_a_broken_database_is_worth_retrying(tmp_path: Path) -> None:
    # A database without the table (say, a restored backup from before it existed).
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    try:
        result = await AlexaInboxSender(AlexaInboxRepository(broken)).send(message())
    finally:
        await broken.dispose()
    assert not result.delivered and result.retryable


async def test_what_cannot_be_stored_fails_for_good(storage: Storage) -> None:
    sender = AlexaInboxSender(storage.alexa_inbox)
    not_alexa = await sender.send(message(sender_id="telegram:42"))
    assert not not_alexa.delivered and not not_alexa.retryable
    empty = await sender.send(message(text="  "))
    assert not empty.delivered and not empty.retryable
    assert await storage.alexa_inbox.count(SENDER) == 0


async def test_build_outputs_routes_the_alexa_channel_to_the_inbox(
    storage: Storage, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path).connector
    async with aiohttp.ClientSession() as http:
        outputs = build_outputs(settings, http, storage.alexa_inbox)
        assert "alexa" in outputs.channels()
        assert (await outputs.send(message())).delivered
        without = await build_outputs(settings, http).send(message())
    assert not without.delivered and not without.retryable
    assert without.reason and "alexa" in without.reason
    assert await storage.alexa_inbox.count(SENDER) == 1
