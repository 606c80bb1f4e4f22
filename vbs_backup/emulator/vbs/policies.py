"""Backup policies: validation, create/list/update/delete, disk association, task listing (reference
§3.1-§3.6, §3.9, §4.6, §4.8, §6.5). Running policies (execute, scheduler, retention) lives in executions.py.

Choices where the reference is silent or split (unconfirmed):
* Names starting with `default` are refused (`.0102`), as older docs and every TF validator do; ranges of
  `frequency` and `rentention_num` come from `Settings` (default 1-30 / 2-99).
* A missing `policy` (`.0205`, `.1100`) answers 404. A malformed field that has no code of its own
  (query parameters of the task list, limit/offset of the tag query) answers `AutoBackup.0001`.
* Update merges (§3.3). A `scheduled_policy` that changes anything besides `status` must carry
  `frequency` or `week_frequency` (`.0106`), the OTC server's complaint the reference's client rule follows;
  a status-only update is accepted.
* A disk not associated with the policy ends up in `fail_resources` of a disassociation with `.1400`.
* Association writes the disk's EVS metadata `policy=<id>` (§4.8) and the tick drops an association
  whose disk lost that key or disappeared, so removing the key through EVS disassociates the disk.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ..errors import CloudApiError, vbs
from ..state import CloudState, Policy, PolicyTask, Project, Volume, new_uuid
from . import jobs
from .common import check_policy_tags, contains_angle_brackets, int_param, is_int, is_word, sort_dir_param
from .serialize import scheduled_policy

WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")  # in Python's weekday() order
TASK_STATUSES = ("RUNNING", "EXECUTE_TIMEOUT", "WAITING", "EXECUTE_FAIL", "EXECUTE_SUCCESS", "SKIP")
# disk states a policy refuses (§3.5)
UNASSOCIABLE = (
    "awaiting-transfer",
    "error_extending",
    "error_restoring",
    "error_rollbacking",
    "error",
    "error_deleting",
)
_START_RE = re.compile(r"^([01]\d|2[0-3]):00$")
_TZ_RE = re.compile(r"^UTC([+-])(\d{2}):(\d{2})$")


def bad_param(message: str) -> CloudApiError:
    return vbs("AutoBackup.0001", message)


def get_policy(project: Project, policy_id: str) -> Policy:
    policy = project.policies.get(policy_id)
    if policy is None:
        raise vbs("AutoBackup.0205", f"the policy {policy_id} does not exist", 404)
    return policy


def check_body(payload: Any) -> dict[str, Any]:
    """Common to every policy request with a body (empty and non-JSON bodies are caught by the route)."""
    if not isinstance(payload, dict) or not payload:
        raise vbs("AutoBackup.0001", "the object contained in the request is empty")
    if contains_angle_brackets(payload):
        raise vbs("AutoBackup.0221", "the request contains < or >")
    return payload


# --------------------------------------------------------------------------------------------------------
# Validation of §3.1


def tz_offset(time_zone: str | None) -> timedelta:
    if time_zone is None:
        return timedelta()
    m = _TZ_RE.match(time_zone)
    if m is None:  # pragma: no cover - validated on the way in
        return timedelta()
    sign = 1 if m.group(1) == "+" else -1
    return sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise vbs("AutoBackup.0101", "the length of the backup policy name is invalid")
    if not is_word(name) or name.lower().startswith("default"):
        raise vbs("AutoBackup.0102", "the backup policy name is invalid")
    return name


def _check_time_zone(value: object) -> str | None:
    """`UTC+HH:mm` / `UTC-HH:mm` within the offsets that exist (-12:00 to +14:00)."""
    if value is None:
        return None
    bad = vbs("AutoBackup.0226", f"invalid time zone {value!r}; expected UTC+HH:mm or UTC-HH:mm")
    if not isinstance(value, str):
        raise bad
    m = _TZ_RE.match(value)
    if (
        m is None
        or int(m.group(3)) > 59
        or not timedelta(hours=-12) <= tz_offset(value) <= timedelta(hours=14)
    ):
        raise bad
    return value


def _check_start_time(value: object, time_zone: str | None) -> str:
    """Whole UTC hours, comma-separated, strictly ascending in *local* time (`22:00,00:00` is fine at
    UTC+2)."""
    bad = vbs("AutoBackup.0103", f"invalid start_time {value!r}")
    if not isinstance(value, str) or not value:
        raise bad
    items = value.split(",")
    if not all(_START_RE.match(item) for item in items):
        raise bad
    offset = int(tz_offset(time_zone).total_seconds() // 60)
    local = [(int(item[:2]) * 60 + offset) % 1440 for item in items]
    if any(b <= a for a, b in itertools.pairwise(local)):
        raise bad
    return value


@dataclass
class Schedule:
    start_time: str
    frequency: int | None
    week_frequency: list[str] | None
    retention_num: int | None
    retention_day: int | None
    remain_first: str
    status: str


def _check_schedule(sp: Mapping[str, Any], state: CloudState) -> Schedule:
    """Codes in the order of the error table; `frequency` wins over `week_frequency` and `rentention_num`
    over `rentention_day` when both are sent (§3.1)."""
    start_time = sp.get("start_time")
    if not isinstance(start_time, str) or not start_time:
        raise vbs("AutoBackup.0103", f"invalid start_time {start_time!r}")
    frequency, week = sp.get("frequency"), sp.get("week_frequency")
    low, high = state.settings.frequency_range
    if frequency is not None:
        if not is_int(frequency) or not low <= frequency <= high:
            raise vbs("AutoBackup.0106", f"frequency must be an integer from {low} to {high}")
        week = None
    elif week is not None:
        if (
            not isinstance(week, list)
            or not week
            or len(set(week)) != len(week)
            or any(d not in WEEKDAYS for d in week)
        ):
            raise vbs("AutoBackup.0106", "week_frequency must be a non-empty list of distinct SUN..SAT")
        week = list(week)
    else:
        raise vbs("AutoBackup.0106", "frequency or week_frequency is required")
    num, day = sp.get("rentention_num"), sp.get("rentention_day")
    low, high = state.settings.retention_num_range
    if num is not None:
        if not is_int(num) or not low <= num <= high:
            raise vbs("AutoBackup.0107", f"rentention_num must be an integer from {low} to {high}")
        day = None
    elif day is not None:
        if isinstance(day, bool) or not isinstance(day, int | float) or not 2 <= math.floor(day) <= 99999:
            raise vbs("AutoBackup.0107", "rentention_day must be a number from 2 to 99999")
        day = math.floor(day)  # "a float is floored"
    else:
        raise vbs("AutoBackup.0107", "rentention_num or rentention_day is required")
    remain = sp.get("remain_first_backup_of_curMonth", "N")
    if remain not in ("Y", "N"):
        raise vbs("AutoBackup.0105", "remain_first_backup_of_curMonth must be Y or N")
    status = sp.get("status")
    if status not in ("ON", "OFF"):
        raise vbs("AutoBackup.0104", "status must be ON or OFF")
    return Schedule(start_time, frequency, week, num, day, remain, status)


def _apply(policy: Policy, schedule: Schedule) -> None:
    policy.start_time = schedule.start_time
    policy.frequency = schedule.frequency
    policy.week_frequency = schedule.week_frequency
    policy.retention_num = schedule.retention_num
    policy.retention_day = schedule.retention_day
    policy.remain_first_backup_of_cur_month = schedule.remain_first
    policy.status = schedule.status


# --------------------------------------------------------------------------------------------------------
# CRUD


def create_policy(state: CloudState, project: Project, payload: Any) -> Policy:
    body = check_body(payload)
    name = _check_name(body.get("backup_policy_name"))
    sp = body.get("scheduled_policy")
    if not isinstance(sp, dict) or not sp:
        raise vbs("AutoBackup.0001", "scheduled_policy is empty")
    schedule = _check_schedule(sp, state)
    time_zone = _check_time_zone(body.get("time_zone"))
    _check_start_time(schedule.start_time, time_zone)
    tags = check_policy_tags(body.get("tags"))
    if len(project.policies) >= state.settings.max_policies:
        raise vbs("AutoBackup.0203", "the number of existing backup policies has reached the upper limit")
    policy = Policy(id=new_uuid(state.rng), name=name, start_time=schedule.start_time, status=schedule.status)
    _apply(policy, schedule)
    policy.time_zone = time_zone
    policy.tags = tags
    policy.last_run_slot = state.now()  # slots before creation are not owed
    project.policies[policy.id] = policy
    return policy


def update_policy(state: CloudState, project: Project, policy_id: str, payload: Any) -> Policy:
    body = check_body(payload)
    policy = get_policy(project, policy_id)
    name = _check_name(body["backup_policy_name"]) if "backup_policy_name" in body else policy.name
    time_zone = _check_time_zone(body["time_zone"]) if "time_zone" in body else policy.time_zone
    sp = body.get("scheduled_policy")
    if sp is not None and not isinstance(sp, dict):
        raise vbs("AutoBackup.0001", "scheduled_policy must be an object")
    sp = sp or {}
    if set(sp) - {"status"} and sp.get("frequency") is None and sp.get("week_frequency") is None:
        raise vbs(
            "AutoBackup.0106", "frequency or week_frequency must be specified when modifying the schedule"
        )
    merged = scheduled_policy(policy)
    for given, other in (("frequency", "week_frequency"), ("rentention_num", "rentention_day")):
        if sp.get(given) is not None:
            merged.pop(other, None)
        elif sp.get(other) is not None:
            merged.pop(given, None)
    merged.update({k: v for k, v in sp.items() if v is not None})
    schedule = _check_schedule(merged, state)
    _check_start_time(schedule.start_time, time_zone)
    was_on = policy.status == "ON"
    policy.name = name
    policy.time_zone = time_zone
    _apply(policy, schedule)
    if policy.status == "ON" and not was_on:
        policy.last_run_slot = state.now()  # slots missed while OFF are not owed
    return policy


def delete_policy(state: CloudState, project: Project, policy_id: str) -> None:
    """204; associations dropped, the policy's backups kept (§3.4), its task history dropped."""
    policy = get_policy(project, policy_id)
    for volume_id in list(policy.resource_ids):
        _unlink(project, policy, volume_id)
    project.tasks = [t for t in project.tasks if t.policy_id != policy_id]
    del project.policies[policy_id]


