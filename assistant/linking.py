"""Linking a chat sender to an LG account through LG's membership login (OAuth), no Rasa.

The flow (README "Account linking"):

1. :meth:`LinkingService.start` makes a random ``state`` bound to the sender (stored as a
   digest with an expiry in ``link_requests``) and returns LG's authorize URL for it.
2. The user signs in at LG, which redirects the browser to our ``/link/callback`` (served
   by the connector, :mod:`connector.linking`) with ``code`` and ``state``.
   :meth:`LinkingService.complete` takes the state back exactly once (unknown, expired
   or reused: refused, nothing stored), exchanges the code at LG's token endpoint and
   keeps the tokens, encrypted, as a *pending* link with a one-time 6-digit code that
   the callback page shows.
2b. :meth:`LinkingService.confirm`: the user types that code in the chat that asked, and
   only then is the sender linked (:meth:`AccountRepository.link`). Why: whoever signs
   in at LG is not necessarily whoever asked for the link. A sign-in link forwarded (or
   sent as a lure) to someone else would otherwise link *their* LG account to the
   sender's chat; now it only shows them a code they are told never to give away.
3. :meth:`LinkingService.fresh`, called whenever the runtime loads a sender's session,
   refreshes a token that expires within ``refresh_margin_seconds`` and stores the new
   pair (LG's refresh tokens are assumed to rotate). A refused refresh (revoked at LG)
   deletes the useless tokens and raises :class:`RelinkRequired`.
4. :meth:`LinkingService.unlink` deletes the sender's link and tokens.

What LG documents and what is assumed: see :mod:`lgcloud.emp_oauth`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from assistant.settings import OAuthSettings, Settings
from assistant.storage import Storage
from assistant.storage.accounts import Account, AccountRepository
from assistant.storage.link_requests import LinkRequestRepository, StateRefused
from assistant.storage.models import utcnow
from assistant.storage.pending_links import (
    CODE_DIGITS,
    CodeRefused,
    PendingGrant,
    PendingLinkRepository,
    new_code,
)
from lgcloud.emp_oauth import (
    EmpOAuthClient,
    OAuthError,
    OAuthGrantError,
    OAuthTransportError,
    authorize_url,
)

logger = logging.getLogger(__name__)


class LinkingUnavailable(Exception):
    """Linking is not configured (outside demo mode, LG_OAUTH_* / LINK_CALLBACK_URL unset)."""


class RelinkRequired(Exception):
    """The sender's LG sign-in expired or was revoked and cannot be refreshed; its tokens
    have been deleted and the user must link again."""


class SignInTemporarilyUnavailable(Exception):
    """The token has expired and LG's token endpoint cannot be reached right now."""


@dataclass(frozen=True)
class LinkCompleted:
    """LG's sign-in worked; the link waits for ``code`` to be typed in the sender's chat."""

    sender_id: str
    thinq_user: str
    code: str = field(repr=False)
    channel: str | None = None


@dataclass(frozen=True)
class LinkConfirmed:
    sender_id: str
    thinq_user: str


_SPOKEN_DIGITS = {
    "zero": "0", "oh": "0", "o": "0", "one": "1", "two": "2", "three": "3", "four": "4",
    "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9",
}  # fmt: skip
_CODE = re.compile(rf"(?<!\d)\d{{{CODE_DIGITS}}}(?!\d)")


def parse_code(text: str) -> str | None:
    """The 6-digit code in what the user typed or said ("482 913", "the code is 482-913",
    "four eight two nine one three"); None if there is not exactly one."""
    words = re.findall(r"[a-z]+|\d+|[^\sa-z\d]", (text or "").lower())
    joined = "".join(_SPOKEN_DIGITS.get(w, w) if w.isalpha() else w for w in words)
    # Digits separated by spaces, dashes or dots are one code; words in between end it.
    compact = re.sub(r"(?<=\d)[\s.\-]+(?=\d)", "", joined)
    codes = _CODE.findall(re.sub(r"[a-z]+", " ", compact))
    return codes[0] if len(codes) == 1 else None


