"""Building blocks shared by every wire model: the base classes, the odd wire types, ids and links.

Owned here:
* `WireModel` (responses: unknown fields are kept, so the client survives additions to the API) and
  `WireRequest` (requests: `to_body()` dumps by alias without `None`s, inside the documented wrapper key);
* the wire quirks as annotated types: zone-less UTC timestamps (`UtcDateTime`), `"Y"/"N"` flags (`YesNo`),
  integers that travel as JSON strings (`StrInt`), integers that sometimes arrive as strings (`LenientInt`);
* the path-id checks (`require_uuid`, `require_opaque_id`, `require_tag_key`) the facades run before any
  request is sent, and `path_segment`, which turns a free-text value into exactly one path segment;
* `decode`, the one place a response body becomes a model (a wrong shape is an `InvalidResponseError`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from enum import Enum
from typing import Annotated, Any, ClassVar, TypeVar
from urllib.parse import parse_qs, quote, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
)

from ..errors import InvalidResponseError

__all__ = [
    "LenientInt",
    "Link",
    "OptionalUtcDateTime",
    "StrInt",
    "Tag",
    "TagValues",
    "UtcDateTime",
    "WireModel",
    "WireRequest",
    "YesNo",
    "declared_query",
    "decode",
    "invalid_fields",
    "is_project_id",
    "known_or_raw",
    "next_marker",
    "parse_utc",
    "path_segment",
    "query_params",
    "require_opaque_id",
    "require_tag_key",
    "require_uuid",
    "wire_name",
]


class WireModel(BaseModel):
    """Base of every response model: extra fields are allowed and kept (`model_extra`), and fields can be
    filled by their Python name as well as by their wire alias."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def wire_name(name: str) -> Any:
    """Field metadata for a field whose wire name is not a Python name (`rentention_num`, `volumeId`,
    `os-bak-tenant-attr:tenant_id`): read under `name`, written under `name` by `model_dump(by_alias=True)`,
    constructed in Python by the field's own name. Unlike `alias=`, type checkers see the Python name."""
    return Field(validation_alias=name, serialization_alias=name)


class WireRequest(WireModel):
    """Base of every request model. `wrapper` is the key the documented body nests the object under
    (`{"backup": {...}}`), or None for a bare object."""

    wrapper: ClassVar[str | None] = None

    def to_body(self) -> dict[str, Any]:
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {self.wrapper: data} if self.wrapper else data


# ---------------------------------------------------------------------------------------------------------
# Timestamps (reference §0.3): backups/shares `YYYY-MM-DDTHH:MM:SS[.ffffff]` without a zone, jobs `...Z`,
# tasks `....mmm` without a zone, IAM `...ffffffZ`. Everything zone-less is UTC.

_TIME_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from any of the wire forms above; None for null or an empty string."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if not isinstance(value, str):
        raise ValueError(f"expected a timestamp string, got {type(value).__name__}")
    m = _TIME_RE.match(value.strip())
    if m is None:
        raise ValueError(f"not a timestamp: {value!r}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    # 0-6 fractional digits are documented; more are truncated rather than rejected.
    micro = int((m.group(7) or "").ljust(6, "0")[:6])
    tz = UTC
    zone = m.group(8)
    if zone and zone not in ("Z", "z"):
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz).astimezone(UTC)


UtcDateTime = Annotated[datetime, BeforeValidator(parse_utc)]
OptionalUtcDateTime = Annotated[datetime | None, BeforeValidator(parse_utc)]


# ---------------------------------------------------------------------------------------------------------
# Scalars with a wire quirk


def _yes_no(value: Any) -> Any:
    if isinstance(value, str) and value.strip().upper() in ("Y", "N"):
        return value.strip().upper() == "Y"
    return value


# `remain_first_backup_of_curMonth`: a bool in Python, the strings "Y"/"N" on the wire (§3.0).
YesNo = Annotated[
    bool,
    BeforeValidator(_yes_no),
    PlainSerializer(lambda flag: "Y" if flag else "N", return_type=str),
]

# Tag-query `limit`/`offset` are JSON strings on the wire (§3.15); ints in Python.
StrInt = Annotated[int, PlainSerializer(lambda number: str(number), return_type=str)]


def _lenient_int(value: Any) -> Any:
    # ECS sends sizes and boot indexes as ints on one page and as strings ("0", "") on another (§5a).
    if isinstance(value, str) and not value.strip():
        return None
    return value


LenientInt = Annotated[int | None, BeforeValidator(_lenient_int)]


E = TypeVar("E", bound=Enum)


def known_or_raw(enum: type[E]) -> BeforeValidator:
    """A validator for `Enum | str` fields: a documented value becomes the enum member, an undocumented one
    stays a plain string (a status the docs do not list must not make a whole listing unreadable)."""

    def convert(value: Any) -> Any:
        try:
            return enum(value)
        except ValueError:
            return value

    return BeforeValidator(convert)


# ---------------------------------------------------------------------------------------------------------
# Small shared shapes


class Link(WireModel):
    href: str
    rel: str | None = None


def next_marker(links: list[Link] | None) -> str | None:
    """The `marker` of the `rel="next"` link, or None. Only the marker is used: the documented example link
    lacks the `/v2` segment, so the URL itself is not trusted (§2.5)."""
    for link in links or ():
        if link.rel == "next":
            values = parse_qs(urlsplit(link.href).query).get("marker")
            if values and values[0]:
                return values[0]
    return None


