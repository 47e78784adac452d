"""The simulated BECON Connect cloud: the contract's demo site and the tokens it issued.

The site (demo-stack.md §4, a fixed contract): site ``HQ`` ("Headquarters"), gateway
``GW01``, five facilities with their initial state. State uses the contract's
(canonical) keys and values; ``becon_api.py`` translates them to the wire with
``lgcloud.becon_fields``.

Which keys each facility type has follows the contract table, where "-" means the key
does not exist: IDU has all five, VENT and AIRCARE only ``power`` and ``fanSpeed``.
``currentTemperature`` is read-only. The other four documented types (ODU, AWHP, AHU,
CHILLER) are valid in paths, but the demo site has none of them.

Ours, beyond the contract (for tests): a second site ``BRANCH`` exists in the simulated
cloud but is not granted to our service, so its paths answer 403; ``GET /site`` does
not list it and ``/sim/becon/facilities`` shows nothing of it.

Time here is real (wall-clock) time, ``now``, not the simulated appliance clock, as in
``oauth.py``: the client compares ``expiresIn`` with its own clock. Tests replace
``BeconSite.now``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from lgcloud import becon_fields as f
from simulator.profile import as_decimal, plain_number

SITE_CODE = "HQ"
SITE_NAME = "Headquarters"
GW_ID = "GW01"

# Facility type -> its state keys (contract §4; "-" = the key does not exist).
FACILITY_KEYS: dict[str, tuple[str, ...]] = {
    "IDU": (f.POWER, f.OPERATION_MODE, f.SET_TEMPERATURE, f.CURRENT_TEMPERATURE, f.FAN_SPEED),
    "VENT": (f.POWER, f.FAN_SPEED),
    "AIRCARE": (f.POWER, f.FAN_SPEED),
}
READ_ONLY_KEYS = frozenset({f.CURRENT_TEMPERATURE})
ENUMS: dict[str, tuple[str, ...]] = {
    f.POWER: f.POWER_VALUES,
    f.OPERATION_MODE: f.OPERATION_MODES,
    f.FAN_SPEED: f.FAN_SPEEDS,
}
TEMPERATURE_MIN = Decimal(16)
TEMPERATURE_MAX = Decimal(30)
TEMPERATURE_STEP = Decimal("0.5")

TOKEN_SECONDS = 24 * 3600  # LG: a token lasts one day
SERVER_TIME_MAX_AGE = 5 * 60  # ours: a signed server time older than this is refused
FORGET_EXPIRED_AFTER = 24 * 3600  # expired tokens are remembered this long (for the message)


@dataclass(frozen=True)
class FacilitySpec:
    facility_type: str
    facility_id: str
    name: str
    initial: Mapping[str, Any]


def _idu(
    fid: str, name: str, power: str, setpoint: float, current: float, fan: str
) -> FacilitySpec:
    return FacilitySpec(
        "IDU",
        fid,
        name,
        {
            f.POWER: power,
            f.OPERATION_MODE: "COOL",
            f.SET_TEMPERATURE: setpoint,
            f.CURRENT_TEMPERATURE: current,
            f.FAN_SPEED: fan,
        },
    )


# The contract table, in its order.
DEMO_FACILITIES: tuple[FacilitySpec, ...] = (
    _idu("IDU-301", "Meeting Room 3F", "OFF", 24, 26.5, "AUTO"),
    _idu("IDU-101", "Lobby", "ON", 22, 23, "MID"),
    _idu("IDU-201", "Office 2F", "ON", 23, 24.5, "LOW"),
    FacilitySpec("VENT", "VENT-001", "Ventilation 1", {f.POWER: "ON", f.FAN_SPEED: "LOW"}),
    FacilitySpec("AIRCARE", "AIRCARE-001", "Lobby Purifier", {f.POWER: "ON", f.FAN_SPEED: "AUTO"}),
)


class BeconProblem(Exception):
    """A refused BECON request: HTTP status, error code (becon_fields) and a message that
    names the problem (never a secret)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Facility:
    spec: FacilitySpec
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def facility_type(self) -> str:
        return self.spec.facility_type

    @property
    def facility_id(self) -> str:
        return self.spec.facility_id

    def reset(self) -> None:
        self.state = dict(self.spec.initial)


