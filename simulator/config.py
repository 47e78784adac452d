"""Simulator settings, and the one place that reads the environment."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from devstack.credentials import (
    demo_becon_credentials,
    demo_oauth_client_secret,
    load_or_create_demo_credentials,
)

DEMO_USER = "demo"
NEIGHBOUR_USER = "neighbour"


@dataclass(frozen=True)
class OAuthClient:
    """A partner registered at the membership-login stand-in (simulator/oauth.py)."""

    secret: str = field(repr=False)
    redirect_uris: tuple[str, ...] = ()


@dataclass(kw_only=True)
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8700
    # Simulated seconds per real second: 60 makes a 45-minute wash last 45 real seconds.
    time_scale: float = 60.0
    service_id: str
    # Secrets: kept out of repr so a logged config never leaks them.
    service_key: str = field(repr=False)
    tokens: dict[str, str] = field(repr=False)  # bearer token -> user id
    # Where callbacks are POSTed at start (/sim/callback-url changes it at run time).
    # Out of repr too: its query string may carry a secret.
    callback_url: str | None = field(default=None, repr=False)
    tick_seconds: float = 1.0  # real seconds between background ticks
    # The membership-login stand-in (simulator/oauth.py): client id -> client, and the
    # lifetime of the access tokens it issues (real seconds).
    oauth_clients: dict[str, OAuthClient] = field(default_factory=dict, repr=False)
    oauth_access_seconds: int = 3600
    # The one BECON Connect service (simulator/becon_api.py). Unset: the demo values
    # derived from service_key (devstack.credentials.demo_becon_credentials).
    becon_service_id: str | None = None
    becon_service_key: str | None = field(default=None, repr=False)
    becon_symmetric_key: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.time_scale) or self.time_scale < 0:
            raise ValueError("time_scale must be a finite number >= 0")
        if not math.isfinite(self.tick_seconds) or self.tick_seconds <= 0:
            raise ValueError("tick_seconds must be a finite number > 0")
        if not self.service_id or not self.service_key:
            raise ValueError("service_id and service_key must not be empty")
        if any(not token for token in self.tokens):
            raise ValueError("tokens must not be empty strings")
        if self.oauth_access_seconds <= 0:
            raise ValueError("oauth_access_seconds must be > 0")
        becon = demo_becon_credentials(self.service_key)
        self.becon_service_id = self.becon_service_id or becon.service_id
        self.becon_service_key = self.becon_service_key or becon.service_key
        self.becon_symmetric_key = self.becon_symmetric_key or becon.symmetric_key


def config_from_env() -> SimulatorConfig:
    """Build the config from SIM_* variables; demo credentials fill whatever is unset.

    SIM_NEIGHBOUR_TOKEN (optional) enables the second user, for isolation tests
    run against a live simulator. SIM_TICK_SECONDS tunes the background tick.
    """
    env = os.environ
    service_id = env.get("SIM_SERVICE_ID")
    service_key = env.get("SIM_SERVICE_KEY")
    demo_token = env.get("SIM_DEMO_TOKEN")
    if not (service_id and service_key and demo_token):
        creds = load_or_create_demo_credentials(Path(env.get("STATE_DIR", "var")))
        service_id = service_id or creds.service_id
        service_key = service_key or creds.service_key
        demo_token = demo_token or creds.demo_token
    tokens = {demo_token: DEMO_USER}
    # The assistant's OAuth client at the membership stand-in: by default the demo service
    # id and a secret derived from the demo service key (both sides can compute it), and
    # the connector's /link/callback as the one registered redirect URI.
    connector_port = env.get("CONNECTOR_PORT") or "8702"
    redirect_uris = env.get("SIM_OAUTH_REDIRECT_URIS") or (
        f"http://127.0.0.1:{connector_port}/link/callback"
    )
    oauth_client = OAuthClient(
        secret=env.get("SIM_OAUTH_CLIENT_SECRET") or demo_oauth_client_secret(service_key),
        redirect_uris=tuple(u.strip() for u in redirect_uris.split(",") if u.strip()),
    )
    neighbour_token = env.get("SIM_NEIGHBOUR_TOKEN")
    if neighbour_token:
        tokens[neighbour_token] = NEIGHBOUR_USER
    return SimulatorConfig(
        host=env.get("SIM_HOST", "127.0.0.1"),
        port=_int(env.get("SIM_PORT", "8700"), "SIM_PORT"),
        time_scale=_float(env.get("SIM_TIME_SCALE", "60"), "SIM_TIME_SCALE"),
        service_id=service_id,
        service_key=service_key,
        tokens=tokens,
        callback_url=env.get("SIM_CALLBACK_URL") or None,
        tick_seconds=_float(env.get("SIM_TICK_SECONDS", "1"), "SIM_TICK_SECONDS"),
        oauth_clients={env.get("SIM_OAUTH_CLIENT_ID") or service_id: oauth_client},
        oauth_access_seconds=_int(
            env.get("SIM_OAUTH_ACCESS_TOKEN_SECONDS", "3600"), "SIM_OAUTH_ACCESS_TOKEN_SECONDS"
        ),
        # Unset: derived from the demo service key (see SimulatorConfig.__post_init__).
        becon_service_id=env.get("SIM_BECON_SERVICE_ID") or None,
        becon_service_key=env.get("SIM_BECON_SERVICE_KEY") or None,
        becon_symmetric_key=env.get("SIM_BECON_SYMMETRIC_KEY") or None,
    )


def _int(raw: str, name: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _float(raw: str, name: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
