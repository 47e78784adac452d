"""Every setting the assistant reads from the environment, in one place.

Nothing else in the project calls ``os.environ`` for configuration; processes
build a :class:`Settings` once with :func:`load_settings` and pass it down.

Demo mode is on when no ThinQ service id is configured: the assistant then
talks to the bundled LG cloud simulator with the demo credentials that
``devstack`` generates into the state directory (never committed to git).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from lgcloud.circuit import LgCircuit

REGIONS = ("kic", "eic", "aic")
PHASES = ("OP", "QA")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message says which and why."""


@dataclass(frozen=True)
class ThinQSettings:
    """How to reach the ThinQ Connect API (or the simulator standing in for it)."""

    base_url: str
    service_id: str
    service_key: str = field(repr=False)
    default_country: str
    region: str
    phase: str
    timeout_seconds: float
    # After this many failures in a row (timeouts, refused connections, HTTP 5xx) LG is
    # not called for circuit_open_seconds: users hear "can't reach LG" at once.
    circuit_threshold: int = 5
    circuit_open_seconds: float = 30.0

    def circuit(self) -> LgCircuit:
        return LgCircuit(self.circuit_threshold, self.circuit_open_seconds)


@dataclass(frozen=True)
class TelegramSettings:
    """The Telegram bot (connector/telegram.py): Bot API access and the webhook's secret.

    Both secrets unset (the default) leave the channel off: its webhook answers 503.
    """

    # The bot's token from @BotFather; it is part of every Bot API URL, so those URLs
    # are never logged.
    bot_token: str | None = field(default=None, repr=False)
    # The secret_token given to setWebhook; Telegram sends it in a header on every update.
    webhook_secret: str | None = field(default=None, repr=False)
    api_url: str = "https://api.telegram.org"
    timeout_seconds: float = 10.0

    def missing(self) -> str | None:
        """Why the channel cannot run (names the unset variables), or None."""
        unset = [
            name
            for name, value in (
                ("TELEGRAM_BOT_TOKEN", self.bot_token),
                ("TELEGRAM_WEBHOOK_SECRET", self.webhook_secret),
            )
            if not value
        ]
        if not unset:
            return None
        return f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set"


@dataclass(frozen=True)
class ConnectorSettings:
    """The proactive-message connector: LG's callback receiver and the delivery workers."""

    host: str
    port: int
    # Shared secret LG must present (the ``secret`` query parameter of the registered
    # callback URL). None outside demo mode until configured: the receiver refuses to start.
    callback_secret: str | None = field(repr=False)
    # Redis for the delivery queue (streams + consumer groups); None: in-process queue.
    redis_url: str | None
    # Where the Rasa "callback" channel's messages go (Rasa reads the same variable).
    callback_url: str | None
    # Rasa's HTTP API, to record delivered notifications in the conversation history.
    rasa_url: str | None
    rasa_token: str | None = field(repr=False)
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    reclaim_after_seconds: float
    send_timeout_seconds: float
    # Prefix of the connector's Redis keys, so deployments (and test runs) sharing one
    # Redis database keep apart.
    redis_prefix: str = "lgconn"
    telegram: TelegramSettings = field(default_factory=TelegramSettings)


@dataclass(frozen=True)
class OAuthSettings:
    """Account linking through LG's membership login (OAuth; see assistant/linking.py).

    In demo mode every value defaults to the simulator's stand-in and the connector's
    ``/link/callback``; outside it linking is off until all five URLs/credentials are set.
    """

    authorize_url: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    # Never logged, kept out of repr.
    client_secret: str | None = field(default=None, repr=False)
    # Our /link/callback as registered at LG (the redirect_uri).
    callback_url: str | None = None
    # A token expiring within this many seconds is refreshed before it is used.
    refresh_margin_seconds: float = 300.0
    # How long a link the assistant hands out stays valid.
    request_ttl_seconds: float = 600.0
    timeout_seconds: float = 5.0

    def missing(self) -> str | None:
        """Why linking cannot run (names the unset variables), or None."""
        unset = [
            name
            for name, value in (
                ("LG_OAUTH_AUTHORIZE_URL", self.authorize_url),
                ("LG_OAUTH_TOKEN_URL", self.token_url),
                ("LG_OAUTH_CLIENT_ID", self.client_id),
                ("LG_OAUTH_CLIENT_SECRET", self.client_secret),
                ("LINK_CALLBACK_URL", self.callback_url),
            )
            if not value
        ]
        return f"{', '.join(unset)} not set" if unset else None


