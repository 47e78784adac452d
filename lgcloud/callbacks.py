"""The messages LG POSTs to a partner's callback URL, parsed and validated.

Shapes follow lg-api/notification-api.txt (``push`` object: DEVICE_PUSH,
DEVICE_REGISTERED, DEVICE_UNREGISTERED, DEVICE_ALIAS_CHANGED) and
lg-api/pcc-api.txt (``event`` object: PCC_EVENT). Parsing is strict about what
we need to act on (ids, types, codes) and tolerant of fields LG may add.
DEVICE_STATUS events (Event API; shape assumed, see below) have their own parser,
:func:`parse_status_event`, so :func:`parse_callback` and its callers stay as they were.
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


# --- DEVICE_STATUS events (Event API) ---------------------------------------------------------
#
# LG's "Event Messages" page is not public. We read the status event of the facts sheet
# (§2.4: ``{"pushType": "DEVICE_STATUS", "deviceId", "deviceType", "report": {partial
# status}}``) wrapped like PCC events: ``{"messageId", "timestamp", "event": {...}}``
# (``push`` is accepted as the wrapper too), with an optional ``userNumber``. ``report``
# holds the changed part of the status, resource -> property -> value; a location
# resource is a list of ``{"locationName", property: value}``. Clients deep-merge it into
# the status they keep (``connector/event_intake.py``).

DEVICE_STATUS = "DEVICE_STATUS"
MAX_REPORT_VALUES = 500
MAX_NAME_LENGTH = 64


@dataclass(frozen=True)
class StatusEvent:
    """One DEVICE_STATUS event: the device's changed state as flat keys."""

    message_id: str
    timestamp: str
    device_id: str
    device_type: str | None
    user_number: str | None
    # The report flattened like lgcloud.profile.flatten_status: "resource.property" or
    # "resource.location.property" -> value.
    changes: dict[str, Any]
    report: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _status_wrapper(body: dict[str, Any]) -> dict[str, Any] | None:
    for name in ("event", "push"):
        inner = body.get(name)
        if isinstance(inner, dict) and inner.get("pushType") == DEVICE_STATUS:
            return inner
    return None


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_LENGTH:
        raise CallbackRejected(f"{what} must be a non-empty string of at most 64 characters")
    if "." in value:
        raise CallbackRejected(f"{what} must not contain '.'")
    return value


def _scalar(value: Any, key: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        if isinstance(value, str) and len(value) > MAX_TEXT_LENGTH:
            raise CallbackRejected(f"report value of {key} is longer than {MAX_TEXT_LENGTH}")
        return value
    raise CallbackRejected(f"report value of {key} must be a string, number, boolean or null")


def _flatten_report(report: Any) -> dict[str, Any]:
    """The report as flat keys; every shape problem is refused (nothing half-read)."""
    if not isinstance(report, dict) or not report:
        raise CallbackRejected("report must be a non-empty object")
    flat: dict[str, Any] = {}
    for resource, content in report.items():
        resource = _name(resource, "a report resource")
        if isinstance(content, dict):
            for prop, value in content.items():
                key = f"{resource}.{_name(prop, 'a report property')}"
                flat[key] = _scalar(value, key)
        elif isinstance(content, list):
            for item in content:
                if not isinstance(item, dict):
                    raise CallbackRejected(f"report.{resource} entries must be objects")
                location = _name(item.get("locationName"), f"report.{resource} locationName")
                for prop, value in item.items():
                    if prop == "locationName":
                        continue
                    key = f"{resource}.{location}.{_name(prop, 'a report property')}"
                    flat[key] = _scalar(value, key)
        else:
            raise CallbackRejected(f"report.{resource} must be an object or a list")
        if len(flat) > MAX_REPORT_VALUES:
            raise CallbackRejected(f"report holds more than {MAX_REPORT_VALUES} values")
    if not flat:
        raise CallbackRejected("report holds no property values")
    return flat


def parse_status_event(body: Any) -> StatusEvent | None:
    """A DEVICE_STATUS event, or None when ``body`` is not one (hand it to
    :func:`parse_callback`); :class:`CallbackRejected` when it claims to be one
    (``pushType`` DEVICE_STATUS under ``event`` or ``push``) but is not valid."""
    if not isinstance(body, dict):
        return None
    event = _status_wrapper(body)
    if event is None:
        return None
    message_id = _text(body, "messageId", required=True, limit=MAX_ID_LENGTH)
    timestamp = _text(body, "timestamp", required=False, limit=64) or ""
    if "event" in body and "push" in body:
        raise CallbackRejected("the body must hold exactly one of 'push' or 'event'")
    return StatusEvent(
        message_id=message_id,
        timestamp=timestamp,
        device_id=_text(event, "deviceId", required=True, limit=MAX_ID_LENGTH),
        device_type=_text(event, "deviceType", required=False, limit=64),
        user_number=_text(event, "userNumber", required=False, limit=MAX_ID_LENGTH),
        changes=_flatten_report(event.get("report")),
        report=event.get("report") or {},
    )
