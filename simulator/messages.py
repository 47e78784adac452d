"""Shapes LG uses on the wire: message ids, timestamps, callback bodies.

Callback shapes follow lg-api/notification-api.txt (DEVICE_PUSH under ``push``)
and lg-api/pcc-api.txt (PCC_EVENT under ``event``).
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


def device_push_message(
    *, service_id: str, device_id: str, device_type: str, push_code: str, user_id: str
) -> dict[str, Any]:
    return {
        "messageId": new_message_id(),
        "timestamp": utc_timestamp(),
        "push": {
            "pushType": "DEVICE_PUSH",
            "serviceId": service_id,
            "deviceId": device_id,
            "pushCode": push_code,
            "deviceType": device_type,
            "userList": [user_id],
        },
    }


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
