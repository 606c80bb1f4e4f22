"""Text for people: one line, bounded."""

from __future__ import annotations

__all__ = ["cut", "one_line"]


def cut(text: str, limit: int) -> str:
    """`text`, cut to `limit` characters with a trailing ellipsis when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str, limit: int) -> str:
    """`text` with its whitespace (newlines included) collapsed to single spaces, then `cut`."""
    return cut(" ".join(text.split()), limit)
