"""The policy file: its pydantic model and loading it from YAML. Every problem becomes one `PolicyFileError`
line naming its field as `policies[NAME].retention.retention_num`.

Ranges are checked on the widest documented values (frequency 1-30, rentention_num 2-99, rentention_day
2-99999, §3.1); a cloud with narrower ones (eu-west-0's modify page: 1-14 / 2-14) answers
AutoBackup.0106/.0107, which apply reports against the policy. Names are not refused for starting with
`default` (a cloud's own default policy must survive an import); the service says no when it cares.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..cloud.models.policies import (
    PolicyStatus,
    ScheduledPolicy,
)

WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_HOUR = re.compile(r"^([01]\d|2[0-3]):00$")
_TZ = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")
_TAG_KEY = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_TAG_VALUE = re.compile(r"^[A-Za-z0-9_-]{0,43}$")


class PolicyFileError(ValueError):
    """The policy file is malformed, or names disks/servers the cloud does not have. Nothing was changed."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"Invalid policy file {source}:\n" + "\n".join(f"  - {p}" for p in problems))


# --------------------------------------------------------------------------------------------------------
# The file model


def tz_minutes(time_zone: str | None) -> int:
    """`UTC+02:00` -> 120; None (no time zone) is UTC."""
    if time_zone is None:
        return 0
    m = _TZ.match(time_zone)
    if m is None:
        raise ValueError(f"{time_zone!r} is not a time zone like UTC+02:00")
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    return minutes if m.group(1) == "+" else -minutes


