"""Async client for LG's ThinQ Connect partner API (v1 device, push and PCC endpoints).

Transport only: headers, envelope, retries and error mapping. It knows nothing
of Rasa or of our dialogue; callers pass each user's token and country.

Retries: only idempotent reads (GET) are retried, with exponential backoff and
jitter, on transport failures and on LG's "try again" codes. A control command
is never repeated blindly: after a timeout its outcome is unknown and the
caller must read the state before deciding anything.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from lgcloud.call_budget import (
    OK,
    TIMEOUT,
    TRANSPORT,
    CallBudget,
    endpoint_template,
    user_label,
)
from lgcloud.circuit import LgCircuit
from lgcloud.errors import (
    RETRYABLE_CODES,
    RateLimited,
    ThinQBadRequest,
    ThinQError,
    ThinQServerError,
    ThinQTransportError,
    error_for,
)
from lgcloud.message_id import new_message_id

logger = logging.getLogger(__name__)

# The circuit every ThinQ Connect call (v1 and v2) shares: one cloud, one health.
THINQ_CIRCUIT = "thinq"

ALREADY_SUBSCRIBED_PUSH = "1207"
NOT_SUBSCRIBED_PUSH = "1206"


@dataclass(frozen=True)
class ThinQAuth:
    """One end user's credentials for a call: their EMP OAuth token and country.

    ``user`` (their LG user number, when the caller knows it) names them in the call
    counts (:mod:`lgcloud.call_budget`); without it they are named by a token digest.
    """

    token: str = field(repr=False)
    country_code: str
    user: str | None = None


@dataclass(frozen=True)
class DeviceSummary:
    """One entry of ``GET /devices``."""

    device_id: str
    device_type: str
    model_name: str
    alias: str
    reportable: bool

    @classmethod
    def from_api(cls, entry: dict[str, Any]) -> DeviceSummary:
        info = entry.get("deviceInfo") or {}
        device_type = info.get("deviceType")
        if not isinstance(entry.get("deviceId"), str) or not isinstance(device_type, str):
            raise ThinQTransportError("0000", f"device list entry without id or type: {entry!r}")
        return cls(
            device_id=entry["deviceId"],
            device_type=device_type,
            model_name=str(info.get("modelName") or ""),
            alias=str(info.get("alias") or device_type),
            reportable=bool(info.get("reportable", False)),
        )


def lg_http_client(timeout_seconds: float) -> httpx.AsyncClient:
    """The pooled HTTP client an LG API client shares across its calls (one per process)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(timeout_seconds),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
    )


class LgClientBase:
    """What a ThinQ Connect client holds: LG's host, our service credentials, the HTTP pool
    (injected by tests or the process, or its own) and the transport (budget, circuit).
    One per process and API; share it."""

    def __init__(
        self,
        base_url: str,
        service_id: str,
        service_key: str,
        *,
        timeout_seconds: float = 5.0,
        http: httpx.AsyncClient | None = None,
        budget: CallBudget | None = None,
        circuit: LgCircuit | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._service_id = service_id
        self._service_key = service_key
        self._owns_http = http is None
        self._http = http or lg_http_client(timeout_seconds)
        self._transport = LgTransport(self._http, self._base_url, budget, circuit)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r})"

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()


