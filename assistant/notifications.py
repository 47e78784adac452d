"""What to tell whom when LG calls back: the notices a callback turns into.

:class:`NotificationPlanner` takes one parsed LG callback and

* keeps the device cache in step with the user's LG account (device added,
  removed, renamed) so the very next request sees the change;
* works out every conversation to tell (subscribers of the device for pushes
  and PCC events, every linked conversation of the user for registry changes)
  and the channel each last used;
* words each message from ``domain.yml`` responses, chosen per push code and
  device type by ``assistant/data/notifications.yml``.

It knows nothing of HTTP, queues or Rasa: the connector stores and delivers
what it returns. Planning is idempotent, so a replayed callback is harmless.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from assistant.storage import DeviceRecord, Storage
from assistant.storage.device_states import EventSubscriptionRepository
from assistant.storage.subscriptions import CachedCopy, DeviceAudience, Recipient
from assistant.vocabulary import Vocabulary, load_vocabulary
from lgcloud.callbacks import (
    DEVICE_ALIAS_CHANGED,
    DEVICE_PUSH,
    DEVICE_REGISTERED,
    DEVICE_UNREGISTERED,
    PCC_EVENT,
    LgCallback,
)

ROOT = Path(__file__).resolve().parent.parent
DOMAIN_FILE = ROOT / "domain.yml"
CATALOG_FILE = Path(__file__).resolve().parent / "data" / "notifications.yml"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
# Callbacks that go to the conversations that subscribed, by the subscription kind.
_SUBSCRIBED_KINDS = {DEVICE_PUSH: "push", PCC_EVENT: "pcc"}


@dataclass(frozen=True)
class Notice:
    sender_id: str
    channel: str | None
    thinq_user: str
    device_id: str
    kind: str  # "push" | "pcc" | "registry"
    response: str
    params: dict[str, str]
    text: str


@dataclass(frozen=True)
class PushEvent:
    code: str
    response: str
    event: str


class Wording:
    """Renders domain responses the way Rasa does: ``{name}`` filled from the params.

    The first text variant is used, so a notification reads the same in every
    process (Rasa would pick a variant at random).
    """

    def __init__(self, responses: dict[str, str]) -> None:
        self._responses = responses

    @classmethod
    def from_domain(cls, path: Path = DOMAIN_FILE) -> Wording:
        domain = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        responses: dict[str, str] = {}
        for name, variants in (domain.get("responses") or {}).items():
            texts = [v.get("text") for v in variants or [] if isinstance(v, dict)]
            texts = [t for t in texts if isinstance(t, str)]
            if texts:
                responses[name] = texts[0]
        return cls(responses)

    def has(self, response: str) -> bool:
        return response in self._responses

    def render(self, response: str, params: dict[str, str]) -> str:
        template = self._responses[response]
        return _PLACEHOLDER.sub(lambda m: params.get(m.group(1), m.group(0)), template)


class NotificationCatalog:
    """``assistant/data/notifications.yml``: push codes per device type, PCC words."""

    def __init__(self, raw: dict[str, Any], vocab: Vocabulary) -> None:
        self._vocab = vocab
        self._push: dict[str, dict[str, PushEvent]] = {
            device_type: {
                code: PushEvent(code, entry["response"], entry["event"])
                for code, entry in (codes or {}).items()
            }
            for device_type, codes in raw["push"].items()
        }
        self.unknown_push: str = raw["unknown_push"]
        self.pcc_response: str = raw["pcc"]["response"]
        self._diagnoses: dict[str, str] = dict(raw["pcc"]["diagnoses"])
        self.registry: dict[str, str] = dict(raw["registry"])

    @classmethod
    def load(
        cls, path: Path = CATALOG_FILE, vocab: Vocabulary | None = None
    ) -> NotificationCatalog:
        return cls(yaml.safe_load(path.read_text(encoding="utf-8")), vocab or load_vocabulary())

    def push_events(self, device_type: str) -> list[PushEvent]:
        """What a push subscription to this type of device will report, in table order."""
        return list(self._push.get(device_type, {}).values())

    def push_response(self, device_type: str, code: str) -> str:
        event = self._push.get(device_type, {}).get(code)
        return event.response if event else self.unknown_push

    def supports_pcc(self, device_type: str) -> bool:
        return self._vocab.device_type(device_type).pcc

    def diagnosis_words(self, diagnosis_type: str) -> str:
        known = self._diagnoses.get(diagnosis_type)
        return known or diagnosis_type.replace("_", " ").lower()

    def all_responses(self) -> set[str]:
        names = {e.response for codes in self._push.values() for e in codes.values()}
        return names | {self.unknown_push, self.pcc_response, *self.registry.values()}


def _now() -> datetime:
    return datetime.now(timezone.utc)


class NotificationPlanner:
    def __init__(
        self,
        storage: Storage,
        wording: Wording,
        catalog: NotificationCatalog | None = None,
        vocab: Vocabulary | None = None,
    ) -> None:
        self._storage = storage
        self._subs = storage.subscriptions
        self._wording = wording
        self._vocab = vocab or load_vocabulary()
        self._catalog = catalog or NotificationCatalog.load(vocab=self._vocab)
        missing = {r for r in self._catalog.all_responses() if not wording.has(r)}
        if missing:
            raise ValueError(f"responses missing from the domain: {sorted(missing)}")

    @classmethod
    def create(cls, storage: Storage) -> NotificationPlanner:
        return cls(storage, _domain_wording())

    @property
    def catalog(self) -> NotificationCatalog:
        return self._catalog

    async def check(self, callback: LgCallback) -> str | None:
        """None when we can act on the callback; otherwise why not (the caller answers 4xx)."""
        if callback.push_type in (DEVICE_PUSH, PCC_EVENT):
            if await self._subs.device_known(callback.device_id):
                return None
            return "unknown device: no linked account has this device"
        if await self._subs.any_linked(callback.user_numbers):
            return None
        if callback.push_type != DEVICE_REGISTERED and await self._subs.device_known(
            callback.device_id
        ):
            return None
        return "unknown user: no conversation is linked to this LG user"

    async def plan(self, callback: LgCallback) -> list[Notice]:
        """Who is to be told what about ``callback``; registry changes also update the
        device cache. Idempotent: planning the same callback again gives the same notices."""
        return (await self.plan_many([callback]))[0]

    async def plan_many(self, callbacks: Sequence[LgCallback]) -> list[list[Notice]]:
        """:meth:`plan` for a batch, in order. Each run of pushes and PCC events (nearly
        all traffic) shares two lookups; registry changes, which write to the device
        cache, are planned one at a time between runs, so a push after a rename in the
        same batch already uses the new name."""
        planned: list[list[Notice]] = []
        run: list[tuple[LgCallback, str]] = []

        async def plan_run() -> None:
            audiences = await self._subs.audiences(c.device_id for c, _ in run)
            planned.extend(self._subscribed(c, kind, audiences[c.device_id]) for c, kind in run)
            run.clear()

        for callback in callbacks:
            kind = _SUBSCRIBED_KINDS.get(callback.push_type)
            if kind is not None:
                run.append((callback, kind))
                continue
            if run:
                await plan_run()
            if callback.push_type == DEVICE_REGISTERED:
                planned.append(await self._registered(callback))
            elif callback.push_type == DEVICE_UNREGISTERED:
                planned.append(await self._unregistered(callback))
            elif callback.push_type == DEVICE_ALIAS_CHANGED:
                planned.append(await self._renamed(callback))
            else:
                raise ValueError(f"unexpected push type {callback.push_type!r}")
        if run:
            await plan_run()
        return planned

    # --- pushes and PCC events: only the conversations that asked ---------------------------

    def _subscribed(
        self, callback: LgCallback, kind: str, audience: DeviceAudience
    ) -> list[Notice]:
        notices = []
        for recipient in audience.subscribed(kind):
            copy = audience.copies.get(recipient.thinq_user)
            device_type, alias = self._device_names(callback, copy)
            params = {"device": alias, "device_type": self._type_name(device_type)}
            if kind == "push":
                code = callback.push_code or ""
                response = self._catalog.push_response(device_type, code)
                params["code"] = code.replace("_", " ").lower()
            else:
                response = self._catalog.pcc_response
                params["diagnosis"] = self._catalog.diagnosis_words(callback.diagnosis_type or "")
                params["content_url"] = callback.content_url or ""
            notices.append(self._notice(recipient, callback, kind, response, params))
        return notices

    # --- registry changes: keep the cache right, tell everyone linked -----------------------

    async def _registered(self, callback: LgCallback) -> list[Notice]:
        recipients = await self._subs.linked_senders(callback.user_numbers)
        record = DeviceRecord(
            device_id=callback.device_id,
            device_type=callback.device_type or "",
            model_name=callback.model_name or "",
            alias=callback.alias or "",
            reportable=True,
        )
        now = _now()
        events = EventSubscriptionRepository(self._storage.engine)
        for user in {r.thinq_user for r in recipients}:
            # No profile yet: the household service fetches it on first use.
            await self._storage.devices.upsert_device(user, record, now)
            # LG's event subscription covers the devices there when it was requested:
            # renew it at the renewer's next pass so the new one sends events too.
            await events.request_renewal(user, now)
        params = {
            "device": callback.alias or "",
            "device_type": self._type_name(callback.device_type or ""),
        }
        response = self._catalog.registry[DEVICE_REGISTERED]
        return [self._notice(r, callback, "registry", response, params) for r in recipients]

    async def _unregistered(self, callback: LgCallback) -> list[Notice]:
        copies = {c.thinq_user: c for c in await self._subs.cached_copies(callback.device_id)}
        users = set(callback.user_numbers) | set(copies)
        recipients = await self._subs.linked_senders(users)
        for user in users:
            await self._storage.devices.remove_device(user, callback.device_id)
        await self._subs.forget_device(users, callback.device_id)
        response = self._catalog.registry[DEVICE_UNREGISTERED]
        notices = []
        for recipient in recipients:
            device_type, alias = self._device_names(callback, copies.get(recipient.thinq_user))
            params = {"device": alias, "device_type": self._type_name(device_type)}
            notices.append(self._notice(recipient, callback, "registry", response, params))
        return notices

    async def _renamed(self, callback: LgCallback) -> list[Notice]:
        copies = {c.thinq_user: c for c in await self._subs.cached_copies(callback.device_id)}
        users = set(callback.user_numbers) | set(copies)
        recipients = await self._subs.linked_senders(users)
        new_alias = callback.alias or ""
        for user in copies:
            await self._storage.devices.rename_device(user, callback.device_id, new_alias)
        notices = []
        for recipient in recipients:
            copy = copies.get(recipient.thinq_user)
            device_type = (copy.device_type if copy else None) or callback.device_type or ""
            old_alias = copy.alias if copy else ""
            params = {
                "device": new_alias,
                "old_name": old_alias,
                "device_type": self._type_name(device_type),
            }
            # A replay after the cache was already renamed has no old name to give.
            key = (
                DEVICE_ALIAS_CHANGED
                if old_alias and old_alias != new_alias
                else ("DEVICE_ALIAS_CHANGED_SAME")
            )
            response = self._catalog.registry[key]
            notices.append(self._notice(recipient, callback, "registry", response, params))
        return notices

    # --- helpers ----------------------------------------------------------------------------

    def _device_names(self, callback: LgCallback, copy: CachedCopy | None) -> tuple[str, str]:
        device_type = (copy.device_type if copy else None) or callback.device_type or ""
        alias = (copy.alias if copy else None) or callback.alias or ""
        return device_type, alias or self._type_name(device_type)

    def _type_name(self, device_type: str) -> str:
        return self._vocab.device_type(device_type).name if device_type else "appliance"

    def _notice(
        self,
        recipient: Recipient,
        callback: LgCallback,
        kind: str,
        response: str,
        params: dict[str, str],
    ) -> Notice:
        return Notice(
            sender_id=recipient.sender_id,
            channel=recipient.channel,
            thinq_user=recipient.thinq_user,
            device_id=callback.device_id,
            kind=kind,
            response=response,
            params=params,
            text=self._wording.render(response, params),
        )


@functools.lru_cache(maxsize=1)
def _domain_wording() -> Wording:
    return Wording.from_domain()
