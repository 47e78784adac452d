"""Tables of the assistant's own database.

* ``linked_accounts``: which ThinQ account (and encrypted token) a chat sender uses.
* ``cached_devices``: a ThinQ user's device list and, lazily, each device's profile.
* ``device_list_refreshes``: when a user's device list was last fetched from ThinQ.

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
    LargeBinary,
    String,
    TypeDecorator,
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
