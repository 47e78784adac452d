"""The Alexa channel served by a real Sanic server on loopback, with a stub Rasa that
answers through the output channel it is given, and the speech rewriting on its own."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from rasa.core.channels.channel import UserMessage
from sanic import Sanic

from assistant.settings import AlexaSettings, SettingsError, load_alexa_settings
from assistant.storage import AlexaInboxRepository, Storage, create_engine, create_schema
from assistant.storage.alexa_inbox import LATE_REPLY
from connector import alexa
from connector.alexa import AlexaInput
from connector.alexa_speech import spoken
from devstack.processes import ROOT, free_port
from tests.alexa_support import (
    USER_ID,
    TestPKI,
    encode,
    intent,
    launch,
    said,
    verifier_for,
)

UNVERIFIED = AlexaSettings(verify_signatures=False, skill_id=None, reply_budget_seconds=6.5)
CHOICES = [
    {"title": "Bedroom AC", "payload": '/inform_device{"device": "Bedroom AC"}'},
    {"title": "Living Room AC", "payload": '/inform_device{"device": "Living Room AC"}'},
]


class StubRasa:
    """Stands in for Rasa's handler: records each message, optionally waits, then sends
    the canned bot messages through the message's own output channel."""

    def __init__(self, *replies: dict[str, Any], delay: float = 0.0) -> None:
        self.replies = replies
        self.delay = delay
        self.received: list[UserMessage] = []
        self.finished = asyncio.Event()

    async def __call__(self, message: UserMessage) -> None:
        self.received.append(message)
        await asyncio.sleep(self.delay)
        for reply in self.replies:
            await message.output_channel.send_response(message.sender_id, dict(reply))
        self.finished.set()


Serve = Callable[[AlexaInput, StubRasa], Awaitable[str]]
SENDER = f"alexa:{USER_ID}"


@pytest.fixture(autouse=True)
def throwaway_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """A channel built without an inbox opens the database of DATABASE_URL on its first
    launch: in these tests a throwaway SQLite file, never the demo's."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'alexa' / 'assistant.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    return url


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts the channel's blueprint in a Sanic app as Rasa mounts it; yields its URL."""
    running: list[tuple[Any, AlexaInput]] = []
    Sanic.test_mode = True  # one app name per test, but let the registry allow reuse

    async def start(channel: AlexaInput, rasa: StubRasa) -> str:
        app = Sanic(f"alexa_test_{uuid.uuid4().hex[:12]}", configure_logging=False)
        app.blueprint(channel.blueprint(rasa), url_prefix="/webhooks/alexa")
        port = free_port()
        server = await app.create_server(
            host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
        )
        assert server is not None
        await server.startup()
        await server.start_serving()
        running.append((server, channel))
        return f"http://127.0.0.1:{port}/webhooks/alexa/webhook"

    yield start
    for server, channel in running:
        for task in list(channel.background):
            task.cancel()
        await server.close()
        await channel.close()


async def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            url, content=body, headers={"Content-Type": "application/json", **(headers or {})}
        )


def speech(answer: dict[str, Any]) -> str:
    return answer["response"]["outputSpeech"]["ssml"]


async def test_launch_welcomes_and_keeps_the_session_open(serve: Serve) -> None:
    rasa = StubRasa()
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    reply = await post(url, encode(launch()))
    assert reply.status_code == 200
    answer = reply.json()
    assert answer["version"] == "1.0"
    assert answer["response"]["outputSpeech"]["type"] == "SSML"
    assert speech(answer) == f"<speak>{alexa.WELCOME}</speak>"
    assert answer["response"]["shouldEndSession"] is False
    assert "reprompt" in answer["response"]
    assert rasa.received == []


async def test_a_control_request_speaks_the_bots_reply(serve: Serve) -> None:
    rasa = StubRasa({"text": "Done: the **Fridge**'s express mode is now on."})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("turn on express mode on my fridge")))).json()
    assert speech(answer) == "<speak>Done: the Fridge's express mode is now on.</speak>"
    assert answer["response"]["shouldEndSession"] is True
    assert "reprompt" not in answer["response"]
    [message] = rasa.received
    assert message.text == "turn on express mode on my fridge"
    assert message.sender_id == f"alexa:{USER_ID}"
    assert message.input_channel == "alexa"


