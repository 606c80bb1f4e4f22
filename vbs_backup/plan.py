"""The typed backup plan: *what* to back up (which servers, which disks, retention, deadlines).

:class:`BackupPlan` is a pydantic model with a title and a description on every field, because Prefect
renders it as the run form in its UI. :func:`load_plan` reads one from YAML and turns every problem into one
:class:`PlanError` that lists each bad field as ``field.path: problem``. *Where* and *as whom* are the
settings' business (:mod:`vbs_backup.settings`).

This module is Prefect-free and touches neither the network nor the disk at import time.
"""

from __future__ import annotations

import fnmatch
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from vbs_backup.identity import DAY_MINUTES, identity_marker, slot_start

__all__ = [
    "BACKUP_NAME_MAX_LENGTH",
    "BackupPlan",
    "InputError",
    "PlanError",
    "RetentionRules",
    "ServerSelection",
    "load_plan",
    "plain_optional_fields",
    "read_yaml",
    "validate_plan",
    "validation_problems",
]

# VBS limits for a backup name (reference/vbs-api.md §3.1): 1-64 chars of letters, digits, "_" and "-",
# and never starting with "auto", which the service reserves for policy backups (VolumeBackup.0005).
BACKUP_NAME_MAX_LENGTH = 64
_RESERVED_NAME_PREFIX = "auto"
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_-]+$")
_NOT_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
# Tag keys and values (reference/vbs-api.md §3.1): none of these, nor ASCII control characters.
_TAG_FORBIDDEN = set("=*<>\\,|/") | {chr(c) for c in range(32)}
# Retention when a plan names none: RetentionRules itself refuses to keep nothing, and a plan without
# retention would grow (and bill) for ever.
DEFAULT_KEEP_DAILY = 7
DEFAULT_KEEP_WEEKLY = 4
# A device basename longer than this is cut, so that the server part of a name always keeps some room.
_DEVICE_MAX_LENGTH = 16
# A backup name's stamp: the slot start in the plan's timezone, ISO 8601 basic (20261129T0000), then a zone.
_NAME_STAMP = "%Y%m%dT%H%M"
# A zone abbreviation used as is in a name (CET, CEST, UTC, EST, AEDT); others ("+03") become an offset.
_ZONE_ABBREVIATION = re.compile(r"^[A-Za-z]{1,6}$")


class InputError(ValueError):
    """An input an operator wrote (a plan, an estate) is malformed. The message names the source and lists
    each problem as ``path: msg``; `what` names the kind of input."""

    what = "input"

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Invalid {self.what} {source}:\n{lines}")


class PlanError(InputError):
    """A backup plan is malformed."""

    what = "backup plan"


def _check_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError(
            f"{value!r} is not a server id (expected a UUID such as 3f1c2b7e-8d4a-4c55-9a0e-2b6f1d9c7a10)"
        ) from None


def _check_pattern(value: str) -> str:
    if not value.strip():
        raise ValueError("a name pattern must not be empty")
    return value


def _check_tag_text(value: str, *, what: str, min_len: int, max_len: int) -> str:
    if not min_len <= len(value) <= max_len:
        raise ValueError(f"{what} must be {min_len}-{max_len} characters, got {len(value)}")
    bad = sorted({c for c in value if c in _TAG_FORBIDDEN})
    if bad:
        shown = " ".join(repr(c) for c in bad)
        raise ValueError(
            f"{what} must not contain {shown} (forbidden: = * < > \\ , | / and control characters)"
        )
    return value


def _check_tag_key(value: str) -> str:
    return _check_tag_text(value, what="tag key", min_len=1, max_len=36)


def _check_tag_value(value: str) -> str:
    return _check_tag_text(value, what="tag value", min_len=0, max_len=43)


ServerId = Annotated[str, AfterValidator(_check_uuid)]
NamePattern = Annotated[str, AfterValidator(_check_pattern)]


# The plan's retention rules (the retention planner, vbs_backup.retention.planner, applies them).

_NULL = {"type": "null"}


