"""Building-manager conversations over BECON Connect (commercial HVAC), no Rasa.

"turn on the meeting room 3F unit", "set the lobby to 23 degrees", "switch office 2F to
heating", "what's the temperature in office 2F", "is the lobby purifier on?", "turn off
all indoor units at headquarters".

* Who may do what is the sender's :class:`~assistant.storage.building_links.SiteAccess`:
  a manager reads and controls, an occupant only reads (and is told so when asking to
  control). In demo mode a new sender is the demo site's manager (demo-stack.md §2).
* Which facility is meant comes from :mod:`assistant.facilities` (fuzzy names, type
  words, purpose), what it can do from ``facility_types.yml``; nothing here knows a
  facility type by name.
* A command for one facility runs at once. A command for several lists what will
  change (and what already is so) and waits for a yes; the yes re-checks the role.
* BECON's validation errors (400) are explained in words with its reason; nothing is
  retried; a command that timed out is reported as unconfirmed, never as done.
"""

from __future__ import annotations

import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from assistant.conversation import YES_NO, Memory, Outcome, Reply
from assistant.describe import join_names, results_summary
from assistant.facilities import (
    FacilityCatalog,
    FacilityRef,
    Found,
    Lacking,
    NoFacility,
    Several,
)
from assistant.planning import CommandRequest
from assistant.storage.building_links import MANAGER, BuildingLinkRepository, SiteAccess
from lgcloud import becon_fields as f
from lgcloud.becon import BeconClient, FacilityState
from lgcloud.becon_errors import (
    BeconBadRequest,
    BeconError,
    BeconForbidden,
    BeconNotFound,
    BeconTimeout,
)

logger = logging.getLogger(__name__)

PENDING_CONFIRM = "building_confirm"
PENDING_WHICH = "building_which"
# Facility lists change when an installer edits the site: rarely. States are never cached.
DIRECTORY_TTL_SECONDS = 300.0
UNREACHABLE_SECONDS = 60.0
# The order a facility's state is read out in.
READOUT_ORDER = (f.POWER, f.OPERATION_MODE, f.CURRENT_TEMPERATURE, f.SET_TEMPERATURE, f.FAN_SPEED)
_ACTION_POWER = {"turn_on": "ON", "start": "ON", "turn_off": "OFF", "stop": "OFF"}
_DONE_VERBS = {(f.POWER, "ON"): "turned on", (f.POWER, "OFF"): "turned off"}
MAX_ADJUST_DEGREES = 5


@dataclass(frozen=True)
class SiteDirectory:
    site_code: str
    name: str
    facilities: tuple[FacilityRef, ...]


class CannotPlan(Exception):
    """The request cannot become a BECON change; ``reply`` says why."""

    def __init__(self, reply: Reply) -> None:
        super().__init__(reply.response)
        self.reply = reply


