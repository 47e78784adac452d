"""The assistant's answers to each kind of request, independent of Rasa.

Each method takes what the user asked plus the conversation's memory
(:class:`Memory`, kept by the dialogue layer in slots) and returns an
:class:`Outcome`: the responses to utter (domain response names with their
parameters, so the wording lives in ``domain.yml``) and the new memory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from assistant.describe import describe, format_number, remaining_time
from assistant.household import Appliance, HouseholdService
from assistant.planning import CommandRequest, Plan, Refusal, plan_command
from assistant.resolution import (
    Ambiguous,
    Capable,
    NotCapable,
    NotFound,
    Resolved,
    has_feature,
    resolve,
)
from assistant.vocabulary import Vocabulary
from lgcloud.errors import (
    CommandRefused,
    DeviceNotFound,
    DeviceOffline,
    RateLimited,
    ThinQAuthError,
    ThinQError,
    ThinQServerError,
    ThinQTransportError,
)
from lgcloud.thinq import ThinQAuth

logger = logging.getLogger(__name__)

# Refusals that mean "this appliance cannot do that at all" (as opposed to "not like that").
_INCAPABLE = {
    "no_profile",
    "no_such_feature",
    "not_switchable",
    "no_operation",
    "operation_not_supported",
    "setting_not_supported",
    "value_not_allowed",
    "no_delay_start",
    "read_only",
    "not_adjustable",
}


@dataclass(frozen=True)
class Reply:
    response: str
    params: dict[str, Any] = field(default_factory=dict)
    buttons: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Memory:
    """What the conversation remembers between turns (stored in slots)."""

    context_ids: tuple[str, ...] = ()
    last_request: dict[str, Any] | None = None
    pending: dict[str, Any] | None = None


@dataclass(frozen=True)
class Outcome:
    replies: list[Reply]
    memory: Memory


@dataclass(frozen=True)
class UserSession:
    thinq_user: str
    auth: ThinQAuth


def _names(appliances: list[Appliance] | tuple[Appliance, ...], joiner: str = "or") -> str:
    names = [a.alias for a in appliances]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {joiner} {names[-1]}"


def _device_buttons(appliances: tuple[Appliance, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(
        (a.alias, f'/inform_device{{"device": "{_payload_safe(a.alias)}"}}') for a in appliances
    )


def _payload_safe(text: str) -> str:
    return text.replace("\\", " ").replace('"', " ")


YES_NO = (("Yes", "/affirm"), ("No", "/deny"))


def lg_failure_reply(exc: ThinQError, appliance: Appliance | None, *, reading: bool) -> Reply:
    """What to tell the user when LG failed; ``reading`` is False for commands."""
    device = appliance.alias if appliance else "your appliance"
    if isinstance(exc, DeviceOffline):
        return Reply("utter_device_offline", {"device": device})
    if isinstance(exc, DeviceNotFound):
        return Reply("utter_device_gone", {"device": device})
    if isinstance(exc, ThinQAuthError):
        return Reply("utter_account_problem")
    if isinstance(exc, RateLimited):
        return Reply("utter_lg_busy")
    if not reading and isinstance(exc, ThinQTransportError | ThinQServerError):
        # The command may or may not have reached the appliance: say so, never resend blindly.
        return Reply("utter_control_unconfirmed", {"device": device})
    return Reply("utter_lg_unavailable")


class ApplianceAssistant:
    def __init__(self, household: HouseholdService, vocab: Vocabulary) -> None:
        self._household = household
        self._vocab = vocab

    # --- questions ----------------------------------------------------------------------------

    async def list_devices(self, session: UserSession, memory: Memory) -> Outcome:
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, None, reading=True)], memory)
        if not appliances:
            return Outcome([Reply("utter_no_devices")], memory)
        lines = [f"{a.alias} ({self._vocab.device_type(a.device_type).name})" for a in appliances]
        return Outcome(
            [Reply("utter_device_list", {"count": len(appliances), "devices": ", ".join(lines)})],
            memory,
        )

    async def status(
        self, session: UserSession, memory: Memory, mention: str | None, feature_key: str | None
    ) -> Outcome:
        feature = self._vocab.feature(feature_key)
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, None, reading=True)], memory)
        resolution = resolve(
            mention,
            appliances,
            self._vocab,
            capable=has_feature(feature, writable=False),
            feature=feature,
            context_ids=memory.context_ids,
        )
        pending = {"kind": "choose_device", "op": "status", "feature": feature_key}
        return await self._after_resolution(session, memory, resolution, pending, appliances)

    async def _status_of(
        self,
        session: UserSession,
        memory: Memory,
        appliance: Appliance,
        feature_key: str | None,
        location: str | None = None,
    ) -> Outcome:
        feature = self._vocab.feature(feature_key)
        memory = replace(memory, context_ids=(appliance.device_id,), pending=None)
        try:
            status = await self._household.status(session.auth, appliance)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, appliance, reading=True)], memory)
        if feature is not None and feature.key == "remaining_time":
            return Outcome([self._remaining(appliance, status)], memory)
        summary = describe(appliance, status, self._vocab, feature=feature)
        if location:
            parts = [p for p in summary.split(", ") if p.startswith(location.lower())]
            summary = ", ".join(parts) or summary
        return Outcome(
            [Reply("utter_device_status", {"device": appliance.alias, "summary": summary})], memory
        )

    def _remaining(self, appliance: Appliance, status: dict[str, Any]) -> Reply:
        state = status.get("runState.currentState")
        left = remaining_time(status)
        state_text = self._vocab.run_state_label(str(state)) if state else "idle"
        if state in ("RUNNING", "PREHEATING") and left:
            return Reply("utter_remaining_time", {"device": appliance.alias, "time": left})
        if state == "RESERVED":
            return Reply("utter_remaining_reserved", {"device": appliance.alias})
        if state == "PAUSE" and left:
            return Reply("utter_remaining_paused", {"device": appliance.alias, "time": left})
        return Reply("utter_not_running", {"device": appliance.alias, "state": state_text})

    # --- commands -----------------------------------------------------------------------------

    async def control(
        self, session: UserSession, memory: Memory, request: CommandRequest, mention: str | None
    ) -> Outcome:
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, None, reading=True)], memory)
        resolution = resolve(
            mention,
            appliances,
            self._vocab,
            capable=self._can(request),
            feature=self._vocab.feature(request.feature),
            context_ids=memory.context_ids,
        )
        pending = {"kind": "choose_device", "op": "control", "request": request.to_dict()}
        memory = replace(memory, last_request=request.to_dict())
        return await self._after_resolution(session, memory, resolution, pending, appliances)

    async def repeat(self, session: UserSession, memory: Memory, mention: str | None) -> Outcome:
        if not memory.last_request:
            return Outcome([Reply("utter_nothing_to_repeat")], memory)
        request = CommandRequest.from_dict(memory.last_request)
        # "and the living room too" must not fall back to the device we just changed.
        return await self.control(session, replace(memory, context_ids=()), request, mention)

    def _can(self, request: CommandRequest) -> Capable:
        def test(appliance: Appliance) -> bool:
            try:
                plan_command(request, appliance, self._vocab, status={})
            except Refusal as refusal:
                return refusal.kind not in _INCAPABLE
            return True

        return test

    async def _execute(
        self,
        session: UserSession,
        memory: Memory,
        appliance: Appliance,
        request: CommandRequest,
        location: str | None,
        *,
        confirmed: bool = False,
        outcome_checked: bool = False,
    ) -> Outcome:
        memory = replace(memory, context_ids=(appliance.device_id,), pending=None)
        status: dict[str, Any] = {}
        if request.action == "adjust":
            try:
                status = await self._household.status(session.auth, appliance)
            except ThinQError as exc:
                return Outcome([self._lg_failure(exc, appliance, reading=True)], memory)
        try:
            plan = plan_command(request, appliance, self._vocab, location=location, status=status)
        except Refusal as refusal:
            return self._refused(memory, appliance, request, refusal)
        if plan.needs_confirmation and not confirmed:
            pending = {
                "kind": "confirm",
                "device_id": appliance.device_id,
                "location": location,
                "request": request.to_dict(),
            }
            return Outcome(
                [
                    Reply(
                        "utter_confirm_control",
                        {"device": appliance.alias, "action": self._ask_phrase(plan)},
                        YES_NO,
                    )
                ],
                replace(memory, pending=pending),
            )
        if (
            not outcome_checked
            and await self._household.unconfirmed(appliance.device_id) is not None
        ):
            # The last command to it may or may not have happened: look before sending.
            checked = await self._check_earlier_outcome(
                session, memory, appliance, plan, request, location
            )
            if checked is not None:
                return checked
        try:
            await self._household.send(session.auth, appliance, plan.bodies, plan.flat_changes)
        except ThinQError as exc:
            return Outcome([await self._control_failure(session, exc, appliance)], memory)
        logger.info("control %s on %s: %s", request.action, appliance.device_id, plan.flat_changes)
        return Outcome([Reply("utter_control_done", {"result": self._done_phrase(plan)})], memory)

    async def _check_earlier_outcome(
        self,
        session: UserSession,
        memory: Memory,
        appliance: Appliance,
        plan: Plan,
        request: CommandRequest,
        location: str | None,
    ) -> Outcome | None:
        """None: the state shows the earlier command did not happen, so send this one.
        Otherwise the answer: it is done already, or ask before sending it again."""
        try:
            status = await self._household.status(session.auth, appliance)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, appliance, reading=True)], memory)
        verdict = took_effect(plan, status, self._vocab)
        if verdict is False:
            return None
        if verdict is True:
            await self._household.settled(appliance.device_id)
            logger.info("control on %s already in effect: not sent again", appliance.device_id)
            return Outcome(
                [Reply("utter_control_already_done", {"result": self._done_phrase(plan)})],
                memory,
            )
        pending = {
            "kind": "confirm",
            "device_id": appliance.device_id,
            "location": location,
            "request": request.to_dict(),
            "outcome_checked": True,
        }
        summary = describe(appliance, status, self._vocab)
        return Outcome(
            [
                Reply(
                    "utter_confirm_resend",
                    {"device": appliance.alias, "summary": summary},
                    YES_NO,
                )
            ],
            replace(memory, pending=pending),
        )

    # --- pending questions --------------------------------------------------------------------

    async def answer_pending(
        self, session: UserSession, memory: Memory, answer: str, mention: str | None
    ) -> Outcome:
        """``answer`` is affirm, deny or inform_device (a device named in reply to a question)."""
        pending = memory.pending
        if not pending:
            if answer == "inform_device" and mention:
                return await self.status(session, memory, mention, None)
            return Outcome([Reply("utter_nothing_pending")], memory)
        kind = pending.get("kind")
        if answer == "deny":
            return Outcome([Reply("utter_cancelled")], replace(memory, pending=None))
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([self._lg_failure(exc, None, reading=True)], memory)
        by_id = {a.device_id: a for a in appliances}

        if kind == "confirm":
            appliance = by_id.get(pending.get("device_id", ""))
            if appliance is None:
                return Outcome(
                    [Reply("utter_device_gone", {"device": "that appliance"})],
                    replace(memory, pending=None),
                )
            if answer != "affirm":
                return Outcome([Reply("utter_ask_yes_no", {}, YES_NO)], memory)
            request = CommandRequest.from_dict(pending["request"])
            return await self._execute(
                session,
                memory,
                appliance,
                request,
                pending.get("location"),
                confirmed=True,
                outcome_checked=bool(pending.get("outcome_checked")),
            )

        if answer != "inform_device" or not mention:
            return Outcome([Reply("utter_ask_which_again", {}, ())], memory)

        if kind == "choose_location":
            appliance = by_id.get(pending.get("device_id", ""))
            if appliance is None:
                return Outcome(
                    [Reply("utter_device_gone", {"device": "that appliance"})],
                    replace(memory, pending=None),
                )
            location = self._location_named(appliance, mention)
            if location is None:
                return Outcome([Reply("utter_ask_which_again")], memory)
            request = CommandRequest.from_dict(pending["request"])
            return await self._execute(session, memory, appliance, request, location)

        # choose_device: prefer the candidates we offered; fall back to the whole household.
        offered = [by_id[i] for i in pending.get("candidates", []) if i in by_id]
        resolution = resolve(mention, offered, self._vocab)
        if not isinstance(resolution, Resolved):
            resolution = resolve(mention, appliances, self._vocab)
        if isinstance(resolution, Resolved):
            memory = replace(memory, pending=None)
            if pending.get("op") == "status":
                return await self._status_of(
                    session,
                    memory,
                    resolution.appliance,
                    pending.get("feature"),
                    resolution.location,
                )
            request = CommandRequest.from_dict(pending["request"])
            return await self._execute(
                session, memory, resolution.appliance, request, resolution.location
            )
        return await self._after_resolution(session, memory, resolution, pending, appliances)

    # --- shared steps ---------------------------------------------------------------------------

    async def _after_resolution(
        self,
        session: UserSession,
        memory: Memory,
        resolution: Any,
        pending: dict[str, Any],
        appliances: list[Appliance],
    ) -> Outcome:
        if isinstance(resolution, Resolved):
            if pending["op"] == "status":
                return await self._status_of(
                    session,
                    memory,
                    resolution.appliance,
                    pending.get("feature"),
                    resolution.location,
                )
            request = CommandRequest.from_dict(pending["request"])
            return await self._execute(
                session, memory, resolution.appliance, request, resolution.location
            )
        if isinstance(resolution, Ambiguous):
            candidates = resolution.candidates
            pending = {**pending, "candidates": [a.device_id for a in candidates]}
            return Outcome(
                [
                    Reply(
                        "utter_ask_which_device",
                        {"options": _names(candidates)},
                        _device_buttons(candidates),
                    )
                ],
                replace(memory, pending=pending),
            )
        if isinstance(resolution, NotFound):
            return Outcome(
                [
                    Reply(
                        "utter_device_not_found",
                        {"mention": resolution.mention, "devices": _names(appliances, "and")},
                    )
                ],
                replace(memory, pending=None),
            )
        assert isinstance(resolution, NotCapable)
        label = resolution.feature.label if resolution.feature else "that"
        if resolution.matched:
            return Outcome(
                [
                    Reply(
                        "utter_device_lacks_feature",
                        {"device": _names(resolution.matched), "feature": label},
                    )
                ],
                replace(memory, pending=None),
            )
        return Outcome(
            [Reply("utter_no_device_has_feature", {"feature": label})],
            replace(memory, pending=None),
        )

    def _location_named(self, appliance: Appliance, mention: str) -> str | None:
        words = self._vocab.device_type(appliance.device_type).location_words
        text = mention.lower()
        for phrase, location in sorted(words.items(), key=lambda kv: -len(kv[0])):
            if phrase in text:
                return location
        if appliance.profile is not None:
            for location in appliance.profile.locations:
                if location.lower() in text:
                    return location
        return None

    def _refused(
        self, memory: Memory, appliance: Appliance, request: CommandRequest, refusal: Refusal
    ) -> Outcome:
        facts = refusal.facts
        device = appliance.alias
        unit = facts.get("unit") or ""
        if refusal.kind == "choose_location":
            locations = [str(loc) for loc in facts.get("locations", [])]
            pending = {
                "kind": "choose_location",
                "device_id": appliance.device_id,
                "request": request.to_dict(),
            }
            buttons = tuple(
                (loc.title(), f'/inform_device{{"device": "{loc.lower()}"}}') for loc in locations
            )
            options = " or the ".join(loc.lower() for loc in locations)
            return Outcome(
                [
                    Reply(
                        "utter_ask_which_location", {"device": device, "options": options}, buttons
                    )
                ],
                replace(memory, pending=pending),
            )
        params: dict[str, Any] = {"device": device, "feature": facts.get("feature", "that")}
        if refusal.kind == "out_of_range":
            params.update(
                requested=f"{format_number(facts['requested'])}{unit}",
                minimum=f"{format_number(facts['minimum'])}{unit}",
                maximum=f"{format_number(facts['maximum'])}{unit}",
            )
        elif refusal.kind == "off_step":
            params.update(
                requested=format_number(facts["requested"]), step=format_number(facts["step"])
            )
        elif refusal.kind in ("value_not_allowed", "not_allowed", "setting_not_supported"):
            params.update(value=facts.get("value", ""), allowed=", ".join(facts.get("allowed", [])))
        elif refusal.kind == "at_limit":
            params.update(limit=f"{facts['limit']}{unit}")
        response = f"utter_refuse_{refusal.kind}"
        return Outcome([Reply(response, params)], replace(memory, pending=None))

    def _ask_phrase(self, plan: Plan) -> str:
        phrases = []
        for change in plan.changes:
            if self._is_operation(change.prop):
                verb = self._vocab.operation_ask.get(
                    str(change.value), self._vocab.value_label(change.value)
                )
                phrases.append(f"{verb} the {plan.appliance.alias}")
            else:
                phrases.append(f"set the {plan.appliance.alias}'s {self._change_text(change)}")
        return " and ".join(phrases)

    def _done_phrase(self, plan: Plan) -> str:
        alias = plan.appliance.alias
        delay = next((c for c in plan.changes if c.prop.name == "relativeHourToStart"), None)
        if delay is not None and delay.value:
            hours = format_number(delay.value)
            return f"The {alias} will start in {hours} hour{'s' if delay.value != 1 else ''}."
        sentences = []
        for change in plan.changes:
            if self._is_operation(change.prop):
                verb = self._vocab.operation_done.get(str(change.value), "set")
                sentences.append(f"{verb.capitalize()} the {alias}.")
            else:
                sentences.append(f"Done: the {alias}'s {self._change_text(change, done=True)}.")
        return " ".join(sentences)

    def _change_text(self, change: Any, *, done: bool = False) -> str:
        prop = change.prop
        feature = self._vocab.feature_of(prop)
        label = feature.label if feature else prop.name
        if prop.location and prop.location.lower() not in label:
            label = f"{prop.location.lower()} {label}"
        if prop.type == "boolean":
            state = "on" if change.value else "off"
            return f"{label} is now {state}" if done else f"{label} {state}"
        if prop.type in ("range", "number"):
            unit = feature.unit if feature and feature.unit == "°C" else ""
            value = f"{format_number(change.value)}{unit}"
        else:
            value = self._vocab.value_label(change.value)
        return f"{label} is now {value}" if done else f"{label} to {value}"

    def _is_operation(self, prop: Any) -> bool:
        return self._vocab.features["power"].matches(prop)

    # --- LG failures ----------------------------------------------------------------------------

    def _lg_failure(self, exc: ThinQError, appliance: Appliance | None, *, reading: bool) -> Reply:
        return lg_failure_reply(exc, appliance, reading=reading)

    async def _control_failure(
        self, session: UserSession, exc: ThinQError, appliance: Appliance
    ) -> Reply:
        device = appliance.alias
        if isinstance(exc, DeviceNotFound):
            await self._household.forget_list(session.thinq_user)
        if not isinstance(exc, CommandRefused):
            return self._lg_failure(exc, appliance, reading=False)
        specific = {
            "2301": "utter_remote_control_off",
            "2304": "utter_device_powered_off",
            "2305": "utter_blocked_by_mode",
            "2303": "utter_device_in_error",
        }
        if exc.code in specific:
            return Reply(specific[exc.code], {"device": device})
        state = "busy"
        try:
            status = await self._household.status(session.auth, appliance)
            if "runState.currentState" in status:
                state = self._vocab.run_state_label(str(status["runState.currentState"]))
        except ThinQError:
            pass  # the refusal itself is what matters; the state is only a courtesy
        return Reply("utter_not_in_this_state", {"device": device, "state": state})


def took_effect(plan: Plan, status: dict[str, Any], vocab: Vocabulary) -> bool | None:
    """Whether the device's state shows every change of ``plan``: True, False, or None when
    the state cannot tell (a write-only command with no known effect on its run state)."""
    for change in plan.changes:
        key = change.prop.key
        if change.prop.readable and key in status:
            if not _same_value(status[key], change.value):
                return False
            continue
        effects = vocab.operation_effects.get(str(change.value))
        if effects is None or "runState.currentState" not in status:
            return None
        if str(status["runState.currentState"]) not in effects:
            return False
    return True


def _same_value(seen: Any, wanted: Any) -> bool:
    numbers = (int, float)
    if isinstance(seen, numbers) and isinstance(wanted, numbers):
        if not isinstance(seen, bool) and not isinstance(wanted, bool):
            return float(seen) == float(wanted)
    return seen == wanted or str(seen) == str(wanted)
