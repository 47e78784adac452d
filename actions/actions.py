"""Rasa custom actions: read the entities and slots, ask the assistant service, utter.

All decisions live in ``assistant.conversation``; this module only translates
between Rasa's tracker/dispatcher and that service. It imports rasa_sdk only.
"""

from __future__ import annotations

import logging
from abc import ABCMeta, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from assistant.building import PENDING_CONFIRM, PENDING_WHICH, BuildingAssistant
from assistant.bulk import PENDING_BULK
from assistant.conversation import YES_NO, ApplianceAssistant, Memory, Outcome, UserSession
from assistant.home import asks_refresh
from assistant.language import HANGUL, foreign_script
from assistant.linking import (
    LinkConfirmed,
    LinkingUnavailable,
    RelinkRequired,
    SignInTemporarilyUnavailable,
)
from assistant.planning import CommandRequest
from assistant.runtime import get_runtime
from assistant.storage.building_links import SiteAccess

logger = logging.getLogger(__name__)

CONTEXT_SLOT = "context_devices"
LAST_REQUEST_SLOT = "last_request"
PENDING_SLOT = "pending"

# Which command each control intent asks for.
INTENT_ACTIONS = {
    "turn_on": "turn_on",
    "turn_off": "turn_off",
    "start_appliance": "start",
    "stop_appliance": "stop",
    "set_value": "set",
    "adjust_value": "adjust",
    "schedule_start": "schedule_start",
}
MAX_MENTION_LENGTH = 80
MAX_TEXT_LENGTH = 500


def latest_entity(tracker: Tracker, name: str) -> str | None:
    """The entity's (synonym-mapped) value from the user's last message, if any."""
    for value in tracker.get_latest_entity_values(name):
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_MENTION_LENGTH]
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
    return None


def memory_from(tracker: Tracker) -> Memory:
    context = tracker.get_slot(CONTEXT_SLOT)
    last = tracker.get_slot(LAST_REQUEST_SLOT)
    pending = tracker.get_slot(PENDING_SLOT)
    return Memory(
        context_ids=tuple(str(i) for i in context) if isinstance(context, list) else (),
        last_request=last if isinstance(last, dict) else None,
        pending=pending if isinstance(pending, dict) else None,
    )


def emit(dispatcher: CollectingDispatcher, outcome: Outcome, before: Memory) -> list[EventType]:
    for reply in outcome.replies:
        buttons = [{"title": title, "payload": payload} for title, payload in reply.buttons]
        if buttons:
            dispatcher.utter_message(response=reply.response, buttons=buttons, **reply.params)
        else:
            dispatcher.utter_message(response=reply.response, **reply.params)
    after = outcome.memory
    events: list[EventType] = []
    if after.context_ids != before.context_ids:
        events.append(SlotSet(CONTEXT_SLOT, list(after.context_ids)))
    if after.last_request != before.last_request:
        events.append(SlotSet(LAST_REQUEST_SLOT, after.last_request))
    if after.pending != before.pending:
        events.append(SlotSet(PENDING_SLOT, after.pending))
    return events


async def building_turn(tracker: Tracker) -> tuple[BuildingAssistant, SiteAccess] | None:
    """The building side and the sender's site access when this message is about the
    sender's building (a facility or site named), else None: the home answers."""
    building = (await get_runtime()).building
    if building is None:
        return None
    access = await building.claims(tracker.sender_id, message_text(tracker))
    return (building, access) if access is not None else None


def message_text(tracker: Tracker) -> str:
    return str(tracker.latest_message.get("text") or "")[:MAX_TEXT_LENGTH]


class AssistantAction(Action, metaclass=ABCMeta):
    """Looks up the sender's LG account, then lets the subclass ask the assistant.

    Abstract, so rasa_sdk's registry skips it and registers only the concrete actions.
    """

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        if self.serves_building(tracker):
            claimed = await building_turn(tracker)
            if claimed is not None:
                building, access = claimed
                memory = memory_from(tracker)
                outcome = await self.respond_building(building, access, memory, tracker)
                return emit(dispatcher, outcome, memory)
        runtime = await get_runtime()
        try:
            session = await runtime.session_for(
                tracker.sender_id, tracker.get_latest_input_channel()
            )
        except RelinkRequired:
            dispatcher.utter_message(response="utter_link_expired")
            return []
        except SignInTemporarilyUnavailable:
            dispatcher.utter_message(response="utter_lg_unavailable")
            return []
        if session is None:
            dispatcher.utter_message(response="utter_not_linked")
            return []
        memory = memory_from(tracker)
        outcome = await self.respond(runtime.assistant, session, memory, tracker)
        return emit(dispatcher, outcome, memory)

    @abstractmethod
    async def respond(
        self, assistant: ApplianceAssistant, session: UserSession, memory: Memory, tracker: Tracker
    ) -> Outcome:
        """The assistant's answer to this turn."""

    def serves_building(self, tracker: Tracker) -> bool:
        """Whether this turn may be about the sender's building (then a message naming it
        goes to :meth:`respond_building`, and needs no LG ThinQ account)."""
        return False

    async def respond_building(
        self, building: BuildingAssistant, access: SiteAccess, memory: Memory, tracker: Tracker
    ) -> Outcome:
        raise TypeError(f"{self.name()} does not serve buildings")


