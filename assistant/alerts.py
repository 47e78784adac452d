"""Asking for notifications by conversation: "notify me when the washer is done".

Two kinds, both LG subscriptions per device:

* ``push``: LG's Notification API (cycle finished, filter due, door open...);
* ``pcc``: LG's Proactive Customer Care failure diagnosis, offered only for the
  device types LG supports it on (``pcc: true`` in device_types.yml).

Our own record is per conversation (who asked), so a push is delivered only to
the conversations that asked for it, and LG is unsubscribed only when the last
conversation of that LG user lets go.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone

from assistant.conversation import (
    Memory,
    Outcome,
    Reply,
    UserSession,
    _names,
    _payload_safe,
    lg_failure_reply,
)
from assistant.household import Appliance, HouseholdService
from assistant.notifications import NotificationCatalog
from assistant.resolution import Ambiguous, NotCapable, NotFound, Resolved, resolve
from assistant.storage.subscriptions import SubscriptionRepository
from assistant.vocabulary import Vocabulary
from lgcloud.errors import ThinQError
from lgcloud.thinq import ThinQClient

logger = logging.getLogger(__name__)

KINDS = ("push", "pcc")
# The intent a "which one?" button re-sends, with the chosen device as its entity.
_INTENTS = {
    ("subscribe", "push"): "subscribe_push",
    ("subscribe", "pcc"): "subscribe_pcc",
    ("unsubscribe", "push"): "unsubscribe_push",
    ("unsubscribe", "pcc"): "unsubscribe_pcc",
}
# (operation, kind, outcome) -> response
_REPLIES = {
    ("subscribe", "push", "added"): "utter_subscribed_push",
    ("subscribe", "push", "kept"): "utter_already_subscribed_push",
    ("subscribe", "pcc", "added"): "utter_subscribed_pcc",
    ("subscribe", "pcc", "kept"): "utter_already_subscribed_pcc",
    ("unsubscribe", "push", "removed"): "utter_unsubscribed_push",
    ("unsubscribe", "pcc", "removed"): "utter_unsubscribed_pcc",
    ("unsubscribe", "push", "absent"): "utter_not_subscribed_push",
    ("unsubscribe", "pcc", "absent"): "utter_not_subscribed_pcc",
}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class AlertsAssistant:
    def __init__(
        self,
        household: HouseholdService,
        vocab: Vocabulary,
        catalog: NotificationCatalog,
        subscriptions: SubscriptionRepository,
        client: ThinQClient,
    ) -> None:
        self._household = household
        self._vocab = vocab
        self._catalog = catalog
        self._subs = subscriptions
        self._client = client

    def _events(self, appliance: Appliance) -> str:
        return " or ".join(e.event for e in self._catalog.push_events(appliance.device_type))

    def _offers(self, kind: str, appliance: Appliance) -> bool:
        if kind == "pcc":
            return self._catalog.supports_pcc(appliance.device_type)
        return bool(self._catalog.push_events(appliance.device_type))

    async def _target(
        self,
        session: UserSession,
        memory: Memory,
        mention: str | None,
        action: str,
        kind: str,
        capable: Callable[[Appliance], bool],
    ) -> tuple[Appliance, Memory] | Outcome:
        """The appliance the user means (and memory pointing at it), or the reply that
        asks which one / says why not."""
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, None, reading=True)], memory)
        resolution = resolve(
            mention, appliances, self._vocab, capable=capable, context_ids=memory.context_ids
        )
        if not isinstance(resolution, Resolved):
            return self._unresolved(resolution, memory, appliances, action, kind)
        appliance = resolution.appliance
        return appliance, replace(memory, context_ids=(appliance.device_id,), pending=None)

    # --- subscribe ----------------------------------------------------------------------------

    async def subscribe(
        self, session: UserSession, memory: Memory, sender_id: str, kind: str, mention: str | None
    ) -> Outcome:
        _check_kind(kind)
        target = await self._target(
            session, memory, mention, "subscribe", kind, lambda a: self._offers(kind, a)
        )
        if isinstance(target, Outcome):
            return target
        appliance, memory = target
        try:
            if kind == "push":
                await self._client.subscribe_push(session.auth, appliance.device_id)
            else:
                await self._client.subscribe_pcc(session.auth, appliance.device_id)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, appliance, reading=True)], memory)
        added = await self._subs.add(
            sender_id, session.thinq_user, appliance.device_id, kind, _now()
        )
        params = {"device": appliance.alias}
        if kind == "push":
            params["events"] = self._events(appliance)
        response = _REPLIES[("subscribe", kind, "added" if added else "kept")]
        return Outcome([Reply(response, params)], memory)

    # --- unsubscribe --------------------------------------------------------------------------

    async def unsubscribe(
        self, session: UserSession, memory: Memory, sender_id: str, kind: str, mention: str | None
    ) -> Outcome:
        _check_kind(kind)
        subscribed = {d for d, k in await self._subs.for_sender(sender_id) if k == kind}
        target = await self._target(
            session, memory, mention, "unsubscribe", kind, lambda a: a.device_id in subscribed
        )
        if isinstance(target, Outcome):
            return target
        appliance, memory = target
        await self._subs.remove(sender_id, appliance.device_id, kind)
        if not await self._subs.still_wanted(session.thinq_user, appliance.device_id, kind):
            await self._drop_at_lg(session, appliance.device_id, kind)
        response = _REPLIES[("unsubscribe", kind, "removed")]
        return Outcome([Reply(response, {"device": appliance.alias})], memory)

    async def forget_sender(self, session: UserSession | None, sender_id: str) -> int:
        """Drop every subscription of a conversation that is being unlinked; LG is
        unsubscribed from a device when no other conversation of that LG user still wants
        it. Without a session (the sign-in already expired) only our records go: nothing
        reaches this conversation either way. Returns how many subscriptions were dropped."""
        rows = await self._subs.for_sender(sender_id)
        for device_id, kind in rows:
            await self._subs.remove(sender_id, device_id, kind)
            if session is not None and not await self._subs.still_wanted(
                session.thinq_user, device_id, kind
            ):
                await self._drop_at_lg(session, device_id, kind)
        return len(rows)

    async def _drop_at_lg(self, session: UserSession, device_id: str, kind: str) -> None:
        try:
            if kind == "push":
                await self._client.unsubscribe_push(session.auth, device_id)
            else:
                await self._client.unsubscribe_pcc(session.auth, device_id)
        except ThinQError as exc:
            # Our record is gone, so nothing more reaches this user either way; LG's
            # leftover subscription only costs a callback we drop.
            logger.warning("LG %s unsubscribe failed: %s", kind, type(exc).__name__)

    # --- list ---------------------------------------------------------------------------------

    async def list(self, session: UserSession, memory: Memory, sender_id: str) -> Outcome:
        rows = await self._subs.for_sender(sender_id)
        if not rows:
            return Outcome([Reply("utter_no_subscriptions")], memory)
        try:
            appliances = await self._household.appliances(session.thinq_user, session.auth)
        except ThinQError as exc:
            return Outcome([lg_failure_reply(exc, None, reading=True)], memory)
        by_id = {a.device_id: a for a in appliances}
        items = []
        for device_id, kind in rows:
            appliance = by_id.get(device_id)
            if appliance is None:
                continue  # removed from the account; the registry push drops the row too
            if kind == "push":
                items.append(f"the {appliance.alias} (when {self._events(appliance)})")
            else:
                items.append(f"the {appliance.alias} (problems LG's diagnosis finds)")
        if not items:
            return Outcome([Reply("utter_no_subscriptions")], memory)
        return Outcome([Reply("utter_subscription_list", {"items": "; ".join(items)})], memory)

    # --- shared -------------------------------------------------------------------------------

    def _unresolved(
        self,
        resolution: object,
        memory: Memory,
        appliances: list[Appliance],
        op: str,
        kind: str,
    ) -> Outcome:
        memory = replace(memory, pending=None)
        if isinstance(resolution, Ambiguous):
            intent = _INTENTS[(op, kind)]
            buttons = tuple(
                (a.alias, f'/{intent}{{"device": "{_payload_safe(a.alias)}"}}')
                for a in resolution.candidates
            )
            return Outcome(
                [
                    Reply(
                        "utter_ask_which_device_to_watch",
                        {"options": _names(resolution.candidates)},
                        buttons,
                    )
                ],
                memory,
            )
        if isinstance(resolution, NotFound):
            return Outcome(
                [
                    Reply(
                        "utter_device_not_found",
                        {"mention": resolution.mention, "devices": _names(appliances, "and")},
                    )
                ],
                memory,
            )
        assert isinstance(resolution, NotCapable)
        matched = resolution.matched
        if op == "unsubscribe":
            if matched:
                response = _REPLIES[("unsubscribe", kind, "absent")]
                return Outcome([Reply(response, {"device": _names(matched)})], memory)
            return Outcome([Reply("utter_no_subscriptions")], memory)
        if kind == "pcc":
            if matched:
                return Outcome(
                    [Reply("utter_pcc_not_supported", {"device": _names(matched)})], memory
                )
            return Outcome([Reply("utter_pcc_no_device")], memory)
        if matched:
            return Outcome([Reply("utter_no_push_events", {"device": _names(matched)})], memory)
        return Outcome([Reply("utter_no_push_devices")], memory)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