@dataclass
class Gateway:
    gw_id: str
    facilities: dict[str, Facility] = field(default_factory=dict)  # facility id -> facility


@dataclass
class Site:
    code: str
    name: str
    granted: bool  # may our service access it?
    gateways: dict[str, Gateway] = field(default_factory=dict)


def check_facility_type(facility_type: str) -> str:
    if facility_type not in f.FACILITY_TYPES:
        raise BeconProblem(
            400,
            f.INVALID_FACILITY_TYPE,
            f"facility type {facility_type!r} is not one of {', '.join(f.FACILITY_TYPES)}",
        )
    return facility_type


def check_change(facility_type: str, key: str, value: Any) -> Any:
    """The value to store for ``key`` on a facility of ``facility_type``, or BeconProblem.

    Messages name keys and values as they travel on the wire."""
    name = f.wire_key(key)
    if key not in FACILITY_KEYS.get(facility_type, ()):
        raise BeconProblem(400, f.UNKNOWN_KEY, f"{facility_type} has no state key {name!r}")
    if key in READ_ONLY_KEYS:
        raise BeconProblem(400, f.READ_ONLY_KEY, f"{name} is read-only")
    if key in ENUMS:
        if not isinstance(value, str) or value not in ENUMS[key]:
            allowed = ", ".join(str(v) for v in f.wire_values(key))
            shown = f.wire_value(key, value) if isinstance(value, str) else value
            raise BeconProblem(400, f.INVALID_VALUE, f"{name} {shown!r} is not one of {allowed}")
        return value
    if key == f.SET_TEMPERATURE:
        number = as_decimal(value)
        if number is None:
            raise BeconProblem(400, f.INVALID_VALUE, f"{name} must be a number, got {value!r}")
        if not TEMPERATURE_MIN <= number <= TEMPERATURE_MAX:
            raise BeconProblem(
                400,
                f.INVALID_VALUE,
                f"{name} {number} is outside {TEMPERATURE_MIN}..{TEMPERATURE_MAX}",
            )
        if (number - TEMPERATURE_MIN) % TEMPERATURE_STEP != 0:
            raise BeconProblem(
                400,
                f.INVALID_VALUE,
                f"{name} {number} is not a multiple of {TEMPERATURE_STEP}",
            )
        return plain_number(number)
    raise BeconProblem(400, f.UNKNOWN_KEY, f"{name} cannot be set")  # pragma: no cover


@dataclass
class _Issued:
    service_id: str
    expires_at: float


