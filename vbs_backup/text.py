"""Text for people: one line, bounded."""

from __future__ import annotations

__all__ = ["one_line"]


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace (newlines included) collapsed to single spaces, cut to `limit`
    characters with a trailing ellipsis when longer."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