def plain_optional_fields(schema: dict[str, Any]) -> None:
    """Show every optional field of a model's JSON schema (``int | None = None``, ``str | None = None``) as
    a plain, not required field with no default, instead of ``anyOf: [{type: integer}, {type: null}]`` and
    ``default: null``, which Prefect's run form labels "Property is type None". Use it as a model's
    ``json_schema_extra``.

    Only the JSON schema changes: the model still validates None (YAML's ``~``, Python's None). Prefect's
    server-side check of a run's parameters (``prefect.utilities.schema_tools.validate``) also still accepts
    null there: it adds a null branch to every typed property that is neither required nor defaulted.
    The default of a nested model (a plan's default retention) loses its null members likewise, so that the
    form starts with those fields empty.
    """
    for prop in schema.get("properties", {}).values():
        if isinstance(prop.get("default"), dict):
            prop["default"] = _without_nulls(prop["default"])
        branches = prop.get("anyOf")
        if not isinstance(branches, list) or _NULL not in branches or prop.get("default", None) is not None:
            continue
        rest = [b for b in branches if b != _NULL]
        if len(rest) != 1 or "type" not in rest[0]:
            continue  # a union of several types, or a model reference: left as pydantic wrote it
        del prop["anyOf"]
        prop.pop("default", None)
        for key, value in rest[0].items():
            prop.setdefault(key, value)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


_KEEP_RULES = (
    "keep_last",
    "keep_within_days",
    "keep_daily",
    "keep_weekly",
    "keep_monthly",
    "keep_yearly",
    "keep_first_of_month",
)


class RetentionRules(BaseModel):
    """How many backups of each disk to keep. Rules are OR-ed: a backup is kept if any rule keeps it.

    Days, weeks, months and years are counted in the timezone the rules name; when they name none, in
    their plan's schedule timezone (UTC for rules used on their own).
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", title="Retention rules", json_schema_extra=plain_optional_fields
    )

    keep_last: int | None = Field(
        default=None, ge=1, title="Keep last", description="Keep the N newest successful backups."
    )
    keep_within_days: int | None = Field(
        default=None,
        ge=1,
        title="Keep within days",
        description="Keep every successful backup taken in the last N days.",
    )
    keep_daily: int | None = Field(
        default=None,
        ge=1,
        title="Keep daily",
        description="Keep the newest successful backup of each of the last N days that have one.",
    )
    keep_weekly: int | None = Field(
        default=None,
        ge=1,
        title="Keep weekly",
        description="Keep the newest successful backup of each of the last N ISO weeks that have one.",
    )
    keep_monthly: int | None = Field(
        default=None,
        ge=1,
        title="Keep monthly",
        description="Keep the newest successful backup of each of the last N months that have one.",
    )
    keep_yearly: int | None = Field(
        default=None,
        ge=1,
        title="Keep yearly",
        description="Keep the newest successful backup of each of the last N years that have one.",
    )
    keep_first_of_month: bool = Field(
        default=False,
        title="Keep first of month",
        description="Keep the first successful backup of every calendar month, as VBS policies do with "
        "remain_first_backup_of_curMonth. Unbounded: one backup per month is kept for ever.",
    )
    min_successful: int = Field(
        default=2,
        ge=1,
        title="Minimum successful backups",
        description="The newest N successful backups of each disk are always kept, whatever the rules say.",
    )
    min_verified: int = Field(
        default=0,
        ge=0,
        title="Minimum drill-verified backups",
        description="The newest N successful backups of each disk that passed a restore drill are always "
        "kept as well, whatever the rules say (0: off). Use it with scheduled restore drills.",
    )
    timezone: str | None = Field(
        default=None,
        title="Timezone",
        description="IANA timezone (e.g. Europe/Paris) in which days, weeks, months and years are counted. "
        "Empty: the plan's schedule timezone.",
    )
    # The zone an empty `timezone` stands for: the plan's schedule timezone once a plan holds these rules.
    # Not a field: the rules as written (their dump, their equality) stay "the plan's timezone".
    _inherited_timezone: str = PrivateAttr(default="UTC")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: ZoneInfo("America") finds a directory, not a zone.
            raise ValueError(
                f"unknown IANA timezone {value!r} (expected a name like 'Europe/Paris')"
            ) from None
        return value

    @model_validator(mode="after")
    def _keeps_something(self) -> Self:
        if not any(getattr(self, name) for name in _KEEP_RULES):
            raise ValueError(f"retention keeps nothing: set at least one of {', '.join(_KEEP_RULES)}")
        return self

    def __eq__(self, other: object) -> bool:
        # The rules as written: an inherited timezone is the plan's (which compares its own).
        if not isinstance(other, RetentionRules):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def in_timezone(self, timezone: str) -> RetentionRules:
        """These rules counting in `timezone` (an IANA name) unless they name a timezone of their own."""
        ZoneInfo(timezone)  # an unknown zone fails here, not when the rules are applied
        rules = self.model_copy()
        rules._inherited_timezone = timezone
        return rules

    @property
    def effective_timezone(self) -> str:
        """The IANA timezone in which these rules count days: their own, else the inherited one."""
        return self.timezone or self._inherited_timezone

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.effective_timezone)


class ServerSelection(BaseModel):
    """Which ECS servers to back up.

    A server is selected when its id is in ``ids``, OR its name matches one of ``name_patterns``, OR it
    carries every tag of ``tags`` (when ``tags`` is not empty). Exclusions then win over everything.
    Name patterns are shell globs (``web-*``, ``db-?``), matched case-sensitively.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="Server selection", json_schema_extra=plain_optional_fields
    )

    ids: list[ServerId] = Field(
        default_factory=list, title="Server ids", description="ECS server ids (UUIDs) to back up."
    )
    name_patterns: list[NamePattern] = Field(
        default_factory=list,
        title="Server name patterns",
        description="Shell-style globs on the server name, e.g. web-* (case-sensitive).",
    )
    tags: dict[str, str] = Field(
        default_factory=dict,
        title="Server tags",
        description="Select servers that carry all of these tags (key: value).",
    )
    exclude_ids: list[ServerId] = Field(
        default_factory=list, title="Excluded server ids", description="Never back up these servers (UUIDs)."
    )
    exclude_name_patterns: list[NamePattern] = Field(
        default_factory=list,
        title="Excluded name patterns",
        description="Never back up servers whose name matches one of these globs.",
    )

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key.strip():
                raise ValueError("tag keys must not be empty")
        return value

    @model_validator(mode="after")
    def _something_selected(self) -> ServerSelection:
        if not (self.ids or self.name_patterns or self.tags):
            raise ValueError("select servers with at least one of ids, name_patterns or tags (all are empty)")
        return self

    def matches(self, *, server_id: str, name: str, tags: Mapping[str, str] | None = None) -> bool:
        """True if the server with this id, name and tags is selected and not excluded."""
        tags = tags or {}
        server_id = server_id.lower()
        if server_id in self.exclude_ids or any(
            fnmatch.fnmatchcase(name, p) for p in self.exclude_name_patterns
        ):
            return False
        return (
            server_id in self.ids
            or any(fnmatch.fnmatchcase(name, p) for p in self.name_patterns)
            or (bool(self.tags) and all(tags.get(k) == v for k, v in self.tags.items()))
        )