class BeconTokens:
    """Tokens issued to services, kept only as SHA-256 digests."""

    def __init__(self) -> None:
        self.lifetime_seconds: float = TOKEN_SECONDS
        self._issued: dict[str, _Issued] = {}

    def issue(self, service_id: str, now: float) -> tuple[str, int]:
        """A new token and its lifetime in whole seconds."""
        for digest in [
            d for d, t in self._issued.items() if t.expires_at + FORGET_EXPIRED_AFTER < now
        ]:
            del self._issued[digest]
        token = secrets.token_urlsafe(32)
        self._issued[_digest(token)] = _Issued(service_id, now + self.lifetime_seconds)
        return token, int(self.lifetime_seconds)

    def check(self, token: str, service_id: str, now: float) -> None:
        issued = self._issued.get(_digest(token))
        if issued is None or not hmac.compare_digest(
            issued.service_id.encode(), service_id.encode()
        ):
            raise BeconProblem(401, f.INVALID_TOKEN, f"{f.HEADER_TOKEN} is not a token we issued")
        if now >= issued.expires_at:
            raise BeconProblem(401, f.TOKEN_EXPIRED, f"{f.HEADER_TOKEN} has expired")

    def expire_all(self, now: float) -> int:
        """Expire every live token now; answers how many there were."""
        live = [t for t in self._issued.values() if t.expires_at > now]
        for issued in live:
            issued.expires_at = now
        return len(live)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class BeconSite:
    """The simulated BECON cloud: its sites (the demo one granted to us) and its tokens.

    ``reset`` restores the contract's facility states; issued tokens survive it (a reset
    between tests must not log a connected client out).
    """

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self.tokens = BeconTokens()
        hq = Gateway(GW_ID, {s.facility_id: Facility(s) for s in DEMO_FACILITIES})
        self.sites: dict[str, Site] = {
            SITE_CODE: Site(SITE_CODE, SITE_NAME, True, {GW_ID: hq}),
            # Ours: another partner's site, so a 403 can be exercised.
            "BRANCH": Site("BRANCH", "Branch Office", False, {GW_ID: Gateway(GW_ID)}),
        }
        self.reset()

    # --- /sim ---------------------------------------------------------------------------

    def facilities(self) -> list[dict[str, Any]]:
        """``{"siteCode", "gwId", "facilityType", "facilityId", "name", "state"}`` entries
        for every facility of the sites our service may access (contract §5)."""
        return [
            {
                "siteCode": site.code,
                "gwId": gateway.gw_id,
                "facilityType": facility.facility_type,
                "facilityId": facility.facility_id,
                "name": facility.spec.name,
                "state": dict(facility.state),
            }
            for site in self.sites.values()
            if site.granted
            for gateway in site.gateways.values()
            for facility in gateway.facilities.values()
        ]

    def reset(self) -> None:
        """Every facility back to the contract's initial state (tokens are kept)."""
        for site in self.sites.values():
            for gateway in site.gateways.values():
                for facility in gateway.facilities.values():
                    facility.reset()

    # --- lookups (raise BeconProblem) ---------------------------------------------------

    def granted_sites(self) -> list[Site]:
        return [site for site in self.sites.values() if site.granted]

    def site(self, site_code: str) -> Site:
        site = self.sites.get(site_code)
        if site is None:
            raise BeconProblem(404, f.SITE_NOT_FOUND, f"no site {site_code!r}")
        if not site.granted:
            raise BeconProblem(
                403, f.SITE_FORBIDDEN, f"this service may not access site {site_code!r}"
            )
        return site

    def gateway(self, site_code: str, gw_id: str) -> Gateway:
        gateway = self.site(site_code).gateways.get(gw_id)
        if gateway is None:
            raise BeconProblem(
                404, f.GATEWAY_NOT_FOUND, f"no gateway {gw_id!r} at site {site_code!r}"
            )
        return gateway

    def facility(
        self, site_code: str, gw_id: str, facility_type: str, facility_id: str
    ) -> Facility:
        gateway = self.gateway(site_code, gw_id)
        check_facility_type(facility_type)
        facility = gateway.facilities.get(facility_id)
        if facility is None or facility.facility_type != facility_type:
            raise BeconProblem(
                404,
                f.FACILITY_NOT_FOUND,
                f"no {facility_type} {facility_id!r} at gateway {gw_id!r}",
            )
        return facility

    def listed(self, gateway: Gateway, types: Iterable[str] | None = None) -> list[Facility]:
        wanted = None if types is None else {check_facility_type(t) for t in types}
        return [
            facility
            for facility in gateway.facilities.values()
            if wanted is None or facility.facility_type in wanted
        ]

    # --- control ------------------------------------------------------------------------

    def control(
        self,
        gateway: Gateway,
        facility_type: str,
        facility_ids: list[str],
        changes: Mapping[str, Any],
    ) -> list[Facility]:
        """Set ``changes`` (canonical keys and values) on every listed facility, or nothing.

        Every id and every value is checked before anything changes (all-or-nothing).
        """
        check_facility_type(facility_type)
        targets = []
        for facility_id in facility_ids:
            facility = gateway.facilities.get(facility_id)
            if facility is None or facility.facility_type != facility_type:
                raise BeconProblem(
                    400,
                    f.UNKNOWN_FACILITY,
                    f"no {facility_type} {facility_id!r} at gateway {gateway.gw_id!r}",
                )
            targets.append(facility)
        values = {key: check_change(facility_type, key, value) for key, value in changes.items()}
        for facility in targets:
            facility.state.update(values)
        return targets
