"""Small shared rules of the emulated VBS: identifier shapes, tag rules and query-parameter parsing.

Everything here is pure (no state); the backends call it and decide which error code a failure maps to,
because the same mistake carries a different code in each API family (reference §5e).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import EmulatorError, vbs
from ..state import PROJECT_ID_PATTERN

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
PROJECT_ID_RE = re.compile(PROJECT_ID_PATTERN)

# Backup tags (§2.1) and batch tag keys (§3.14) forbid ASCII 0-31 and these characters.
_FORBIDDEN_TAG_CHARS = set("=*<>\\,|/")

# Disk states in which a disk can be backed up (§2.1, §4.10).
BACKUPABLE = ("available", "in-use")


def is_uuid(value: object) -> bool:
    return isinstance(value, str) and bool(UUID_RE.match(value))


def has_forbidden_tag_chars(text: str) -> bool:
    return any(ord(ch) < 32 or ch in _FORBIDDEN_TAG_CHARS for ch in text)


def is_word(text: str) -> bool:
    """Letters, digits, `_` and `-` only (ASCII: policy names and policy tags, §3.1)."""
    return bool(re.fullmatch(r"[A-Za-z0-9_-]+", text))


def contains_angle_brackets(value: Any) -> bool:
    """True when any string anywhere in a decoded JSON value holds `<` or `>` (AutoBackup.0221)."""
    if isinstance(value, str):
        return "<" in value or ">" in value
    if isinstance(value, Mapping):
        return any(contains_angle_brackets(k) or contains_angle_brackets(v) for k, v in value.items())
    if isinstance(value, list):
        return any(contains_angle_brackets(v) for v in value)
    return False


def is_int(value: object) -> bool:
    """A JSON integer (bool is an int in Python but never on the wire)."""
    return isinstance(value, int) and not isinstance(value, bool)


def int_param(
    params: Mapping[str, str],
    name: str,
    default: int | None,
    error: Callable[[str], EmulatorError],
    *,
    minimum: int = 0,
    maximum: int | None = None,
) -> int | None:
    """A non-negative integer query parameter; `error(message)` builds the API family's error."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise error(f"invalid {name}: {raw!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise error(f"invalid {name}: {raw!r}")
    return value


def sort_dir_param(params: Mapping[str, str], default: str, error: Callable[[str], EmulatorError]) -> bool:
    """True for descending order."""
    raw = params.get("sort_dir") or default
    if raw not in ("asc", "desc"):
        raise error(f"invalid sort_dir: {raw!r}")
    return raw == "desc"


# Policy tags (§3.1, §3.10): key 1-36, value 0-43, letters/digits/`-`/`_`; at most 10 per policy.
MAX_POLICY_TAGS = 10


def valid_policy_tag(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and 1 <= len(key) <= 36
        and is_word(key)
        and isinstance(value, str)
        and len(value) <= 43
        and (value == "" or is_word(value))
    )


def check_policy_tags(tags: object) -> dict[str, str]:
    """The `tags` of a policy create request -> key: value (`.0215` too many, `.0214` invalid)."""
    if tags is None:
        return {}
    if not isinstance(tags, list):
        raise vbs("AutoBackup.0214", "tags must be a list")
    if len(tags) > MAX_POLICY_TAGS:
        raise vbs("AutoBackup.0215", "a policy has at most 10 tags")
    out: dict[str, str] = {}
    for tag in tags:
        key = tag.get("key") if isinstance(tag, dict) else None
        value = tag.get("value", "") if isinstance(tag, dict) else None
        if not valid_policy_tag(key, value) or key in out:
            raise vbs("AutoBackup.0214", f"invalid tag {tag!r}")
        out[str(key)] = str(value)
    return out