@dataclass(frozen=True)
class Settings:
    demo_mode: bool
    state_dir: Path
    database_url: str
    token_key_file: Path
    token_encryption_key: str | None = field(repr=False)
    thinq: ThinQSettings
    demo_thinq_user: str
    demo_thinq_token: str | None = field(repr=False)
    device_list_ttl_seconds: int
    profile_ttl_seconds: int
    simulator_url: str
    connector: ConnectorSettings
    oauth: OAuthSettings = field(default_factory=OAuthSettings)
    # The chat widget (its notify secret is what the connector needs of it).
    # How long "how is everything at home?" waits for every device's answer (v2 API).
    placement_timeout_seconds: float = 4.0
    widget: WidgetSettings | None = None
    becon: BeconSettings | None = None  # BECON Connect (commercial HVAC); None: not configured
    # The BECON site every new demo sender manages (demo-stack.md §2); None outside demo mode.
    demo_becon_site: str | None = None
    # Event subscriptions and their renewer (connector/renewer.py); defined at the end.
    events: EventSettings = field(default_factory=lambda: EventSettings())


def thinq_base_url(region: str, phase: str) -> str:
    """LG's partner ("ext") host for a region and server phase (facts sheet §1.1)."""
    region = region.lower()
    if region not in REGIONS:
        raise SettingsError(f"THINQ_REGION must be one of {', '.join(REGIONS)}; got {region!r}")
    phase = phase.upper()
    if phase not in PHASES:
        raise SettingsError(f"THINQ_PHASE must be OP or QA; got {phase!r}")
    infix = "-qa" if phase == "QA" else ""
    return f"https://{region}{infix}-ext.lgthinq.com"


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"expected a boolean (1/0, true/false), got {value!r}")