# --------------------------------------------------------------------------------------------------------
# Association


@dataclass
class ResourceResult:
    resource_id: Any
    resource_type: Any = "volume"
    volume: Volume | None = None
    code: str | None = None
    message: str | None = None


def _link(project: Project, policy: Policy, volume: Volume) -> None:
    for other in project.policies.values():  # one policy per disk: associating elsewhere moves it
        if other is not policy and volume.id in other.resource_ids:
            other.resource_ids.remove(volume.id)
    if volume.id not in policy.resource_ids:
        policy.resource_ids.append(volume.id)
    volume.metadata["policy"] = policy.id


def _unlink(project: Project, policy: Policy, volume_id: str) -> None:
    policy.resource_ids.remove(volume_id)
    volume = project.volumes.get(volume_id)
    if volume is not None and volume.metadata.get("policy") == policy.id:
        del volume.metadata["policy"]


def _resources(body: Mapping[str, Any]) -> list[Any]:
    resources = body.get("resources")
    if not isinstance(resources, list) or not resources:
        raise vbs("AutoBackup.0207", "the resource to be associated is empty")
    return resources


def associate_resources(
    state: CloudState, project: Project, payload: Any
) -> tuple[list[ResourceResult], list[ResourceResult]]:
    body = check_body(payload)
    policy_id = body.get("backup_policy_id")
    if not isinstance(policy_id, str) or not policy_id:
        raise vbs("AutoBackup.0006", "the policy id contained in the request is empty")
    policy = get_policy(project, policy_id)
    ok: list[ResourceResult] = []
    failed: list[ResourceResult] = []
    for item in _resources(body):
        item = item if isinstance(item, dict) else {}
        rid, rtype = item.get("resource_id"), item.get("resource_type")
        volume = project.volumes.get(rid) if isinstance(rid, str) else None
        result = ResourceResult(rid, rtype, volume)
        if not rid:
            result.code, result.message = "AutoBackup.0209", "the resource id is empty"
        elif rtype != "volume":
            result.code, result.message = "AutoBackup.0211", f"invalid resource type {rtype!r}"
        elif volume is None:
            result.code, result.message = "AutoBackup.1400", f"the resource {rid} to be associated is invalid"
        elif volume.status in UNASSOCIABLE:
            result.code, result.message = "AutoBackup.0206", f"the disk status {volume.status} is invalid"
        else:
            _link(project, policy, volume)
        (failed if result.code else ok).append(result)
    return ok, failed


