"""Shapes LG uses on the wire: message ids, timestamps, callback bodies.

Callback shapes follow lg-api/notification-api.txt (DEVICE_PUSH and the registry
pushes DEVICE_REGISTERED / DEVICE_UNREGISTERED / DEVICE_ALIAS_CHANGED under ``push``)
and lg-api/pcc-api.txt (PCC_EVENT under ``event``). DEVICE_STATUS events under
``event`` are our assumption (simulator/events.py).
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone
from typing import Any


def new_message_id() -> str:
    """22 characters: a UUID4 in URL-safe base64 without padding (LG's own rule)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes)[:-2].decode()


def utc_timestamp() -> str:
    """UTC ISO 8601 without zone suffix, as LG writes it: 2019-06-20T01:05:21.811029."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")


DEVICE_REGISTERED = "DEVICE_REGISTERED"
DEVICE_UNREGISTERED = "DEVICE_UNREGISTERED"
DEVICE_ALIAS_CHANGED = "DEVICE_ALIAS_CHANGED"


def _push_message(push: dict[str, Any]) -> dict[str, Any]:
    return {"messageId": new_message_id(), "timestamp": utc_timestamp(), "push": push}


def device_push_message(
    *, service_id: str, device_id: str, device_type: str, push_code: str, user_id: str
) -> dict[str, Any]:
    return _push_message(
        {
            "pushType": "DEVICE_PUSH",
            "serviceId": service_id,
            "deviceId": device_id,
            "pushCode": push_code,
            "deviceType": device_type,
            "userList": [user_id],
        }
    )


# Registry pushes name the owner as ``userNumber`` (one user), where DEVICE_PUSH has a
# ``userList``; LG's pages give each its own field list, copied here key for key.
def device_registered_message(
    *, service_id: str, device_id: str, user_id: str, model_name: str, device_type: str, alias: str
) -> dict[str, Any]:
    return _push_message(
        {
            "pushType": DEVICE_REGISTERED,
            "serviceId": service_id,
            "deviceId": device_id,
            "userNumber": user_id,
            "modelName": model_name,
            "deviceType": device_type,
            "alias": alias,
        }
    )


def device_unregistered_message(
    *, service_id: str, device_id: str, user_id: str, device_type: str, alias: str
) -> dict[str, Any]:
    return _push_message(
        {
            "pushType": DEVICE_UNREGISTERED,
            "serviceId": service_id,
            "deviceId": device_id,
            "userNumber": user_id,
            "deviceType": device_type,
            "alias": alias,
        }
    )


def device_alias_changed_message(
    *, service_id: str, device_id: str, user_id: str, alias: str
) -> dict[str, Any]:
    return _push_message(
        {
            "pushType": DEVICE_ALIAS_CHANGED,
            "serviceId": service_id,
            "deviceId": device_id,
            "userNumber": user_id,
            "alias": alias,
        }
    )


def pcc_event_message(
    *, device_id: str, device_type: str, diagnosis_type: str, content_url: str
) -> dict[str, Any]:
    now = utc_timestamp()
    return {
        "messageId": new_message_id(),
        "timestamp": now,
        "event": {
            "pushType": "PCC_EVENT",
            "deviceId": device_id,
            "deviceType": device_type,
            "diagnosisType": diagnosis_type,
            "contentUrl": content_url,
            "diagnosisTimestamp": now,
        },
    }


DEVICE_STATUS = "DEVICE_STATUS"


def device_status_event_message(
    *, device_id: str, device_type: str, user_id: str, report: dict[str, Any]
) -> dict[str, Any]:
    """A status event (our shape: LG's "Event Messages" page is not public; see
    simulator/events.py): the changed part of the status under ``event.report``."""
    return {
        "messageId": new_message_id(),
        "timestamp": utc_timestamp(),
        "event": {
            "pushType": DEVICE_STATUS,
            "deviceId": device_id,
            "deviceType": device_type,
            "userNumber": user_id,
            "report": report,
        },
    }