async def test_units_and_xml_characters_are_made_speakable(serve: Serve) -> None:
    rasa = StubRasa({"text": "Freezer: set to -18 °C, fridge 3°C & humidity 40% <ok>."})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("how is the fridge")))).json()
    assert speech(answer) == (
        "<speak>Freezer: set to minus 18 degrees, fridge 3 degrees &amp; humidity "
        "40 percent &lt;ok&gt;.</speak>"
    )


async def test_a_clarification_asks_with_choices_and_a_reprompt(serve: Serve) -> None:
    rasa = StubRasa({"text": "Which one: Bedroom AC or Living Room AC?", "buttons": CHOICES})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("set the AC to 22")))).json()
    assert answer["response"]["shouldEndSession"] is False
    assert speech(answer) == "<speak>Which one: Bedroom AC or Living Room AC?</speak>"
    reprompt = answer["response"]["reprompt"]["outputSpeech"]["ssml"]
    assert reprompt == (
        "<speak>Which one: Bedroom AC or Living Room AC? Say Bedroom AC or Living Room AC.</speak>"
    )
    # Saying a choice's title sends the payload a tap on that button would have sent.
    follow_up = said("the bedroom AC", attributes=answer["sessionAttributes"])
    await post(url, encode(follow_up))
    assert rasa.received[-1].text == '/inform_device{"device": "Bedroom AC"}'


async def test_choices_the_text_does_not_name_are_said_aloud(serve: Serve) -> None:
    rasa = StubRasa({"text": "Sorry, which one did you mean?", "buttons": CHOICES})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("the big one")))).json()
    assert speech(answer) == (
        "<speak>Sorry, which one did you mean? Say Bedroom AC or Living Room AC.</speak>"
    )
    assert answer["response"]["shouldEndSession"] is False


async def test_a_question_without_buttons_keeps_the_session_open(serve: Serve) -> None:
    rasa = StubRasa({"text": "Just to be safe: start the Oven now? It will run while you're away."})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("start the oven")))).json()
    assert answer["response"]["shouldEndSession"] is False
    assert "start the Oven now?" in answer["response"]["reprompt"]["outputSpeech"]["ssml"]
    # Alexa's built-in yes answers the question in words Rasa understands.
    await post(url, encode(intent("AMAZON.YesIntent")))
    assert rasa.received[-1].text == "yes"


@pytest.mark.parametrize("name", ["AMAZON.StopIntent", "AMAZON.CancelIntent"])
async def test_stop_and_cancel_say_goodbye_and_end_without_rasa(serve: Serve, name: str) -> None:
    rasa = StubRasa({"text": "should not be said"})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(intent(name)))).json()
    assert speech(answer) == f"<speak>{alexa.GOODBYE}</speak>"
    assert answer["response"]["shouldEndSession"] is True
    assert rasa.received == []


async def test_help_is_spoken_and_the_session_stays_open(serve: Serve) -> None:
    rasa = StubRasa()
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(intent("AMAZON.HelpIntent")))).json()
    assert speech(answer) == f"<speak>{alexa.HELP}</speak>"
    assert answer["response"]["shouldEndSession"] is False
    assert rasa.received == []


async def test_session_ended_gets_an_empty_response(serve: Serve) -> None:
    rasa = StubRasa()
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    ended = launch()
    ended["request"].update(type="SessionEndedRequest", reason="USER_INITIATED")
    reply = await post(url, encode(ended))
    assert reply.status_code == 200
    assert reply.json() == {"version": "1.0", "response": {}}
    assert rasa.received == []


async def test_an_empty_utterance_is_asked_again_without_rasa(serve: Serve) -> None:
    rasa = StubRasa()
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("  ")))).json()
    assert answer["response"]["shouldEndSession"] is False
    assert rasa.received == []


