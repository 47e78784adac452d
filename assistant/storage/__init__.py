"""The assistant's own persistent state: linked accounts, device cache, subscriptions,
the Alexa inbox and the chat widget's message log.

Typical use::

    storage = await Storage.open(settings)
    account = await storage.accounts.get(sender_id)
    ...
    await storage.close()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import sessionmaker

from assistant.storage.accounts import Account, AccountRepository
from assistant.storage.alexa_inbox import AlexaInboxRepository
from assistant.storage.building_links import BuildingLinkRepository
from assistant.storage.crypto import TokenCipher, TokenDecryptError, TokenKeyError
from assistant.storage.db import create_engine, create_schema, session_factory
from assistant.storage.device_cache import DeviceCacheRepository, DeviceRecord
from assistant.storage.link_requests import LinkRequestRepository
from assistant.storage.pending_links import PendingLinkRepository
from assistant.storage.subscriptions import SubscriptionRepository
from assistant.storage.widget_messages import WidgetMessage, WidgetMessageRepository

if TYPE_CHECKING:
    from assistant.settings import Settings

__all__ = [
    "Account",
    "AccountRepository",
    "AlexaInboxRepository",
    "BuildingLinkRepository",
    "DeviceCacheRepository",
    "DeviceRecord",
    "LinkRequestRepository",
    "PendingLinkRepository",
    "Storage",
    "SubscriptionRepository",
    "TokenCipher",
    "TokenDecryptError",
    "TokenKeyError",
    "WidgetMessage",
    "WidgetMessageRepository",
    "create_engine",
    "create_schema",
    "session_factory",
]


@dataclass
class Storage:
    engine: AsyncEngine
    sessions: sessionmaker
    cipher: TokenCipher = field(repr=False)
    accounts: AccountRepository = field(repr=False)
    devices: DeviceCacheRepository = field(repr=False)
    subscriptions: SubscriptionRepository = field(repr=False)
    alexa_inbox: AlexaInboxRepository = field(repr=False)
    link_requests: LinkRequestRepository = field(repr=False)
    pending_links: PendingLinkRepository = field(repr=False)
    widget_messages: WidgetMessageRepository = field(repr=False)
    building_links: BuildingLinkRepository = field(repr=False)

    @classmethod
    async def open(cls, settings: Settings, *, cipher: TokenCipher | None = None) -> Storage:
        """Connect to ``settings.database_url`` and create missing tables.

        The cipher comes from the settings (see :meth:`TokenCipher.from_settings`)
        unless one is given; it is built first so a missing key fails before any
        connection is made.
        """
        cipher = cipher or TokenCipher.from_settings(settings)
        return await cls.open_url(settings.database_url, cipher)

    @classmethod
    async def open_url(cls, database_url: str, cipher: TokenCipher) -> Storage:
        engine = create_engine(database_url)
        try:
            await create_schema(engine)
        except BaseException:
            await engine.dispose()
            raise
        sessions = session_factory(engine)
        return cls(
            engine=engine,
            sessions=sessions,
            cipher=cipher,
            accounts=AccountRepository(sessions, cipher),
            devices=DeviceCacheRepository(sessions),
            subscriptions=SubscriptionRepository(sessions, engine),
            alexa_inbox=AlexaInboxRepository(engine),
            link_requests=LinkRequestRepository(sessions),
            pending_links=PendingLinkRepository(sessions, cipher),
            widget_messages=WidgetMessageRepository(engine),
            building_links=BuildingLinkRepository(sessions),
        )

    async def close(self) -> None:
        await self.engine.dispose()

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