class ThinQClient(LgClientBase):
    """LG's v1 device API. ``budget`` (optional) counts every request and backs off users
    LG rate-limits; ``circuit`` (optional) stops calling LG for a while after repeated
    failures; reads are retried ``read_retries`` times on transient failures, commands
    never."""

    def __init__(
        self,
        base_url: str,
        service_id: str,
        service_key: str,
        *,
        read_retries: int = 2,
        backoff_seconds: float = 0.2,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **transport: Any,
    ) -> None:
        super().__init__(base_url, service_id, service_key, **transport)
        self._read_retries = read_retries
        self._backoff_seconds = backoff_seconds
        self._sleep = sleep

    # --- Device API -------------------------------------------------------------------------

    async def list_devices(self, auth: ThinQAuth) -> list[DeviceSummary]:
        payload = await self._request("GET", "/devices", auth)
        return [DeviceSummary.from_api(entry) for entry in payload or []]

    async def get_profile(self, auth: ThinQAuth, device_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/devices/profile/{_segment(device_id)}", auth)

    async def get_status(self, auth: ThinQAuth, device_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/devices/{_segment(device_id)}", auth)

    async def control(
        self, auth: ThinQAuth, device_id: str, command: dict[str, Any], *, conditional: bool = True
    ) -> Any:
        """Send one control body (``{resource: {property: value}}``). Never retried."""
        if not command:
            raise ValueError("a control command needs at least one property")
        return await self._request(
            "POST",
            f"/devices/{_segment(device_id)}",
            auth,
            json=command,
            extra_headers={"x-conditional-control": "true" if conditional else "false"},
        )

    # --- Notification (push) and PCC subscriptions --------------------------------------------

    async def list_push_subscriptions(self, auth: ThinQAuth) -> list[str]:
        return _device_ids(await self._request("GET", "/push", auth))

    async def subscribe_push(self, auth: ThinQAuth, device_id: str) -> None:
        await self._subscribe(f"/push/{_segment(device_id)}", auth)

    async def unsubscribe_push(self, auth: ThinQAuth, device_id: str) -> None:
        await self._unsubscribe(f"/push/{_segment(device_id)}", auth)

    async def list_pcc_subscriptions(self, auth: ThinQAuth) -> list[str]:
        return _device_ids(await self._request("GET", "/pcc", auth))

    async def subscribe_pcc(self, auth: ThinQAuth, device_id: str) -> None:
        await self._subscribe(f"/pcc/{_segment(device_id)}", auth)

    async def unsubscribe_pcc(self, auth: ThinQAuth, device_id: str) -> None:
        await self._unsubscribe(f"/pcc/{_segment(device_id)}", auth)

    async def _subscribe(self, path: str, auth: ThinQAuth) -> None:
        try:
            await self._request("POST", path, auth)
        except ThinQBadRequest as exc:
            # Subscribing twice is harmless: LG's "already subscribed" means we got what we asked.
            if exc.code != ALREADY_SUBSCRIBED_PUSH:
                raise

    async def _unsubscribe(self, path: str, auth: ThinQAuth) -> None:
        try:
            await self._request("DELETE", path, auth)
        except ThinQBadRequest as exc:
            if exc.code != NOT_SUBSCRIBED_PUSH:
                raise

    # --- Transport ----------------------------------------------------------------------------

    def _headers(self, auth: ThinQAuth) -> dict[str, str]:
        return thinq_headers(auth, self._service_id, self._service_key)

    async def _request(
        self,
        method: str,
        path: str,
        auth: ThinQAuth,
        *,
        json: Any = None,
        extra_headers: dict[str, str] | None = None,
    ) -> Any:
        attempts = 1 + (self._read_retries if method == "GET" else 0)
        for attempt in range(1, attempts + 1):
            try:
                return await self._request_once(method, path, auth, json, extra_headers)
            except (ThinQTransportError, ThinQServerError) as exc:
                retryable = isinstance(exc, ThinQTransportError) or exc.code in RETRYABLE_CODES
                if attempt == attempts or not retryable:
                    raise
                delay = self._backoff_seconds * (2 ** (attempt - 1))
                await self._sleep(delay * (0.5 + random.random()))
        raise AssertionError("unreachable: the loop returns or raises")

    async def _request_once(
        self,
        method: str,
        path: str,
        auth: ThinQAuth,
        json: Any,
        extra_headers: dict[str, str] | None,
    ) -> Any:
        headers = self._headers(auth)
        if extra_headers:
            headers.update(extra_headers)
        response, body = await self._transport.send(method, path, headers, json, auth)
        if response.is_success and isinstance(body, dict) and "response" in body:
            logger.debug("ThinQ %s %s -> %s", method, path, response.status_code)
            return body["response"]
        if response.is_success and response.status_code == 204:
            return None
        raise failed_call(method, path, response.status_code, body, headers["x-message-id"])


# --- Shared transport helpers (also used by lgcloud.placement) -------------------------------


def thinq_headers(auth: ThinQAuth, service_id: str, service_key: str) -> dict[str, str]:
    """LG's common headers (facts sheet §1.4) with a fresh x-message-id."""
    return {
        "Authorization": f"Bearer {auth.token}",
        "x-country-code": auth.country_code,
        "x-message-id": new_message_id(),
        "x-service-id": service_id,
        "x-service-key": service_key,
        "content-type": "application/json",
    }


@dataclass(frozen=True)
class LgTransport:
    """What every ThinQ exchange of a client goes through: its HTTP pool, LG's host, the
    call budget and the circuit (both optional)."""

    http: httpx.AsyncClient
    base_url: str
    budget: CallBudget | None = None
    circuit: LgCircuit | None = None

    async def send(
        self, method: str, path: str, headers: dict[str, str], json: Any, auth: ThinQAuth
    ) -> tuple[httpx.Response, Any]:
        return await send_thinq_request(
            self.http,
            method,
            self.base_url,
            path,
            headers,
            json,
            budget=self.budget,
            auth=auth,
            circuit=self.circuit,
        )


async def send_thinq_request(
    http: httpx.AsyncClient,
    method: str,
    base_url: str,
    path: str,
    headers: dict[str, str],
    json: Any,
    *,
    budget: CallBudget | None = None,
    auth: ThinQAuth | None = None,
    circuit: LgCircuit | None = None,
) -> tuple[httpx.Response, Any]:
    """One HTTP exchange: the response and its JSON body (None when not JSON).

    Transport failures become :class:`ThinQTransportError`; nothing else is judged here.
    With a ``budget`` the request is counted once (by ``auth.user``, else by a digest of
    the bearer token), and a user backed off after 1306 gets :class:`RateLimited` at
    once, without a request. With a ``circuit``, timeouts, refused connections and HTTP
    5xx count against LG's circuit, and while it is open :class:`LgUnavailable` is raised
    at once, without a request.
    """

    async def exchange() -> tuple[httpx.Response, Any]:
        return await _exchange(http, method, base_url, path, headers, json, budget, auth)

    if circuit is None:
        return await exchange()
    return await circuit.call(THINQ_CIRCUIT, exchange, lambda answer: answer[0].status_code >= 500)


async def _exchange(
    http: httpx.AsyncClient,
    method: str,
    base_url: str,
    path: str,
    headers: dict[str, str],
    json: Any,
    budget: CallBudget | None,
    auth: ThinQAuth | None,
) -> tuple[httpx.Response, Any]:
    counted: tuple[str, str, str] | None = None
    if budget is not None:
        user = auth.user if auth is not None else None
        token = auth.token if auth is not None else _bearer(headers)
        counted = (
            headers.get("x-service-id", ""),
            user_label(user, token),
            endpoint_template(method, path),
        )
        await budget.before_call(counted[0], counted[1])
    try:
        response = await http.request(method, base_url + path, headers=headers, json=json)
    except httpx.TimeoutException as exc:
        logger.warning(
            "ThinQ %s %s timed out (message %s)", method, path, headers.get("x-message-id")
        )
        if budget is not None and counted is not None:
            await budget.after_call(*counted, TIMEOUT, http_status=None)
        raise ThinQTransportError("0000", f"timed out: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        logger.warning("ThinQ %s %s failed: %s", method, path, type(exc).__name__)
        if budget is not None and counted is not None:
            await budget.after_call(*counted, TRANSPORT, http_status=None)
        raise ThinQTransportError("0000", f"connection failed: {type(exc).__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if budget is not None and counted is not None:
        await budget.after_call(
            *counted, result_code(response.status_code, body), http_status=response.status_code
        )
    return response, body


def result_code(status_code: int, body: Any) -> str:
    """How a call is counted: ``ok``, LG's code, or ``http_<status>`` without LG's envelope."""
    error = envelope_error(body)
    if error is not None:
        code = str(error["code"]).zfill(4)
        # LG's codes are four digits; anything else must not become a new label value.
        return code if code.isdigit() and len(code) <= 6 else "unparsable"
    if 200 <= status_code < 300:
        return OK
    return f"http_{status_code}"


def _bearer(headers: dict[str, str]) -> str:
    return headers.get("Authorization", "").removeprefix("Bearer ")


def envelope_error(body: Any) -> dict[str, Any] | None:
    """The ``{"code", "message"}`` of a failure body: v1's top-level ``error``, or v2's
    ``response.error`` (v2 says failures carry their details there)."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and "code" in error:
        return error
    inner = body.get("response")
    error = inner.get("error") if isinstance(inner, dict) else None
    if isinstance(error, dict) and "code" in error:
        return error
    code = body.get("responseCode")  # v2 without details: the code alone
    if isinstance(code, str) and code.strip() and code != "0000":
        return {"code": code, "message": ""}
    return None


def failed_call(method: str, path: str, status_code: int, body: Any, message_id: str) -> ThinQError:
    """The typed exception for an answer that is not a success, logged once."""
    error = envelope_error(body)
    if error is not None:
        code = str(error["code"]).zfill(4)
        exc = error_for(code, str(error.get("message", "")), status_code)
    elif status_code == 429:  # too many requests without LG's envelope: as 1306
        exc = RateLimited("1306", "HTTP 429 Too Many Requests", status_code)
    elif status_code >= 500:
        exc = ThinQServerError("2000", f"HTTP {status_code}", status_code)
    else:
        exc = ThinQTransportError("0000", f"unexpected HTTP {status_code} body", status_code)
    logger.info(
        "ThinQ %s %s -> HTTP %s code %s %s (message %s)",
        method,
        path,
        status_code,
        exc.code,
        exc.name,
        message_id,
    )
    return exc


def _segment(device_id: str) -> str:
    """A device id as exactly one URL path segment, whatever characters it holds."""
    if not device_id or device_id in (".", ".."):
        raise ValueError(f"not a device id: {device_id!r}")
    return quote(device_id, safe="")


def _device_ids(payload: Any) -> list[str]:
    if not payload:
        return []
    if not isinstance(payload, list):
        raise ThinQError("0000", f"expected a device list, got {type(payload).__name__}")
    return [
        entry["deviceId"] for entry in payload if isinstance(entry, dict) and "deviceId" in entry
    ]