class ServerRef(BaseModel):
    """A server whose disks are members: `{id: ...}`, `{name: ...}`, or a plain string (a UUID is an id,
    anything else a name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str | None = None
    name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return {"id": str(uuid.UUID(value))}
            except ValueError:
                return {"name": value}
        return value

    @model_validator(mode="after")
    def _one_of(self) -> ServerRef:
        if (self.id is None) == (self.name is None):
            raise ValueError("give a server by id or by name (exactly one)")
        return self

    @property
    def label(self) -> str:
        return f"id {self.id}" if self.id else f"name {self.name!r}"


class Members(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    disks: list[str] = Field(default_factory=list, description="EVS disk ids (UUIDs).")
    servers: list[ServerRef] = Field(default_factory=list, description="Every disk of these servers.")
    include_system_disk: bool = Field(default=True, description="With servers: their system disks too.")

    @field_validator("disks")
    @classmethod
    def _uuids(cls, value: list[str]) -> list[str]:
        bad = []
        for item in value:
            try:
                uuid.UUID(item)
            except (ValueError, AttributeError, TypeError):
                bad.append(repr(item))
        if bad:
            raise ValueError(f"not a disk id (UUID): {', '.join(bad)}")
        return [str(uuid.UUID(v)) for v in value]


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start_time: list[str] = Field(description='Whole UTC hours, "HH:00"; a list or "02:00,14:00".')
    frequency: int | None = Field(default=None, description="Every N days (1-30).")
    week_frequency: list[str] | None = Field(default=None, description="Weekdays: SUN, MON, ... SAT.")

    @field_validator("start_time", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",")]
        if isinstance(value, list):
            # YAML 1.1 reads an unquoted 12:00 as the base-60 integer 720: give it back its clock form
            return [
                f"{v // 60:02d}:{v % 60:02d}" if isinstance(v, int) and not isinstance(v, bool) else v
                for v in value
            ]
        return value

    @field_validator("start_time")
    @classmethod
    def _hours(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one start time")
        bad = [v for v in value if not _HOUR.match(v)]
        if bad:
            raise ValueError(f"start times are whole UTC hours like 02:00, not {', '.join(map(repr, bad))}")
        if len(set(value)) != len(value):
            raise ValueError("a start time is listed twice")
        return value

    @field_validator("frequency")
    @classmethod
    def _frequency(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 30:
            raise ValueError("frequency is a number of days from 1 to 30 (AutoBackup.0106 otherwise)")
        return value

    @field_validator("week_frequency", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return [v.upper() if isinstance(v, str) else v for v in value] if isinstance(value, list) else value

    @field_validator("week_frequency")
    @classmethod
    def _weekdays(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        bad = [d for d in value if d not in WEEKDAYS]
        if not value or bad or len(set(value)) != len(value):
            raise ValueError(f"a non-empty list of distinct weekdays among {', '.join(WEEKDAYS)}")
        return sorted(value, key=WEEKDAYS.index)

    @model_validator(mode="after")
    def _one_of(self) -> Schedule:
        if (self.frequency is None) == (self.week_frequency is None):
            raise ValueError("give frequency (every N days) or week_frequency (weekdays), exactly one")
        return self

    @property
    def hours(self) -> frozenset[int]:
        return frozenset(int(t[:2]) for t in self.start_time)


class Retention(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    retention_num: int | None = Field(default=None, description="Keep the N newest policy backups (2-99).")
    retention_day: int | None = Field(default=None, description="Keep policy backups N days (2-99999).")

    @field_validator("retention_num")
    @classmethod
    def _num(cls, value: int | None) -> int | None:
        if value is not None and not 2 <= value <= 99:
            raise ValueError(f"must be from 2 to 99, got {value} (the service answers AutoBackup.0107)")
        return value

    @field_validator("retention_day")
    @classmethod
    def _day(cls, value: int | None) -> int | None:
        if value is not None and not 2 <= value <= 99999:
            raise ValueError(f"must be from 2 to 99999, got {value} (the service answers AutoBackup.0107)")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Retention:
        if (self.retention_num is None) == (self.retention_day is None):
            raise ValueError("give retention_num or retention_day, exactly one")
        return self


class PolicySpec(BaseModel):
    """One backup policy as the file declares it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    schedule: Schedule
    retention: Retention
    remain_first_backup_of_cur_month: bool = False
    enabled: bool = True
    time_zone: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    members: Members = Field(default_factory=Members)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("1-64 letters, digits, '_' or '-' (AutoBackup.0101/.0102 otherwise)")
        return value

    @field_validator("enabled", mode="before")
    @classmethod
    def _on_off(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().upper() in ("ON", "OFF"):
            return value.strip().upper() == "ON"
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        m = _TZ.match(value)
        if m is None or int(m.group(3)) > 59 or not -12 * 60 <= tz_minutes(value) <= 14 * 60:
            raise ValueError(f"{value!r} is not a time zone like UTC+02:00 or UTC-05:00 (AutoBackup.0226)")
        return value

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_text(cls, value: Any) -> Any:
        # YAML reads `env: 1` as an int and `flag: yes` as a bool: tags are text
        if isinstance(value, Mapping):
            return {
                str(k): "" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                for k, v in value.items()
            }
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 10:
            raise ValueError(f"at most 10 tags per policy, got {len(value)} (AutoBackup.0215)")
        for key, text in value.items():
            if not _TAG_KEY.match(key):
                raise ValueError(f"tag key {key!r}: 1-36 letters, digits, '_' or '-' (AutoBackup.0214)")
            if not _TAG_VALUE.match(text):
                raise ValueError(
                    f"tag {key!r} value {text!r}: 0-43 letters, digits, '_' or '-' (AutoBackup.0214)"
                )
        return value

    def start_time_text(self) -> str:
        """The wire's start_time: ascending in *local* time, as the service requires (§3.1)."""
        offset = tz_minutes(self.time_zone)
        return ",".join(sorted(self.schedule.start_time, key=lambda t: (int(t[:2]) * 60 + offset) % 1440))

    def scheduled_policy(self, *, with_status: bool) -> ScheduledPolicy:
        return ScheduledPolicy(
            start_time=self.start_time_text(),
            frequency=self.schedule.frequency,
            week_frequency=self.schedule.week_frequency,  # validated to Weekday
            retention_num=self.retention.retention_num,
            retention_day=self.retention.retention_day,
            remain_first_backup_of_cur_month=self.remain_first_backup_of_cur_month,
            status=(PolicyStatus.ON if self.enabled else PolicyStatus.OFF) if with_status else None,
        )


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policies: list[PolicySpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique(self) -> PolicyFile:
        names = [p.name for p in self.policies]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"policy names must be unique; listed more than once: {', '.join(twice)}")
        return self


def _where(loc: tuple[Any, ...], data: Any) -> str:
    parts: list[str] = []
    node = data
    for part in loc:
        if isinstance(part, int) and parts == ["policies"]:
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, Mapping) else None
            parts[-1] = f"policies[{name}]" if isinstance(name, str) and name else f"policies[{part}]"
            node = item
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, Mapping) else None
    return ".".join(parts) or "(file)"


def validate_policy_file(data: Any, *, source: str = "(inline)") -> PolicyFile:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise PolicyFileError(
            source, [f"(file): expected a mapping with a `policies` list, got a {type(data).__name__}"]
        )
    try:
        return PolicyFile.model_validate(dict(data))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{_where(err['loc'], data)}: {msg}")
        raise PolicyFileError(source, problems) from None


def load_policy_file(path: str | Path) -> PolicyFile:
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyFileError(source, [f"(file): cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise PolicyFileError(
            source, [f"(file): not valid YAML{where}: {getattr(exc, 'problem', None) or exc}"]
        ) from None
    return validate_policy_file(data, source=source)
