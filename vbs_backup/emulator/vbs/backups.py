"""Creating VBS backups: validation rules, the create job, quotas (reference §2.1, §2.4, §2.16, §6.2).

Choices where the reference is silent (each marked where it is made):
* The backup row is written at submission (status `creating`) and the disk turns `backing-up` at once,
  not only when the job reaches RUNNING: a caller whose create response was lost can then find its
  backup by name right away, as it could on the real service a moment later.
* `size` is the disk size from the start (Cinder convention); the VBS snapshot is taken when the job
  starts. Only the newest VBS snapshot of a disk exists on the real service; here a backup keeps the id of
  the snapshot it was made from, and "the disk's VBS snapshot" is the one of its newest backup.
* Full or incremental is decided at submission: full when `FullBackup` is "true" or when the disk has no
  usable backup yet. The wire `description` is `{"DESC": text, "INC": 0|1}` where INC mirrors that
  outcome (1 = incremental), the same as `service_metadata.Type`.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ..errors import CinderError, EmulatorError, vbs
from ..http import fmt_job_time
from ..state import Backup, CloudState, Job, Project, Volume, new_uuid
from . import jobs
from .common import BACKUPABLE, has_forbidden_tag_chars, is_uuid

CREATE = "bksCreateBackup"
# Unicode letters and digits, `_` and `-`: the zh documentation allows Chinese characters in names.
_NAME_RE = re.compile(r"^[\w-]+$")


# --------------------------------------------------------------------------------------------------------
# Shared rules


def backup_running_on(project: Project, volume_id: str) -> bool:
    """A backup of the disk is still being created (VolumeBackup.0013 / .0206)."""
    return any(b.volume_id == volume_id and b.status == "creating" for b in project.backups.values())


def quota_problem(project: Project, size: int) -> str | None:
    """'backups' or 'backup_gigabytes' when one more backup of `size` GiB would exceed a quota."""
    count, gigabytes = usage(project)
    limit = project.quotas.get("backups", -1)
    if limit != -1 and count + 1 > limit:
        return "backups"
    limit = project.quotas.get("backup_gigabytes", -1)
    if limit != -1 and gigabytes + size > limit:
        return "backup_gigabytes"
    return None


def usage(project: Project) -> tuple[int, int]:
    """Backups that still exist (a `deleting` one counts until it is gone, like the real quota's lag)."""
    rows = project.backups.values()
    return len(rows), sum(b.size for b in rows)


def get_quotas(project: Project) -> dict[str, Any]:
    count, gigabytes = usage(project)
    return {
        "quotas": {
            "resources": [
                {"type": "backups", "used": count, "reserved": 0, "quota": project.quotas.get("backups", -1)},
                {
                    "type": "backup_gigabytes",
                    "used": gigabytes,
                    "reserved": 0,
                    "quota": project.quotas.get("backup_gigabytes", -1),
                },
            ]
        }
    }


# --------------------------------------------------------------------------------------------------------
# The create job, shared by the cloud API, the native API and policies


def new_backup(
    state: CloudState,
    project: Project,
    volume: Volume,
    *,
    name: str | None,
    description: str | None,
    status: str,
    at: datetime,
    tags: list[dict[str, str]] | None = None,
    force_full: bool = False,
    snapshot_id: str | None = None,
    kind: str = "manual",
    policy_id: str | None = None,
    retention_rule: tuple[str, int] | None = None,
) -> Backup:
    """Add a backup row of `volume` made at `at` (no job, no disk status change: the caller's part).

    Full when `force_full` or when the disk has no usable backup yet, else incremental (INC in the
    wire description)."""
    full = force_full or not any(
        b.volume_id == volume.id and b.status in ("available", "restoring") for b in project.backups.values()
    )
    backup = Backup(
        id=new_uuid(state.rng),
        name=name or "",
        volume_id=volume.id,
        project_id=project.id,
        status=status,
        size=volume.size,
        created_at=at,
        updated_at=at,
        data_timestamp=at,
        description=description,
        incremental=not full,
        snapshot_id=snapshot_id,
        availability_zone=volume.availability_zone,
        tags=list(tags or []),
        kind="auto" if kind == "auto" else "manual",
        policy_id=policy_id,
        retention_rule=retention_rule,
    )
    project.backups[backup.id] = backup
    return backup


def start_backup(
    state: CloudState,
    project: Project,
    volume: Volume,
    *,
    name: str | None,
    description: str | None,
    tags: list[dict[str, str]] | None = None,
    force_full: bool = False,
    snapshot_id: str | None = None,
    kind: str = "manual",
    policy_id: str | None = None,
    retention_rule: tuple[str, int] | None = None,
    context: dict[str, str] | None = None,
    by_time: bool = False,
    at: datetime | None = None,
) -> tuple[Backup, Job]:
    """Write the `creating` backup, mark the disk `backing-up` and submit the job (rules checked by caller).

    `at` is the virtual time of the request (a scheduled run fires at its slot time, maybe inside a tick
    that catches up with a clock jump)."""
    now = at or state.now()
    backup = new_backup(
        state,
        project,
        volume,
        name=name,
        description=description,
        status="creating",
        at=now,
        tags=tags,
        force_full=force_full,
        snapshot_id=snapshot_id,
        kind=kind,
        policy_id=policy_id,
        retention_rule=retention_rule,
    )
    volume.status_before_job = volume.status
    volume.status = "backing-up"
    volume.updated_at = now
    job = jobs.submit(
        state,
        project,
        CREATE,
        size_gib=volume.size,
        volume_id=volume.id,
        context={
            "backup_id": backup.id,
            "volume_id": volume.id,
            # the temporary volume VBS names after the job's start (observed pattern, §2.1)
            "bks_create_volume_name": f"autobk_volume_{fmt_job_time(now)}",
            **(context or {}),
        },
        by_time=by_time,
        at=now,
    )
    return backup, job


def _on_start(state: CloudState, project: Project, job: Job, at: datetime) -> None:
    backup = project.backups.get(job.context["backup_id"])
    if backup is not None and backup.snapshot_id is None:
        backup.snapshot_id = new_uuid(state.rng)
        backup.updated_at = at


def _on_finish(state: CloudState, project: Project, job: Job, at: datetime, ok: bool) -> None:
    ctx = job.context
    volume = project.volumes.get(ctx["volume_id"])
    if volume is not None and volume.status == "backing-up":
        volume.status = volume.status_before_job or "available"
        volume.status_before_job = None
        volume.updated_at = at
    backup = project.backups.get(ctx["backup_id"])
    snapshot_id = (backup.snapshot_id if backup else None) or ""
    if ok and backup is not None:
        backup.status = "available"
        backup.updated_at = at
        job.entities = {
            "backup_id": backup.id,
            "volume_id": ctx["volume_id"],
            "snapshot_id": snapshot_id,
            "bks_create_volume_name": ctx["bks_create_volume_name"],
        }
        return
    if backup is not None:
        backup.status = "error"
        backup.fail_reason = job.fail_reason or "backup failed"
        backup.updated_at = at
    # observed FAIL answer: entities.backup_id is "" (§2.8)
    job.entities = {
        "backup_id": "",
        "volume_id": ctx["volume_id"],
        "snapshot_id": snapshot_id,
        "bks_create_volume_name": ctx["bks_create_volume_name"],
    }


jobs.register(CREATE, on_start=_on_start, on_finish=_on_finish)


# --------------------------------------------------------------------------------------------------------
# Planting a backup (control API): one made by someone else, e.g. a policy's `autobk_...` backup


BACKUP_STATUSES = ("creating", "available", "error", "restoring", "deleting", "error_restoring")


def plant_backup(
    state: CloudState,
    volume_id: str,
    *,
    name: str,
    description: str | None = None,
    status: str = "available",
    created_at: datetime | None = None,
    kind: str = "manual",
) -> Backup:
    """Add a backup of an existing disk as another tool or a policy would have made it, bypassing the
    name/description rules, quotas and limits of the documented create; raises `ValueError` when refused.

    The row is built like any other backup (`new_backup`), in the disk's project, dated `created_at`
    (default: now) and with a snapshot id unless still `creating`. No job stands behind it: it keeps its
    status until the documented API changes it (a planted `creating` backup blocks new backups of the disk,
    as a running one does), and the disk's status is left as it is.
    """
    found = state.find_volume(volume_id)
    if found is None:
        raise ValueError(f"volume {volume_id} does not exist")
    if status not in BACKUP_STATUSES:
        raise ValueError(f"status must be one of {', '.join(BACKUP_STATUSES)}")
    if kind not in ("manual", "auto"):
        raise ValueError("kind must be manual or auto")
    project, volume = found
    return new_backup(
        state,
        project,
        volume,
        name=name,
        description=description,
        status=status,
        at=created_at or state.now(),
        snapshot_id=None if status == "creating" else new_uuid(state.rng),
        kind=kind,
    )


# --------------------------------------------------------------------------------------------------------
# POST /v2/{pid}/cloudbackups


def _check_name(name: object) -> str:
    """Name rules of §2.1 in the order the codes are documented.

    "Too short" (.0026) is taken to mean a name of whitespace only: the empty name has its own code (.0007)
    and the documented minimum is one character. The `auto` prefix is refused in any letter case (stricter
    than the doc's lower-case wording, so a client that passes here passes everywhere).
    """
    if name is None or name == "":
        raise vbs("VolumeBackup.0007", "api request parameter name is empty")
    if not isinstance(name, str):
        raise vbs("VolumeBackup.0004", "api request parameter name invalid character")
    if not name.strip():
        raise vbs("VolumeBackup.0026", "api request parameter name too short")
    if len(name) > 64:
        raise vbs("VolumeBackup.0003", "api request parameter name over length")
    if not _NAME_RE.match(name):
        raise vbs("VolumeBackup.0004", "api request parameter name invalid character")
    if name.lower().startswith("auto"):
        raise vbs("VolumeBackup.0005", "api request parameter name invalid prefix")
    return name


def _check_tags(tags: object) -> list[dict[str, str]]:
    if tags is None:
        return []
    bad = vbs("VolumeBackup.0049", "the tag parameter is invalid")
    if not isinstance(tags, list):
        raise bad
    if len(tags) > 10:
        raise vbs("VolumeBackup.0050", "the number of tags has reached the upper limit")
    seen: set[str] = set()
    out = []
    for tag in tags:
        if not isinstance(tag, dict):
            raise bad
        key, value = tag.get("key"), tag.get("value", "")
        if not isinstance(key, str) or not 1 <= len(key) <= 36 or has_forbidden_tag_chars(key):
            raise bad
        if not isinstance(value, str) or len(value) > 43 or has_forbidden_tag_chars(value):
            raise bad
        if key in seen:
            raise bad
        seen.add(key)
        out.append({"key": key, "value": value})
    return out


def create_backup(state: CloudState, project: Project, payload: Any) -> Job:
    body = payload.get("backup") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        raise vbs("VolumeBackup.0002", "api request parameter instance null")
    name = _check_name(body.get("name"))
    description = body.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > 64 or "<" in description or ">" in description
    ):
        raise vbs("VolumeBackup.0006", "api request parameter description is invalid")
    volume_id = body.get("volume_id")
    if volume_id is None or volume_id == "":
        raise vbs("VolumeBackup.0010", "api request parameter volume_id is empty")
    if not is_uuid(volume_id):
        raise vbs("VolumeBackup.0011", "api request parameter volume_id format is incorrect")
    tags = _check_tags(body.get("tags"))
    extend = body.get("extend_param")
    if extend is not None and not isinstance(extend, dict):
        raise vbs("VolumeBackup.0002", "extend_param must be an object")
    force_full = str((extend or {}).get("FullBackup", "false")).lower() == "true"
    snapshot_id = body.get("snapshot_id")
    if snapshot_id is not None and not is_uuid(snapshot_id):
        # no snapshot store is emulated: a given snapshot id is only checked for shape (unconfirmed code)
        raise vbs("VolumeBackup.0002", "snapshot_id format is incorrect")
    volume = project.volumes.get(volume_id)
    if volume is None:
        # "(404?)" in the table: a missing resource answers 404 here
        raise vbs("VolumeBackup.0021", f"the EVS disk {volume_id} does not exist or has been deleted", 404)
    # checked before the disk status: a running backup is why the disk is `backing-up`
    if backup_running_on(project, volume.id):
        raise vbs("VolumeBackup.0013", "the previous backup creation task is not complete")
    if volume.status not in BACKUPABLE:
        raise vbs("VolumeBackup.0012", f"the disk status is {volume.status}, not available or in-use")
    _check_limits(state, project, volume)
    _, job = start_backup(
        state,
        project,
        volume,
        name=name,
        description=description,
        tags=tags,
        force_full=force_full,
        snapshot_id=snapshot_id,
    )
    return job