class ActionListDevices(AssistantAction):
    def name(self) -> str:
        return "action_list_devices"

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        return await assistant.list_devices(session, memory)


class ActionHomeOverview(AssistantAction):
    """ "how is everything at home?": every device at once (v2 placement API); "how is
    everything at headquarters?": every facility of the sender's site."""

    def name(self) -> str:
        return "action_home_overview"

    def serves_building(self, tracker: Tracker) -> bool:
        return True

    async def respond_building(self, building, access, memory, tracker):  # type: ignore[no-untyped-def]
        return await building.overview(access, memory)

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        home = (await get_runtime()).home
        return await home.overview(
            session,
            memory,
            sender_id=tracker.sender_id,
            channel=tracker.get_latest_input_channel(),
            refresh=asks_refresh(message_text(tracker)),
        )


class ActionDeviceStatus(AssistantAction):
    def name(self) -> str:
        return "action_device_status"

    def serves_building(self, tracker: Tracker) -> bool:
        return True

    async def respond_building(self, building, access, memory, tracker):  # type: ignore[no-untyped-def]
        feature = latest_entity(tracker, "feature")
        return await building.status(access, memory, message_text(tracker), feature)

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        feature = latest_entity(tracker, "feature")
        if tracker.latest_message.get("intent", {}).get("name") == "ask_remaining_time":
            feature = "remaining_time"
        return await assistant.status(session, memory, latest_entity(tracker, "device"), feature)


class ActionControlDevice(AssistantAction):
    def name(self) -> str:
        return "action_control_device"

    def serves_building(self, tracker: Tracker) -> bool:
        # "and the living room too" repeats a home request.
        return tracker.latest_message.get("intent", {}).get("name") != "repeat_on_device"

    async def respond_building(self, building, access, memory, tracker):  # type: ignore[no-untyped-def]
        intent = tracker.latest_message.get("intent", {}).get("name")
        return await building.control(
            access,
            memory,
            request_from(intent, tracker),
            message_text(tracker),
            every=latest_entity(tracker, "scope") == "all",
        )

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        intent = tracker.latest_message.get("intent", {}).get("name")
        mention = latest_entity(tracker, "device")
        if intent == "repeat_on_device":
            return await assistant.repeat(session, memory, mention)
        request = request_from(intent, tracker)
        if latest_entity(tracker, "scope") == "all":
            # "turn off all the air conditioners": every appliance the mention matches.
            return await (await get_runtime()).bulk.control_all(
                session,
                memory,
                request,
                mention,
                sender_id=tracker.sender_id,
                channel=tracker.get_latest_input_channel(),
            )
        return await assistant.control(session, memory, request, mention)


class ActionAnswerPending(AssistantAction):
    def name(self) -> str:
        return "action_answer_pending"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        pending = tracker.get_slot(PENDING_SLOT)
        if isinstance(pending, dict) and pending.get("kind") == UNLINK_PENDING["kind"]:
            # Needs no LG session: the answer to "unlink your LG account?".
            return await answer_unlink(dispatcher, tracker)
        if isinstance(pending, dict) and pending.get("kind") in (PENDING_CONFIRM, PENDING_WHICH):
            return await answer_building(dispatcher, tracker)
        return await super().run(dispatcher, tracker, domain)

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        intent = tracker.latest_message.get("intent", {}).get("name") or ""
        if (memory.pending or {}).get("kind") == PENDING_BULK:
            # "turn on all the air conditioners?" answered
            return await (await get_runtime()).bulk.answer(
                session,
                memory,
                intent,
                sender_id=tracker.sender_id,
                channel=tracker.get_latest_input_channel(),
            )
        return await assistant.answer_pending(
            session, memory, intent, latest_entity(tracker, "device")
        )


