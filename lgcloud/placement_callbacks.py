"""The per-device callbacks of LG's v2 Placement API, parsed and validated.

Shape (lg-api/thinq-connect-v2-async-placement-api.ko.txt, "Callback")::

    {"messageId", "requestId",
     "response": {"deviceId", "deviceType", "pushType", "serviceId", "userNumber",
                  "result"},
     "responseCode": "0000", "statusCode": 200, "timestamp"}

A device that failed carries its ThinQ code in ``responseCode`` and, when given,
``response.error = {"code", "message"}``; LG documents only the success callback, so
that part follows v2's rule for failed answers (details under ``response > error``)
and is what our simulator sends.

:func:`parse_placement_callback` returns ``None`` for a body that is not a placement
callback (v1 ``push``/``event`` messages such as DEVICE_PUSH or PCC_EVENT, status
events without a requestId): hand those to :func:`lgcloud.callbacks.parse_callback`.
Anything that claims to be a placement callback (has a ``requestId``, or a placement
pushType under ``response``) is validated strictly and refused with
:class:`PlacementCallbackRejected`, a :class:`~lgcloud.callbacks.CallbackRejected`
(so a ``ValueError``) with a ``reason`` fit for a 4xx answer. No other exception
escapes, whatever the input.

LG's page names the push-subscribe pushType once ``USER_PUSH_SUBSCRIBED`` (and
``DEVICE_PUSH_SUBSCRIBED`` elsewhere); both USER_ spellings are read as the DEVICE_ ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from lgcloud.callbacks import CallbackRejected
from lgcloud.errors import ThinQError, error_for

DEVICE_PROFILE = "DEVICE_PROFILE"
DEVICE_STATUS = "DEVICE_STATUS"
DEVICE_CONTROL = "DEVICE_CONTROL"
DEVICE_EVENT_SUBSCRIBED = "DEVICE_EVENT_SUBSCRIBED"
DEVICE_EVENT_UNSUBSCRIBED = "DEVICE_EVENT_UNSUBSCRIBED"
DEVICE_PUSH_SUBSCRIBED = "DEVICE_PUSH_SUBSCRIBED"
DEVICE_PUSH_UNSUBSCRIBED = "DEVICE_PUSH_UNSUBSCRIBED"
PLACEMENT_PUSH_TYPES = frozenset(
    {
        DEVICE_PROFILE,
        DEVICE_STATUS,
        DEVICE_CONTROL,
        DEVICE_EVENT_SUBSCRIBED,
        DEVICE_EVENT_UNSUBSCRIBED,
        DEVICE_PUSH_SUBSCRIBED,
        DEVICE_PUSH_UNSUBSCRIBED,
    }
)
# The page's other spelling (its property table for push-async).
ALIASES = {
    "USER_PUSH_SUBSCRIBED": DEVICE_PUSH_SUBSCRIBED,
    "USER_PUSH_UNSUBSCRIBED": DEVICE_PUSH_UNSUBSCRIBED,
}
# Whose result is data (a profile or a status); the others answer an empty object.
DATA_PUSH_TYPES = frozenset({DEVICE_PROFILE, DEVICE_STATUS})
OK = "0000"

MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
CODE = re.compile(r"[0-9]{4}")


class PlacementCallbackRejected(CallbackRejected):
    """A body that claims to be a placement callback but is not a valid one."""


@dataclass(frozen=True)
class PlacementResult:
    """One device's answer to a placement request."""

    request_id: str
    device_id: str
    device_type: str
    push_type: str
    user_number: str
    ok: bool
    error_code: str | None  # None when ok
    result: Any  # profile / status / {} when ok; None when the device failed
    message_id: str = ""
    service_id: str = ""
    timestamp: str = ""
    status_code: int | None = None
    error_message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def error(self) -> ThinQError | None:
        """The typed ThinQ error this device answered with (None when ok)."""
        if self.ok or self.error_code is None:
            return None
        return error_for(self.error_code, self.error_message, self.status_code)


