"""The bot's chat replies rewritten for the ear, and Alexa's response JSON around them.

Chat replies carry markdown, links, symbols ("22°C", "40%") and buttons to tap; a
speaker needs plain words, choices said aloud, and SSML with XML special characters
escaped. Pure functions, no Rasa.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from xml.sax.saxutils import escape

# Alexa refuses output speech over 8000 characters; a spoken answer should be far
# shorter anyway, so long texts are cut at a sentence end.
MAX_SPEECH_CHARS = 1500

_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")  # [text](url) -> text
_LINK_PARTS = re.compile(r"\[([^\]]+)\]\(([^)]*)\)")  # [text](url) -> text (url), for cards
_URL = re.compile(r"https?://\S+")
_MARKDOWN = re.compile(r"[*`#~]+|(?<!\w)_+|_+(?!\w)")  # emphasis, code, headings
_INNER_UNDERSCORE = re.compile(r"(?<=\w)_(?=\w)")  # express_mode -> express mode
_RANGE = re.compile(r"(\d)\s*[-–]\s*(\d)")  # "16-30" -> "16 to 30"
_NEGATIVE = re.compile(r"(^|[\s(:])[-–−]\s?(\d)")  # "-18" (not "a-b") -> "minus 18"
_CELSIUS = re.compile(r"(\d)\s*°\s*C\b")
_FAHRENHEIT = re.compile(r"(\d)\s*°\s*F\b")
_DEGREE = re.compile(r"(\d)\s*°")
_PERCENT = re.compile(r"(\d)\s*%")
_SPACES = re.compile(r"\s+")
_QUOTED = re.compile(r"\"[^\"]*\"|“[^”]*”")  # examples: Try "what devices do I have?"
# Chat wording that makes no sense aloud.
_VOICE_WORDING = (
    ("You can tap one of the options or say its name.", "Say its name."),
    ("µg/m³", " micrograms per cubic metre"),
)


def spoken(text: str) -> str:
    """Plain words for ``text``: no markdown or links, numbers and units said naturally."""
    for chat, voice in _VOICE_WORDING:
        text = text.replace(chat, voice)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _MARKDOWN.sub("", text)
    text = _INNER_UNDERSCORE.sub(" ", text)
    text = _RANGE.sub(r"\1 to \2", text)
    text = _NEGATIVE.sub(r"\1minus \2", text)
    text = _CELSIUS.sub(r"\1 degrees", text)
    text = _FAHRENHEIT.sub(r"\1 degrees Fahrenheit", text)
    text = _DEGREE.sub(r"\1 degrees", text)
    text = _PERCENT.sub(r"\1 percent", text)
    text = _SPACES.sub(" ", text).strip()
    return _shortened(text)


def _shortened(text: str) -> str:
    if len(text) <= MAX_SPEECH_CHARS:
        return text
    cut = text[:MAX_SPEECH_CHARS]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > 0 else cut.rsplit(" ", 1)[0] + "."


def choice_prompt(titles: Sequence[str]) -> str:
    """``["Living Room AC", "Bedroom AC"]`` -> ``"Say Living Room AC or Bedroom AC."``."""
    names = [spoken(title).rstrip(".") for title in titles if title.strip()]
    if not names:
        return ""
    if len(names) == 1:
        return f"Say {names[0]}."
    return f"Say {', '.join(names[:-1])} or {names[-1]}."


def ssml(text: str) -> dict[str, str]:
    return {"type": "SSML", "ssml": f"<speak>{escape(text)}</speak>"}


CARD_TITLE = "LG ThinQ assistant"
LINK_IN_APP = "I've put the link in your Alexa app."


def alexa_response(
    speech: str,
    *,
    end_session: bool,
    reprompt: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    card: str | None = None,
) -> dict[str, Any]:
    """Alexa's response JSON; ``speech`` and ``reprompt`` are plain (already spoken) text.
    ``card``: text for a Simple card in the user's Alexa app (where a link can be opened)."""
    body: dict[str, Any] = {"outputSpeech": ssml(speech), "shouldEndSession": end_session}
    if card:
        body["card"] = {"type": "Simple", "title": CARD_TITLE, "content": card[:7000]}
    if reprompt and not end_session:
        body["reprompt"] = {"outputSpeech": ssml(reprompt)}
    answer: dict[str, Any] = {"version": "1.0", "response": body}
    if attributes:
        answer["sessionAttributes"] = dict(attributes)
    return answer


def empty_response() -> dict[str, Any]:
    """The answer to SessionEndedRequest: Alexa ignores any speech there."""
    return {"version": "1.0", "response": {}}


def reply_for_messages(messages: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Alexa's response for the bot messages of one turn.

    A turn that asks something (buttons, or a question mark) keeps the session open with
    a reprompt, and remembers the buttons' payloads in the session attributes so that
    saying a title sends the same payload a tap would. Anything else ends the session.
    """
    texts = [spoken(str(m["text"])) for m in messages if m.get("text")]
    # A link cannot be spoken: it goes to a card in the Alexa app (a sign-in link, say).
    linked = [str(m["text"]) for m in messages if m.get("text") and _URL.search(str(m["text"]))]
    card = _LINK_PARTS.sub(r"\1 (\2)", "\n\n".join(linked)) if linked else None
    if card:
        texts.append(LINK_IN_APP)
    buttons = [
        (str(b.get("title", "")), str(b.get("payload", "")))
        for m in messages
        for b in (m.get("buttons") or [])
        if isinstance(b, Mapping) and b.get("title")
    ]
    speech = " ".join(t for t in texts if t)
    if buttons:
        prompt = choice_prompt([title for title, _ in buttons])
        question = next((t for t in reversed(texts) if _asks(t)), "")
        said = speech.lower()
        if not all(spoken(title).lower() in said for title, _ in buttons):
            speech = f"{speech} {prompt}".strip()
        return alexa_response(
            speech or prompt,
            end_session=False,
            reprompt=f"{question} {prompt}".strip(),
            attributes={"choices": [[title, payload] for title, payload in buttons]},
            card=card,
        )
    if not speech:
        return alexa_response("Done.", end_session=True)
    question = next((t for t in reversed(texts) if _asks(t)), None)
    if question is not None:
        return alexa_response(speech, end_session=False, reprompt=question, card=card)
    return alexa_response(speech, end_session=True, card=card)


def chosen_payload(utterance: str, attributes: Mapping[str, Any] | None) -> str | None:
    """The payload of the button whose title the user said, from the last turn's choices."""
    choices = (attributes or {}).get("choices")
    if not isinstance(choices, list):
        return None
    said = _normalised(utterance)
    for choice in choices:
        if (
            isinstance(choice, list)
            and len(choice) == 2
            and all(isinstance(part, str) for part in choice)
            and said in (_normalised(choice[0]), "the " + _normalised(choice[0]))
        ):
            return choice[1]
    return None


def _asks(text: str) -> bool:
    """Whether ``text`` asks the user something (a quoted example question does not)."""
    return "?" in _QUOTED.sub("", text)


def _normalised(text: str) -> str:
    return _SPACES.sub(" ", re.sub(r"[^\w\s]", " ", text.lower())).strip()