def _check_limits(state: CloudState, project: Project, volume: Volume) -> None:
    limit = state.settings.per_disk_backup_limit
    if limit is not None and sum(b.volume_id == volume.id for b in project.backups.values()) >= limit:
        raise vbs(
            "VolumeBackup.0040", f"the number of backups for the disk has reached the upper limit ({limit})"
        )
    problem = quota_problem(project, volume.size)
    if problem == "backups":
        raise vbs("VolumeBackup.0080", "the quota for the number of backups has been used up")
    if problem == "backup_gigabytes":
        raise vbs("VolumeBackup.0081", "the quota for the capacity of backups has been used up")


# --------------------------------------------------------------------------------------------------------
# POST /v2/{pid}/backups (native, Cinder errors, 202 without a job id)


def create_native_backup(state: CloudState, project: Project, payload: Any) -> Backup:
    """Cinder semantics: an attached disk needs `force: true`; quota exhaustion is 413 overLimit.

    `snapshot_id` is "M per docs" but enforcement is unconfirmed and no snapshot store is emulated: it is
    optional here. The job behind it always runs on the clock (the caller has no job id to poll).
    """
    body = payload.get("backup") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        raise CinderError(400, "Missing required element 'backup' in request body.")
    name = body.get("name")
    if name is not None:
        try:
            _check_name(name)
        except EmulatorError as exc:
            raise CinderError(400, f"Invalid backup name: {exc.message}") from None
    description = body.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > 255 or "<" in description or ">" in description
    ):
        raise CinderError(400, "Invalid backup description.")
    volume_id = body.get("volume_id")
    if not isinstance(volume_id, str) or not volume_id:
        raise CinderError(400, "Invalid volume_id.")
    snapshot_id = body.get("snapshot_id")
    if snapshot_id is not None and not is_uuid(snapshot_id):
        raise CinderError(400, "Invalid snapshot_id.")
    volume = project.volumes.get(volume_id)
    if volume is None:
        raise CinderError(404, f"Volume {volume_id} could not be found.")
    if backup_running_on(project, volume.id) or volume.status not in BACKUPABLE:
        raise CinderError(400, f"Invalid volume: Volume {volume_id} status must be available or in-use.")
    if volume.status == "in-use" and body.get("force") is not True:
        raise CinderError(400, f"Invalid volume: Volume {volume_id} is attached; use force to back it up.")
    try:
        _check_limits(state, project, volume)
    except EmulatorError as exc:
        raise CinderError(413, exc.message) from None
    backup, _ = start_backup(
        state, project, volume, name=name, description=description, snapshot_id=snapshot_id, by_time=True
    )
    return backup
