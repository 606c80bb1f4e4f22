"""Wire shapes of the emulated VBS: dataclass -> JSON dict, exactly as reference §1, §2, §3 show them.

Notable shapes: a backup's `description` is a JSON *string* `{"DESC": text, "INC": 0|1}` and its
`service_metadata` a JSON string with `Type` 0 full / 1 incremental; links are `self`
(`{base}/v2/{pid}/backups/{id}`) and `bookmark` (`{base}/{pid}/backups/{id}`); the policy retention
fields keep the documented spelling `rentention_*`; times follow §0.3 per object kind.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from ..http import fmt_backup_time, fmt_job_time, fmt_task_time
from ..state import Backup, Job, Policy, PolicyTask, Project, Share


def backup_links(base: str, project_id: str, backup_id: str) -> list[dict[str, str]]:
    return [
        {"href": f"{base}/v2/{project_id}/backups/{backup_id}", "rel": "self"},
        {"href": f"{base}/{project_id}/backups/{backup_id}", "rel": "bookmark"},
    ]


def description(backup: Backup) -> str:
    return json.dumps({"DESC": backup.description or "", "INC": 1 if backup.incremental else 0})


def service_metadata(backup: Backup) -> str:
    meta: dict[str, Any] = {
        "Type": 1 if backup.incremental else 0,
        "ST": 0,  # a disk backup (not a CSBS one)
        "progress": "100" if backup.status != "creating" else "0",  # a string, as in the doc example
    }
    if backup.snapshot_id:
        meta["snap_id"] = backup.snapshot_id
    return json.dumps(meta)


def backup_brief(backup: Backup, base: str) -> dict[str, Any]:
    return {
        "id": backup.id,
        "name": backup.name or None,
        "links": backup_links(base, backup.project_id, backup.id),
    }


def backup_embedded(backup: Backup) -> dict[str, Any]:
    """The §2.13 subset embedded in sharing records: no links, no tenant attribute."""
    return {
        "id": backup.id,
        "name": backup.name or None,
        "status": backup.status,
        "availability_zone": backup.availability_zone,
        "volume_id": backup.volume_id,
        "size": backup.size,
        "container": backup.container,
        "description": description(backup),
        "fail_reason": backup.fail_reason,
        "object_count": backup.object_count,
        "snapshot_id": backup.snapshot_id,
        "created_at": fmt_backup_time(backup.created_at),
        "updated_at": fmt_backup_time(backup.updated_at),
        "data_timestamp": fmt_backup_time(backup.data_timestamp),
        "has_dependent_backups": None,  # documented as ignored
        "is_incremental": None,  # documented as ignored: service_metadata.Type tells
        "service_metadata": service_metadata(backup),
    }


def backup_detail(backup: Backup, base: str) -> dict[str, Any]:
    return {
        **backup_embedded(backup),
        "links": backup_links(base, backup.project_id, backup.id),
        "os-bak-tenant-attr:tenant_id": backup.project_id,
    }


def next_link(
    base: str, project_id: str, path: str, params: dict[str, str], limit: int, marker: str
) -> dict[str, str]:
    """`backups_links` entry: the same query with the page's limit and marker=last id.

    The doc example's href lacks the `/v2/` segment (reference §2.5); a well-formed URL is emitted here, and
    clients are told to rebuild the URL from `marker` anyway.
    """
    query = {k: v for k, v in params.items() if k not in ("marker", "offset", "limit")}
    query.update(limit=str(limit), marker=marker)
    return {"href": f"{base}/v2/{project_id}/{path}?{urlencode(query)}", "rel": "next"}


def job(j: Job) -> dict[str, Any]:
    return {
        "status": j.status,
        "entities": dict(j.entities),
        "job_id": j.id,
        "job_type": j.job_type,
        "begin_time": fmt_job_time(j.begin_time),
        "end_time": fmt_job_time(j.end_time),
        "error_code": j.error_code,
        "fail_reason": j.fail_reason,
        "sub_jobs": [],
    }


def scheduled_policy(p: Policy) -> dict[str, Any]:
    sp: dict[str, Any] = {"start_time": p.start_time}
    if p.frequency is not None:
        sp["frequency"] = p.frequency
    else:
        sp["week_frequency"] = list(p.week_frequency or [])
    if p.retention_num is not None:
        sp["rentention_num"] = p.retention_num
    else:
        sp["rentention_day"] = p.retention_day
    sp["remain_first_backup_of_curMonth"] = p.remain_first_backup_of_cur_month
    sp["status"] = p.status
    return sp


def policy(p: Policy) -> dict[str, Any]:
    out: dict[str, Any] = {
        "backup_policy_id": p.id,
        "backup_policy_name": p.name,
        "scheduled_policy": scheduled_policy(p),
        "policy_resource_count": len(p.resource_ids),
    }
    # placement unconfirmed (§3.0): top level, like the request examples; only when one was set
    if p.time_zone is not None:
        out["time_zone"] = p.time_zone
    return out


def task(t: PolicyTask) -> dict[str, Any]:
    out: dict[str, Any] = {
        "job_id": t.job_id,
        "status": t.status,
        "created_at": fmt_task_time(t.created_at),
        "backup_name": t.backup_name,
        "resource_id": t.resource_id,
        "resource_type": t.resource_type,
    }
    if t.finished_at is not None:  # absent until finished (§3.9)
        out["finished_at"] = fmt_task_time(t.finished_at)
    if t.vbs_job_id is not None:
        out["vbs_job_id"] = t.vbs_job_id
    return out


def tags(t: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in t.items()]


def share(s: Share, backup: Backup | None, *, fresh: bool = False) -> dict[str, Any]:
    """A sharing record; `fresh` for the create answer, whose documented example carries null times."""
    out: dict[str, Any] = {
        "id": s.id,
        "backup_id": s.backup_id,
        "from_project_id": s.from_project_id,
        "to_project_id": s.to_project_id,
        "created_at": None if fresh else fmt_backup_time(s.created_at),
        "updated_at": None if fresh else fmt_backup_time(s.updated_at),
        "deleted": None,  # cancelled shares are removed, never soft-deleted
        "deleted_at": None,
    }
    if not fresh and backup is not None:
        out["backup"] = backup_embedded(backup)
    return out


def project_summary(project: Project) -> dict[str, Any]:
    """Compact VBS view of a project, for the control API's `/state` if the core wants it."""
    return {
        "backups": {
            b.id: {"name": b.name, "status": b.status, "volume_id": b.volume_id}
            for b in project.backups.values()
        },
        "jobs": {j.id: {"type": j.job_type, "status": j.status} for j in project.jobs.values()},
        "policies": {
            p.id: {"name": p.name, "resources": list(p.resource_ids)} for p in project.policies.values()
        },
        "tasks": [{"job_id": t.job_id, "policy_id": t.policy_id, "status": t.status} for t in project.tasks],
    }
