"""One command for many appliances: "turn off all the air conditioners", no Rasa.

Every appliance the mention matches gets the request planned against its own profile
(``planning.plan_command``), so nothing unsupported is sent. When the matched appliances
are all of the user's appliances of that type and they need the same command, one v2
``control-async`` call does it and the per-device answers are gathered by request id;
otherwise each appliance gets its own v1 call. The answer says what each appliance did:
confirmed, refused (and why), or silent ("didn't answer in time, so I can't confirm it")
— never "done" for a device that did not say so.

Only commands that are safe to send to several appliances unasked (off and stop, the
vocabulary's ``safe_values``) run at once; anything that switches several appliances on
or changes their settings names them and waits for a yes (``answer``), then plans each
again against its current profile before sending.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from assistant.conversation import (
    YES_NO,
    Memory,
    Outcome,
    Reply,
    UserSession,
    lg_failure_reply,
)
from assistant.describe import join_names, results_summary
from assistant.home import WholeHomeTurn
from assistant.household import Appliance
from assistant.planning import CommandRequest, Plan, Refusal, plan_command
from assistant.resolution import Ambiguous, NotCapable, NotFound, Resolved, resolve
from lgcloud.errors import DeviceOffline, ThinQError, error_for

logger = logging.getLogger(__name__)

PENDING_BULK = "confirm_bulk"


class BulkControl(WholeHomeTurn):
    async def control_all(
        self,
        session: UserSession,
        memory: Memory,
        request: CommandRequest,
        mention: str | None,
        *,
        sender_id: str | None = None,
        channel: str | None = None,
    ) -> Outcome:
        memory = replace(memory, pending=None, last_request=request.to_dict())
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, None, reading=True)], memory)
        targets = self._targets(mention, appliances)
        if isinstance(targets, Reply):
            return Outcome([targets], memory)
        plans: list[Plan] = []
        for appliance in targets:
            try:
                plans.append(plan_command(request, appliance, self._vocab, status={}))
            except Refusal:
                continue  # it cannot do this; the others still can
        if not plans:
            return Outcome(
                [Reply("utter_bulk_not_capable", {"devices": join_names(_aliases(targets))})],
                memory,
            )
        memory = replace(memory, context_ids=tuple(p.appliance.device_id for p in plans))
        if len(plans) > 1 and not all(self._safe(p) for p in plans):
            # Switching several on, or changing their settings, only after a yes.
            pending = {
                "kind": PENDING_BULK,
                "request": request.to_dict(),
                "device_ids": [p.appliance.device_id for p in plans],
            }
            return Outcome(
                [Reply("utter_bulk_confirm", {"plan": self._plan_text(plans)}, YES_NO)],
                replace(memory, pending=pending),
            )
        return await self._execute(session, memory, plans, appliances, sender_id, channel)

    async def answer(
        self,
        session: UserSession,
        memory: Memory,
        intent: str,
        *,
        sender_id: str | None = None,
        channel: str | None = None,
    ) -> Outcome:
        """The answer to "turn on the Bedroom AC and Living Room AC?": each appliance's
        command is planned again against its current profile, then sent."""
        pending = memory.pending or {}
        if intent == "deny":
            return Outcome([Reply("utter_cancelled")], replace(memory, pending=None))
        if intent != "affirm":
            return Outcome([Reply("utter_ask_yes_no", {}, YES_NO)], memory)
        memory = replace(memory, pending=None)
        request = CommandRequest.from_dict(pending.get("request") or {})
        wanted = list(pending.get("device_ids") or [])
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, None, reading=True)], memory)
        by_id = {a.device_id: a for a in appliances}
        plans: list[Plan] = []
        for device_id in wanted:
            appliance = by_id.get(device_id)
            if appliance is None:
                continue  # removed from the account meanwhile
            try:
                plans.append(plan_command(request, appliance, self._vocab, status={}))
            except Refusal:
                continue
        if not plans:
            return Outcome([Reply("utter_device_gone", {"device": "those appliances"})], memory)
        return await self._execute(session, memory, plans, appliances, sender_id, channel)

    def _plan_text(self, plans: Sequence[Plan]) -> str:
        """ "turn on the Bedroom AC and Living Room AC" """
        change = plans[0].changes[0] if plans[0].changes else None
        value = str(change.value) if change is not None else ""
        verb = self._vocab.operation_ask.get(value)
        names = join_names([f"the {p.appliance.alias}" for p in plans])
        if verb:
            return f"{verb} {names}"
        values = [self._vocab.value_label(c.value) for c in plans[0].changes]
        return f"set {names} to {join_names(values)}" if values else f"change {names}"

    async def _execute(
        self,
        session: UserSession,
        memory: Memory,
        plans: list[Plan],
        appliances: Sequence[Appliance],
        sender_id: str | None,
        channel: str | None,
    ) -> Outcome:
        done: list[str] = []
        refused: list[str] = []
        silent: list[str] = []
        for device_type, group in _by_type(plans).items():
            owned = [a for a in appliances if a.device_type == device_type]
            bodies = {repr(p.bodies) for p in group}
            if len(group) == len(owned) and len(bodies) == 1 and len(group[0].bodies) == 1:
                outcome = await self._all_of_type(session, group, sender_id, channel)
            else:
                outcome = await self._one_by_one(session, group)
            done += outcome[0]
            refused += outcome[1]
            silent += outcome[2]
        return Outcome(
            [Reply("utter_bulk_result", {"summary": self._summary(plans, done, refused, silent)})],
            memory,
        )

    def _targets(
        self, mention: str | None, appliances: Sequence[Appliance]
    ) -> list[Appliance] | Reply:
        if not mention:
            return Reply("utter_bulk_which")
        found = resolve(mention, appliances, self._vocab)
        if isinstance(found, NotFound):
            # "all the air conditioners": the vocabulary names types in the singular.
            found = resolve(_singular(mention), appliances, self._vocab)
        if isinstance(found, Resolved):
            return [found.appliance]
        if isinstance(found, Ambiguous):
            return list(found.candidates)
        if isinstance(found, NotCapable):
            return list(found.matched)
        assert isinstance(found, NotFound)
        return Reply(
            "utter_device_not_found",
            {"mention": found.mention, "devices": join_names(_aliases(appliances))},
        )

    def _safe(self, plan: Plan) -> bool:
        return all(str(change.value) in self._vocab.safe_values for change in plan.changes)

    async def _all_of_type(
        self,
        session: UserSession,
        plans: list[Plan],
        sender_id: str | None,
        channel: str | None,
    ) -> tuple[list[str], list[str], list[str]]:
        """One control-async call for every appliance of the type; answers gathered."""
        device_type = plans[0].appliance.device_type
        try:
            request_id = await self._placement.control(
                session.auth, device_type, plans[0].bodies[0]
            )
        except ThinQError as exc:
            # Not accepted: nothing was sent to any of them.
            reason = refusal_reason(exc)
            return [], [f"the {p.appliance.alias} ({reason})" for p in plans], []
        gathered = await self._gatherer.gather(
            request_id,
            [p.appliance.device_id for p in plans],
            self._timeout,
            thinq_user=session.thinq_user,
            kind="control",
            sender_id=sender_id,
            channel=channel,
        )
        done, refused, silent = [], [], []
        for plan in plans:
            answer = gathered.answers.get(plan.appliance.device_id)
            if answer is None:
                silent.append(plan.appliance.alias)
            elif answer.ok:
                done.append(plan.appliance.alias)
            else:
                error = error_for(answer.error_code or "", "", None)
                refused.append(f"the {plan.appliance.alias} ({refusal_reason(error)})")
        logger.info(
            "bulk %s on %d %s: %d confirmed, %d refused, %d silent",
            plans[0].flat_changes,
            len(plans),
            device_type,
            len(done),
            len(refused),
            len(silent),
        )
        return done, refused, silent

    async def _one_by_one(
        self, session: UserSession, plans: list[Plan]
    ) -> tuple[list[str], list[str], list[str]]:
        done, refused, silent = [], [], []
        for plan in plans:
            try:
                await self._household.send(
                    session.auth, plan.appliance, plan.bodies, plan.flat_changes
                )
                done.append(plan.appliance.alias)
            except ThinQError as exc:
                reply = lg_failure_reply(exc, plan.appliance, reading=False)
                if reply.response == "utter_control_unconfirmed":
                    silent.append(plan.appliance.alias)  # unknown outcome: never resent
                else:
                    refused.append(f"the {plan.appliance.alias} ({refusal_reason(exc)})")
        return done, refused, silent

    def _summary(
        self, plans: list[Plan], done: list[str], refused: list[str], silent: list[str]
    ) -> str:
        value = str(plans[0].changes[0].value) if plans[0].changes else ""
        verb = self._vocab.operation_done.get(value, "changed")
        return results_summary(
            f"{verb.capitalize()} the {join_names(done)}.",
            len(done),
            refused,
            silent,
            article="The ",
        )


def _singular(mention: str) -> str:
    """ "air conditioners" -> "air conditioner", "acs" -> "ac" (each plural word)."""
    words = []
    for word in mention.split():
        if len(word) > 2 and word.lower().endswith("s") and not word.lower().endswith("ss"):
            word = word[:-1]
        words.append(word)
    return " ".join(words)


def _by_type(plans: Sequence[Plan]) -> dict[str, list[Plan]]:
    grouped: dict[str, list[Plan]] = defaultdict(list)
    for plan in plans:
        grouped[plan.appliance.device_type].append(plan)
    return grouped


# Why an appliance refused, in words (LG error code -> phrase).
_REFUSALS = {
    "1222": "it is offline",
    "2301": "remote control is off on it",
    "2302": "it can't do that right now",
    "2303": "it is reporting an error",
    "2304": "it is switched off",
    "2305": "it can't do that in its current mode",
}


def refusal_reason(exc: ThinQError) -> str:
    """Why an appliance refused a command, in words."""
    if isinstance(exc, DeviceOffline):
        return "it is offline"
    code = getattr(exc, "code", None)
    return _REFUSALS.get(str(code), f"LG refused it, code {code}" if code else "LG refused it")


def _aliases(appliances: Sequence[Appliance]) -> list[str]:
    return [a.alias for a in appliances]
