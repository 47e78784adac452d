"""The messages LG POSTs to a partner's callback URL, parsed and validated.

Shapes follow lg-api/notification-api.txt (``push`` object: DEVICE_PUSH,
DEVICE_REGISTERED, DEVICE_UNREGISTERED, DEVICE_ALIAS_CHANGED) and
lg-api/pcc-api.txt (``event`` object: PCC_EVENT). Parsing is strict about what
we need to act on (ids, types, codes) and tolerant of fields LG may add.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

DEVICE_PUSH = "DEVICE_PUSH"
DEVICE_REGISTERED = "DEVICE_REGISTERED"
DEVICE_UNREGISTERED = "DEVICE_UNREGISTERED"
DEVICE_ALIAS_CHANGED = "DEVICE_ALIAS_CHANGED"
PCC_EVENT = "PCC_EVENT"
REGISTRY_TYPES = frozenset({DEVICE_REGISTERED, DEVICE_UNREGISTERED, DEVICE_ALIAS_CHANGED})
PUSH_TYPES = frozenset({DEVICE_PUSH, *REGISTRY_TYPES})

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 256
MAX_URL_LENGTH = 2048
MAX_USERS = 100


class CallbackRejected(ValueError):
    """The body is not a callback we accept; ``reason`` says why, for the 4xx answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class LgCallback:
    message_id: str
    timestamp: str
    push_type: str
    device_id: str
    device_type: str | None = None
    # userNumber (registry pushes) or userList (DEVICE_PUSH); empty for PCC events.
    user_numbers: tuple[str, ...] = ()
    push_code: str | None = None
    alias: str | None = None
    model_name: str | None = None
    diagnosis_type: str | None = None
    content_url: str | None = None
    diagnosis_timestamp: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_registry(self) -> bool:
        return self.push_type in REGISTRY_TYPES


def _text(obj: dict[str, Any], name: str, *, required: bool, limit: int = MAX_TEXT_LENGTH) -> Any:
    value = obj.get(name)
    if value is None:
        if required:
            raise CallbackRejected(f"{name} is missing")
        return None
    if not isinstance(value, str) or not value.strip():
        raise CallbackRejected(f"{name} must be a non-empty string")
    if len(value) > limit:
        raise CallbackRejected(f"{name} is longer than {limit} characters")
    return value.strip()


def _users(push: dict[str, Any]) -> tuple[str, ...]:
    users: list[str] = []
    number = _text(push, "userNumber", required=False, limit=MAX_ID_LENGTH)
    if number:
        users.append(number)
    listed = push.get("userList")
    if listed is not None:
        if not isinstance(listed, list) or len(listed) > MAX_USERS:
            raise CallbackRejected(f"userList must be a list of at most {MAX_USERS} user ids")
        for entry in listed:
            if not isinstance(entry, str) or not entry.strip() or len(entry) > MAX_ID_LENGTH:
                raise CallbackRejected("userList entries must be non-empty strings")
            users.append(entry.strip())
    return tuple(dict.fromkeys(users))


def _content_url(event: dict[str, Any]) -> str:
    url = _text(event, "contentUrl", required=True, limit=MAX_URL_LENGTH)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CallbackRejected("contentUrl must be an http(s) URL")
    return str(url)


def parse_callback(body: Any) -> LgCallback:
    """Validate one callback body; raise :class:`CallbackRejected` with the reason."""
    if not isinstance(body, dict):
        raise CallbackRejected("the body must be a JSON object")
    message_id = _text(body, "messageId", required=True, limit=MAX_ID_LENGTH)
    timestamp = _text(body, "timestamp", required=False, limit=64) or ""
    push, event = body.get("push"), body.get("event")
    if (push is None) == (event is None):
        raise CallbackRejected("the body must hold exactly one of 'push' or 'event'")
    if push is not None:
        return _parse_push(message_id, timestamp, push, body)
    return _parse_pcc(message_id, timestamp, event, body)


def _parse_push(message_id: str, timestamp: str, push: Any, body: dict[str, Any]) -> LgCallback:
    if not isinstance(push, dict):
        raise CallbackRejected("push must be an object")
    push_type = _text(push, "pushType", required=True, limit=64)
    if push_type not in PUSH_TYPES:
        raise CallbackRejected(f"pushType {push_type!r} is not one we accept under 'push'")
    users = _users(push)
    if push_type in REGISTRY_TYPES and not users:
        raise CallbackRejected("userNumber is missing")
    return LgCallback(
        message_id=message_id,
        timestamp=timestamp,
        push_type=push_type,
        device_id=_text(push, "deviceId", required=True, limit=MAX_ID_LENGTH),
        device_type=_text(push, "deviceType", required=push_type == DEVICE_REGISTERED, limit=64),
        user_numbers=users,
        push_code=_text(push, "pushCode", required=push_type == DEVICE_PUSH, limit=64),
        alias=_text(
            push,
            "alias",
            required=push_type in (DEVICE_REGISTERED, DEVICE_ALIAS_CHANGED),
        ),
        model_name=_text(push, "modelName", required=False),
        raw=body,
    )


def _parse_pcc(message_id: str, timestamp: str, event: Any, body: dict[str, Any]) -> LgCallback:
    if not isinstance(event, dict):
        raise CallbackRejected("event must be an object")
    push_type = _text(event, "pushType", required=True, limit=64)
    if push_type != PCC_EVENT:
        raise CallbackRejected(f"pushType {push_type!r} is not one we accept under 'event'")
    return LgCallback(
        message_id=message_id,
        timestamp=timestamp,
        push_type=PCC_EVENT,
        device_id=_text(event, "deviceId", required=True, limit=MAX_ID_LENGTH),
        device_type=_text(event, "deviceType", required=False, limit=64),
        diagnosis_type=_text(event, "diagnosisType", required=True, limit=128),
        content_url=_content_url(event),
        diagnosis_timestamp=_text(event, "diagnosisTimestamp", required=False, limit=64),
        raw=body,
    )