def _reject(reason: str) -> PlacementCallbackRejected:
    return PlacementCallbackRejected(reason)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _decode(body: bytes | str) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise _reject(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _reject("the body is not valid JSON") from None


def _text(obj: dict[str, Any], name: str, *, required: bool, limit: int = MAX_TEXT_LENGTH) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise _reject(f"{name} is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise _reject(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise _reject(f"{name} is longer than {limit} characters")
    return value.strip()


def _push_type(response: Any) -> str | None:
    """The placement pushType under ``response``, or None when there is none."""
    if not isinstance(response, dict):
        return None
    push_type = response.get("pushType")
    if not isinstance(push_type, str):
        return None
    push_type = ALIASES.get(push_type, push_type)
    return push_type if push_type in PLACEMENT_PUSH_TYPES else None


def is_placement_callback(body: Any) -> bool:
    """Whether a parsed body claims to be a placement callback (see module doc)."""
    return isinstance(body, dict) and (
        "requestId" in body or _push_type(body.get("response")) is not None
    )


def parse_placement_callback(body: bytes | str | dict[str, Any]) -> PlacementResult | None:
    """Validate one callback body: a :class:`PlacementResult`, ``None`` when the body is
    not a placement callback, or :class:`PlacementCallbackRejected` with the reason."""
    try:
        return _parse(body)
    except PlacementCallbackRejected:
        raise
    except Exception as exc:  # a bug here must not turn garbage into a 500
        raise _reject(f"the body could not be read ({type(exc).__name__})") from None


def _parse(body: Any) -> PlacementResult | None:
    if isinstance(body, (bytes, bytearray, str)):
        body = _decode(bytes(body) if isinstance(body, bytearray) else body)
    if not isinstance(body, dict):
        raise _reject("the body must be a JSON object")
    if not is_placement_callback(body):
        return None
    request_id = _text(body, "requestId", required=True, limit=MAX_ID_LENGTH)
    message_id = _text(body, "messageId", required=True, limit=MAX_ID_LENGTH)
    timestamp = _text(body, "timestamp", required=False, limit=64) or ""
    code = body.get("responseCode")
    if not isinstance(code, str) or not CODE.fullmatch(code):
        raise _reject("responseCode must be a string of four digits")
    status_code = body.get("statusCode")
    if status_code is not None and (
        isinstance(status_code, bool)
        or not isinstance(status_code, int)
        or not 100 <= status_code <= 599
    ):
        raise _reject("statusCode must be an HTTP status number")
    response = body.get("response")
    if not isinstance(response, dict):
        raise _reject("response must be an object")
    raw_type = _text(response, "pushType", required=True, limit=64)
    push_type = ALIASES.get(raw_type, raw_type)
    if push_type not in PLACEMENT_PUSH_TYPES:
        raise _reject(f"pushType {raw_type!r} is not a placement pushType")
    ok = code == OK
    result, error_code, error_message = None, None, ""
    if ok:
        if "error" in response:
            raise _reject("a successful callback must not carry response.error")
        if "result" not in response:
            raise _reject("result is missing")
        result = response["result"]
        allowed = (dict, list) if push_type in DATA_PUSH_TYPES else (dict,)
        if not isinstance(result, allowed):
            kinds = "an object or an array" if push_type in DATA_PUSH_TYPES else "an object"
            raise _reject(f"result of {push_type} must be {kinds}")
    else:
        error_code, error_message = code, _error_message(response, code)
    return PlacementResult(
        request_id=request_id,
        device_id=_text(response, "deviceId", required=True, limit=MAX_ID_LENGTH),
        device_type=_text(response, "deviceType", required=True, limit=64),
        push_type=push_type,
        user_number=_text(response, "userNumber", required=True, limit=MAX_ID_LENGTH),
        ok=ok,
        error_code=error_code,
        result=result,
        message_id=message_id,
        service_id=_text(response, "serviceId", required=True, limit=MAX_ID_LENGTH),
        timestamp=timestamp,
        status_code=status_code,
        error_message=error_message,
        raw=body,
    )


def _error_message(response: dict[str, Any], code: str) -> str:
    error = response.get("error")
    if error is None:
        return ""
    if not isinstance(error, dict):
        raise _reject("response.error must be an object")
    given = error.get("code")
    if given is not None and str(given).zfill(4) != code:
        raise _reject("response.error.code disagrees with responseCode")
    message = error.get("message")
    if message is None:
        return ""
    if not isinstance(message, str):
        raise _reject("response.error.message must be a string")
    return message[:MAX_TEXT_LENGTH]