class BackupPlan(BaseModel):
    """What to back up, how, and how long to keep it. Rendered by Prefect as the run form.

    Times shown to people (backup names, log lines) are in the schedule timezone and say which it is.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, title="Backup plan", json_schema_extra=plain_optional_fields
    )

    name: str = Field(
        default="nightly",
        min_length=1,
        max_length=32,
        title="Plan name",
        description="Short name of this plan (letters, digits, - and _). It is the plan's identity: it is "
        "written on every backup the plan creates, and the plan's retention only ever touches backups that "
        "carry it. Renaming a plan makes a new plan; the old one's backups are then never deleted by it.",
    )
    selection: ServerSelection = Field(
        title="Servers", description="Which servers to back up; each of their EVS disks is backed up."
    )
    include_system_disk: bool = Field(
        default=True, title="Include system disk", description="Also back up each server's system disk."
    )
    name_prefix: str = Field(
        default="vbsb",
        min_length=1,
        max_length=20,
        title="Backup name prefix",
        description="Start of every backup name (letters, digits, - and _; must not start with 'auto', "
        "which VBS reserves). Names are for people; ownership is the plan's identity on the backup.",
    )
    tag_key: str = Field(
        default="managed-by",
        min_length=1,
        max_length=36,
        title="Ownership tag key",
        description="Tag key put on every backup we create (1-36 chars).",
    )
    tag_value: str = Field(
        default="vbs-backup",
        max_length=43,
        title="Ownership tag value",
        description="Tag value put on every backup we create (0-43 chars).",
    )
    disk_deadline_minutes: int = Field(
        default=60,
        ge=1,
        le=1440,
        title="Per-disk deadline (minutes)",
        description="A disk whose backup job has not finished by then is recorded as timed out.",
    )
    max_concurrent_servers: int = Field(
        default=50,
        ge=1,
        le=1000,
        title="Servers in parallel",
        description="Servers whose disks are being backed up at the same time.",
    )
    max_concurrent_jobs: int = Field(
        default=200,
        ge=1,
        le=5000,
        title="Backup jobs in flight",
        description="Backup jobs running at the same time, across all servers (VBS runs one per disk).",
    )
    full_backup_every_days: int | None = Field(
        default=None,
        ge=1,
        title="Force a full backup every N days",
        description="Ask VBS for a full (not incremental) backup when the disk's last full backup is "
        "older than this. Empty: never force.",
    )
    retry_failed_job_once: bool = Field(
        default=False,
        title="Retry a failed job once",
        description="When a disk's backup job fails, submit it once more within the same run.",
    )
    retention: RetentionRules = Field(
        # An instance, not a factory, so that the default shows in the JSON schema (the Prefect form);
        # sharing it is safe because RetentionRules is frozen.
        default=RetentionRules(keep_daily=DEFAULT_KEEP_DAILY, keep_weekly=DEFAULT_KEEP_WEEKLY),
        title="Retention",
        description="Which of our own backups to keep per disk; the rest are deleted. Days, weeks, months "
        "and years are counted in the schedule timezone unless the rules name a timezone of their own. "
        f"Default: keep {DEFAULT_KEEP_DAILY} daily and {DEFAULT_KEEP_WEEKLY} weekly backups.",
    )
    poll_interval_seconds: float = Field(
        default=10.0,
        ge=0.1,
        le=600,
        title="Poll interval (seconds)",
        description="Time between two rounds of job polling. One round costs one backups-list request "
        "plus one job request per finished job, whatever the number of jobs in flight.",
    )
    slot_minutes: int = Field(
        default=1440,
        ge=1,
        le=10080,
        title="Schedule slot (minutes)",
        description="Length of one schedule slot: less than a day (counted in real minutes from local "
        "midnight, so DST nights keep every hour), or whole days (1440 = a day, 10080 = an ISO week). "
        "A plan keeps one backup per disk per slot: a re-run in the same slot adopts what exists.",
    )
    dry_run: bool = Field(
        default=False,
        title="Dry run",
        description="Show what would be backed up and deleted without creating or deleting anything.",
    )
    schedule_timezone: str = Field(
        default="UTC",
        title="Schedule timezone",
        description="IANA timezone of the schedule, e.g. Europe/Paris: slots start at its local midnight, "
        "backup names show its local time, and retention counts its days unless it names another timezone.",
    )

    @field_validator("slot_minutes")
    @classmethod
    def _check_slot_minutes(cls, value: int) -> int:
        if value >= DAY_MINUTES and value % DAY_MINUTES:
            raise ValueError(
                f"a slot longer than a day must be whole days (1440, 2880, ... 10080), got {value}"
            )
        return value

    @field_validator("name", "name_prefix")
    @classmethod
    def _check_name_chars(cls, value: str) -> str:
        if not _NAME_CHARS.match(value):
            raise ValueError("only letters, digits, '-' and '_' are allowed")
        return value

    @field_validator("name_prefix")
    @classmethod
    def _check_not_reserved(cls, value: str) -> str:
        if value.lower().startswith(_RESERVED_NAME_PREFIX):
            raise ValueError("must not start with 'auto': VBS reserves that prefix for policy backups")
        return value

    @field_validator("tag_key")
    @classmethod
    def _check_tag_key(cls, value: str) -> str:
        return _check_tag_key(value)

    @field_validator("tag_value")
    @classmethod
    def _check_tag_value(cls, value: str) -> str:
        return _check_tag_value(value)

    @field_validator("schedule_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            # OSError: ZoneInfo("Europe") finds a directory, not a zone.
            raise ValueError(f"{value!r} is not an IANA timezone (e.g. UTC, Europe/Paris)") from None
        return value

    def backup_name(self, server_name: str, device: str, slot: datetime) -> str:
        """The deterministic backup name of one disk for one schedule slot, for people to read.

        Shape: ``{name_prefix}-{server}-{dev}-{stamp}``, e.g. ``vbsb-web-01-vdb-20261129T0000CET``, where

        * ``server`` is ``server_name`` with every run of characters other than letters, digits, ``_`` and
          ``-`` replaced by one ``-`` (``"server"`` if nothing is left), cut so that the whole name has at
          most 64 characters (the VBS limit);
        * ``dev`` is the basename of the device (``/dev/vdb`` -> ``vdb``), sanitized the same way
          (``"disk"`` if nothing is left) and cut to 16 characters;
        * ``stamp`` is the slot start (timezone-aware) in :attr:`schedule_timezone`, to the minute, with
          the zone it is read in (:meth:`name_stamp`): ``20261129T0000CET`` is 29 November 2026, 00:00
          Paris time. On an autumn DST night the repeated hour's two slots read ``20261025T0200CEST`` and
          ``20261025T0200CET``: a name never stands for two slots.

        The same inputs always give the same name. The name never starts with ``auto`` because the prefix
        may not. A name is decoration: a backup's identity is the plan's marker in its description (see
        :mod:`vbs_backup.identity`), and an attempt remembers the name its create sent.
        """
        stamp = self.name_stamp(slot)
        dev = _sanitize(device.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1])[:_DEVICE_MAX_LENGTH]
        dev = dev or "disk"
        room = BACKUP_NAME_MAX_LENGTH - len(self.name_prefix) - len(dev) - len(stamp) - 3
        # room >= 1: the prefix has at most 20 characters, dev at most 16 and the stamp at most 24 (13 and
        # a zone of at most 11); it is 38 for the default prefix, a device such as vdb and a CET stamp.
        server = _sanitize(server_name)[:room].strip("-") or "server"[:room]
        return f"{self.name_prefix}-{server}-{dev}-{stamp}"

    @property
    def zone(self) -> ZoneInfo:
        """The plan's :attr:`schedule_timezone`."""
        return ZoneInfo(self.schedule_timezone)

    def name_stamp(self, slot: datetime) -> str:
        """The slot start (aware) as a backup name ends: local time in :attr:`schedule_timezone` to the
        minute, ISO 8601 basic, then the zone's abbreviation: ``20261129T0000CET``, ``20260715T0000CEST``,
        ``20261129T0000UTC``. Only letters, digits and ``-`` (VBS names refuse ``+``): a zone whose
        abbreviation is numeric (``+03``) shows its offset, ``UTCp03`` (p: plus, m: minus, ``UTCm0330``);
        an abbreviation that reads alike on both sides of a change of offset gets it too (``MSKp04``)."""
        if slot.tzinfo is None or slot.utcoffset() is None:
            raise ValueError("slot must be a timezone-aware datetime")
        local = slot.astimezone(self.zone)
        return local.strftime(_NAME_STAMP) + _zone_designator(local)

    def local(self, moment: datetime, *, seconds: bool = False) -> str:
        """`moment` as an operator reads it: in the plan's :attr:`schedule_timezone`, with the zone's
        abbreviation, e.g. ``2026-11-30 02:00 CET`` (``2026-11-30 02:00:07 CET`` with `seconds`). A naive
        `moment` is taken as UTC (the ledger's convention). For log lines, artifacts and messages. In the
        rare zone whose abbreviation stays the same across a change of offset, an hour that occurs twice
        also shows its offset (``2014-10-26 01:00 MSK+04:00``)."""
        if moment.tzinfo is None or moment.utcoffset() is None:
            moment = moment.replace(tzinfo=UTC)
        local = moment.astimezone(self.zone)
        zone = local.tzname() or local.strftime("%z")
        other = local.replace(fold=1 - local.fold)
        if other.utcoffset() != local.utcoffset() and other.tzname() == local.tzname():
            zone += _offset_text(local.utcoffset() or timedelta(0))
        return f"{local.strftime('%Y-%m-%d %H:%M:%S' if seconds else '%Y-%m-%d %H:%M')} {zone}"

    @model_validator(mode="after")
    def _retention_in_schedule_timezone(self) -> Self:
        # Rules that name no timezone count days in the schedule's. A copy: the default rules are shared.
        # (Validation does it: a model_copy that changes schedule_timezone keeps the rules' old zone.)
        if self.retention.timezone is None and self.retention.effective_timezone != self.schedule_timezone:
            object.__setattr__(self, "retention", self.retention.in_timezone(self.schedule_timezone))
        return self

    def schedule_slot(self, now: datetime) -> datetime:
        """The start (UTC) of the slot containing `now` (aware): an absolute time interval, correct across
        DST (see :mod:`vbs_backup.identity`). A nightly run at 02:00 and its re-run at 03:15 share a slot."""
        return slot_start(now, self.slot_minutes, self.schedule_timezone)

    def identity_marker(self, slot: datetime) -> str:
        """The description of every backup this plan creates in `slot`: the plan's identity and the slot,
        read back from the cloud to decide adoption and ownership."""
        return identity_marker(self.name, slot)

    def legacy_ownership_marker(self) -> str:
        """The description that versions before plan-scoped identities wrote (``tag_key=tag_value``). Such a
        backup is ours only with a migrated ledger row of this plan that names it exactly."""
        return f"{self.tag_key}={self.tag_value}"[:64]

    def is_own_backup_name(self, name: str | None) -> bool:
        """True if ``name`` has the shape of a name this plan creates (prefix and dash)."""
        return name is not None and name.startswith(f"{self.name_prefix}-")

    def backup_tags(self) -> dict[str, str]:
        """The ownership tag to put on every backup this plan creates."""
        return {self.tag_key: self.tag_value}