class Tag(WireModel):
    """One `{key, value}` tag (backups, policies)."""

    key: str
    value: str = ""


class TagValues(WireModel):
    """One key with several values: the project-wide tag list (§3.12) and tag-query filters (§3.15)."""

    key: str
    values: list[str] = []


# ---------------------------------------------------------------------------------------------------------
# Path ids and response decoding

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# A project id (the first path segment of every VBS, ECS and EVS URL, and a share's target): IAM shows it as
# 32 lowercase hexadecimal characters. The one rule for it: the settings, the session and sharing use it.
_PROJECT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# RFC 3986 unreserved characters: safe in a path segment without any encoding.
_OPAQUE_RE = re.compile(r"^[A-Za-z0-9._~-]{1,255}$")


def is_project_id(value: Any) -> bool:
    """Whether `value` is a project id: 32 lowercase hexadecimal characters."""
    return isinstance(value, str) and _PROJECT_ID_RE.match(value) is not None


def require_uuid(name: str, value: Any) -> str:
    """`value` when it is a UUID string (backup, volume, snapshot, policy and share ids, §0.3), else a
    ValueError naming the argument. Checked before sending, so a typo never becomes a confusing 404."""
    if not isinstance(value, str) or not _UUID_RE.match(value):
        raise ValueError(f"{name} must be a UUID like 87566ed6-72cb-4053-aa6e-6f6216b3d507, got {value!r}")
    return value


def require_opaque_id(name: str, value: Any) -> str:
    """`value` when it is a non-empty URL-safe id (job ids are opaque: 32 hex or UUID-like, §0.3)."""
    if not isinstance(value, str) or not _OPAQUE_RE.match(value) or value in (".", ".."):
        raise ValueError(
            f"{name} must be a non-empty id of letters, digits, '-', '_', '.', '~', got {value!r}"
        )
    return value


# Tag keys (§2.1, §3.14): 1-36 characters, none of ASCII 0-31 nor `= * < > \ , | /`.
TAG_KEY_MAX = 36
_TAG_KEY_FORBIDDEN = re.compile(r"[\x00-\x1f=*<>\\,|/]")


def require_tag_key(value: Any, name: str = "key") -> str:
    """`value` when it is a tag key as documented (1-36 characters, no control character and none of
    `= * < > \\ , | /`), else a ValueError naming the argument (the value is not echoed: it may be long)."""
    if not isinstance(value, str) or not 1 <= len(value) <= TAG_KEY_MAX:
        raise ValueError(f"{name} must be a tag key of 1 to {TAG_KEY_MAX} characters")
    if _TAG_KEY_FORBIDDEN.search(value):
        raise ValueError(f"{name} must not contain control characters nor any of = * < > \\ , | /")
    return value


def path_segment(name: str, value: str) -> str:
    """`value` as exactly one path segment: percent-encoded, `/` included (`#` -> `%23`, §3.11). A value
    that no encoding keeps in place is refused with a ValueError: `.` and `..` are dot segments, which
    httpx (and any RFC 3986 normaliser) removes, so `DELETE .../tags/..` would become a DELETE of the
    parent resource. `CloudSession.request` refuses such paths too, for every segment of every call."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if value in (".", ".."):
        raise ValueError(f"{name} {value!r} cannot be sent as a path segment (it is a dot segment)")
    return quote(value, safe="")


def query_params(**params: Any) -> dict[str, Any]:
    """Query parameters without the unset ones; booleans spelled `true`/`false` as the API documents."""
    return {
        key: ("true" if value else "false") if isinstance(value, bool) else value
        for key, value in params.items()
        if value is not None
    }


def declared_query(declared: Any, given: Mapping[str, Any]) -> dict[str, Any]:
    """The query of one listing, from the filters its resource declares once (a `TypedDict`, as
    openstacksdk's `_query_mapping`) rather than retyped in each method: `given` checked against them (an
    undeclared name is a TypeError, as a misspelt keyword argument is), then `query_params`."""
    known = declared.__required_keys__ | declared.__optional_keys__
    unknown = sorted(set(given) - known)
    if unknown:
        raise TypeError(f"unknown query parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return query_params(**given)


M = TypeVar("M")


@functools.lru_cache(maxsize=64)
def _adapter(tp: Any) -> TypeAdapter[Any]:
    # Building a TypeAdapter compiles a validator; list[Share] and friends are reused on every call.
    return TypeAdapter(tp)


def invalid_fields(exc: ValidationError) -> list[str]:
    """The top-level fields (wire names) that a validation error is about, sorted; `<body>` for an input
    that is not an object at all. Names only, never values: they go into log lines."""
    return sorted({str(err["loc"][0]) if err["loc"] else "<body>" for err in exc.errors(include_input=False)})


def decode(model: type[M] | TypeAdapter[M], data: Any, *, operation: str) -> M:
    """`data` (a decoded JSON body or part of one) as `model`; a shape we cannot read becomes an
    `InvalidResponseError` naming the operation and the bad fields (never the input values)."""
    try:
        if isinstance(model, type) and issubclass(model, BaseModel):
            return model.model_validate(data)
        adapter = model if isinstance(model, TypeAdapter) else _adapter(model)  # type: ignore[arg-type]
        return adapter.validate_python(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)[:5]
        )
        raise InvalidResponseError(f"{operation}: unexpected response body ({problems})") from exc
