"""Placeholder for the BECON Connect (commercial HVAC) simulation.

BECON is a later issue. When it comes, this module holds the demo site of the
contract (§4: site HQ, gateway GW01, five facilities) and its state rules, a
``becon_api.py`` beside ``thinq_api.py`` serves the real ``/tms/v1.0/connect``
paths, and ``/sim/becon/facilities`` (already routed) lists ``facilities()``.
"""

from __future__ import annotations

from typing import Any


class BeconSite:
    def facilities(self) -> list[dict[str, Any]]:
        """``{"siteCode", "gwId", "facilityType", "facilityId", "name", "state"}`` entries."""
        return []

    def reset(self) -> None:
        """Back to the contract's initial facility states (nothing to do yet)."""