def _sanitize(text: str) -> str:
    return _NOT_NAME_CHARS.sub("-", text.strip()).strip("-")


def _offset_text(offset: timedelta) -> str:
    """``+04:00``, ``-03:30``: a UTC offset as people write it."""
    minutes = abs(offset) // timedelta(minutes=1)
    return f"{'-' if offset < timedelta(0) else '+'}{minutes // 60:02d}:{minutes % 60:02d}"


def _offset_designator(offset: timedelta) -> str:
    """``p0100``, ``m0330``, ``p00``: a UTC offset in name characters (p: plus, m: minus; minutes if any)."""
    sign = "m" if offset < timedelta(0) else "p"
    minutes = abs(offset) // timedelta(minutes=1)
    hours, rest = divmod(minutes, 60)
    return f"{sign}{hours:02d}{rest:02d}" if rest else f"{sign}{hours:02d}"


def _zone_designator(local: datetime) -> str:
    """The zone of `local` (aware, in a ZoneInfo) in name characters, telling its two readings apart on a
    night that repeats an hour: the abbreviation when it is letters and differs between the two (CEST then
    CET), else with the offset (``MSKp04``/``MSKp03``); ``UTC`` and the offset for a numeric abbreviation."""
    offset = local.utcoffset() or timedelta(0)
    abbreviation = local.tzname() or ""
    if not _ZONE_ABBREVIATION.match(abbreviation):
        return f"UTC{_offset_designator(offset)}"
    other = local.replace(fold=1 - local.fold)  # the same wall time, read on the other side of a change
    if other.utcoffset() != offset and other.tzname() == abbreviation:
        return f"{abbreviation}{_offset_designator(offset)}"
    return abbreviation


