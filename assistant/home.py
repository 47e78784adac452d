"""The whole home at once: "how is everything at home?", no Rasa.

One v2 placement call asks LG for the status of every device of the user (instead of one
call per device); the per-device answers come back as callbacks and are gathered by
request id (``assistant/correlation.py``). The answer is grouped the way people think of
a home (laundry, kitchen, climate, … from ``device_types.yml``), says each device's
headline state, and is honest about what did not answer in time ("8 of 9 answered; the
Oven didn't answer"): never a guess, never a stale value presented as current.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace

from assistant.conversation import Memory, Outcome, Reply, UserSession, lg_failure_reply
from assistant.correlation import Gathered, Gatherer
from assistant.describe import describe, join_names
from assistant.household import Appliance, HouseholdService
from assistant.storage.placement import DeviceResult
from assistant.vocabulary import Vocabulary
from lgcloud.errors import DeviceOffline, ThinQError, error_for
from lgcloud.placement import PlacementClient
from lgcloud.profile import flatten_status

# The order groups are read out in; a type without a group comes last.
GROUP_ORDER = ("laundry", "kitchen", "climate", "air", "cleaning", "garden", "other")
GROUP_LABELS = {
    "laundry": "Laundry",
    "kitchen": "Kitchen",
    "climate": "Heating and cooling",
    "air": "Air",
    "cleaning": "Cleaning",
    "garden": "Garden",
    "other": "Other",
}
# Words that ask for the device list to be read again, not only the states.
REFRESH_WORDS = frozenset({"refresh", "reload", "resync", "sync", "rescan"})


def asks_refresh(text: str) -> bool:
    """ "refresh my devices", "sync everything" """
    return any(word.strip(".,!?") in REFRESH_WORDS for word in text.lower().split())


# At most this many of each device's overview facts (features.yml, ``overview: true``),
# in readout order: run state or power first.
HEADLINE_FACTS = 3
# A device that is off is just "off": its mode or set temperature would only distract.
OFF_VALUES = frozenset({"POWER_OFF"})


class WholeHomeTurn:
    """What a turn about many appliances at once needs: the user's appliances, LG's v2
    placement client, the gatherer of its per-device answers, and the vocabulary."""

    def __init__(
        self,
        household: HouseholdService,
        placement: PlacementClient,
        gatherer: Gatherer,
        vocab: Vocabulary,
        timeout_seconds: float,
    ) -> None:
        self._household = household
        self._placement = placement
        self._gatherer = gatherer
        self._vocab = vocab
        self._timeout = timeout_seconds

    def __repr__(self) -> str:
        return f"{type(self).__name__}(timeout {self._timeout:g} s)"


class HomeOverview(WholeHomeTurn):
    async def overview(
        self,
        session: UserSession,
        memory: Memory,
        *,
        sender_id: str | None = None,
        channel: str | None = None,
        refresh: bool = False,
    ) -> Outcome:
        """``refresh`` ("refresh my devices") reads the device list from LG again first, so
        a device added or renamed in LG's app shows up at once."""
        memory = replace(memory, pending=None)
        try:
            if refresh:
                await self._household.forget_list(session.thinq_user)
            appliances = await self._household.appliances(session.thinq_user, session.auth)
            if not appliances:
                return Outcome([Reply("utter_no_devices")], memory)
            request_id = await self._placement.statuses(session.auth)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, None, reading=True)], memory)
        gathered = await self._gatherer.gather(
            request_id,
            [a.device_id for a in appliances],
            self._timeout,
            thinq_user=session.thinq_user,
            kind="status",
            sender_id=sender_id,
            channel=channel,
        )
        for appliance in appliances:
            answer = gathered.answers.get(appliance.device_id)
            if answer is not None and isinstance(_failure(answer), DeviceOffline):
                await self._household.mark_unreachable(appliance.device_id)
        summary = self.summary(appliances, gathered)
        memory = replace(memory, context_ids=tuple(a.device_id for a in appliances))
        if gathered.complete:
            return Outcome([Reply("utter_home_overview", {"summary": summary})], memory)
        missing = [a for a in appliances if a.device_id in gathered.missing]
        return Outcome(
            [
                Reply(
                    "utter_home_overview_partial",
                    {
                        "summary": summary,
                        "answered": len(appliances) - len(missing),
                        "total": len(appliances),
                        "missing": join_names([a.alias for a in missing]),
                    },
                )
            ],
            memory,
        )

    def summary(self, appliances: Sequence[Appliance], gathered: Gathered) -> str:
        """ "Laundry: Dryer (off); Washer (running, 35 minutes left). Kitchen: …" """
        by_group: dict[str, list[str]] = defaultdict(list)
        for appliance in sorted(appliances, key=lambda a: a.alias.lower()):
            answer = gathered.answers.get(appliance.device_id)
            if answer is None:
                continue
            group = self._vocab.device_type(appliance.device_type).group
            by_group[group if group in GROUP_LABELS else "other"].append(
                f"{appliance.alias} ({self._headline(appliance, answer)})"
            )
        parts = [
            f"{GROUP_LABELS[group]}: {'; '.join(by_group[group])}."
            for group in GROUP_ORDER
            if by_group.get(group)
        ]
        return " ".join(parts)

    def _headline(self, appliance: Appliance, answer: DeviceResult) -> str:
        error = _failure(answer)
        if error is not None:
            return "offline" if isinstance(error, DeviceOffline) else "could not be read"
        if not isinstance(answer.result, dict):
            return "no readable state"
        status = flatten_status(answer.result)
        if any(
            value in OFF_VALUES
            for key, value in status.items()
            if key == "runState.currentState" or key.startswith("operation.")
        ):
            return "off"
        facts = describe(appliance, status, self._vocab, overview=True).split(", ")
        return ", ".join(facts[:HEADLINE_FACTS])


def _failure(answer: DeviceResult) -> ThinQError | None:
    """The typed LG error of a device's failed answer (None when it answered)."""
    return None if answer.ok else error_for(answer.error_code or "", "", None)
