"""LG ThinQ Connect error codes mapped to typed exceptions.

The code table is LG's (facts sheet §1.7: the documented rows plus the SDK's
``ThinQAPIErrorCodes`` names). Each code belongs to a family that says what a
caller can do about it: re-authenticate, tell the user the device is offline,
explain a refused command, back off, or retry later. Callers catch the family;
the exact code stays available on the exception for logs and wording.
"""

from __future__ import annotations


class ThinQError(Exception):
    """Any failure talking to ThinQ Connect."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"ThinQ error {code} ({error_name(code)}): {message}")
        self.code = code
        self.name = error_name(code)
        self.message = message
        self.http_status = http_status


class ThinQTransportError(ThinQError):
    """No usable answer: connection refused, timeout, or a body that is not LG's envelope."""


class ThinQAuthError(ThinQError):
    """The user token, service id or service key was refused: the account must be re-linked."""


class ThinQBadRequest(ThinQError):
    """Our request was malformed or used a parameter LG does not accept."""


class DeviceNotFound(ThinQError):
    """The device is unknown, deleted, or not this user's."""


class DeviceOffline(ThinQError):
    """The appliance is not connected to the ThinQ cloud right now."""


class CommandRefused(ThinQError):
    """The appliance refused the command in its current state (remote off, powered off...)."""


class NotSupported(ThinQError):
    """The model, feature or API is not supported for this device or service."""


class RateLimited(ThinQError):
    """Too many API calls (1306): back off before calling again."""


class ThinQServerError(ThinQError):
    """LG's side failed or the device did not answer in time; the call may be retried later."""


# code -> (SDK name, family)
_CODES: dict[str, tuple[str, type[ThinQError]]] = {
    "0000": ("UNKNOWN_ERROR", ThinQServerError),
    "1000": ("BAD_REQUEST", ThinQBadRequest),
    "1101": ("MISSING_PARAMETERS", ThinQBadRequest),
    "1102": ("UNACCEPTABLE_PARAMETERS", ThinQBadRequest),
    "1103": ("INVALID_TOKEN", ThinQAuthError),
    "1104": ("INVALID_MESSAGE_ID", ThinQBadRequest),
    "1201": ("NOT_REGISTERED_ADMIN", ThinQAuthError),
    "1202": ("NOT_REGISTERED_USER", ThinQAuthError),
    "1203": ("NOT_REGISTERED_SERVICE", ThinQAuthError),
    "1204": ("NOT_SUBSCRIBED_EVENT", ThinQBadRequest),
    "1205": ("NOT_EXIST_DEVICE", DeviceNotFound),
    "1206": ("NOT_SUBSCRIBED_PUSH", ThinQBadRequest),
    "1207": ("ALREADY_SUBSCRIBED_PUSH", ThinQBadRequest),
    "1208": ("NOT_REGISTERED_SERVICE_BY_ADMIN", ThinQAuthError),
    "1209": ("NOT_REGISTERED_USER_IN_SERVICE", ThinQAuthError),
    "1210": ("NOT_REGISTERED_DEVICE_IN_SERVICE", DeviceNotFound),
    "1211": ("NOT_REGISTERED_DEVICE_BY_USER", DeviceNotFound),
    "1212": ("NOT_OWNED_DEVICE", DeviceNotFound),
    "1213": ("NOT_REGISTERED_DEVICE", DeviceNotFound),
    "1214": ("NOT_SUBSCRIBABLE_DEVICE", NotSupported),
    "1216": ("INCORRECT_HEADER", ThinQBadRequest),
    "1217": ("ALREADY_DEVICE_DELETED", DeviceNotFound),
    "1218": ("INVALID_TOKEN_AGAIN", ThinQAuthError),
    "1219": ("NOT_SUPPORTED_MODEL", NotSupported),
    "1220": ("NOT_SUPPORTED_FEATURE", NotSupported),
    "1221": ("NOT_SUPPORTED_PRODUCT", NotSupported),
    "1222": ("NOT_CONNECTED_DEVICE", DeviceOffline),
    "1223": ("INVALID_STATUS_DEVICE", CommandRefused),
    "1224": ("INVALID_DEVICE_ID", DeviceNotFound),
    "1225": ("DUPLICATE_DEVICE_ID", ThinQBadRequest),
    "1301": ("INVALID_SERVICE_KEY", ThinQAuthError),
    "1302": ("NOT_FOUND_TOKEN", ThinQAuthError),
    "1303": ("NOT_FOUND_USER", ThinQAuthError),
    "1304": ("NOT_ACCEPTABLE_TERMS", ThinQAuthError),
    "1305": ("NOT_ALLOWED_API", NotSupported),
    "1306": ("EXCEEDED_API_CALLS", RateLimited),
    "1307": ("NOT_SUPPORTED_COUNTRY", NotSupported),
    "1308": ("NO_CONTROL_AUTHORITY", CommandRefused),
    "1309": ("NOT_ALLOWED_API_AGAIN", NotSupported),
    "1310": ("NOT_SUPPORTED_DOMAIN", NotSupported),
    "1311": ("BAD_REQUEST_FORMAT", ThinQBadRequest),
    "1312": ("EXCEEDED_NUMBER_OF_EVENT_SUBSCRIPTION", RateLimited),
    "2000": ("INTERNAL_SERVER_ERROR", ThinQServerError),
    "2101": ("NOT_SUPPORTED_MODEL_AGAIN", NotSupported),
    "2201": ("NOT_PROVIDED_FEATURE", NotSupported),
    "2202": ("NOT_SUPPORTED_PRODUCT_AGAIN", NotSupported),
    "2203": ("NOT_EXISTENT_MODEL_JSON", NotSupported),
    "2205": ("INVALID_DEVICE_STATUS", CommandRefused),
    "2207": ("INVALID_COMMAND_ERROR", CommandRefused),
    "2208": ("FAIL_DEVICE_CONTROL", ThinQServerError),
    "2209": ("DEVICE_RESPONSE_DELAY", ThinQServerError),
    "2210": ("RETRY_REQUEST", ThinQServerError),
    "2212": ("SYNCING", ThinQServerError),
    "2213": ("RETRY_AFTER_DELETING_DEVICE", CommandRefused),
    "2214": ("FAIL_REQUEST", ThinQServerError),
    "2301": ("COMMAND_NOT_SUPPORTED_IN_REMOTE_OFF", CommandRefused),
    "2302": ("COMMAND_NOT_SUPPORTED_IN_STATE", CommandRefused),
    "2303": ("COMMAND_NOT_SUPPORTED_IN_ERROR", CommandRefused),
    "2304": ("COMMAND_NOT_SUPPORTED_IN_POWER_OFF", CommandRefused),
    "2305": ("COMMAND_NOT_SUPPORTED_IN_MODE", CommandRefused),
}

# Codes after which the same idempotent read may simply be tried again.
RETRYABLE_CODES = frozenset({"0000", "2000", "2209", "2210", "2212", "2214"})


def error_name(code: str) -> str:
    return _CODES.get(code, ("UNLISTED_ERROR", ThinQError))[0]


def error_for(code: str, message: str, http_status: int | None = None) -> ThinQError:
    """The typed exception for an LG error code; unknown codes fall back by family/HTTP status."""
    entry = _CODES.get(code)
    if entry is not None:
        return entry[1](code, message, http_status)
    if http_status is not None and http_status >= 500:
        return ThinQServerError(code, message, http_status)
    if http_status in (401, 403):
        return ThinQAuthError(code, message, http_status)
    return ThinQError(code, message, http_status)