async def answer_building(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    """The answer to a building question ("turn off these 2?", "which one?")."""
    building = (await get_runtime()).building
    memory = memory_from(tracker)
    access = await building.access_for(tracker.sender_id) if building else None
    if building is None or access is None:
        dispatcher.utter_message(response="utter_building_not_linked")
        return [SlotSet(PENDING_SLOT, None)]
    intent = tracker.latest_message.get("intent", {}).get("name") or ""
    outcome = await building.answer_pending(
        access, memory, intent, latest_entity(tracker, "device")
    )
    return emit(dispatcher, outcome, memory)


def request_from(intent: str | None, tracker: Tracker) -> CommandRequest:
    action = INTENT_ACTIONS.get(intent or "", "set")
    feature = latest_entity(tracker, "feature")
    setting = latest_entity(tracker, "setting")
    if action == "turn_on" and setting and feature in (None, "mode", "fan_speed"):
        action = "set"  # "turn on dry mode" names a value, not a switch
    return CommandRequest(
        action=action,
        feature=feature,
        setting=setting,
        number=latest_entity(tracker, "number"),
        direction=latest_entity(tracker, "direction"),
    )


# intent -> (operation, kind) for action_manage_notifications
NOTIFICATION_INTENTS = {
    "subscribe_push": ("subscribe", "push"),
    "unsubscribe_push": ("unsubscribe", "push"),
    "subscribe_pcc": ("subscribe", "pcc"),
    "unsubscribe_pcc": ("unsubscribe", "pcc"),
}


class ActionManageNotifications(AssistantAction):
    """ "notify me when the washer is done", "stop ...", "what am I subscribed to?"."""

    def name(self) -> str:
        return "action_manage_notifications"

    async def respond(self, assistant, session, memory, tracker):  # type: ignore[no-untyped-def]
        alerts = (await get_runtime()).alerts
        intent = tracker.latest_message.get("intent", {}).get("name") or ""
        if intent not in NOTIFICATION_INTENTS:
            return await alerts.list(session, memory, tracker.sender_id)
        operation, kind = NOTIFICATION_INTENTS[intent]
        mention = latest_entity(tracker, "device")
        if operation == "subscribe":
            return await alerts.subscribe(session, memory, tracker.sender_id, kind, mention)
        return await alerts.unsubscribe(session, memory, tracker.sender_id, kind, mention)


# --- account linking ("link my LG account", "unlink my LG account") ---------------------------

UNLINK_PENDING = {"kind": "confirm_unlink"}


class ActionLinkAccount(Action):
    """Replies with the LG sign-in link for this sender (single use, short-lived)."""

    def name(self) -> str:
        return "action_link_account"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        linking = (await get_runtime()).linking
        try:
            url = await linking.start(tracker.sender_id, tracker.get_latest_input_channel())
        except LinkingUnavailable:
            dispatcher.utter_message(response="utter_link_unavailable")
            return []
        dispatcher.utter_message(
            response="utter_link_account", url=url, minutes=linking.request_ttl_minutes
        )
        return []


# CodeRefused.reason -> what the user is told
LINK_CODE_REPLIES = {
    "wrong": "utter_link_code_wrong",
    "locked": "utter_link_code_locked",
    "expired": "utter_link_code_expired",
    "none": "utter_link_code_none",
    "unreadable": "utter_link_code_unreadable",
}


class ActionConfirmLink(Action):
    """The code from the LG sign-in page, typed back in this chat: links the account."""

    def name(self) -> str:
        return "action_confirm_link"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        linking = (await get_runtime()).linking
        outcome = await linking.confirm(tracker.sender_id, tracker.latest_message.get("text", ""))
        if isinstance(outcome, LinkConfirmed):
            dispatcher.utter_message(response="utter_link_confirmed")
        elif outcome.reason == "wrong":
            dispatcher.utter_message(
                response="utter_link_code_wrong", attempts_left=outcome.attempts_left
            )
        else:
            dispatcher.utter_message(response=LINK_CODE_REPLIES[outcome.reason])
        return []


class ActionUnlinkAccount(Action):
    """Asks before deleting the stored LG sign-in; the answer goes to action_answer_pending."""

    def name(self) -> str:
        return "action_unlink_account"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        runtime = await get_runtime()
        if await runtime.storage.accounts.get(tracker.sender_id) is None:
            dispatcher.utter_message(response="utter_nothing_to_unlink")
            return []
        dispatcher.utter_message(response="utter_confirm_unlink", buttons=_yes_no_buttons())
        return [SlotSet(PENDING_SLOT, dict(UNLINK_PENDING))]


def _yes_no_buttons() -> list[dict[str, str]]:
    return [{"title": title, "payload": payload} for title, payload in YES_NO]


async def answer_unlink(dispatcher: CollectingDispatcher, tracker: Tracker) -> list[EventType]:
    intent = tracker.latest_message.get("intent", {}).get("name")
    if intent == "affirm":
        runtime = await get_runtime()
        # Notifications end with the link: LG would otherwise keep calling back for a
        # conversation that no longer belongs to the account.
        session = await runtime.linked_session(tracker.sender_id)
        await runtime.alerts.forget_sender(session, tracker.sender_id)
        await runtime.end_event_subscription(session, tracker.sender_id)
        await runtime.linking.unlink(tracker.sender_id)
        demo = runtime.settings.demo_mode
        dispatcher.utter_message(response="utter_unlinked_demo" if demo else "utter_unlinked")
    elif intent == "deny":
        dispatcher.utter_message(response="utter_unlink_cancelled")
    else:
        dispatcher.utter_message(response="utter_ask_yes_no", buttons=_yes_no_buttons())
        return []
    return [SlotSet(PENDING_SLOT, None)]


class ActionOtherLanguage(Action):
    """A message in another script (rasa_ext.language_guard): say we only speak English,
    in Korean too when it was Korean. Needs no LG account."""

    def name(self) -> str:
        return "action_other_language"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        korean = foreign_script(message_text(tracker)) == HANGUL
        dispatcher.utter_message(
            response="utter_only_english_korean" if korean else "utter_only_english"
        )
        return []
