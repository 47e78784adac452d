"""Async client for LG's ThinQ Connect v2 Placement API (all of a user's devices at once).

Each call is answered ``202 {"messageId", "requestId", "response": {}, "responseCode":
"0000", "statusCode": 202, "timestamp"}``; the outcome then arrives as one callback
per device at the partner's callback URL, carrying the same ``requestId`` (parse them
with :func:`lgcloud.placement_callbacks.parse_placement_callback`). So every method
here returns the requestId, nothing more.

Transport is shared with :class:`lgcloud.thinq.ThinQClient` (same headers, error
envelope and typed errors). Unlike v1 reads, nothing here is retried: a repeated call
is a second request with a second set of callbacks (and, for control, a second
command), and after a timeout the first one may well have been accepted.
"""

from __future__ import annotations

import logging
from typing import Any

from lgcloud.errors import ThinQTransportError
from lgcloud.thinq import (
    LgClientBase,
    ThinQAuth,
    failed_call,
    thinq_headers,
)

logger = logging.getLogger(__name__)

PREFIX = "/v2/devices"
EVENT_MIN_HOURS = 1
EVENT_MAX_HOURS = 24
MAX_REQUEST_ID_LENGTH = 128
OK = "0000"


class PlacementClient(LgClientBase):
    """LG's v2 multi-device ("placement") API: each call answers a requestId, the results
    come as callbacks. Nothing is retried (a retry is a second request with its own
    callbacks)."""

    # --- the API -------------------------------------------------------------------------------

    async def profiles(self, auth: ThinQAuth) -> str:
        """Every device's profile, as DEVICE_PROFILE callbacks."""
        return await self._accepted("POST", "/profile-async", auth)

    async def statuses(self, auth: ThinQAuth) -> str:
        """Every device's status, as DEVICE_STATUS callbacks."""
        return await self._accepted("POST", "/status-async", auth)

    async def control(self, auth: ThinQAuth, device_type: str, command: dict[str, Any]) -> str:
        """Send one command to every device of ``device_type``; DEVICE_CONTROL callbacks
        say, per device, whether it took it."""
        if not isinstance(device_type, str) or not device_type:
            raise ValueError("device_type must be a non-empty string such as DEVICE_WASHER")
        if not isinstance(command, (dict, list)) or not command:
            raise ValueError("a control command needs at least one property")
        body = {"deviceType": device_type, "command": command}
        return await self._accepted("POST", "/control-async", auth, json=body)

    async def subscribe_events(self, auth: ThinQAuth, hours: int = 1) -> str:
        """Status-change events for every device, for ``hours`` (1 to 24; renews if
        already subscribed); DEVICE_EVENT_SUBSCRIBED callbacks."""
        if (
            isinstance(hours, bool)
            or not isinstance(hours, int)
            or not EVENT_MIN_HOURS <= hours <= EVENT_MAX_HOURS
        ):
            raise ValueError(
                f"hours must be a whole number from {EVENT_MIN_HOURS} to {EVENT_MAX_HOURS}"
            )
        body = {"expire": {"unit": "HOUR", "timer": hours}}
        return await self._accepted("POST", "/event-async", auth, json=body)

    async def unsubscribe_events(self, auth: ThinQAuth) -> str:
        """DEVICE_EVENT_UNSUBSCRIBED callbacks (1204 for a device that had none)."""
        return await self._accepted("DELETE", "/event-async", auth)

    async def subscribe_pushes(self, auth: ThinQAuth) -> str:
        """DEVICE_PUSH_SUBSCRIBED callbacks (1207 for a device already subscribed)."""
        return await self._accepted("POST", "/push-async", auth)

    async def unsubscribe_pushes(self, auth: ThinQAuth) -> str:
        """DEVICE_PUSH_UNSUBSCRIBED callbacks (1206 for a device that was not)."""
        return await self._accepted("DELETE", "/push-async", auth)

    # --- transport -----------------------------------------------------------------------------

    async def _accepted(self, method: str, path: str, auth: ThinQAuth, *, json: Any = None) -> str:
        """Send once; the requestId of an accepted request, or the typed ThinQ error."""
        path = PREFIX + path
        headers = thinq_headers(auth, self._service_id, self._service_key)
        response, body = await self._transport.send(method, path, headers, json, auth)
        message_id = headers["x-message-id"]
        if not response.is_success or not isinstance(body, dict):
            raise failed_call(method, path, response.status_code, body, message_id)
        code = body.get("responseCode")
        if code is not None and str(code) != OK:
            raise failed_call(method, path, response.status_code, body, message_id)
        request_id = body.get("requestId")
        if (
            not isinstance(request_id, str)
            or not request_id.strip()
            or len(request_id) > MAX_REQUEST_ID_LENGTH
        ):
            raise ThinQTransportError(
                "0000",
                f"HTTP {response.status_code} without a usable requestId",
                response.status_code,
            )
        logger.debug("ThinQ %s %s -> %s request %s", method, path, response.status_code, request_id)
        return request_id
