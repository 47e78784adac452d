"""Tables of the assistant's own database.

* ``linked_accounts``: which ThinQ account (and encrypted token) a chat sender uses.
* ``cached_devices``: a ThinQ user's device list and, lazily, each device's profile.
* ``device_list_refreshes``: when a user's device list was last fetched from ThinQ.
* ``notification_subscriptions``: which conversation wants which device's pushes / PCC events.
* ``lg_callbacks``: every callback LG sent us, stored before we acknowledge it.
* ``outbox``: the proactive messages those callbacks became, one per conversation, with
  their delivery state.
* ``alexa_inbox``: messages for Alexa users waiting to be read out at their next launch.
* ``linked_account_refresh_tokens``: the encrypted LG refresh token of an OAuth-linked sender.
* ``link_requests``: account-linking flows in progress (the OAuth ``state``, single use).
* ``widget_messages``: the chat widget's message log, per conversation (shown on reopen).
* ``widget_read_markers``: the last widget message each conversation has seen.
* ``device_states``: each device's last known state, kept fresh by LG's status events.
* ``event_subscriptions``: each ThinQ user's event subscription and its renewal.
* ``event_renewal_requests``: users whose event subscription must be renewed early.
* ``unconfirmed_controls``: commands whose outcome is unknown (checked before resending).
* ``leases``: named leases (one event renewer across every worker process).
* ``building_links``: which BECON site a chat sender may use, and in which role.

Every timestamp is a timezone-aware UTC :class:`~datetime.datetime`, on SQLite as
well as PostgreSQL (see :class:`UTCDateTime`).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import declarative_base

Base = declarative_base()


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that only accepts aware values and always returns UTC.

    SQLite has no time zone type: SQLAlchemy stores the wall-clock text and hands
    back naive datetimes. This decorator converts to UTC before storing and marks
    what comes back as UTC, so callers see the same thing on both backends.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; pass a UTC-aware one")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class LinkedAccount(Base):
    __tablename__ = "linked_accounts"

    sender_id = Column(String(255), primary_key=True)
    # The input channel (e.g. "rest", "socketio") this sender last wrote from.
    channel = Column(String(64), nullable=True)
    thinq_user = Column(String(255), nullable=False, index=True)
    country_code = Column(String(2), nullable=False)
    region = Column(String(16), nullable=False)
    # Fernet ciphertext of the ThinQ access token; never the token itself.
    token_ciphertext = Column(LargeBinary, nullable=False)
    token_expires_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class BuildingLink(Base):
    """A chat sender's access to a BECON site: ``manager`` (status and control) or
    ``occupant`` (status only). BECON authenticates our service, not the person, so this
    grant is ours to keep; it holds no secret."""

    __tablename__ = "building_links"

    sender_id = Column(String(255), primary_key=True)
    site_code = Column(String(64), nullable=False)
    role = Column(String(16), nullable=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class CachedDevice(Base):
    __tablename__ = "cached_devices"

    thinq_user = Column(String(255), primary_key=True)
    device_id = Column(String(255), primary_key=True)
    device_type = Column(String(100), nullable=False)
    model_name = Column(String(255), nullable=False, default="")
    alias = Column(String(255), nullable=False, default="")
    reportable = Column(Boolean, nullable=False, default=False)
    # none_as_null: a missing profile is SQL NULL, not the JSON value ``null``.
    profile_json = Column(JSON(none_as_null=True), nullable=True)
    profile_fetched_at = Column(UTCDateTime, nullable=True)
    listed_at = Column(UTCDateTime, nullable=False, default=utcnow)


class DeviceListRefresh(Base):
    __tablename__ = "device_list_refreshes"

    thinq_user = Column(String(255), primary_key=True)
    refreshed_at = Column(UTCDateTime, nullable=False)


class NotificationSubscription(Base):
    """A conversation asked to hear about a device: "push" (cycle done...) or "pcc" (faults).

    LG's subscription is per service and device; ours is per conversation, so LG is
    unsubscribed only when the last conversation of that ThinQ user lets go.
    """

    __tablename__ = "notification_subscriptions"
    __table_args__ = (Index("ix_notification_subscriptions_device", "device_id", "kind"),)

    sender_id = Column(String(255), primary_key=True)
    device_id = Column(String(255), primary_key=True)
    kind = Column(String(8), primary_key=True)
    thinq_user = Column(String(255), nullable=False, index=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class LgCallbackRecord(Base):
    """A callback LG POSTed to us, stored before we answer 2xx (so none is lost).

    ``state`` is ``received`` until the delivery worker has turned it into outbox rows
    (``planned``); the sweeper re-queues rows left ``received`` by a crash.
    """

    __tablename__ = "lg_callbacks"
    __table_args__ = (Index("ix_lg_callbacks_state_received", "state", "received_at"),)

    message_id = Column(String(128), primary_key=True)
    push_type = Column(String(64), nullable=False)
    device_id = Column(String(128), nullable=False)
    body = Column(JSON, nullable=False)
    received_at = Column(UTCDateTime, nullable=False, default=utcnow)
    state = Column(String(16), nullable=False, default="received")
    planned_at = Column(UTCDateTime, nullable=True)


class OutboxMessage(Base):
    """One proactive message for one conversation, from one LG callback.

    ``id`` is the idempotency key channels receive, so a partner can drop a redelivery.
    The unique (message_id, sender_id) pair is what makes delivery once per conversation.
    ``state``: pending (waiting for an attempt, from ``next_attempt_at``), sending (claimed
    by a worker at ``claimed_at``), delivered, or failed (``last_error`` says why).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("message_id", "sender_id", name="uq_outbox_message_sender"),
        Index("ix_outbox_state_next_attempt", "state", "next_attempt_at"),
        Index("ix_outbox_history", "state", "history_recorded_at", "delivered_at"),
        Index("ix_outbox_sender_created", "sender_id", "created_at"),
    )

    id = Column(String(36), primary_key=True)
    message_id = Column(String(128), nullable=False)
    sender_id = Column(String(255), nullable=False)
    # The input channel the sender last used; None when unknown (cannot be delivered).
    channel = Column(String(64), nullable=True)
    thinq_user = Column(String(255), nullable=False)
    device_id = Column(String(128), nullable=False)
    kind = Column(String(16), nullable=False)
    response = Column(String(255), nullable=False)
    params = Column(JSON, nullable=False)
    text = Column(Text, nullable=False)
    state = Column(String(16), nullable=False)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=True)
    claimed_at = Column(UTCDateTime, nullable=True)
    last_error = Column(Text, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    delivered_at = Column(UTCDateTime, nullable=True)
    history_recorded_at = Column(UTCDateTime, nullable=True)


class AlexaInboxMessage(Base):
    """A message for an Alexa user, read out (and deleted) at their next LaunchRequest.

    Alexa cannot speak unprompted: a notification delivered to the ``alexa`` channel, or
    the late reply of a time-boxed turn, waits here. ``key`` makes adding idempotent (the
    outbox id for a notification, so a redelivery is stored once). ``id`` orders messages
    added in the same instant.
    """

    __tablename__ = "alexa_inbox"
    __table_args__ = (Index("ix_alexa_inbox_sender_created", "sender_id", "created_at", "id"),)

    id = Column(Integer, primary_key=True, autoincrement=True)
    key = Column(String(128), nullable=False, unique=True)
    sender_id = Column(String(255), nullable=False)
    # "notification" (from the outbox) or "late_reply" (a time-boxed turn's answer).
    kind = Column(String(16), nullable=False)
    text = Column(Text, nullable=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class LinkedAccountRefreshToken(Base):
    """The LG refresh token of an OAuth-linked sender (none for demo links).

    A table of its own, so databases created before account linking gain it through
    ``create_all`` (which adds tables, never columns). Written and deleted together with
    the sender's ``linked_accounts`` row (:class:`~assistant.storage.accounts.AccountRepository`).
    """

    __tablename__ = "linked_account_refresh_tokens"

    sender_id = Column(String(255), primary_key=True)
    # Fernet ciphertext of the refresh token; never the token itself.
    refresh_token_ciphertext = Column(LargeBinary, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)


class LinkRequest(Base):
    """An account-linking flow a sender started: the OAuth ``state`` it is waiting for.

    Only a SHA-256 digest of the state is stored, so reading the table does not let anyone
    complete a flow. Single use (``used_at`` is set by compare-and-set) and short-lived.
    """

    __tablename__ = "link_requests"
    __table_args__ = (Index("ix_link_requests_expires", "expires_at"),)

    state_digest = Column(String(64), primary_key=True)
    sender_id = Column(String(255), nullable=False)
    channel = Column(String(64), nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = Column(UTCDateTime, nullable=False)
    used_at = Column(UTCDateTime, nullable=True)


class PendingLink(Base):
    """An LG sign-in finished at LG but not yet confirmed in the chat that asked for it.

    The page after LG's sign-in shows a one-time code; the link becomes active only when
    the same conversation types it back. Without that step, a sign-in link forwarded to
    someone else (or tricked out of them) would link *their* LG account to the sender's
    chat. One per sender (a newer sign-in replaces it); the tokens are Fernet ciphertext
    and the code is stored only as a digest bound to the sender.
    """

    __tablename__ = "pending_links"

    sender_id = Column(String(255), primary_key=True)
    channel = Column(String(64), nullable=True)
    thinq_user = Column(String(255), nullable=False)
    token_ciphertext = Column(LargeBinary, nullable=False)
    refresh_token_ciphertext = Column(LargeBinary, nullable=True)
    token_expires_at = Column(UTCDateTime, nullable=True)
    code_digest = Column(String(64), nullable=False)
    # Wrong codes typed so far; the pending link is dropped at MAX_CODE_ATTEMPTS.
    attempts = Column(Integer, nullable=False, default=0)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)
    expires_at = Column(UTCDateTime, nullable=False)


class WidgetMessageRecord(Base):
    """One message of a chat widget conversation, user's or bot's.

    The widget shows what arrived while it was closed and the recent conversation after a
    reload, so both sides of the conversation are logged here. ``id`` is the order and the
    id the browser sees; AUTOINCREMENT on SQLite so an id is never handed out twice, even
    after the newest rows were deleted. ``key`` (optional) makes storing idempotent: the
    outbox id of a proactive message, so a redelivery is stored once.
    """

    __tablename__ = "widget_messages"
    __table_args__ = (
        Index("ix_widget_messages_sender_id", "sender_id", "id"),
        # prune() deletes by age across all senders.
        Index("ix_widget_messages_created", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    key = Column(String(128), nullable=True, unique=True)
    sender_id = Column(String(255), nullable=False)
    # "user" or "bot".
    role = Column(String(8), nullable=False)
    text = Column(Text, nullable=False)
    # JSON list of {"title": str, "payload": str}.
    buttons = Column(Text, nullable=False, default="[]")
    # Sent by the assistant unprompted (a notification), not as a reply.
    proactive = Column(Boolean, nullable=False, default=False)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class WidgetReadMarker(Base):
    """The id of the newest widget message a conversation has seen (never moves back)."""

    __tablename__ = "widget_read_markers"

    sender_id = Column(String(255), primary_key=True)
    last_read_id = Column(Integer, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)


class PlacementRequest(Base):
    """A v2 "placement" request (one call for all of a user's devices) we are waiting on.

    LG answers 202 with a ``requestId`` and then calls back once per device; the waiting
    turn gathers those callbacks until every ``expected`` device answered or ``deadline``.
    ``reported_missing`` is what the user was told did not answer, so that a late answer
    can be followed up ("the Dryer has answered now").
    """

    __tablename__ = "placement_requests"
    __table_args__ = (Index("ix_placement_requests_created", "created_at"),)

    request_id = Column(String(128), primary_key=True)
    thinq_user = Column(String(255), nullable=False)
    # profile / status / control / event_subscribe / event_unsubscribe / push_...
    kind = Column(String(32), nullable=False)
    expected = Column(JSON, nullable=False)  # device ids
    deadline = Column(UTCDateTime, nullable=False)
    sender_id = Column(String(255), nullable=True)
    channel = Column(String(64), nullable=True)
    reported_missing = Column(JSON, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class PlacementResult(Base):
    """One device's callback for a placement request (kept even when it comes late).

    Unique per (request, device): LG's redeliveries and duplicates are stored once.
    """

    __tablename__ = "placement_results"
    __table_args__ = (
        UniqueConstraint("request_id", "device_id", name="uq_placement_result_device"),
        Index("ix_placement_results_received", "received_at"),
    )

    id = Column(Integer, primary_key=True, autoincrement=True)
    request_id = Column(String(128), nullable=False)
    device_id = Column(String(128), nullable=False)
    device_type = Column(String(64), nullable=True)
    push_type = Column(String(64), nullable=False)
    ok = Column(Boolean, nullable=False)
    error_code = Column(String(16), nullable=True)
    result = Column(JSON, nullable=True)
    received_at = Column(UTCDateTime, nullable=False, default=utcnow)


class UnconfirmedControl(Base):
    """A command LG took but never confirmed (timeout, 5xx, 2209…): its outcome is unknown,
    so the next command to the device checks the device's state before sending anything."""

    __tablename__ = "unconfirmed_controls"

    device_id = Column(String(255), primary_key=True)
    thinq_user = Column(String(255), nullable=False)
    changes = Column(JSON, nullable=False)  # flat key -> value the command asked for
    sent_at = Column(UTCDateTime, nullable=False)


class DeviceState(Base):
    """A device's last known state (flat keys), kept fresh by LG's status events.

    Written by a status read from LG (the whole state: ``full_at`` is when that read
    started) and by DEVICE_STATUS events (the report deep-merged in; ``updated_at``).
    ``covered_at`` is when the event subscription that first covered this device in the
    user's current subscription stretch was made (LG's DEVICE_EVENT_SUBSCRIBED answer for
    it). ``stale`` is set after we controlled the device, cleared by its next event or a
    read. ``version`` grows with every write (compare-and-set for reads racing events);
    ``recent_events`` holds the last event message ids (LG's redeliveries merge once).
    See assistant/storage/device_states.py for when the state may answer a question.
    """

    __tablename__ = "device_states"
    __table_args__ = (Index("ix_device_states_user", "thinq_user"),)

    device_id = Column(String(128), primary_key=True)
    thinq_user = Column(String(255), nullable=False)
    state = Column(JSON, nullable=False)
    updated_at = Column(UTCDateTime, nullable=False, default=utcnow)
    full_at = Column(UTCDateTime, nullable=True)
    covered_at = Column(UTCDateTime, nullable=True)
    stale = Column(Boolean, nullable=False, default=False)
    version = Column(Integer, nullable=False, default=0)
    recent_events = Column(JSON, nullable=False, default=list)


class EventSubscription(Base):
    """A ThinQ user's event subscription (v2 ``event-async``: all their devices at once).

    ``expires_at`` is when LG stops sending events unless renewed (None: never
    subscribed); ``subscribed_at`` starts the current unbroken stretch (a renewal before
    expiry keeps it, one after a lapse starts a new stretch). ``attempts``/``last_error``/
    ``next_attempt_at`` track failures and their backoff; ``last_request_id`` and
    ``last_request_at`` name our latest accepted request, so LG's per-device answers to it
    can mark devices as covered. Rows are made for every user with a linked account by
    the renewer (connector/renewer.py).
    """

    __tablename__ = "event_subscriptions"
    __table_args__ = (Index("ix_event_subscriptions_expires", "expires_at"),)

    thinq_user = Column(String(255), primary_key=True)
    expires_at = Column(UTCDateTime, nullable=True)
    subscribed_at = Column(UTCDateTime, nullable=True)
    last_error = Column(Text, nullable=True)
    attempts = Column(Integer, nullable=False, default=0)
    next_attempt_at = Column(UTCDateTime, nullable=True)
    last_request_id = Column(String(128), nullable=True, index=True)
    last_request_at = Column(UTCDateTime, nullable=True)
    created_at = Column(UTCDateTime, nullable=False, default=utcnow)


class EventRenewalRequest(Base):
    """A ThinQ user whose event subscription should be renewed at the renewer's next pass,
    whatever its expiry: a device was added to the account, and LG's event-async covers
    only the devices there at the time of the request."""

    __tablename__ = "event_renewal_requests"

    thinq_user = Column(String(255), primary_key=True)
    requested_at = Column(UTCDateTime, nullable=False)


class Lease(Base):
    """A named lease: at most one owner holds ``name`` until ``until`` (compare-and-set in
    assistant/storage/device_states.py ``LeaseRepository.acquire``)."""

    __tablename__ = "leases"

    name = Column(String(64), primary_key=True)
    owner = Column(String(128), nullable=False)
    until = Column(UTCDateTime, nullable=False)
