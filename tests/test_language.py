"""Messages in another language: the script is told (assistant/language.py), the NLU step
(rasa_ext/language_guard.py) turns them into ``other_language`` without entities, and the
action answers that only English is understood for now (in Korean too for Korean)."""

from __future__ import annotations

import pytest
from rasa.shared.nlu.constants import ENTITIES, INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.actions import ActionOtherLanguage
from assistant.language import HANGUL, OTHER, foreign_script
from rasa_ext.language_guard import OTHER_LANGUAGE_INTENT, LanguageGuard


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("세탁기 언제 끝나?", HANGUL),
        ("거실 에어컨 켜줘", HANGUL),
        ("включи кондиционер", OTHER),
        ("洗濯機はいつ終わりますか", OTHER),
        ("شغل المكيف", OTHER),
        ("turn on the AC", None),
        ("Schalte die Klimaanlage ein", None),  # Latin: the NLU has its say
        ("set the lobby to 23°C ☀️", None),
        ("🤖🤖🤖", None),
        ("", None),
        ("turn on the 에어컨 in the living room please", None),  # mostly English
    ],
)
def test_the_script_of_a_message(text: str, script: str | None) -> None:
    assert foreign_script(text) == script


def test_the_guard_replaces_the_intent_and_drops_entities() -> None:
    korean = Message({TEXT: "세탁기 언제 끝나?"})
    korean.set(INTENT, {"name": "ask_remaining_time", "confidence": 0.7})
    korean.set(ENTITIES, [{"entity": "device", "value": "x"}])
    english = Message({TEXT: "when will the washer finish"})
    english.set(INTENT, {"name": "ask_remaining_time", "confidence": 0.9})
    LanguageGuard().process([korean, english])
    assert korean.get(INTENT) == {"name": OTHER_LANGUAGE_INTENT, "confidence": 1.0}
    assert korean.get(INTENT_RANKING_KEY) == [korean.get(INTENT)]
    assert korean.get(ENTITIES) == []
    assert english.get(INTENT)["name"] == "ask_remaining_time"


@pytest.mark.parametrize(
    ("text", "response"),
    [("세탁기 언제 끝나?", "utter_only_english_korean"), ("включи", "utter_only_english")],
)
async def test_the_answer(text: str, response: str) -> None:
    tracker = Tracker(
        sender_id="s",
        slots={},
        latest_message={"intent": {"name": OTHER_LANGUAGE_INTENT}, "entities": [], "text": text},
        events=[],
        paused=False,
        followup_action=None,
        active_loop={},
        latest_action_name="action_listen",
    )
    dispatcher = CollectingDispatcher()
    assert await ActionOtherLanguage().run(dispatcher, tracker, {}) == []
    assert [m["response"] for m in dispatcher.messages] == [response]
