"""The per-process composition root: settings, storage, the shared ThinQ client, services.

The action server builds one :class:`Runtime` lazily on its first request
(inside its own event loop) and reuses it, so the httpx connection pool and the
database engine are shared by every action.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from assistant.alerts import AlertsAssistant
from assistant.building import BuildingAssistant
from assistant.bulk import BulkControl
from assistant.conversation import ApplianceAssistant, UserSession
from assistant.correlation import Gatherer, InProcessWaker, RedisWaker, Waker
from assistant.facilities import load_catalog
from assistant.home import HomeOverview
from assistant.household import HouseholdService
from assistant.linking import LinkingService, RelinkRequired, SignInTemporarilyUnavailable
from assistant.notifications import NotificationCatalog
from assistant.settings import Settings, load_settings
from assistant.storage import Storage
from assistant.storage.accounts import Account
from assistant.storage.device_states import DeviceStateRepository, EventSubscriptionRepository
from assistant.storage.placement import PlacementRepository
from assistant.storage.unconfirmed import UnconfirmedControlRepository
from assistant.vocabulary import load_vocabulary
from lgcloud.becon import BeconClient
from lgcloud.call_budget import CallBudget
from lgcloud.circuit import LgCircuit
from lgcloud.errors import ThinQError
from lgcloud.placement import PlacementClient
from lgcloud.thinq import ThinQAuth, ThinQClient

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    storage: Storage
    client: ThinQClient
    household: HouseholdService
    assistant: ApplianceAssistant
    alerts: AlertsAssistant
    linking: LinkingService
    placement: PlacementClient
    waker: Waker
    home: HomeOverview
    bulk: BulkControl
    # Counts every LG call and backs off rate-limited users (shared through Redis if set).
    budget: CallBudget | None = None
    # Building-manager conversations (BECON); None when BECON is not configured.
    building: BuildingAssistant | None = None
    # This process's circuit breaker around ThinQ (shown by the action server's /metrics).
    circuit: LgCircuit | None = None

    @classmethod
    async def create(cls, settings: Settings) -> Runtime:
        storage = await Storage.open(settings)
        budget = CallBudget(settings.connector.redis_url, settings.connector.redis_prefix)
        # One circuit per process for ThinQ, shared by the v1 and v2 clients.
        circuit = settings.thinq.circuit()
        client = ThinQClient(
            settings.thinq.base_url,
            settings.thinq.service_id,
            settings.thinq.service_key,
            timeout_seconds=settings.thinq.timeout_seconds,
            budget=budget,
            circuit=circuit,
        )
        household = HouseholdService(
            client,
            storage.devices,
            list_ttl_seconds=settings.device_list_ttl_seconds,
            profile_ttl_seconds=settings.profile_ttl_seconds,
            # Status from the event-fed device states while LG's events keep them current.
            states=DeviceStateRepository(storage.engine),
            state_max_age_seconds=settings.events.state_max_age_seconds,
            unconfirmed=UnconfirmedControlRepository(storage.engine),
        )
        vocab = load_vocabulary()
        alerts = AlertsAssistant(
            household,
            vocab,
            NotificationCatalog.load(vocab=vocab),
            storage.subscriptions,
            client,
        )
        placement = PlacementClient(
            settings.thinq.base_url,
            settings.thinq.service_id,
            settings.thinq.service_key,
            timeout_seconds=settings.thinq.timeout_seconds,
            budget=budget,
            circuit=circuit,
        )
        # Placement answers reach the connector; Redis (when configured) wakes us at once,
        # otherwise the gatherer reads the shared database every 100 ms.
        connector = settings.connector
        waker: Waker = (
            RedisWaker(connector.redis_url, connector.redis_prefix)
            if connector.redis_url
            else InProcessWaker()
        )
        await waker.start()
        gatherer = Gatherer(PlacementRepository(storage.engine), waker, poll_seconds=0.1)
        building = None
        if settings.becon is not None:
            becon = settings.becon
            building = BuildingAssistant(
                BeconClient(
                    becon.base_url,
                    becon.service_id,
                    becon.service_key,
                    becon.symmetric_key,
                    timeout_seconds=becon.timeout_seconds,
                    budget=budget,
                    circuit=circuit,
                ),
                storage.building_links,
                load_catalog(),
                demo_site=settings.demo_becon_site,
            )
        return cls(
            settings,
            storage,
            client,
            household,
            ApplianceAssistant(household, vocab),
            alerts,
            LinkingService.create(settings, storage),
            placement,
            waker,
            HomeOverview(household, placement, gatherer, vocab, settings.placement_timeout_seconds),
            BulkControl(household, placement, gatherer, vocab, settings.placement_timeout_seconds),
            budget,
            building,
            circuit,
        )

    async def close(self) -> None:
        await self.client.aclose()
        await self.placement.aclose()
        await self.waker.close()
        if self.building is not None:
            await self.building.aclose()
        if self.budget is not None:
            await self.budget.aclose()
        await self.linking.aclose()
        await self.storage.close()

    async def session_for(self, sender_id: str, channel: str | None) -> UserSession | None:
        """The sender's linked LG account; in demo mode a new sender joins the demo household.

        A token about to expire is refreshed first (:meth:`LinkingService.fresh`), which
        raises :class:`~assistant.linking.RelinkRequired` when LG refuses the refresh.
        """
        account = await self.storage.accounts.get(sender_id)
        if account is not None:
            account = await self.linking.fresh(account)
        if account is None and self.settings.demo_mode and self.settings.demo_thinq_token:
            account = await self.storage.accounts.link(
                sender_id,
                thinq_user=self.settings.demo_thinq_user,
                token=self.settings.demo_thinq_token,
                country_code=self.settings.thinq.default_country,
                region=self.settings.thinq.region,
                channel=channel,
            )
            logger.info("linked new demo sender to the demo household")
        elif account is not None and channel and account.channel != channel:
            await self.storage.accounts.set_channel(sender_id, channel)
        return _session(account) if account else None

    async def end_event_subscription(self, session: UserSession | None, sender_id: str) -> bool:
        """When ``sender_id`` is the last conversation linked to its ThinQ user (and is being
        unlinked), tell LG to stop the user's status events and forget the subscription, so
        the renewer leaves the user alone. Without a session (the sign-in already failed)
        the subscription simply lapses at its expiry. True when LG was told."""
        if session is None:
            return False
        linked = await self.storage.subscriptions.linked_senders([session.thinq_user])
        if any(r.sender_id != sender_id for r in linked):
            return False  # another conversation of this user still wants the events
        events = EventSubscriptionRepository(self.storage.engine)
        if await events.get(session.thinq_user) is None:
            return False
        try:
            await self.placement.unsubscribe_events(session.auth)
        except ThinQError as exc:
            # Our record goes anyway: LG's leftover subscription lapses at its expiry and
            # its events for an unlinked user are dropped on arrival.
            logger.warning("LG event unsubscribe failed: %s", type(exc).__name__)
        await events.forget(session.thinq_user)
        logger.info("ended the event subscription of an unlinked user")
        return True

    async def linked_session(self, sender_id: str) -> UserSession | None:
        """The sender's session if it is linked and its sign-in still works; never links."""
        account = await self.storage.accounts.get(sender_id)
        if account is None:
            return None
        try:
            return _session(await self.linking.fresh(account))
        except (RelinkRequired, SignInTemporarilyUnavailable):
            return None


def _session(account: Account) -> UserSession:
    return UserSession(
        account.thinq_user,
        ThinQAuth(account.token, account.country_code, user=account.thinq_user),
    )


_runtime: Runtime | None = None
_lock: asyncio.Lock | None = None


async def get_runtime() -> Runtime:
    global _runtime, _lock
    if _runtime is None:
        _lock = _lock or asyncio.Lock()
        async with _lock:
            if _runtime is None:
                _runtime = await Runtime.create(load_settings())
    return _runtime


def use_runtime(runtime: Runtime | None) -> None:
    """Install an already-built runtime (tests do, to point actions at their simulator)."""
    global _runtime
    _runtime = runtime
