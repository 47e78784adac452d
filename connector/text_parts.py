"""Long texts cut into messages a channel accepts, at a line break or space if possible."""

from __future__ import annotations


def text_parts(text: str, limit: int) -> list[str]:
    """``text`` as pieces of at most ``limit`` characters, in order.

    A piece ends at the last line break in its second half, else the last space there,
    else exactly at ``limit`` (one very long word). Whitespace at the cuts is dropped; a
    text within the limit is returned whole and unchanged.
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]  # a break right after the limit still fits the piece
        cut = window.rfind("\n", limit // 2)
        if cut < 0:
            cut = window.rfind(" ", limit // 2)
        if cut < 0:
            cut = limit
        piece = rest[:cut].rstrip()
        if piece:
            parts.append(piece)
        rest = rest[cut:].lstrip()
    if rest or not parts:
        parts.append(rest)
    return parts