def _positive_number(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number; got {raw!r}") from exc
    if value <= 0:
        raise SettingsError(f"{name} must be positive; got {raw!r}")
    return value


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    state_dir = Path(env.get("STATE_DIR") or "var").resolve()

    service_id = env.get("THINQ_SERVICE_ID", "")
    demo_mode = _flag(env.get("DEMO_MODE"), default=not service_id)
    simulator_url = env.get("SIMULATOR_URL") or "http://127.0.0.1:8700"

    region = (env.get("THINQ_REGION") or "aic").lower()
    phase = (env.get("THINQ_PHASE") or "OP").upper()
    if env.get("THINQ_BASE_URL"):
        base_url = env["THINQ_BASE_URL"].rstrip("/")
    elif demo_mode:
        base_url = simulator_url.rstrip("/")
    else:
        base_url = thinq_base_url(region, phase)

    service_key = env.get("THINQ_SERVICE_KEY", "")
    demo_token = env.get("DEMO_THINQ_TOKEN") or None
    if demo_mode and not (service_id and service_key and demo_token):
        # The demo credentials are random per machine and live outside git.
        from devstack.credentials import load_or_create_demo_credentials

        creds = load_or_create_demo_credentials(state_dir)
        service_id = service_id or creds.service_id
        service_key = service_key or creds.service_key
        demo_token = demo_token or creds.demo_token
    if not demo_mode and not (service_id and service_key):
        raise SettingsError(
            "THINQ_SERVICE_ID and THINQ_SERVICE_KEY are required outside demo mode "
            "(they are the SERVICE_CONFIG values LG issues to a partner)"
        )

    country = (env.get("THINQ_COUNTRY") or "US").upper()
    if len(country) != 2 or not country.isalpha():
        raise SettingsError(f"THINQ_COUNTRY must be an ISO 3166 alpha-2 code; got {country!r}")

    thinq = ThinQSettings(
        base_url=base_url,
        service_id=service_id,
        service_key=service_key,
        default_country=country,
        region=region,
        phase=phase,
        timeout_seconds=_positive_number(env, "THINQ_TIMEOUT_SECONDS", 5.0),
        circuit_threshold=int(_positive_number(env, "LG_CIRCUIT_THRESHOLD", 5)),
        circuit_open_seconds=_positive_number(env, "LG_CIRCUIT_OPEN_SECONDS", 30.0),
    )
    connector = ConnectorSettings(
        host=env.get("CONNECTOR_HOST") or "127.0.0.1",
        port=int(_positive_number(env, "CONNECTOR_PORT", 8702)),
        callback_secret=env.get("LG_CALLBACK_SECRET")
        or (demo_callback_secret(service_key) if demo_mode else None),
        redis_url=env.get("REDIS_URL") or None,
        callback_url=env.get("CALLBACK_URL") or None,
        rasa_url=(env.get("RASA_URL") or "").rstrip("/") or None,
        rasa_token=env.get("RASA_TOKEN") or None,
        max_attempts=int(_positive_number(env, "DELIVERY_MAX_ATTEMPTS", 8)),
        retry_base_seconds=_positive_number(env, "DELIVERY_RETRY_BASE_SECONDS", 1.0),
        retry_max_seconds=_positive_number(env, "DELIVERY_RETRY_MAX_SECONDS", 300.0),
        reclaim_after_seconds=_positive_number(env, "DELIVERY_RECLAIM_AFTER_SECONDS", 30.0),
        send_timeout_seconds=_positive_number(env, "DELIVERY_SEND_TIMEOUT_SECONDS", 5.0),
        redis_prefix=env.get("CONNECTOR_REDIS_PREFIX") or "lgconn",
        telegram=load_telegram_settings(env),
    )
    database_url = load_database_url(env)
    becon = load_becon_settings({**env, "THINQ_SERVICE_KEY": service_key})
    return Settings(
        demo_mode=demo_mode,
        state_dir=state_dir,
        database_url=database_url,
        token_key_file=state_dir / "token-encryption.key",
        token_encryption_key=env.get("TOKEN_ENCRYPTION_KEY") or None,
        thinq=thinq,
        demo_thinq_user=env.get("DEMO_THINQ_USER") or "demo",
        demo_thinq_token=demo_token if demo_mode else None,
        device_list_ttl_seconds=int(_positive_number(env, "DEVICE_LIST_TTL_SECONDS", 600)),
        profile_ttl_seconds=int(_positive_number(env, "PROFILE_TTL_SECONDS", 86400)),
        simulator_url=simulator_url,
        connector=connector,
        oauth=load_oauth_settings(
            env, demo_mode, simulator_url, service_id, service_key, connector
        ),
        widget=load_widget_settings({**env, "THINQ_SERVICE_KEY": service_key}),
        placement_timeout_seconds=_positive_number(env, "PLACEMENT_TIMEOUT_SECONDS", 4.0),
        becon=becon,
        demo_becon_site=(env.get("DEMO_BECON_SITE") or "HQ") if demo_mode and becon else None,
        events=load_event_settings(env),
    )


def load_database_url(env: Mapping[str, str] | None = None) -> str:
    """The assistant's database URL alone (``DATABASE_URL``, else SQLite in ``STATE_DIR``):
    the Rasa process reads it without LG or demo credentials."""
    env = os.environ if env is None else env
    state_dir = Path(env.get("STATE_DIR") or "var").resolve()
    return env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{state_dir / 'assistant.db'}"


def load_oauth_settings(
    env: Mapping[str, str],
    demo_mode: bool,
    simulator_url: str,
    service_id: str,
    service_key: str,
    connector: ConnectorSettings,
) -> OAuthSettings:
    """LG_OAUTH_* and LINK_* variables; demo mode fills the unset ones with the simulator's."""
    defaults: dict[str, str | None] = {}
    if demo_mode:
        from devstack.credentials import demo_oauth_client_secret

        sim = simulator_url.rstrip("/")
        host = "127.0.0.1" if connector.host in ("0.0.0.0", "::", "") else connector.host
        defaults = {
            "authorize": f"{sim}/oauth/authorize",
            "token": f"{sim}/oauth/token",
            "client_id": service_id,
            "client_secret": demo_oauth_client_secret(service_key),
            "callback": f"http://{host}:{connector.port}/link/callback",
        }
    values = {
        "authorize": env.get("LG_OAUTH_AUTHORIZE_URL") or defaults.get("authorize"),
        "token": env.get("LG_OAUTH_TOKEN_URL") or defaults.get("token"),
        "callback": env.get("LINK_CALLBACK_URL") or defaults.get("callback"),
    }
    for name, value in values.items():
        if value and not value.startswith(("https://", "http://")):
            raise SettingsError(f"the OAuth {name} URL must be an http(s) URL; got {value!r}")
    return OAuthSettings(
        authorize_url=values["authorize"],
        token_url=values["token"],
        client_id=env.get("LG_OAUTH_CLIENT_ID") or defaults.get("client_id"),
        client_secret=env.get("LG_OAUTH_CLIENT_SECRET") or defaults.get("client_secret"),
        callback_url=values["callback"],
        refresh_margin_seconds=_positive_number(env, "LG_TOKEN_REFRESH_MARGIN_SECONDS", 300.0),
        request_ttl_seconds=_positive_number(env, "LINK_REQUEST_TTL_SECONDS", 600.0),
        timeout_seconds=_positive_number(env, "THINQ_TIMEOUT_SECONDS", 5.0),
    )


# What Telegram accepts as setWebhook's secret_token.
_TELEGRAM_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")


def load_telegram_settings(env: Mapping[str, str] | None = None) -> TelegramSettings:
    """The Telegram settings alone: the Rasa process reads them without demo credentials."""
    env = os.environ if env is None else env
    secret = env.get("TELEGRAM_WEBHOOK_SECRET") or None
    if secret is not None and not _TELEGRAM_SECRET.fullmatch(secret):
        # Telegram would refuse it in setWebhook; say so here rather than 401 every update.
        raise SettingsError(
            "TELEGRAM_WEBHOOK_SECRET must be 1-256 characters of A-Z, a-z, 0-9, _ and -"
        )
    api_url = (env.get("TELEGRAM_API_URL") or "https://api.telegram.org").rstrip("/")
    if not api_url.startswith(("https://", "http://")):
        raise SettingsError(f"TELEGRAM_API_URL must be an http(s) URL; got {api_url!r}")
    return TelegramSettings(
        bot_token=env.get("TELEGRAM_BOT_TOKEN") or None,
        webhook_secret=secret,
        api_url=api_url,
        timeout_seconds=_positive_number(env, "TELEGRAM_TIMEOUT_SECONDS", 10.0),
    )


def demo_callback_secret(service_key: str) -> str:
    """The demo's callback secret, derived from the machine's random demo service key.

    Both the simulator (which calls back) and the connector (which checks) can
    compute it, so the demo needs no configuration and no secret is committed.
    """
    return hashlib.sha256(f"lg-callback/{service_key}".encode()).hexdigest()


@dataclass(frozen=True)
class AlexaSettings:
    """The Alexa skill endpoint (``connector/alexa.py``)."""

    # Amazon requires every request's signature to be checked; turning it off is for
    # demos with a hand-made request (curl) only, and is logged as a warning.
    verify_signatures: bool
    # When set, requests naming another skill's application id are refused.
    skill_id: str | None
    # How long a reply may wait for Rasa before answering "I'll tell you when it
    # confirms" (Alexa gives up at 8 s).
    reply_budget_seconds: float


def load_alexa_settings(env: Mapping[str, str] | None = None) -> AlexaSettings:
    """Alexa's settings alone: the Rasa process needs no LG or demo credentials for them."""
    env = os.environ if env is None else env
    budget = _positive_number(env, "ALEXA_REPLY_BUDGET_SECONDS", 6.5)
    if budget >= 8:
        raise SettingsError(
            f"ALEXA_REPLY_BUDGET_SECONDS must be under 8 (Alexa's limit); got {budget:g}"
        )
    return AlexaSettings(
        verify_signatures=_flag(env.get("ALEXA_VERIFY_SIGNATURES"), default=True),
        skill_id=(env.get("ALEXA_SKILL_ID") or "").strip() or None,
        reply_budget_seconds=budget,
    )


@dataclass(frozen=True)
class WidgetSettings:
    """The chat widget channel (``connector/widget.py``) and the partner site embedding it.

    The partner's web server signs a short-lived token (JWT, HS256) naming its signed-in
    user with ``token_secret``; the channel accepts a conversation only with such a token.
    Outside demo mode the channel is off until ``WIDGET_TOKEN_SECRET`` and
    ``WIDGET_NOTIFY_SECRET`` are set.
    """

    # HMAC key shared with the partner site. Never logged.
    token_secret: str | None = field(repr=False)
    # The partner the tokens come from (the JWT ``iss``); part of every widget sender id.
    issuer: str
    # A token that lives longer than this (exp - iat) is refused: it would outlive a
    # partner's sign-out by too much.
    max_token_seconds: float
    # Pages allowed to open the widget's socket (their Origin). Requests without an Origin
    # (not from a browser) rely on the token alone.
    allowed_origins: tuple[str, ...]
    # The connector presents it to hand proactive messages to open widgets. Never logged.
    notify_secret: str | None = field(repr=False)
    # Redis, when several Rasa processes must share live widget messages; None: in-process.
    redis_url: str | None
    redis_prefix: str
    # Where browsers reach the assistant (widget.js and the socket), for the partner page.
    assistant_public_url: str
    # The sample partner site (devstack/partner_site.py).
    partner_host: str
    partner_port: int

    def missing(self) -> str | None:
        """Why the channel cannot run (names the unset variables), or None."""
        unset = [
            name
            for name, value in (
                ("WIDGET_TOKEN_SECRET", self.token_secret),
                ("WIDGET_NOTIFY_SECRET", self.notify_secret),
            )
            if not value
        ]
        if not unset:
            return None
        return f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set"


_WIDGET_ISSUER = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MIN_WIDGET_SECRET_CHARS = 32


def load_widget_settings(env: Mapping[str, str] | None = None) -> WidgetSettings:
    """The widget's settings alone (the Rasa process, the connector and the partner site
    read them); in demo mode the secrets derive from the machine's demo credentials."""
    env = os.environ if env is None else env
    demo_mode = _flag(env.get("DEMO_MODE"), default=not env.get("THINQ_SERVICE_ID"))
    token_secret = env.get("WIDGET_TOKEN_SECRET") or None
    notify_secret = env.get("WIDGET_NOTIFY_SECRET") or None
    if demo_mode and not (token_secret and notify_secret):
        from devstack.credentials import load_or_create_demo_credentials

        state_dir = Path(env.get("STATE_DIR") or "var").resolve()
        service_key = env.get("THINQ_SERVICE_KEY") or (
            load_or_create_demo_credentials(state_dir).service_key
        )
        token_secret = token_secret or _derived("lg-widget-token", service_key)
        notify_secret = notify_secret or _derived("lg-widget-notify", service_key)
    for name, value in (
        ("WIDGET_TOKEN_SECRET", token_secret),
        ("WIDGET_NOTIFY_SECRET", notify_secret),
    ):
        if value is not None and len(value) < _MIN_WIDGET_SECRET_CHARS:
            # HS256 with a short key can be brute-forced from one captured token.
            raise SettingsError(f"{name} must be at least {_MIN_WIDGET_SECRET_CHARS} characters")
    issuer = env.get("WIDGET_TOKEN_ISSUER") or "sample-partner"
    if not _WIDGET_ISSUER.fullmatch(issuer):
        raise SettingsError("WIDGET_TOKEN_ISSUER must be 1-64 characters of A-Z, a-z, 0-9, . _ -")
    partner_host = env.get("PARTNER_SITE_HOST") or "127.0.0.1"
    partner_port = int(_positive_number(env, "PARTNER_SITE_PORT", 8080))
    origins = env.get("WIDGET_ALLOWED_ORIGINS")
    if origins is None:
        origins = (
            f"http://{partner_host}:{partner_port},http://localhost:{partner_port}"
            if demo_mode
            else ""
        )
    allowed = tuple(o.strip().rstrip("/") for o in origins.split(",") if o.strip())
    for origin in allowed:
        if not origin.startswith(("https://", "http://")):
            raise SettingsError(f"WIDGET_ALLOWED_ORIGINS: {origin!r} is not an http(s) origin")
    rasa_port = int(_positive_number(env, "RASA_PORT", 5005))
    public_url = (env.get("ASSISTANT_PUBLIC_URL") or f"http://127.0.0.1:{rasa_port}").rstrip("/")
    if not public_url.startswith(("https://", "http://")):
        raise SettingsError(f"ASSISTANT_PUBLIC_URL must be an http(s) URL; got {public_url!r}")
    return WidgetSettings(
        token_secret=token_secret,
        issuer=issuer,
        max_token_seconds=_positive_number(env, "WIDGET_TOKEN_MAX_SECONDS", 900.0),
        allowed_origins=allowed,
        notify_secret=notify_secret,
        redis_url=env.get("REDIS_URL") or None,
        redis_prefix=env.get("CONNECTOR_REDIS_PREFIX") or "lgconn",
        assistant_public_url=public_url,
        partner_host=partner_host,
        partner_port=partner_port,
    )


def _derived(purpose: str, service_key: str) -> str:
    """A demo secret for ``purpose``: both sides compute it, nothing is committed."""
    return hashlib.sha256(f"{purpose}/{service_key}".encode()).hexdigest()


@dataclass(frozen=True)
class BeconSettings:
    """How to reach LG's BECON Connect API (or the simulator standing in for it)."""

    # Scheme and host (and port); the client appends LG's /tms/v1.0/connect paths.
    base_url: str
    service_id: str
    # Never logged, kept out of repr.
    service_key: str = field(repr=False)
    # Signs the server time for a token (lgcloud/becon_signer.py). Never logged.
    symmetric_key: str = field(repr=False)
    timeout_seconds: float = 5.0


_BECON_VARIABLES = (
    "BECON_BASE_URL",
    "BECON_SERVICE_ID",
    "BECON_SERVICE_KEY",
    "BECON_SYMMETRIC_KEY",
)


def load_becon_settings(env: Mapping[str, str] | None = None) -> BeconSettings | None:
    """BECON_* variables. Demo mode (the usual rule: no THINQ_SERVICE_ID) fills the unset
    ones with the simulator's URL and the demo BECON credentials derived from the demo
    service key, exactly as the simulator derives them. Outside demo mode BECON is off
    (None) until all four of BECON_BASE_URL, BECON_SERVICE_ID, BECON_SERVICE_KEY and
    BECON_SYMMETRIC_KEY are set; setting only some of them is an error."""
    env = os.environ if env is None else env
    demo_mode = _flag(env.get("DEMO_MODE"), default=not env.get("THINQ_SERVICE_ID"))
    values = {name: env.get(name) or None for name in _BECON_VARIABLES}
    if demo_mode and not all(values.values()):
        from devstack.credentials import demo_becon_credentials, load_or_create_demo_credentials

        state_dir = Path(env.get("STATE_DIR") or "var").resolve()
        demo_key = env.get("THINQ_SERVICE_KEY") or (
            load_or_create_demo_credentials(state_dir).service_key
        )
        demo = demo_becon_credentials(demo_key)
        defaults = {
            "BECON_BASE_URL": env.get("SIMULATOR_URL") or "http://127.0.0.1:8700",
            "BECON_SERVICE_ID": demo.service_id,
            "BECON_SERVICE_KEY": demo.service_key,
            "BECON_SYMMETRIC_KEY": demo.symmetric_key,
        }
        values = {name: value or defaults[name] for name, value in values.items()}
    unset = [name for name, value in values.items() if not value]
    if len(unset) == len(_BECON_VARIABLES):
        return None
    if unset:
        raise SettingsError(f"BECON is half configured: {', '.join(unset)} not set")
    base_url = str(values["BECON_BASE_URL"]).rstrip("/")
    if not base_url.startswith(("https://", "http://")):
        raise SettingsError(f"BECON_BASE_URL must be an http(s) URL; got {base_url!r}")
    return BeconSettings(
        base_url=base_url,
        service_id=str(values["BECON_SERVICE_ID"]),
        service_key=str(values["BECON_SERVICE_KEY"]),
        symmetric_key=str(values["BECON_SYMMETRIC_KEY"]),
        timeout_seconds=_positive_number(env, "BECON_TIMEOUT_SECONDS", 5.0),
    )


@dataclass(frozen=True)
class EventSettings:
    """LG event subscriptions (status events keep ``device_states`` fresh) and their
    renewer, which the connector's worker role runs (``connector/renewer.py``)."""

    # EVENT_SUBSCRIPTIONS=0 turns the renewer off (LG must approve a partner's use of
    # the Event API first); status events that arrive are still merged.
    enabled: bool = True
    # Seconds between the renewer's passes; its lease lasts three of them.
    renew_interval_seconds: float = 60.0
    # A subscription expiring within this many seconds is renewed.
    renew_margin_seconds: float = 600.0
    # How long each subscription lasts (LG: 1 to 24 hours).
    subscription_hours: int = 24
    # A stored state answers for at most this long after its last whole read from LG.
    # A device that goes offline sends no events, so without a bound its last state
    # would be told as current for as long as the subscription lives.
    state_max_age_seconds: float = 900.0


EVENT_MAX_HOURS = 24


def load_event_settings(env: Mapping[str, str] | None = None) -> EventSettings:
    """EVENT_RENEW_INTERVAL_SECONDS (60), EVENT_RENEW_MARGIN_SECONDS (600),
    EVENT_SUBSCRIPTION_HOURS (24; a whole number from 1 to 24, LG's limit),
    EVENT_STATE_MAX_AGE_SECONDS (900) and EVENT_SUBSCRIPTIONS (on)."""
    env = os.environ if env is None else env
    raw = (env.get("EVENT_SUBSCRIPTION_HOURS") or "24").strip()
    try:
        hours = int(raw)
    except ValueError:
        raise SettingsError(
            f"EVENT_SUBSCRIPTION_HOURS must be a whole number from 1 to 24; got {raw!r}"
        ) from None
    if not 1 <= hours <= EVENT_MAX_HOURS:
        raise SettingsError(
            f"EVENT_SUBSCRIPTION_HOURS must be a whole number from 1 to 24; got {raw!r}"
        )
    interval = _positive_number(env, "EVENT_RENEW_INTERVAL_SECONDS", 60.0)
    margin = _positive_number(env, "EVENT_RENEW_MARGIN_SECONDS", 600.0)
    if margin >= hours * 3600:
        raise SettingsError(
            "EVENT_RENEW_MARGIN_SECONDS must be shorter than EVENT_SUBSCRIPTION_HOURS, "
            "or every pass would renew every subscription again"
        )
    return EventSettings(
        enabled=_flag(env.get("EVENT_SUBSCRIPTIONS"), default=True),
        renew_interval_seconds=interval,
        renew_margin_seconds=margin,
        subscription_hours=hours,
        state_max_age_seconds=_positive_number(env, "EVENT_STATE_MAX_AGE_SECONDS", 900.0),
    )