@dataclass(frozen=True)
class LinkFailed:
    """Why a callback linked nothing: ``missing`` (no state or code), ``unknown``,
    ``expired``, ``used`` (the state), ``denied`` (cancelled at LG), ``refused`` (LG
    refused the code) or ``unavailable`` (LG's token endpoint could not be reached)."""

    reason: str

    @property
    def status(self) -> int:
        return 502 if self.reason == "unavailable" else 400


class LinkingService:
    def __init__(
        self,
        settings: OAuthSettings,
        accounts: AccountRepository,
        requests: LinkRequestRepository,
        oauth: EmpOAuthClient | None,
        pending: PendingLinkRepository,
        *,
        country_code: str,
        region: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._settings = settings
        self._accounts = accounts
        self._requests = requests
        self._oauth = oauth
        self._pending = pending
        self._country = country_code
        self._region = region
        self._now = now
        # One refresh at a time per sender in this process (a rotated refresh token
        # works once); across processes see fresh().
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    @classmethod
    def create(cls, settings: Settings, storage: Storage) -> LinkingService:
        oauth_settings = settings.oauth
        oauth = None
        if oauth_settings.missing() is None:
            assert oauth_settings.token_url and oauth_settings.client_id
            assert oauth_settings.client_secret
            oauth = EmpOAuthClient(
                oauth_settings.token_url,
                oauth_settings.client_id,
                oauth_settings.client_secret,
                timeout_seconds=oauth_settings.timeout_seconds,
            )
        return cls(
            oauth_settings,
            storage.accounts,
            storage.link_requests,
            oauth,
            storage.pending_links,
            country_code=settings.thinq.default_country,
            region=settings.thinq.region,
        )

    def __repr__(self) -> str:
        return f"LinkingService(available={self.available})"

    async def aclose(self) -> None:
        if self._oauth is not None:
            await self._oauth.aclose()

    @property
    def available(self) -> bool:
        return self._oauth is not None

    # --- 1. start --------------------------------------------------------------------------

    async def start(self, sender_id: str, channel: str | None) -> str:
        """LG's sign-in URL for a new, single-use flow bound to ``sender_id``."""
        if self._oauth is None:
            raise LinkingUnavailable(self._settings.missing() or "linking is off")
        assert self._settings.authorize_url and self._settings.client_id
        assert self._settings.callback_url
        state = await self._requests.create(
            sender_id,
            channel,
            timedelta(seconds=self._settings.request_ttl_seconds),
            now=self._now(),
        )
        return authorize_url(
            self._settings.authorize_url,
            self._settings.client_id,
            self._settings.callback_url,
            state,
        )

    @property
    def request_ttl_minutes(self) -> int:
        return max(1, round(self._settings.request_ttl_seconds / 60))

    # --- 2. complete -----------------------------------------------------------------------

    async def complete(
        self, code: str | None, state: str | None, error: str | None = None
    ) -> LinkCompleted | LinkFailed:
        """The callback: check and use up the state, then exchange the code and store."""
        if not state:
            return LinkFailed("missing")
        consumed = await self._requests.consume(state, now=self._now())
        if isinstance(consumed, StateRefused):
            logger.info("link callback refused: state %s", consumed.reason)
            return LinkFailed(consumed.reason)
        if error:
            logger.info("link callback: sign-in not completed at LG (%r)", error[:64])
            return LinkFailed("denied")
        if not code:
            return LinkFailed("missing")
        if self._oauth is None:
            return LinkFailed("unavailable")
        assert self._settings.callback_url
        try:
            grant = await self._oauth.exchange_code(code, self._settings.callback_url)
        except OAuthGrantError:
            return LinkFailed("refused")
        except OAuthTransportError:
            return LinkFailed("unavailable")
        except OAuthError as exc:  # our client is misconfigured (invalid_client, ...)
            logger.error("LG refused our OAuth client: %s", exc.error)
            return LinkFailed("unavailable")
        now = self._now()
        code = new_code()
        await self._pending.put(
            PendingGrant(
                sender_id=consumed.sender_id,
                channel=consumed.channel,
                thinq_user=grant.user_number,
                token=grant.access_token,
                refresh_token=grant.refresh_token,
                token_expires_at=_expiry(now, grant.expires_in),
            ),
            code,
            timedelta(seconds=self._settings.request_ttl_seconds),
            now=now,
        )
        logger.info("LG sign-in done; the link waits for its code in the chat")
        return LinkCompleted(consumed.sender_id, grant.user_number, code, consumed.channel)

    # --- 2b. confirm -----------------------------------------------------------------------

    async def confirm(self, sender_id: str, text: str) -> LinkConfirmed | CodeRefused:
        """Link ``sender_id`` if ``text`` holds the code its sign-in page showed."""
        code = parse_code(text)
        if code is None:
            if not await self._pending.waiting(sender_id, now=self._now()):
                return CodeRefused("none")
            return CodeRefused("unreadable")
        taken = await self._pending.take(sender_id, code, now=self._now())
        if isinstance(taken, CodeRefused):
            logger.info("link code refused (%s)", taken.reason)
            return taken
        await self._accounts.link(
            sender_id,
            thinq_user=taken.thinq_user,
            token=taken.token,
            country_code=self._country,
            region=self._region,
            channel=taken.channel,
            token_expires_at=taken.token_expires_at,
            refresh_token=taken.refresh_token,
        )
        logger.info("linked a sender to an LG account through the OAuth flow")
        return LinkConfirmed(sender_id, taken.thinq_user)

    # --- 3. refresh ------------------------------------------------------------------------

    async def fresh(self, account: Account) -> Account:
        """``account`` with a token that is not about to expire (refreshed if needed).

        Raises :class:`RelinkRequired` (tokens deleted) when LG refuses the refresh or the
        token expired with no way to refresh it, and :class:`SignInTemporarilyUnavailable`
        when the token has expired and LG cannot be reached (the current token is kept
        and used while it is still valid).
        """
        if not self._due(account):
            return account
        if not account.refresh_token or self._oauth is None:
            if account.token_expired(self._now()):
                await self._accounts.unlink(account.sender_id)
                raise RelinkRequired
            return account
        lock = self._locks.get(account.sender_id)
        if lock is None:
            lock = self._locks[account.sender_id] = asyncio.Lock()
        async with lock:
            current = await self._accounts.get(account.sender_id)
            if current is None:
                raise RelinkRequired  # unlinked meanwhile
            if not self._due(current):
                return current  # refreshed meanwhile
            if not current.refresh_token:  # relinked meanwhile without one
                if current.token_expired(self._now()):
                    await self._accounts.unlink(current.sender_id)
                    raise RelinkRequired
                return current
            return await self._refresh(current)

    def _due(self, account: Account) -> bool:
        if account.token_expires_at is None:
            return False
        margin = timedelta(seconds=self._settings.refresh_margin_seconds)
        return account.token_expires_at - margin <= self._now()

    async def _refresh(self, current: Account) -> Account:
        assert self._oauth is not None and current.refresh_token
        try:
            grant = await self._oauth.refresh(current.refresh_token)
        except OAuthGrantError:
            latest = await self._accounts.get(current.sender_id)
            if latest is not None and latest.refresh_token != current.refresh_token:
                return latest  # another process refreshed first: its pair is the good one
            await self._accounts.unlink(current.sender_id)
            logger.info("LG refused a refresh token (revoked or expired); link deleted")
            raise RelinkRequired from None
        except OAuthError as exc:
            if current.token_expired(self._now()):
                raise SignInTemporarilyUnavailable from None
            logger.warning("token refresh failed (%s); using the current token", exc.error)
            return current
        if grant.user_number != current.thinq_user:
            logger.warning("LG's refresh answer names another user; keeping the linked one")
        return await self._accounts.link(
            current.sender_id,
            thinq_user=current.thinq_user,
            token=grant.access_token,
            country_code=current.country_code,
            region=current.region,
            token_expires_at=_expiry(self._now(), grant.expires_in),
            refresh_token=grant.refresh_token or current.refresh_token,
        )

    # --- 4. unlink -------------------------------------------------------------------------

    async def unlink(self, sender_id: str) -> bool:
        """Delete the sender's link and its stored tokens; False if there was none."""
        removed = await self._accounts.unlink(sender_id)
        if removed:
            logger.info("unlinked a sender on request")
        return removed


def _expiry(now: datetime, expires_in: int | None) -> datetime | None:
    return None if expires_in is None else now + timedelta(seconds=expires_in)
