"""LG's ThinQ error table as the simulator answers it.

Codes and SDK names come from LG's SDK enum (facts sheet §1.7). LG documents the
HTTP status of only a few rows; the rest are our choice, grouped so a client
can tell "your credentials are wrong" (401) from "no such device" (404) from
"the device refused" (400):

* 1103 invalid token syntax -> 400 (documented); 1203, 1301, 1302 -> 401;
* 1201 (documented), 1205 and 1212 -> 404;
* every other 1xxx and every 2xxx device/command error -> 400;
* 0000 and 2000 -> 500.
"""

from __future__ import annotations

# code -> (SDK name, HTTP status). Messages are derived below.
_TABLE: dict[str, tuple[str, int]] = {
    "0000": ("UNKNOWN_ERROR", 500),
    "1000": ("BAD_REQUEST", 400),
    "1101": ("MISSING_PARAMETERS", 400),
    "1102": ("UNACCEPTABLE_PARAMETERS", 400),
    "1103": ("INVALID_TOKEN", 400),
    "1104": ("INVALID_MESSAGE_ID", 400),
    "1201": ("NOT_REGISTERED_ADMIN", 404),
    "1202": ("NOT_REGISTERED_USER", 400),
    "1203": ("NOT_REGISTERED_SERVICE", 401),
    "1204": ("NOT_SUBSCRIBED_EVENT", 400),
    "1205": ("NOT_EXIST_DEVICE", 404),
    "1206": ("NOT_SUBSCRIBED_PUSH", 400),
    "1207": ("ALREADY_SUBSCRIBED_PUSH", 400),
    "1208": ("NOT_REGISTERED_SERVICE_BY_ADMIN", 400),
    "1209": ("NOT_REGISTERED_USER_IN_SERVICE", 400),
    "1210": ("NOT_REGISTERED_DEVICE_IN_SERVICE", 400),
    "1211": ("NOT_REGISTERED_DEVICE_BY_USER", 400),
    "1212": ("NOT_OWNED_DEVICE", 404),
    "1213": ("NOT_REGISTERED_DEVICE", 400),
    "1214": ("NOT_SUBSCRIBABLE_DEVICE", 400),
    "1216": ("INCORRECT_HEADER", 400),
    "1217": ("ALREADY_DEVICE_DELETED", 400),
    "1218": ("INVALID_TOKEN_AGAIN", 400),
    "1219": ("NOT_SUPPORTED_MODEL", 400),
    "1220": ("NOT_SUPPORTED_FEATURE", 400),
    "1221": ("NOT_SUPPORTED_PRODUCT", 400),
    "1222": ("NOT_CONNECTED_DEVICE", 400),
    "1223": ("INVALID_STATUS_DEVICE", 400),
    "1224": ("INVALID_DEVICE_ID", 400),
    "1225": ("DUPLICATE_DEVICE_ID", 400),
    "1301": ("INVALID_SERVICE_KEY", 401),
    "1302": ("NOT_FOUND_TOKEN", 401),
    "1303": ("NOT_FOUND_USER", 400),
    "1304": ("NOT_ACCEPTABLE_TERMS", 400),
    "1305": ("NOT_ALLOWED_API", 400),
    "1306": ("EXCEEDED_API_CALLS", 400),
    "1307": ("NOT_SUPPORTED_COUNTRY", 400),
    "1308": ("NO_CONTROL_AUTHORITY", 400),
    "1309": ("NOT_ALLOWED_API_AGAIN", 400),
    "1310": ("NOT_SUPPORTED_DOMAIN", 400),
    "1311": ("BAD_REQUEST_FORMAT", 400),
    "1312": ("EXCEEDED_NUMBER_OF_EVENT_SUBSCRIPTION", 400),
    "2000": ("INTERNAL_SERVER_ERROR", 500),
    "2101": ("NOT_SUPPORTED_MODEL_AGAIN", 400),
    "2201": ("NOT_PROVIDED_FEATURE", 400),
    "2202": ("NOT_SUPPORTED_PRODUCT_AGAIN", 400),
    "2203": ("NOT_EXISTENT_MODEL_JSON", 400),
    "2205": ("INVALID_DEVICE_STATUS", 400),
    "2207": ("INVALID_COMMAND_ERROR", 400),
    "2208": ("FAIL_DEVICE_CONTROL", 400),
    "2209": ("DEVICE_RESPONSE_DELAY", 400),
    "2210": ("RETRY_REQUEST", 400),
    "2212": ("SYNCING", 400),
    "2213": ("RETRY_AFTER_DELETING_DEVICE", 400),
    "2214": ("FAIL_REQUEST", 400),
    "2301": ("COMMAND_NOT_SUPPORTED_IN_REMOTE_OFF", 400),
    "2302": ("COMMAND_NOT_SUPPORTED_IN_STATE", 400),
    "2303": ("COMMAND_NOT_SUPPORTED_IN_ERROR", 400),
    "2304": ("COMMAND_NOT_SUPPORTED_IN_POWER_OFF", 400),
    "2305": ("COMMAND_NOT_SUPPORTED_IN_MODE", 400),
}


def _message(name: str) -> str:
    # LG's documented texts are the SDK names in sentence case
    # ("Missing parameters", "Invalid token"), so the rest follow suit.
    return name.replace("_", " ").capitalize()


# code -> (SDK name, message, HTTP status)
ERRORS: dict[str, tuple[str, str, int]] = {
    code: (name, _message(name), status) for code, (name, status) in _TABLE.items()
}


class ThinQError(Exception):
    """A ThinQ failure answered as ``{"error": {"code", "message"}}``.

    ``detail`` is appended to the table's message to say what exactly was wrong
    (the missing header, the bad property). It must never contain secrets.
    ``status`` overrides the table's HTTP status (used only for unknown routes).
    """

    def __init__(self, code: str, detail: str | None = None, status: int | None = None) -> None:
        if code not in ERRORS:
            raise ValueError(f"unknown ThinQ error code {code!r}")
        super().__init__(f"{code} {detail or ''}".strip())
        self.code = code
        self.detail = detail
        self._status = status

    @property
    def name(self) -> str:
        return ERRORS[self.code][0]

    @property
    def message(self) -> str:
        base = ERRORS[self.code][1]
        return f"{base}: {self.detail}" if self.detail else base

    @property
    def status(self) -> int:
        return self._status if self._status is not None else ERRORS[self.code][2]
