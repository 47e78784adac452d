"""x-message-id values as LG specifies them (facts sheet §1.4).

A UUID4's 16 bytes, URL-safe base64, padding dropped: always 22 characters.
"""

from __future__ import annotations

import base64
import re
import uuid

MESSAGE_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22}$")


def new_message_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")


def is_valid_message_id(value: str) -> bool:
    return bool(MESSAGE_ID_PATTERN.match(value))