class BuildingAssistant:
    def __init__(
        self,
        client: BeconClient,
        links: BuildingLinkRepository,
        catalog: FacilityCatalog,
        *,
        demo_site: str | None = None,
        directory_ttl_seconds: float = DIRECTORY_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._links = links
        self._catalog = catalog
        self._demo_site = demo_site
        self._ttl = directory_ttl_seconds
        self._clock = clock
        self._directories: dict[str, tuple[float, SiteDirectory]] = {}
        # After BECON failed to list a site, home turns do not wait on it again for a while.
        self._unreachable_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"BuildingAssistant(demo_site={self._demo_site!r})"

    async def aclose(self) -> None:
        await self._client.aclose()

    # --- who, where -----------------------------------------------------------------------

    async def access_for(self, sender_id: str) -> SiteAccess | None:
        access = await self._links.get(sender_id)
        if access is None and self._demo_site:
            access = await self._links.grant_if_absent(sender_id, self._demo_site, MANAGER)
            logger.info("linked new demo sender to demo site as its manager")
        return access

    async def directory(self, site_code: str) -> SiteDirectory:
        cached = self._directories.get(site_code)
        if cached is not None and self._clock() - cached[0] < self._ttl:
            return cached[1]
        names = {s.site_code: s.name for s in await self._client.sites()}
        facilities: list[FacilityRef] = []
        for gateway in await self._client.gateways(site_code):
            for facility in await self._client.facilities(site_code, gateway.gw_id):
                facilities.append(
                    FacilityRef(
                        site_code,
                        gateway.gw_id,
                        facility.facility_type,
                        facility.facility_id,
                        facility.name or facility.facility_id,
                    )
                )
        directory = SiteDirectory(site_code, names.get(site_code) or site_code, tuple(facilities))
        self._directories[site_code] = (self._clock(), directory)
        return directory

    async def claims(self, sender_id: str, text: str) -> SiteAccess | None:
        """The sender's site access when ``text`` is about its building, else None."""
        if not text:
            return None
        access = await self.access_for(sender_id)
        if access is None:
            return None
        if self._unreachable_until.get(access.site_code, 0.0) > self._clock():
            return access if self._names_known_building(access, text) else None
        try:
            directory = await self.directory(access.site_code)
        except BeconError as exc:
            # Building words, or names from the last list BECON gave, still claim the turn
            # (to say BECON is unavailable); anything else is the home's, without waiting
            # on BECON again for the next minute.
            logger.warning("BECON directory unavailable: %s", type(exc).__name__)
            self._unreachable_until[access.site_code] = self._clock() + UNREACHABLE_SECONDS
            return access if self._names_known_building(access, text) else None
        names = (directory.name, directory.site_code)
        return access if self._catalog.names_building(text, directory.facilities, names) else None

    def _names_known_building(self, access: SiteAccess, text: str) -> bool:
        cached = self._directories.get(access.site_code)
        if cached is None:
            return self._catalog.names_building(text, ())
        known = cached[1]
        return self._catalog.names_building(text, known.facilities, (known.name, known.site_code))

    # --- status ---------------------------------------------------------------------------------

    async def status(
        self, access: SiteAccess, memory: Memory, text: str, feature: str | None
    ) -> Outcome:
        memory = replace(memory, pending=None)
        try:
            directory = await self.directory(access.site_code)
        except BeconError as exc:
            return Outcome([_failure(exc, None)], memory)
        key = self._catalog.features.get(feature or "")
        purpose = self._catalog.purpose_of(text)
        if key == f.SET_TEMPERATURE or (key is None and purpose == "temperature"):
            key = f.CURRENT_TEMPERATURE  # "what's the temperature in…" asks what it is
        found = self._catalog.match(text, directory.facilities, key=key, purpose=purpose)
        if isinstance(found, NoFacility) and self._catalog.names_building(text, ()):
            # "how is everything at headquarters?": the whole site, one line per facility.
            return await self.overview(access, memory)
        if not isinstance(found, Found):
            return Outcome([self._not_found(found, directory, key, text)], memory)
        facility = found.facility
        try:
            state = await self._client.state(
                facility.site_code, facility.gw_id, facility.facility_type, facility.facility_id
            )
        except BeconError as exc:
            return Outcome([_failure(exc, facility)], memory)
        return Outcome(
            [Reply("utter_building_status", {"status": self.describe(facility, state, key)})],
            memory,
        )

    async def overview(self, access: SiteAccess, memory: Memory) -> Outcome:
        """Every facility of the sender's site, read in one call per gateway."""
        memory = replace(memory, pending=None)
        try:
            directory = await self.directory(access.site_code)
            states = await self._states(directory.facilities) if directory.facilities else {}
        except BeconError as exc:
            return Outcome([_failure(exc, None)], memory)
        lines = []
        for facility in directory.facilities:
            values = states.get(facility.facility_id)
            if values is None:
                lines.append(f"{facility.name} did not report")
                continue
            state = FacilityState(facility.facility_type, facility.facility_id, values)
            lines.append(self.describe(facility, state, None).removesuffix("."))
        summary = f"{directory.name}: " + ("; ".join(lines) if lines else "no facilities") + "."
        return Outcome([Reply("utter_building_status", {"status": summary})], memory)

    def describe(self, facility: FacilityRef, state: FacilityState, key: str | None) -> str:
        """ "Office 2F is on, cooling, 24.5 °C, set to 23 °C, fan speed low." """
        values = state.state
        kind = self._catalog.type_of(facility)
        label = self._catalog.label
        if key in (f.CURRENT_TEMPERATURE, f.SET_TEMPERATURE) and kind.readable(key):
            # "what's the temperature in office 2F": what it is, then what it is set to.
            parts = [
                f"{prefix}{label(k, values[k])}"
                for k, prefix in ((f.CURRENT_TEMPERATURE, "at "), (f.SET_TEMPERATURE, "set to "))
                if k in values
            ]
            sentence = f"{facility.name} is {', '.join(parts)}" if parts else facility.name
            if values.get(f.POWER) == "OFF":
                sentence += "; it is switched off"
            return sentence + "."
        facts = []
        for k in READOUT_ORDER:
            if k not in values or not kind.readable(k):
                continue
            value = label(k, values[k])
            if k == f.SET_TEMPERATURE:
                facts.append(f"set to {value}")
            elif k == f.CURRENT_TEMPERATURE:
                facts.append(f"{value} there")
            elif k == f.FAN_SPEED:
                facts.append(f"fan speed {value}")
            else:
                facts.append(value)
        if not facts:
            return f"{facility.name} reports nothing I can read out."
        return f"{facility.name} is {', '.join(facts)}."

    # --- control -------------------------------------------------------------------------------

    async def control(
        self,
        access: SiteAccess,
        memory: Memory,
        request: CommandRequest,
        text: str,
        *,
        every: bool = False,
    ) -> Outcome:
        memory = replace(memory, pending=None, last_request=request.to_dict())
        if not access.may_control:
            return Outcome([self._occupant_refusal(access)], memory)
        try:
            directory = await self.directory(access.site_code)
        except BeconError as exc:
            return Outcome([_failure(exc, None)], memory)
        if every:
            return await self._control_many(access, directory, memory, request, text)
        key, _ = self._key_and_value(request, None)
        found = self._catalog.match(
            text,
            directory.facilities,
            key=key,
            writable=True,
            purpose=self._catalog.purpose_of(text),
        )
        if isinstance(found, Several):
            pending = {"kind": PENDING_WHICH, "request": request.to_dict(), "text": text}
            return Outcome(
                [
                    Reply(
                        "utter_building_which",
                        {"options": join_names([c.name for c in found.candidates], "or")},
                        tuple((c.name, _inform(c.name)) for c in found.candidates),
                    )
                ],
                replace(memory, pending=pending),
            )
        if not isinstance(found, Found):
            return Outcome([self._not_found(found, directory, key, text)], memory)
        return Outcome([await self._control_one(found.facility, request)], memory)

    async def _control_one(self, facility: FacilityRef, request: CommandRequest) -> Reply:
        try:
            changes = await self._changes_for(facility, request)
        except CannotPlan as refused:
            return refused.reply
        except BeconError as exc:
            return _failure(exc, facility)
        try:
            results = await self._client.control(
                facility.site_code,
                facility.gw_id,
                facility.facility_type,
                [facility.facility_id],
                changes,
            )
        except BeconError as exc:
            return self._control_failure(exc, facility, changes)
        if not results.get(facility.facility_id):
            return Reply("utter_building_not_done", {"facility": facility.name})
        logger.info("BECON %s %s: %s", facility.facility_type, facility.facility_id, changes)
        return Reply("utter_building_done", {"result": self._done_sentence([facility], changes)})

    async def _control_many(
        self,
        access: SiteAccess,
        directory: SiteDirectory,
        memory: Memory,
        request: CommandRequest,
        text: str,
    ) -> Outcome:
        key, value = self._key_and_value(request, None)
        if key is None or value is None:
            # Relative or facility-dependent changes ("warmer", "auto") are one at a time.
            return Outcome([Reply("utter_building_many_one_value")], memory)
        targets = self._catalog.select(text, directory.facilities, key=key)
        if not targets:
            return Outcome([Reply("utter_building_none_match", {"site": directory.name})], memory)
        try:
            states = await self._states(targets)
        except BeconError as exc:
            return Outcome([_failure(exc, None)], memory)
        changing = [t for t in targets if states.get(t.facility_id, {}).get(key) != value]
        already = [t for t in targets if t not in changing]
        label = self._catalog.label(key, value)
        if not changing:
            return Outcome(
                [
                    Reply(
                        "utter_building_nothing_to_change",
                        {"facilities": join_names([t.name for t in targets]), "value": label},
                    )
                ],
                memory,
            )
        lines = [
            f"{t.name} ({self._catalog.label(key, states.get(t.facility_id, {}).get(key, '?'))}"
            f" → {label})"
            for t in changing
        ]
        intro = self._plan_intro(key, value, len(changing), directory.name)
        plan = f"{intro}: {'; '.join(lines)}."
        if already:
            plan += f" Already {label}: {join_names([t.name for t in already])}."
        pending = {
            "kind": PENDING_CONFIRM,
            "site": access.site_code,
            "changes": {key: value},
            "targets": [[t.gw_id, t.facility_type, t.facility_id, t.name] for t in changing],
        }
        return Outcome(
            [Reply("utter_building_confirm", {"plan": plan}, YES_NO)],
            replace(memory, pending=pending),
        )

    # --- answers to our questions ----------------------------------------------------------

    async def answer_pending(
        self, access: SiteAccess, memory: Memory, intent: str, mention: str | None
    ) -> Outcome:
        pending = memory.pending or {}
        if pending.get("kind") == PENDING_WHICH:
            if intent != "inform_device" or not mention:
                return Outcome([Reply("utter_building_cancelled")], replace(memory, pending=None))
            request = CommandRequest.from_dict(pending.get("request") or {})
            return await self.control(access, memory, request, mention)
        if intent == "deny":
            return Outcome([Reply("utter_building_cancelled")], replace(memory, pending=None))
        if intent != "affirm":
            return Outcome([Reply("utter_ask_yes_no", {}, YES_NO)], memory)
        memory = replace(memory, pending=None)
        if not access.may_control or access.site_code != pending.get("site"):
            return Outcome([self._occupant_refusal(access)], memory)
        targets = [
            FacilityRef(access.site_code, gw, kind, fid, name)
            for gw, kind, fid, name in pending.get("targets") or []
        ]
        changes = dict(pending.get("changes") or {})
        if not targets or not changes:
            return Outcome([Reply("utter_building_cancelled")], memory)
        return Outcome([await self._run_many(targets, changes)], memory)

    async def _run_many(self, targets: list[FacilityRef], changes: dict[str, Any]) -> Reply:
        done: list[FacilityRef] = []
        refused: list[str] = []
        unknown: list[str] = []
        groups: dict[tuple[str, str], list[FacilityRef]] = defaultdict(list)
        for target in targets:
            groups[(target.gw_id, target.facility_type)].append(target)
        for (gw, kind), group in groups.items():
            try:
                results = await self._client.control(
                    group[0].site_code, gw, kind, [t.facility_id for t in group], changes
                )
            except BeconTimeout:
                unknown += [t.name for t in group]
                continue
            except BeconError as exc:
                reason = _reason(exc)
                refused += [f"{t.name} ({reason})" for t in group]
                continue
            for target in group:
                if results.get(target.facility_id):
                    done.append(target)
                else:
                    refused.append(f"{target.name} (the building system did not confirm it)")
        logger.info(
            "BECON bulk %s: %d confirmed, %d refused, %d unknown",
            changes,
            len(done),
            len(refused),
            len(unknown),
        )
        summary = results_summary(
            self._done_sentence(done, changes) if done else None, len(done), refused, unknown
        )
        return Reply("utter_building_result", {"summary": summary})

    # --- planning --------------------------------------------------------------------------

    def _key_and_value(
        self, request: CommandRequest, facility: FacilityRef | None
    ) -> tuple[str | None, Any]:
        """The state key the request changes and its new value (None when it depends on the
        facility's current state, or on which facility it is)."""
        if request.action in _ACTION_POWER:
            if request.setting and request.action == "turn_on":
                return self._setting(request, facility)
            return f.POWER, _ACTION_POWER[request.action]
        if request.action == "adjust":
            return f.SET_TEMPERATURE, None
        if request.setting:
            return self._setting(request, facility)
        if request.number is not None:
            key = self._catalog.features.get(request.feature or "temperature", f.SET_TEMPERATURE)
            return key, _number(request.number)
        return self._catalog.features.get(request.feature or ""), None

    def _setting(self, request: CommandRequest, facility: FacilityRef | None) -> tuple[str, Any]:
        options = self._catalog.settings.get(request.setting or "", {})
        wanted = self._catalog.features.get(request.feature or "")
        if wanted in options:
            return wanted, options[wanted]
        kind = self._catalog.type_of(facility) if facility else None
        for key, value in options.items():
            if kind is None or kind.writable(key):
                return key, value
        first = next(iter(options.items()), (None, None))
        return first  # type: ignore[return-value]

    async def _changes_for(self, facility: FacilityRef, request: CommandRequest) -> dict[str, Any]:
        key, value = self._key_and_value(request, facility)
        kind = self._catalog.type_of(facility)
        if key is None:
            raise CannotPlan(Reply("utter_building_what_to_change", {"facility": facility.name}))
        if not kind.writable(key):
            raise CannotPlan(
                Reply(
                    "utter_building_not_capable",
                    {"facility": facility.name, "feature": self._catalog.key_labels.get(key, key)},
                )
            )
        if value is None and request.action == "adjust":
            state = await self._client.state(
                facility.site_code, facility.gw_id, facility.facility_type, facility.facility_id
            )
            current = _number(str(state.state.get(key, "")))
            if current is None:
                raise CannotPlan(Reply("utter_building_not_done", {"facility": facility.name}))
            step = _number(request.number or "1") or 1
            step = min(abs(step), MAX_ADJUST_DEGREES)
            value = current + step if request.direction != "down" else current - step
        if value is None:
            raise CannotPlan(Reply("utter_building_what_to_change", {"facility": facility.name}))
        return {key: value}

    async def _states(self, targets: Sequence[FacilityRef]) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        by_gateway: dict[str, set[str]] = defaultdict(set)
        for target in targets:
            by_gateway[target.gw_id].add(target.facility_type)
        for gw, kinds in by_gateway.items():
            for state in await self._client.states(targets[0].site_code, gw, sorted(kinds)):
                states[state.facility_id] = state.state
        return states

    # --- wording -----------------------------------------------------------------------------

    def _plan_intro(self, key: str, value: Any, count: int, site: str) -> str:
        """ "This will turn off 2 facilities at Headquarters" """
        what = f"{count} facilit{'y' if count == 1 else 'ies'} at {site}"
        if key == f.POWER:
            return f"This will turn {self._catalog.label(key, value)} {what}"
        label = self._catalog.key_labels.get(key, key)
        return f"This will set the {label} to {self._catalog.label(key, value)} on {what}"

    def _done_sentence(self, facilities: Sequence[FacilityRef], changes: dict[str, Any]) -> str:
        names = join_names([x.name for x in facilities])
        key, value = next(iter(changes.items()))
        if (key, value) in _DONE_VERBS:
            return f"{_DONE_VERBS[(key, value)].capitalize()} {names}."
        label = self._catalog.key_labels.get(key, key)
        return f"Done: {names} {'is' if len(facilities) == 1 else 'are'} now " + (
            f"set to {self._catalog.label(key, value)}."
            if key == f.SET_TEMPERATURE
            else f"on {label} {self._catalog.label(key, value)}."
            if key == f.FAN_SPEED
            else f"{self._catalog.label(key, value)}."
        )

    def _control_failure(
        self, exc: BeconError, facility: FacilityRef, changes: dict[str, Any]
    ) -> Reply:
        if isinstance(exc, BeconBadRequest):
            key, value = next(iter(changes.items()))
            return Reply(
                "utter_building_refused",
                {
                    "facility": facility.name,
                    "change": f"{self._catalog.key_labels.get(key, key)} "
                    f"{self._catalog.label(key, value)}",
                    "reason": self._explain(exc.message),
                },
            )
        if isinstance(exc, BeconTimeout):
            return Reply("utter_building_unconfirmed", {"facility": facility.name})
        return _failure(exc, facility)

    def _explain(self, message: str) -> str:
        """BECON's reason with our words for its key names: "set temperature 35 is outside
        16 to 30"."""
        for key, label in self._catalog.key_labels.items():
            message = re.sub(rf"\b{re.escape(f.wire_key(key))}\b", label, message)
        return re.sub(r"(\d+(?:\.\d+)?)\.\.(\d+(?:\.\d+)?)", r"\1 to \2", message)

    def _occupant_refusal(self, access: SiteAccess) -> Reply:
        cached = self._directories.get(access.site_code)
        site = cached[1].name if cached else access.site_code
        return Reply("utter_building_occupant_refused", {"site": site})

    def _not_found(
        self,
        found: NoFacility | Several | Lacking,
        directory: SiteDirectory,
        key: str | None,
        text: str,
    ) -> Reply:
        if isinstance(found, Several):
            return Reply(
                "utter_building_which_status",
                {"options": join_names([c.name for c in found.candidates], "or")},
            )
        if isinstance(found, Lacking):
            return Reply(
                "utter_building_not_capable",
                {
                    "facility": join_names([m.name for m in found.matched], "or"),
                    "feature": self._catalog.key_labels.get(key or "", "that"),
                },
            )
        return Reply(
            "utter_building_not_found",
            {
                "site": directory.name,
                "facilities": join_names([x.name for x in directory.facilities]),
            },
        )


def _failure(exc: BeconError, facility: FacilityRef | None) -> Reply:
    if isinstance(exc, BeconForbidden):
        return Reply("utter_building_forbidden")
    if isinstance(exc, BeconNotFound) and facility is not None:
        return Reply("utter_building_gone", {"facility": facility.name})
    if isinstance(exc, BeconTimeout) and facility is not None:
        return Reply("utter_building_unconfirmed", {"facility": facility.name})
    return Reply("utter_building_unavailable")


def _reason(exc: BeconError) -> str:
    if isinstance(exc, BeconBadRequest):
        return f"the building system refused it: {exc.message}"
    if isinstance(exc, BeconForbidden):
        return "this site is not open to us"
    return "the building system is unavailable"


def _inform(name: str) -> str:
    safe = name.replace("\\", " ").replace('"', " ")
    return f'/inform_device{{"device": "{safe}"}}'


def _number(text: str) -> float | int | None:
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    return int(value) if value == value.to_integral_value() else float(value)
