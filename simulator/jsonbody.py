"""Strict JSON request bodies for both APIs.

Numbers with a fraction become ``Decimal`` so range steps are checked exactly;
NaN and Infinity are refused (they are not JSON, though Python accepts them).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from aiohttp import web

NO_BODY: Any = object()  # returned for an empty body, which some endpoints allow


class BadJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise BadJson(f"{name} is not valid JSON")


def loads(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_float=Decimal, parse_constant=_refuse_constant)
    except BadJson:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadJson("the body is not valid JSON") from exc


async def read_json(request: web.Request) -> Any:
    """The parsed body, ``NO_BODY`` when there is none, or ``BadJson``."""
    raw = await request.read()
    if not raw.strip():
        return NO_BODY
    return loads(raw)
