"""Every BECON Connect wire name in one place: paths, headers, body fields, state keys, values.

Both sides import this module: the client (``lgcloud/becon.py``) and the simulator
(``simulator/becon_api.py``). Correcting a name against LG's partner documents is a
change to this file alone; both follow.

What LG documents publicly (``../shared/reference/lg-api-facts.md`` §5 and
``lg-api/becon-connect-call-sequence.txt``):

* the paths below, all under ``/tms/v1.0/connect``, and the ``facility_types`` query
  parameter of the bulk state lookup (an array of strings);
* the three request headers ``x-lgtms-service-id``, ``x-lgtms-service-key``,
  ``x-lgtms-service-token``;
* the seven facility types (IDU, ODU, VENT, AWHP, AHU, CHILLER, AIRCARE);
* the HTTP statuses: 400 invalid facility type, 401 not authorized, 403 access to the
  site denied, 404 not found, 412 required header missing, 500;
* that a token is issued for a signature built from the server time and a symmetric
  key, and lasts one day (24 h).

What LG does NOT document publicly (partner documents), so every name below in those
groups is OUR ASSUMPTION: the server-time and token bodies, the site / gateway /
facility list and state bodies, the control body and its answer, the state keys and
their values, the error body and its codes. We chose camelCase forms of LG's own path
parameter names (``site-code`` -> ``siteCode``, ``gw-id`` -> ``gwId``,
``facility_type`` -> ``facilityType``, ``facility-id`` -> ``facilityId``), which are
also the names of the contract's ``/sim/becon/facilities`` entries, and the contract's
state keys and values (demo-stack.md §4).

State keys and values have two spellings here. *Canonical* names are the contract's
(``power``, ``ON``...): our code and the simulator's model use them, and the ``/sim``
contract shows them. *Wire* names are what travels over HTTP; the tables
``WIRE_STATE_KEYS`` and ``WIRE_STATE_VALUES`` map one to the other (identity today).
So a corrected wire name changes neither the client's callers nor the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# --- Paths (documented) --------------------------------------------------------------------

BASE_PATH = "/tms/v1.0/connect"
# Relative to BASE_PATH. Placeholders use str.format / aiohttp route syntax alike.
PATH_SERVER_TIME = "/auth/servertime"
PATH_TOKEN = "/auth/token"
PATH_SITES = "/site"
PATH_GATEWAYS = "/site/{site_code}/gw"
PATH_FACILITIES = "/site/{site_code}/gw/{gw_id}/facilities"
PATH_FACILITY_STATE = "/site/{site_code}/gw/{gw_id}/facility/{facility_type}/{facility_id}/state"
PATH_FACILITIES_STATE = "/site/{site_code}/gw/{gw_id}/facilities/state"
PATH_CONTROL = "/site/{site_code}/gw/{gw_id}/facility/{facility_type}"

# Query parameter of PATH_FACILITIES_STATE (documented: an array of strings). We send it
# comma-separated (Swagger 2's default "csv"); the simulator also accepts it repeated.
QUERY_FACILITY_TYPES = "facility_types"

# --- Headers (documented) --------------------------------------------------------------------

HEADER_SERVICE_ID = "x-lgtms-service-id"
HEADER_SERVICE_KEY = "x-lgtms-service-key"
HEADER_TOKEN = "x-lgtms-service-token"

# --- Facility types (documented) -------------------------------------------------------------

FACILITY_TYPES = ("IDU", "ODU", "VENT", "AWHP", "AHU", "CHILLER", "AIRCARE")

# --- Auth bodies (assumed) -------------------------------------------------------------------

# GET /auth/servertime -> {SERVER_TIME: "20261123T211500Z"} (UTC, whole seconds).
SERVER_TIME = "serverTime"
SERVER_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
# POST /auth/token {TOKEN_SERVER_TIME: <the string signed, as received>,
#                   TOKEN_SIGNATURE: <signer(server time, symmetric key)>}
TOKEN_SERVER_TIME = "serverTime"
TOKEN_SIGNATURE = "signature"
# -> {TOKEN: "...", TOKEN_EXPIRES_IN: <seconds>}
TOKEN = "token"
TOKEN_EXPIRES_IN = "expiresIn"

# --- Lists and states (assumed) ----------------------------------------------------------------

# GET /site -> {SITES: [{SITE_CODE, SITE_NAME}]}
SITES = "sites"
SITE_CODE = "siteCode"
SITE_NAME = "name"
# GET /site/{site}/gw -> {GATEWAYS: [{GW_ID, SITE_CODE}]}
GATEWAYS = "gateways"
GW_ID = "gwId"
# GET …/facilities -> {FACILITIES: [{FACILITY_TYPE, FACILITY_ID, FACILITY_NAME}]}
FACILITIES = "facilities"
FACILITY_TYPE = "facilityType"
FACILITY_ID = "facilityId"
FACILITY_NAME = "name"
# GET …/facility/{type}/{id}/state -> {SITE_CODE, GW_ID, FACILITY_TYPE, FACILITY_ID, STATE}
# GET …/facilities/state -> {FACILITIES: [{FACILITY_TYPE, FACILITY_ID, STATE}]}
STATE = "state"

# --- Control (assumed) --------------------------------------------------------------------------

# PUT …/facility/{type} {CONTROL_FACILITY_IDS: ["IDU-301"], CONTROL_VALUES: {<wire key>: value}}
CONTROL_FACILITY_IDS = "facilityIds"
CONTROL_VALUES = "control"
# -> {CONTROL_RESULTS: [{RESULT_FACILITY_ID, RESULT_SUCCESS: true}]}
CONTROL_RESULTS = "results"
RESULT_FACILITY_ID = "facilityId"
RESULT_SUCCESS = "success"

# --- Errors (assumed) ----------------------------------------------------------------------------

# Any failure: {ERROR: {ERROR_CODE: "INVALID_VALUE", ERROR_MESSAGE: "setTemperature 35 is …"}}
ERROR = "error"
ERROR_CODE = "code"
ERROR_MESSAGE = "message"

# Our error codes (LG's BECON error-code table is not public). The HTTP status is what
# LG documents and what a client should branch on; the code says which check failed.
MISSING_HEADER = "MISSING_HEADER"  # 412
UNAUTHORIZED_SERVICE = "UNAUTHORIZED_SERVICE"  # 401: unknown service id or wrong key
INVALID_SIGNATURE = "INVALID_SIGNATURE"  # 401
SERVER_TIME_EXPIRED = "SERVER_TIME_EXPIRED"  # 401: signed time too old or in the future
INVALID_TOKEN = "INVALID_TOKEN"  # 401
TOKEN_EXPIRED = "TOKEN_EXPIRED"  # 401
SITE_FORBIDDEN = "SITE_FORBIDDEN"  # 403
SITE_NOT_FOUND = "SITE_NOT_FOUND"  # 404
GATEWAY_NOT_FOUND = "GATEWAY_NOT_FOUND"  # 404
FACILITY_NOT_FOUND = "FACILITY_NOT_FOUND"  # 404
NOT_FOUND = "NOT_FOUND"  # 404: no such path
METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"  # 405
INVALID_FACILITY_TYPE = "INVALID_FACILITY_TYPE"  # 400
INVALID_BODY = "INVALID_BODY"  # 400: not JSON, wrong shape, missing field
UNKNOWN_FACILITY = "UNKNOWN_FACILITY"  # 400: a control names a facility not there
UNKNOWN_KEY = "UNKNOWN_KEY"  # 400: a key the facility type does not have
READ_ONLY_KEY = "READ_ONLY_KEY"  # 400
INVALID_VALUE = "INVALID_VALUE"  # 400: unknown enum value, out of range, off step
INTERNAL_ERROR = "INTERNAL_ERROR"  # 500

# --- State keys and values: canonical (contract) -> wire (assumed) ------------------------------

POWER = "power"
OPERATION_MODE = "operationMode"
SET_TEMPERATURE = "setTemperature"
CURRENT_TEMPERATURE = "currentTemperature"
FAN_SPEED = "fanSpeed"

POWER_VALUES = ("ON", "OFF")
OPERATION_MODES = ("COOL", "HEAT", "FAN", "DRY", "AUTO")
FAN_SPEEDS = ("LOW", "MID", "HIGH", "AUTO")

WIRE_STATE_KEYS: dict[str, str] = {
    POWER: "power",
    OPERATION_MODE: "operationMode",
    SET_TEMPERATURE: "setTemperature",
    CURRENT_TEMPERATURE: "currentTemperature",
    FAN_SPEED: "fanSpeed",
}
# Enumerated keys only; numbers travel as JSON numbers.
WIRE_STATE_VALUES: dict[str, dict[str, Any]] = {
    POWER: {"ON": "ON", "OFF": "OFF"},
    OPERATION_MODE: {mode: mode for mode in OPERATION_MODES},
    FAN_SPEED: {speed: speed for speed in FAN_SPEEDS},
}

_CANONICAL_KEYS = {wire: key for key, wire in WIRE_STATE_KEYS.items()}
_CANONICAL_VALUES = {
    key: {wire: value for value, wire in values.items()}
    for key, values in WIRE_STATE_VALUES.items()
}
_UNMAPPED = object()


def wire_key(key: str) -> str:
    """The wire name of a canonical state key (unknown keys pass unchanged)."""
    return WIRE_STATE_KEYS.get(key, key)


def canonical_key(wire: str) -> str | None:
    """The canonical state key a wire key stands for, or None when there is none."""
    return _CANONICAL_KEYS.get(wire)


def wire_value(key: str, value: Any) -> Any:
    """The wire form of a canonical value of ``key`` (numbers and unknowns pass unchanged)."""
    values = WIRE_STATE_VALUES.get(key)
    if values is None or not isinstance(value, str):
        return value
    return values.get(value, value)


def is_enumerated(key: str) -> bool:
    return key in WIRE_STATE_VALUES


def canonical_value(key: str, wire: Any) -> tuple[bool, Any]:
    """``(True, canonical value)``, or ``(False, wire)`` when an enumerated key has no such
    wire value. Keys that are not enumerated (numbers) pass unchanged."""
    values = _CANONICAL_VALUES.get(key)
    if values is None:
        return True, wire
    if not isinstance(wire, str):
        return False, wire
    found = values.get(wire, _UNMAPPED)
    return (False, wire) if found is _UNMAPPED else (True, found)


def wire_values(key: str) -> list[Any]:
    """Every wire value an enumerated canonical key accepts (for error messages)."""
    return list(WIRE_STATE_VALUES.get(key, {}).values())


def state_to_wire(state: Mapping[str, Any]) -> dict[str, Any]:
    """A canonical state (or control) object in wire names and values."""
    return {wire_key(key): wire_value(key, value) for key, value in state.items()}


def state_from_wire(wire: Mapping[str, Any]) -> dict[str, Any]:
    """A wire state in canonical names. Tolerant: keys and values we do not map (LG may
    send more than we know) are kept as they came."""
    state: dict[str, Any] = {}
    for name, value in wire.items():
        key = canonical_key(name) or name
        state[key] = canonical_value(key, value)[1]
    return state