# --------------------------------------------------------------------------------------------------------
# Loading plans
# --------------------------------------------------------------------------------------------------------


def validation_problems(exc: ValidationError, *, whole: str = "(plan)") -> list[str]:
    """A pydantic error as our one-line problems, `field.path: problem` (`whole` for the whole input)."""
    problems = []
    for err in exc.errors(include_url=False):
        path = ".".join(str(part) for part in err["loc"]) or whole
        msg = err["msg"]
        for noise in ("Value error, ", "Assertion failed, "):
            if msg.startswith(noise):
                msg = msg[len(noise) :]
        problems.append(f"{path}: {msg}")
    return problems


def validate_plan(data: Any, *, source: str = "(inline)") -> BackupPlan:
    """Validate plain data (e.g. parsed YAML or JSON) into a plan, raising :class:`PlanError` on problems."""
    if not isinstance(data, Mapping):
        kind = "empty" if data is None else f"a {type(data).__name__}"
        raise PlanError(source, [f"(plan): expected a mapping of plan fields, got {kind}"])
    try:
        return BackupPlan.model_validate(dict(data))
    except ValidationError as exc:
        raise PlanError(source, validation_problems(exc)) from None


def read_yaml(path: str | Path) -> Any:
    """The data of a YAML file (a plan, an estate); a file that cannot be read or parsed is a ValueError
    whose message is one line, `(file): ...`, for the caller's list of problems."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"(file): cannot read: {exc.strerror or exc}") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValueError(f"(file): not valid YAML{where}: {problem}") from None


def load_plan(path: str | Path) -> BackupPlan:
    """Read a :class:`BackupPlan` from a YAML file; any problem becomes one :class:`PlanError`."""
    source = f"in {path}"
    try:
        data = read_yaml(path)
    except ValueError as exc:
        raise PlanError(source, [str(exc)]) from exc.__cause__
    return validate_plan(data, source=source)