def disassociate_resources(
    state: CloudState, project: Project, policy_id: str, payload: Any
) -> tuple[list[ResourceResult], list[ResourceResult]]:
    body = check_body(payload)
    policy = get_policy(project, policy_id)
    ok: list[ResourceResult] = []
    failed: list[ResourceResult] = []
    for item in _resources(body):
        rid = item.get("resource_id") if isinstance(item, dict) else None
        result = ResourceResult(rid)
        if not rid:
            result.code, result.message = "AutoBackup.0209", "the resource id is empty"
        elif rid not in policy.resource_ids:
            result.code, result.message = (
                "AutoBackup.1400",
                f"the resource {rid} is not associated with the policy",
            )
        else:
            _unlink(project, policy, rid)
        (failed if result.code else ok).append(result)
    return ok, failed


def reconcile(project: Project) -> None:
    """Drop associations whose disk vanished or lost its `policy` metadata (§4.8)."""
    for policy in project.policies.values():
        for volume_id in list(policy.resource_ids):
            volume = project.volumes.get(volume_id)
            if volume is None or volume.metadata.get("policy") != policy.id:
                policy.resource_ids.remove(volume_id)


# --------------------------------------------------------------------------------------------------------
# Tasks (§3.9)


def list_policy_tasks(
    state: CloudState, project: Project, policy_id: str, params: Mapping[str, str]
) -> tuple[list[PolicyTask], int]:
    """A page of the policy's tasks and the total count of tasks matching the filters.

    In poll mode each call counts as one status query for every unfinished job of the policy's tasks, so a
    caller that watches tasks (the only handle a scheduled run gives) sees them finish.
    """
    policy = get_policy(project, policy_id)
    if (params.get("sort_key") or "created_at") != "created_at":
        raise bad_param("sort_key only supports created_at")
    descending = sort_dir_param(params, "desc", bad_param)
    limit = int_param(params, "limit", 20, bad_param, minimum=1)
    offset = int_param(params, "offset", 0, bad_param) or 0
    status = params.get("status")
    if status and status not in TASK_STATUSES:
        raise bad_param(f"invalid status {status!r}")
    for task in project.tasks:
        if task.policy_id == policy.id and task.vbs_job_id and task.vbs_job_id in project.jobs:
            jobs.poll(state, project, project.jobs[task.vbs_job_id])
    indexed = [
        (i, t)
        for i, t in enumerate(project.tasks)
        if t.policy_id == policy.id
        and (not params.get("job_id") or t.job_id == params["job_id"])
        and (not status or t.status == status)
    ]
    indexed.sort(key=lambda it: (it[1].created_at, it[0]), reverse=descending)
    rows = [t for _, t in indexed]
    marker = params.get("marker")
    if marker:
        ids = [t.job_id for t in rows]
        if marker not in ids:
            raise bad_param(f"marker {marker} not found")
        rows = rows[ids.index(marker) + 1 :]
    return rows[offset : offset + (limit or 20)], len(indexed)