async def test_a_signed_request_is_answered_and_a_bad_signature_gets_400(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    pki = TestPKI()
    verifier, _ = verifier_for(pki)
    settings = AlexaSettings(verify_signatures=True, skill_id=None, reply_budget_seconds=6.5)
    rasa = StubRasa({"text": "You have 9 appliances."})
    url = await serve(AlexaInput(settings, verifier), rasa)

    body = encode(said("what devices do I have"))
    good = await post(url, body, pki.headers(body))
    assert good.status_code == 200
    assert speech(good.json()) == "<speak>You have 9 appliances.</speak>"

    forged = encode(said("start the oven"))
    caplog.set_level(logging.WARNING, logger="connector.alexa")
    bad = await post(url, forged, pki.headers(body))  # another body's signature
    assert bad.status_code == 400
    assert bad.json() == {"error": "bad_request", "reason": "the signature does not match the body"}
    unsigned = await post(url, forged)
    assert unsigned.status_code == 400
    assert "header is missing" in unsigned.json()["reason"]
    assert [m.text for m in rasa.received] == ["what devices do I have"]
    refusals = [r.getMessage() for r in caplog.records if r.name == "connector.alexa"]
    assert len(refusals) == 2
    assert not any("start the oven" in line for line in refusals)


async def test_another_skills_request_is_refused_even_unverified(serve: Serve) -> None:
    settings = AlexaSettings(
        verify_signatures=False, skill_id="amzn1.ask.skill.ours", reply_budget_seconds=6.5
    )
    rasa = StubRasa()
    url = await serve(AlexaInput(settings), rasa)
    reply = await post(url, encode(launch(skill_id="amzn1.ask.skill.theirs")))
    assert reply.status_code == 400
    assert "another skill" in reply.json()["reason"]


async def test_a_slow_turn_is_answered_within_8_seconds_and_keeps_running(serve: Serve) -> None:
    rasa = StubRasa({"text": "Done: the Washer is running."}, delay=20.0)
    channel = AlexaInput(UNVERIFIED)
    url = await serve(channel, rasa)
    started = time.monotonic()
    reply = await post(url, encode(said("start the washer")))
    elapsed = time.monotonic() - started
    assert elapsed < 8.0
    assert reply.status_code == 200
    assert speech(reply.json()) == f"<speak>{alexa.STILL_WORKING}</speak>"
    # The turn was not cancelled: it is still running in the background.
    [task] = channel.background
    assert not task.done()
    assert not rasa.finished.is_set()


async def test_a_late_reply_is_queued_and_read_at_the_next_launch(
    serve: Serve, storage: Storage
) -> None:
    rasa = StubRasa({"text": "Done: the **Washer** is running."}, delay=0.6)
    settings = AlexaSettings(verify_signatures=False, skill_id=None, reply_budget_seconds=0.2)
    channel = AlexaInput(settings, inbox=storage.alexa_inbox)
    url = await serve(channel, rasa)
    reply = await post(url, encode(said("start the washer")))
    assert speech(reply.json()) == f"<speak>{alexa.STILL_WORKING}</speak>"
    await asyncio.wait_for(rasa.finished.wait(), timeout=5)
    # The done callback runs on the next loop iteration, then queues in a task of its own.
    for _ in range(100):
        if not channel.background:
            break
        await asyncio.sleep(0.05)
    assert channel.background == set()
    [queued] = await storage.alexa_inbox.take_all(SENDER)
    assert (queued.kind, queued.text) == (LATE_REPLY, "Done: the **Washer** is running.")
    await storage.alexa_inbox.add(queued.key, SENDER, queued.text, LATE_REPLY)  # put back

    answer = (await post(url, encode(launch()))).json()
    assert speech(answer) == (
        "<speak>You have 1 new notification. Done: the Washer is running. "
        f"{alexa.WELCOME_QUESTION}</speak>"
    )
    assert answer["response"]["shouldEndSession"] is False


async def test_queued_notifications_are_read_at_launch_then_gone(
    serve: Serve, storage: Storage
) -> None:
    inbox = storage.alexa_inbox
    await inbox.add("outbox-1", SENDER, "Your **Washer** has finished.")
    await inbox.add("outbox-2", SENDER, "The Fridge door is open & it's 8°C inside")
    await inbox.add("outbox-3", "alexa:amzn1.ask.account.SOMEONE_ELSE", "Not yours.")
    rasa = StubRasa()
    url = await serve(AlexaInput(UNVERIFIED, inbox=inbox), rasa)

    answer = (await post(url, encode(launch()))).json()
    assert speech(answer) == (
        "<speak>You have 2 new notifications. Your Washer has finished. The Fridge door "
        "is open &amp; it's 8 degrees inside. What would you like to do?</speak>"
    )
    assert answer["response"]["shouldEndSession"] is False
    reprompt = answer["response"]["reprompt"]["outputSpeech"]["ssml"]
    assert reprompt == f"<speak>{alexa.WELCOME_REPROMPT}</speak>"
    assert rasa.received == []

    again = (await post(url, encode(launch()))).json()
    assert speech(again) == f"<speak>{alexa.WELCOME}</speak>"
    # Another user's notification was neither read nor removed.
    assert await inbox.count("alexa:amzn1.ask.account.SOMEONE_ELSE") == 1


async def test_a_long_inbox_is_read_five_at_a_time(serve: Serve, storage: Storage) -> None:
    inbox = storage.alexa_inbox
    for i in range(1, 8):
        await inbox.add(f"outbox-{i}", SENDER, f"Message {i}.")
    url = await serve(AlexaInput(UNVERIFIED, inbox=inbox), StubRasa())
    first = speech((await post(url, encode(launch()))).json())
    assert first == (
        "<speak>You have 7 new notifications. Here are the first 5. Message 1. Message 2. "
        "Message 3. Message 4. Message 5. I'll keep the other 2 for next time. "
        "What would you like to do?</speak>"
    )
    second = speech((await post(url, encode(launch()))).json())
    assert second == (
        "<speak>You have 2 new notifications. Message 6. Message 7. "
        "What would you like to do?</speak>"
    )


async def test_concurrent_launches_read_each_notification_once(
    serve: Serve, storage: Storage
) -> None:
    inbox = storage.alexa_inbox
    await inbox.add("outbox-1", SENDER, "Washer done.")
    await inbox.add("outbox-2", SENDER, "Dryer done.")
    url = await serve(AlexaInput(UNVERIFIED, inbox=inbox), StubRasa())
    answers = await asyncio.gather(*(post(url, encode(launch())) for _ in range(4)))
    spoken_texts = " ".join(speech(a.json()) for a in answers)
    assert spoken_texts.count("Washer done.") == 1
    assert spoken_texts.count("Dryer done.") == 1


async def test_launch_opens_the_configured_database_lazily(
    serve: Serve, throwaway_database: str
) -> None:
    seeded = create_engine(throwaway_database)
    try:
        await create_schema(seeded)
        await AlexaInboxRepository(seeded).add("outbox-1", SENDER, "The Oven is preheated.")
    finally:
        await seeded.dispose()
    channel = AlexaInput(UNVERIFIED)  # as Rasa builds it: no inbox given
    url = await serve(channel, StubRasa())
    answer = (await post(url, encode(launch()))).json()
    assert "You have 1 new notification. The Oven is preheated." in speech(answer)


async def test_launch_without_a_database_still_welcomes_and_logs_once(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connector.alexa")
    attempts = 0

    async def unreachable() -> AlexaInboxRepository:
        nonlocal attempts
        attempts += 1
        raise ConnectionRefusedError("connection refused by db.internal:5432")

    url = await serve(AlexaInput(UNVERIFIED, open_inbox=unreachable), StubRasa())
    for _ in range(3):
        answer = (await post(url, encode(launch()))).json()
        assert speech(answer) == f"<speak>{alexa.WELCOME}</speak>"
        assert answer["response"]["shouldEndSession"] is False
    assert attempts == 1  # tried again only after INBOX_RETRY_SECONDS
    warnings = [r for r in caplog.records if "inbox unavailable" in r.getMessage()]
    assert len(warnings) == 1
    assert "db.internal" not in warnings[0].getMessage()


async def test_a_database_failing_mid_way_still_welcomes(
    serve: Serve, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="connector.alexa")
    broken = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'no-tables.db'}")  # no schema
    try:
        url = await serve(AlexaInput(UNVERIFIED, inbox=AlexaInboxRepository(broken)), StubRasa())
        for _ in range(2):
            answer = (await post(url, encode(launch()))).json()
            assert speech(answer) == f"<speak>{alexa.WELCOME}</speak>"
    finally:
        await broken.dispose()
    assert len([r for r in caplog.records if "inbox unavailable" in r.getMessage()]) == 1


async def test_a_slow_database_does_not_hold_up_the_welcome(
    serve: Serve, monkeypatch: pytest.MonkeyPatch, storage: Storage
) -> None:
    monkeypatch.setattr(alexa, "INBOX_BUDGET_SECONDS", 0.3)
    await storage.alexa_inbox.add("outbox-1", SENDER, "Washer done.")
    may_open = asyncio.Event()

    async def slow() -> AlexaInboxRepository:
        await may_open.wait()
        return storage.alexa_inbox

    channel = AlexaInput(UNVERIFIED, open_inbox=slow)
    url = await serve(channel, StubRasa())
    started = time.monotonic()
    answer = (await post(url, encode(launch()))).json()
    assert time.monotonic() - started < 2.0
    assert speech(answer) == f"<speak>{alexa.WELCOME}</speak>"
    # Opening was not abandoned: once the database answers, the next launch reads.
    may_open.set()
    answer = (await post(url, encode(launch()))).json()
    assert "You have 1 new notification. Washer done." in speech(answer)


@pytest.mark.parametrize(
    ("chat", "speech_text"),
    [
        ("set to 22°C", "set to 22 degrees"),
        ("the freezer is at -18 °C", "the freezer is at minus 18 degrees"),
        ("humidity 45%", "humidity 45 percent"),
        ("it goes from 16-30°C", "it goes from 16 to 30 degrees"),
        ("see [the guide](https://x.example/a?b=1) for *details*", "see the guide for details"),
        ("`express_mode` is _on_", "express mode is on"),
        ("PM2.5 12 µg/m³", "PM2.5 12 micrograms per cubic metre"),
    ],
)
def test_chat_text_is_rewritten_for_speech(chat: str, speech_text: str) -> None:
    assert spoken(chat) == speech_text


def test_settings_default_to_verifying(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_alexa_settings({})
    assert settings.verify_signatures is True
    assert settings.skill_id is None
    assert settings.reply_budget_seconds < 8
    assert load_alexa_settings({"ALEXA_VERIFY_SIGNATURES": "0"}).verify_signatures is False
    with pytest.raises(SettingsError):
        load_alexa_settings({"ALEXA_REPLY_BUDGET_SECONDS": "9"})


def test_turning_verification_off_is_a_startup_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ALEXA_VERIFY_SIGNATURES", "0")
    caplog.set_level(logging.WARNING, logger="connector.alexa")
    channel = AlexaInput.from_credentials(None)
    assert isinstance(channel, AlexaInput) and channel.verifier is None
    assert any(
        r.levelno == logging.WARNING and "ALEXA_VERIFY_SIGNATURES" in r.getMessage()
        for r in caplog.records
    )


def test_rasa_loads_the_channel_from_credentials_without_alexa_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rasa.core.run import create_http_input_channels

    for name in ("ALEXA_VERIFY_SIGNATURES", "ALEXA_SKILL_ID", "ALEXA_REPLY_BUDGET_SECONDS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CALLBACK_URL", "http://127.0.0.1:9/callback")  # the demo sets it
    channels = create_http_input_channels(None, str(Path(ROOT) / "credentials.yml"))
    [channel] = [c for c in channels if c.name() == "alexa"]
    assert isinstance(channel, AlexaInput)
    assert channel.verifier is not None  # verification is on unless switched off
    assert channel.url_prefix() == "alexa"


def test_sender_ids_are_namespaced_and_fit_the_tables() -> None:
    request = launch(user="amzn1.ask.account.ABC")
    assert alexa.sender_id(request) == "alexa:amzn1.ask.account.ABC"
    long_id = "amzn1.ask.account." + "X" * 237  # 255 characters, Amazon's maximum
    long_sender = alexa.sender_id(launch(user=long_id))
    assert long_sender.startswith("alexa:sha256:") and len(long_sender) <= 255
    assert long_sender == alexa.sender_id(launch(user=long_id))  # stable per user


async def test_a_quoted_example_question_is_not_a_question(serve: Serve) -> None:
    rasa = StubRasa({"text": 'Hi! Try "what devices do I have?" or "is the washer running?".'})
    url = await serve(AlexaInput(UNVERIFIED), rasa)
    answer = (await post(url, encode(said("hello")))).json()
    assert answer["response"]["shouldEndSession"] is True


async def test_a_failing_turn_is_an_apology_not_a_500(serve: Serve) -> None:
    async def broken(message: UserMessage) -> None:
        raise RuntimeError("the tracker store is down")

    url = await serve(AlexaInput(UNVERIFIED), broken)  # type: ignore[arg-type]
    reply = await post(url, encode(said("start the washer")))
    assert reply.status_code == 200
    assert speech(reply.json()) == f"<speak>{alexa.FAILED}</speak>"


def test_a_reply_with_a_link_puts_it_on_a_card_and_says_so() -> None:
    from connector.alexa_speech import LINK_IN_APP, reply_for_messages

    link = "https://lg.example/oauth/authorize?state=abc"
    answer = reply_for_messages(
        [{"text": f"To link your LG account, open this page and sign in with LG: {link}"}]
    )["response"]
    assert "https://" not in answer["outputSpeech"]["ssml"]
    assert LINK_IN_APP in answer["outputSpeech"]["ssml"]
    assert answer["card"]["type"] == "Simple" and link in answer["card"]["content"]
    marked = reply_for_messages([{"text": f"See [the page]({link})."}])["response"]
    assert marked["card"]["content"] == f"See the page ({link})."
    assert "card" not in reply_for_messages([{"text": "Done."}])["response"]
