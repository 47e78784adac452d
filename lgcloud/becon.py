"""Async client for LG's BECON Connect API (commercial HVAC: site -> gateway -> facility).

Transport only: authentication, headers, wire names and error mapping; no Rasa, no
dialogue. Wire names live in :mod:`lgcloud.becon_fields` (most are our assumptions, see
there); state keys and values reach callers in their canonical (contract) spelling.

Authentication (LG's call sequence): ``GET /auth/servertime``, sign the server time
with the symmetric key (:mod:`lgcloud.becon_signer`, pluggable), ``POST /auth/token``.
The token lasts 24 h; it is cached and renewed once less than ``renew_margin_seconds``
(1 h) of it remain, by the client's own clock. A call refused with 401 gets the token
renewed and is sent once more; a second 401 raises :class:`BeconAuthError`. Only one
token request runs at a time per client (an asyncio lock); concurrent callers wait for
it and share its token.

Nothing is retried otherwise. A control command that timed out has an unknown outcome:
read the state before deciding anything. The service key, the symmetric key and tokens
are never logged, nor shown in ``repr``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from lgcloud import becon_fields as f
from lgcloud.becon_errors import (
    BeconAuthError,
    BeconError,
    BeconTimeout,
    BeconTransportError,
    error_for,
)
from lgcloud.becon_signer import Signer, hmac_sha256_signer
from lgcloud.call_budget import (
    BECON_USER_LABEL,
    OK,
    TIMEOUT,
    TRANSPORT,
    CallBudget,
    endpoint_template,
)
from lgcloud.circuit import CIRCUIT_OPEN, LgCircuit, LgUnavailable

logger = logging.getLogger(__name__)

TOKEN_RENEW_MARGIN_SECONDS = 3600.0
BECON_CIRCUIT = "becon"


@dataclass(frozen=True)
class Site:
    site_code: str
    name: str


@dataclass(frozen=True)
class Gateway:
    gw_id: str
    site_code: str


@dataclass(frozen=True)
class Facility:
    facility_type: str
    facility_id: str
    name: str


@dataclass(frozen=True)
class FacilityState:
    """One facility's state, canonical keys and values (``power``: ``ON``...)."""

    facility_type: str
    facility_id: str
    state: dict[str, Any]


@dataclass
class _Token:
    value: str = field(repr=False)
    expires_at: float  # on the client's clock


