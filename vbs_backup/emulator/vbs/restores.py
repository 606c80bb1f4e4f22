"""Restoring a disk from a VBS backup: cloud API (job) and native API (no job) (reference §2.3, §2.10, §6.4).

During a restore the backup is `restoring` and the disk `restoring-backup`; at the end both return to
their former state (the disk to `available`, or `in-use` when `Settings.restore_in_use == "allow"`), or
on an injected fault the disk turns `error_restoring` and the job FAILs. The disk keeps its size.

Choices: a backup shared *to* the caller cannot restore the caller's disks (doc); it is refused with
`VolumeBackup.0111` ("the backup does not exist"), because it is not one of the caller's backups. Codes
documented as "(404?)" (.0111 missing backup, .0207 missing disk) answer 404. Job entities of a restore
are `backup_id` and `volume_id` (unconfirmed).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import CinderError, EmulatorError, vbs
from ..state import Backup, CloudState, Job, Project, Volume
from . import jobs
from .backups import backup_running_on
from .common import is_uuid

RESTORE = "bksRestoreBackup"


def _check(
    state: CloudState, project: Project, backup_id: str, payload: Any, *, native: bool
) -> tuple[Backup, Volume]:
    """Every precondition of §2.3 in one place; `native` switches the error shape to Cinder's."""

    def fail(code: str, message: str, status: int = 400) -> EmulatorError:
        return CinderError(status, message) if native else vbs(code, message, status)

    body = payload.get("restore") if isinstance(payload, dict) else None
    if not isinstance(body, dict):
        raise fail("VolumeBackup.0210", "the format of the disk restoration request is incorrect")
    if not backup_id:
        raise fail("VolumeBackup.0203", "parameter backup_id in the request is empty")
    if not is_uuid(backup_id):
        if native:
            raise CinderError(404, f"Backup {backup_id} could not be found.")
        raise vbs("VolumeBackup.0204", "the format of parameter backup_id in the request is incorrect")
    volume_id = body.get("volume_id")
    if not isinstance(volume_id, str) or not is_uuid(volume_id):
        raise fail("VolumeBackup.0208", "parameter volume_id in the request is incorrect")
    backup = project.backups.get(backup_id)
    if backup is None:
        shared = any(
            s.backup_id == backup_id and s.to_project_id == project.id for s in state.shares.values()
        )
        reason = " (a shared backup can only create new disks)" if shared else ""
        if native:
            raise CinderError(404, f"Backup {backup_id} could not be found.{reason}")
        raise vbs("VolumeBackup.0111", f"the backup {backup_id} does not exist{reason}", 404)
    if backup.status != "available":
        raise fail(
            "VolumeBackup.0089", f"Invalid backup: backup status is {backup.status}, must be available"
        )
    volume = project.volumes.get(volume_id)
    if volume is None:
        if native:
            raise CinderError(404, f"Volume {volume_id} could not be found.")
        raise vbs("VolumeBackup.0207", f"the disk {volume_id} does not exist", 404)
    _check_volume(state, project, backup, volume, fail)
    return backup, volume


def _check_volume(
    state: CloudState,
    project: Project,
    backup: Backup,
    volume: Volume,
    fail: Callable[..., EmulatorError],
) -> None:
    # a running backup is why the disk shows `backing-up`: the specific code first
    if backup_running_on(project, volume.id):
        raise fail("VolumeBackup.0206", "a backup is being created for the disk")
    if volume.status == "error":
        raise fail("VolumeBackup.0202", "Invalid volume: the disk status is error")
    usable = ("available", "in-use") if state.settings.restore_in_use == "allow" else ("available",)
    if volume.status not in usable:
        raise fail(
            "VolumeBackup.0205", f"Invalid volume: the disk status is {volume.status}; detach it first"
        )
    if volume.size < backup.size:
        raise fail(
            "VolumeBackup.0209", "the capacity of the disk must be greater than or equal to the backup"
        )


def _start_restore(
    state: CloudState, project: Project, backup: Backup, volume: Volume, *, by_time: bool
) -> Job:
    now = state.now()
    backup.status = "restoring"
    backup.updated_at = now
    volume.status_before_job = volume.status
    volume.status = "restoring-backup"
    volume.updated_at = now
    return jobs.submit(
        state,
        project,
        RESTORE,
        size_gib=backup.size,
        volume_id=volume.id,
        context={"backup_id": backup.id, "volume_id": volume.id},
        by_time=by_time,
    )


def restore_backup(state: CloudState, project: Project, backup_id: str, payload: Any) -> Job:
    """`POST /v2/{pid}/cloudbackups/{id}/restore` -> 200 {"job_id"}."""
    backup, volume = _check(state, project, backup_id, payload, native=False)
    return _start_restore(state, project, backup, volume, by_time=False)


def restore_native_backup(
    state: CloudState, project: Project, backup_id: str, payload: Any
) -> tuple[Backup, Volume]:
    """`POST /v2/{pid}/backups/{id}/restore` -> 202; the hidden job always runs on the clock."""
    backup, volume = _check(state, project, backup_id, payload, native=True)
    _start_restore(state, project, backup, volume, by_time=True)
    return backup, volume


def _on_finish(state: CloudState, project: Project, job: Job, at: datetime, ok: bool) -> None:
    ctx = job.context
    job.entities = {"backup_id": ctx["backup_id"], "volume_id": ctx["volume_id"]}
    backup = project.backups.get(ctx["backup_id"])
    if backup is not None and backup.status == "restoring":
        backup.status = "available"
        backup.updated_at = at
    volume = project.volumes.get(ctx["volume_id"])
    if volume is not None and volume.status == "restoring-backup":
        volume.status = (volume.status_before_job or "available") if ok else "error_restoring"
        volume.status_before_job = None
        volume.updated_at = at


jobs.register(RESTORE, on_finish=_on_finish)
