"""Wire models of VBS backup policies (reference §3.0-§3.9).

Owned here: the policy and its schedule, with Python names for the wire's odd spellings
(`retention_num` <-> `rentention_num`, `retention_day` <-> `rentention_day`,
`remain_first_backup_of_cur_month` (bool) <-> `remain_first_backup_of_curMonth` ("Y"/"N")); the create and
update bodies with the client rules of §7; association bodies and their partial-success answer; policy
backup tasks.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, model_validator

from .common import (
    OptionalUtcDateTime,
    Tag,
    UtcDateTime,
    WireModel,
    WireRequest,
    YesNo,
    known_or_raw,
    wire_name,
)

__all__ = [
    "AssociateRequest",
    "AssociateResult",
    "CreatePolicyRequest",
    "DisassociateRequest",
    "Policy",
    "PolicyIdRef",
    "PolicyResource",
    "PolicyStatus",
    "PolicyTask",
    "PolicyTaskList",
    "ResourceRef",
    "ResourceResult",
    "ScheduledPolicy",
    "TaskStatus",
    "UpdatePolicyRequest",
    "Weekday",
]


class PolicyStatus(StrEnum):
    ON = "ON"
    OFF = "OFF"


class Weekday(StrEnum):
    SUN = "SUN"
    MON = "MON"
    TUE = "TUE"
    WED = "WED"
    THU = "THU"
    FRI = "FRI"
    SAT = "SAT"


class ScheduledPolicy(WireModel):
    """`scheduled_policy` as the service returns it; every field optional because an update sends only
    what changes (§3.3)."""

    start_time: str | None = None  # "HH:00" UTC, comma-separated list allowed
    frequency: int | None = None  # every N days
    week_frequency: list[Weekday] | None = None
    retention_num: Annotated[int | None, wire_name("rentention_num")] = None
    retention_day: Annotated[int | None, wire_name("rentention_day")] = None
    remain_first_backup_of_cur_month: Annotated[
        YesNo | None, wire_name("remain_first_backup_of_curMonth")
    ] = None
    status: PolicyStatus | None = None

    def check_one_of_each(self) -> None:
        """The client rules of §7: at most one of frequency/week_frequency and at most one retention rule
        (the service silently prefers one when both come, which hides a caller's mistake)."""
        if self.frequency is not None and self.week_frequency is not None:
            raise ValueError("scheduled_policy: give frequency or week_frequency, not both")
        if self.retention_num is not None and self.retention_day is not None:
            raise ValueError("scheduled_policy: give retention_num or retention_day, not both")

    @property
    def has_frequency(self) -> bool:
        return self.frequency is not None or bool(self.week_frequency)


class Policy(WireModel):
    """A backup policy (§3.0). There is no single-policy GET: it comes from the list (§3.2)."""

    backup_policy_id: str
    backup_policy_name: str | None = None
    scheduled_policy: ScheduledPolicy = Field(default_factory=ScheduledPolicy)
    policy_resource_count: int = 0
    time_zone: str | None = None  # placement unconfirmed (top level here, as in the request examples)

    @property
    def id(self) -> str:
        return self.backup_policy_id

    @property
    def name(self) -> str | None:
        return self.backup_policy_name

    @property
    def enabled(self) -> bool:
        return self.scheduled_policy.status == PolicyStatus.ON


class PolicyIdRef(WireModel):
    """`{"backup_policy_id": ...}`: the answer of create and update."""

    backup_policy_id: str


class CreatePolicyRequest(WireRequest):
    """`POST /v2/{pid}/backuppolicy` (§3.1). Enforces the client rules of §7: a start time, a status, exactly
    one of frequency/week_frequency, exactly one retention rule, and `remain_first_backup_of_curMonth`
    always sent ("N" unless given). Ranges are the service's to check (they differ by cloud, §8.2)."""

    backup_policy_name: str
    scheduled_policy: ScheduledPolicy
    tags: list[Tag] | None = None
    time_zone: str | None = None  # "UTC+02:00"; support in Paris unconfirmed

    @model_validator(mode="after")
    def _client_rules(self) -> Self:
        sp = self.scheduled_policy
        sp.check_one_of_each()
        missing = [
            label
            for label, absent in (
                ("start_time", sp.start_time is None),
                ("status", sp.status is None),
                ("frequency or week_frequency", not sp.has_frequency),
                ("retention_num or retention_day", sp.retention_num is None and sp.retention_day is None),
            )
            if absent
        ]
        if missing:
            raise ValueError(f"scheduled_policy is missing {', '.join(missing)}")
        if sp.remain_first_backup_of_cur_month is None:
            # a copy: the caller's ScheduledPolicy instance is not ours to change
            self.scheduled_policy = sp.model_copy(update={"remain_first_backup_of_cur_month": False})
        return self


class UpdatePolicyRequest(WireRequest):
    """`PUT /v2/{pid}/backuppolicy/{id}` (§3.3): a partial update; the service merges. The facade adds the
    current frequency when `scheduled_policy` lacks one (§3.3 client rule)."""

    backup_policy_name: str | None = None
    scheduled_policy: ScheduledPolicy | None = None
    time_zone: str | None = None

    @model_validator(mode="after")
    def _client_rules(self) -> Self:
        if self.scheduled_policy is not None:
            self.scheduled_policy.check_one_of_each()
        return self


class PolicyResource(WireModel):
    resource_id: str
    resource_type: str = "volume"  # the only documented type


class ResourceRef(WireModel):
    resource_id: str


class AssociateRequest(WireRequest):
    """`POST /v2/{pid}/backuppolicyresources` (§3.5)."""

    backup_policy_id: str
    resources: list[PolicyResource] = Field(min_length=1)


class DisassociateRequest(WireRequest):
    """`POST /v2/{pid}/backuppolicyresources/{id}/deleted_resources` (§3.6)."""

    resources: list[ResourceRef] = Field(min_length=1)


class ResourceResult(WireModel):
    """One disk in an (dis)association answer; failed ones carry `code`/`message`."""

    resource_id: str
    resource_type: str | None = None
    availability_zone: str | None = None
    os_vol_host_attr: str | None = None
    code: str | None = None
    message: str | None = None


class AssociateResult(WireModel):
    """Partial success is a normal answer, not an error (§3.5, §7): check `fail_resources`."""

    success_resources: list[ResourceResult] = []
    fail_resources: list[ResourceResult] = []

    @property
    def all_succeeded(self) -> bool:
        return not self.fail_resources

    @property
    def failed_ids(self) -> list[str]:
        return [item.resource_id for item in self.fail_resources]


class TaskStatus(StrEnum):
    WAITING = "WAITING"
    RUNNING = "RUNNING"
    EXECUTE_SUCCESS = "EXECUTE_SUCCESS"
    EXECUTE_FAIL = "EXECUTE_FAIL"
    EXECUTE_TIMEOUT = "EXECUTE_TIMEOUT"
    SKIP = "SKIP"


class PolicyTask(WireModel):
    """One backup task a policy ran (§3.9); times are `....mmm` without a zone (UTC)."""

    job_id: str
    status: Annotated[TaskStatus | str, known_or_raw(TaskStatus)]
    created_at: UtcDateTime
    finished_at: OptionalUtcDateTime = None  # absent until finished
    backup_name: str | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    vbs_job_id: str | None = None  # documented, never seen in examples


class PolicyTaskList(WireModel):
    tasks: list[PolicyTask] = []
    count: int | None = None  # total matching tasks, not the page length