class BeconClient:
    """One per process and BECON service; share it.

    ``http`` lets the process or tests inject an AsyncClient; ``clock`` (seconds, any
    origin) decides when the token is renewed; ``signer`` builds the token signature.
    """

    def __init__(
        self,
        base_url: str,
        service_id: str,
        service_key: str,
        symmetric_key: str | bytes,
        *,
        timeout_seconds: float = 5.0,
        http: httpx.AsyncClient | None = None,
        signer: Signer = hmac_sha256_signer,
        clock: Callable[[], float] = time.monotonic,
        renew_margin_seconds: float = TOKEN_RENEW_MARGIN_SECONDS,
        budget: CallBudget | None = None,
        circuit: LgCircuit | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/") + f.BASE_PATH
        self._service_id = service_id
        self._service_key = service_key
        self._symmetric_key = (
            symmetric_key.encode("utf-8") if isinstance(symmetric_key, str) else symmetric_key
        )
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=10),
        )
        self._signer = signer
        self._clock = clock
        self._renew_margin = renew_margin_seconds
        self._token: _Token | None = None
        self._token_lock = asyncio.Lock()
        # Counts every call per endpoint and outcome (shown by the connector's /metrics).
        self._budget = budget
        self._circuit = circuit

    def __repr__(self) -> str:
        return f"BeconClient(base_url={self._base_url!r}, service_id={self._service_id!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- authentication ---------------------------------------------------------------------

    async def server_time(self) -> str:
        """BECON's server time, exactly as sent (it is what gets signed)."""
        body = await self._send("GET", f.PATH_SERVER_TIME, token=None)
        value = body.get(f.SERVER_TIME) if isinstance(body, dict) else None
        if not isinstance(value, str) or not value:
            raise BeconTransportError("BAD_RESPONSE", f"no {f.SERVER_TIME} in the answer")
        return value

    async def token(self) -> str:
        """A token with more than the renewal margin left, requesting one when needed."""
        async with self._token_lock:
            cached = self._token
            if cached is not None and cached.expires_at - self._clock() >= self._renew_margin:
                return cached.value
            return (await self._issue_token()).value

    async def _issue_token(self) -> _Token:
        """Called with the lock held."""
        requested_at = self._clock()
        signed_time = await self.server_time()
        signature = self._signer(signed_time, self._symmetric_key)
        body = await self._send(
            "POST",
            f.PATH_TOKEN,
            token=None,
            json={f.TOKEN_SERVER_TIME: signed_time, f.TOKEN_SIGNATURE: signature},
        )
        value = body.get(f.TOKEN) if isinstance(body, dict) else None
        lifetime = body.get(f.TOKEN_EXPIRES_IN) if isinstance(body, dict) else None
        if (
            not isinstance(value, str)
            or not value
            or isinstance(lifetime, bool)
            or not isinstance(lifetime, (int, float))
        ):
            raise BeconTransportError(
                "BAD_RESPONSE", f"the token answer lacks {f.TOKEN} or {f.TOKEN_EXPIRES_IN}"
            )
        # Counted from before the request: errs on the side of renewing early.
        self._token = _Token(value, requested_at + float(lifetime))
        logger.info("BECON token issued, valid for %s s", lifetime)
        return self._token

    def _forget(self, used: str) -> None:
        """Drop the cached token if it is still the refused one (another caller may have
        renewed it meanwhile: then keep that)."""
        if self._token is not None and self._token.value == used:
            self._token = None

    # --- sites, gateways, facilities, states, control ---------------------------------------

    async def sites(self) -> list[Site]:
        body = await self._authed("GET", f.PATH_SITES)
        return [
            Site(_text(entry, f.SITE_CODE), str(entry.get(f.SITE_NAME) or ""))
            for entry in _entries(body, f.SITES)
        ]

    async def gateways(self, site: str) -> list[Gateway]:
        body = await self._authed("GET", f.PATH_GATEWAYS.format(site_code=_segment(site)))
        return [
            Gateway(_text(entry, f.GW_ID), str(entry.get(f.SITE_CODE) or site))
            for entry in _entries(body, f.GATEWAYS)
        ]

    async def facilities(self, site: str, gw: str) -> list[Facility]:
        path = f.PATH_FACILITIES.format(site_code=_segment(site), gw_id=_segment(gw))
        return [
            Facility(
                _text(entry, f.FACILITY_TYPE),
                _text(entry, f.FACILITY_ID),
                str(entry.get(f.FACILITY_NAME) or ""),
            )
            for entry in _entries(await self._authed("GET", path), f.FACILITIES)
        ]

    async def state(
        self, site: str, gw: str, facility_type: str, facility_id: str
    ) -> FacilityState:
        path = f.PATH_FACILITY_STATE.format(
            site_code=_segment(site),
            gw_id=_segment(gw),
            facility_type=_segment(facility_type),
            facility_id=_segment(facility_id),
        )
        return _facility_state(await self._authed("GET", path))

    async def states(
        self, site: str, gw: str, types: Iterable[str] | None = None
    ) -> list[FacilityState]:
        """Every facility's state under a gateway, optionally only of some types."""
        path = f.PATH_FACILITIES_STATE.format(site_code=_segment(site), gw_id=_segment(gw))
        params = None
        if types is not None:
            wanted = list(types)
            if not wanted:
                return []
            params = {f.QUERY_FACILITY_TYPES: ",".join(wanted)}
        body = await self._authed("GET", path, params=params)
        return [_facility_state(entry) for entry in _entries(body, f.FACILITIES)]

    async def control(
        self,
        site: str,
        gw: str,
        facility_type: str,
        facility_ids: Iterable[str],
        changes: Mapping[str, Any],
    ) -> dict[str, bool]:
        """Set ``changes`` (canonical keys and values) on the facilities; never retried
        except once after a 401 (a refused call changed nothing). Answers id -> success."""
        ids = list(facility_ids)
        if not ids or not changes:
            raise ValueError("a control needs at least one facility id and one change")
        path = f.PATH_CONTROL.format(
            site_code=_segment(site), gw_id=_segment(gw), facility_type=_segment(facility_type)
        )
        body = await self._authed(
            "PUT",
            path,
            json={f.CONTROL_FACILITY_IDS: ids, f.CONTROL_VALUES: f.state_to_wire(changes)},
        )
        return {
            _text(entry, f.RESULT_FACILITY_ID): bool(entry.get(f.RESULT_SUCCESS))
            for entry in _entries(body, f.CONTROL_RESULTS)
        }

    # --- transport --------------------------------------------------------------------------

    async def _authed(self, method: str, path: str, **kwargs: Any) -> Any:
        token = await self.token()
        try:
            return await self._send(method, path, token=token, **kwargs)
        except BeconAuthError as exc:
            logger.info("BECON %s %s refused (%s): renewing the token once", method, path, exc.code)
            self._forget(token)
        token = await self.token()
        try:
            return await self._send(method, path, token=token, **kwargs)
        except BeconAuthError as exc:
            raise BeconAuthError(
                exc.code,
                f"refused again with a freshly issued token: {exc.message}",
                exc.http_status,
            ) from exc

    def _headers(self, token: str | None) -> dict[str, str]:
        headers = {
            f.HEADER_SERVICE_ID: self._service_id,
            f.HEADER_SERVICE_KEY: self._service_key,
        }
        if token is not None:
            headers[f.HEADER_TOKEN] = token
        return headers

    async def _send(
        self,
        method: str,
        path: str,
        *,
        token: str | None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            response = await self._request(method, path, token, json, params)
        except httpx.TimeoutException as exc:
            logger.warning("BECON %s %s timed out", method, path)
            await self._count(method, path, TIMEOUT, None)
            raise BeconTimeout("TIMEOUT", f"timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            logger.warning("BECON %s %s failed: %s", method, path, type(exc).__name__)
            await self._count(method, path, TRANSPORT, None)
            raise BeconTransportError(
                "CONNECTION", f"connection failed: {type(exc).__name__}"
            ) from exc

        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get(f.ERROR) if isinstance(body, dict) else None
        counted_code = OK if response.is_success else f"http_{response.status_code}"
        if isinstance(error, dict) and error.get(f.ERROR_CODE):
            counted_code = str(error.get(f.ERROR_CODE))[:40]
        await self._count(method, path, counted_code, response.status_code)
        if response.is_success:
            if body is None:
                raise BeconTransportError(
                    "BAD_RESPONSE", "the answer is not JSON", response.status_code
                )
            logger.debug("BECON %s %s -> %s", method, path, response.status_code)
            return body
        if isinstance(error, dict):
            code = str(error.get(f.ERROR_CODE) or f"HTTP_{response.status_code}")
            message = str(error.get(f.ERROR_MESSAGE) or response.reason_phrase)
        else:
            code, message = f"HTTP_{response.status_code}", response.reason_phrase
        exc: BeconError = error_for(response.status_code, code, message)
        logger.info(
            "BECON %s %s -> HTTP %s %s: %s", method, path, response.status_code, code, message
        )
        raise exc

    async def _request(
        self,
        method: str,
        path: str,
        token: str | None,
        json: Any,
        params: Mapping[str, str] | None,
    ) -> httpx.Response:
        """The HTTP exchange, under the BECON circuit when there is one (timeouts, refused
        connections and 5xx count; while it is open nothing is sent)."""

        async def exchange() -> httpx.Response:
            return await self._http.request(
                method, self._base_url + path, headers=self._headers(token), json=json,
                params=params,
            )  # fmt: skip

        if self._circuit is None:
            return await exchange()
        try:
            return await self._circuit.call(
                BECON_CIRCUIT, exchange, lambda response: response.status_code >= 500
            )
        except LgUnavailable as exc:
            raise BeconTransportError(CIRCUIT_OPEN, exc.message) from None

    async def _count(self, method: str, path: str, code: str, status: int | None) -> None:
        if self._budget is not None:
            await self._budget.after_call(
                self._service_id,
                BECON_USER_LABEL,
                endpoint_template(method, f.BASE_PATH + path),
                code,
                http_status=status,
            )


def _segment(value: str) -> str:
    """A path parameter as exactly one URL path segment."""
    if not value or value in (".", ".."):
        raise ValueError(f"not a BECON identifier: {value!r}")
    return quote(value, safe="")


def _entries(body: Any, name: str) -> list[dict[str, Any]]:
    entries = body.get(name) if isinstance(body, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise BeconTransportError("BAD_RESPONSE", f"expected a list under {name!r}")
    return entries


def _text(entry: Mapping[str, Any], name: str) -> str:
    value = entry.get(name)
    if not isinstance(value, str) or not value:
        raise BeconTransportError("BAD_RESPONSE", f"an entry lacks {name!r}")
    return value


def _facility_state(entry: Any) -> FacilityState:
    if not isinstance(entry, dict) or not isinstance(entry.get(f.STATE), dict):
        raise BeconTransportError("BAD_RESPONSE", f"expected a facility with {f.STATE!r}")
    return FacilityState(
        _text(entry, f.FACILITY_TYPE),
        _text(entry, f.FACILITY_ID),
        f.state_from_wire(entry[f.STATE]),
    )
