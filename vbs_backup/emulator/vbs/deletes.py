"""Deleting VBS backups: native DELETE and the deprecated cloudbackups delete (reference §2.2, §2.9, §6.3).

Only `available` and `error` backups can be deleted (console rule). A deleted backup turns `deleting`,
loses its shares at once, and disappears `Settings.delete_seconds` of virtual time later (always on the
clock: the native call has no job to poll). Retention (§4.5) deletes through the same path.

The deprecated `POST /cloudbackups/{id}` answers a job of type `bksDeleteBackup` (unconfirmed) which ends
when the backup is gone; a job fault makes it FAIL and the backup returns to its former status.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ..errors import CinderError, vbs
from ..state import Backup, CloudState, Job, Project
from . import jobs

DELETE = "bksDeleteBackup"
DELETABLE = ("available", "error")


def mark_deleting(state: CloudState, project: Project, backup: Backup, at: datetime) -> None:
    """Start the removal of a backup (rules checked by the caller)."""
    backup.status = "deleting"
    backup.updated_at = at
    backup.delete_at = at + timedelta(seconds=state.settings.delete_seconds)
    drop_shares(state, backup.id)
    jobs.schedule(backup.delete_at, lambda when: _remove(project, backup.id))


def drop_shares(state: CloudState, backup_id: str) -> None:
    for share_id in [s.id for s in state.shares.values() if s.backup_id == backup_id]:
        del state.shares[share_id]


def _remove(project: Project, backup_id: str) -> None:
    backup = project.backups.get(backup_id)
    if backup is not None and backup.status == "deleting":
        del project.backups[backup_id]


def collect_due(project: Project, agenda: jobs.Agenda) -> None:
    for backup in project.backups.values():
        if backup.status == "deleting" and backup.delete_at is not None and backup.delete_at <= agenda.now:
            agenda.add(backup.delete_at, _remover(project, backup.id))


def _remover(project: Project, backup_id: str) -> jobs.Action:
    return lambda at: _remove(project, backup_id)


def delete_backup(state: CloudState, project: Project, backup_id: str) -> None:
    """`DELETE /v2/{pid}/backups/{id}` -> 202; Cinder-shaped errors."""
    backup = project.backups.get(backup_id)
    if backup is None:
        raise CinderError(404, f"Backup {backup_id} could not be found.")
    if backup.status not in DELETABLE:
        raise CinderError(400, "Invalid backup: Backup status must be available or error")
    mark_deleting(state, project, backup, state.now())


def delete_cloud_backup(state: CloudState, project: Project, backup_id: str) -> Job:
    """Deprecated `POST` (and, as two old clients do, `DELETE`) on `/v2/{pid}/cloudbackups/{id}` -> job.

    Error codes come from the "Deleting a Backup" block of the error table: `.0110` "failed to query the
    backup" for an unknown id (404, as for other missing resources) and `.0102` "failed to delete the
    backup" for a backup in a state that cannot be deleted (both choices unconfirmed).
    """
    backup = project.backups.get(backup_id)
    if backup is None:
        raise vbs("VolumeBackup.0110", f"failed to query the backup {backup_id}", 404)
    if backup.status not in DELETABLE:
        raise vbs("VolumeBackup.0102", f"failed to delete the backup: status is {backup.status}")
    prior = backup.status
    backup.status = "deleting"
    backup.updated_at = state.now()
    drop_shares(state, backup.id)
    return jobs.submit(
        state,
        project,
        DELETE,
        size_gib=0,
        volume_id=backup.volume_id,
        context={"backup_id": backup.id, "volume_id": backup.volume_id, "prior_status": prior},
        seconds=state.settings.delete_seconds,
    )


def _on_finish(state: CloudState, project: Project, job: Job, at: datetime, ok: bool) -> None:
    backup_id = job.context["backup_id"]
    job.entities = {"backup_id": backup_id}
    backup = project.backups.get(backup_id)
    if backup is None:
        return
    if ok:
        del project.backups[backup_id]
    else:
        backup.status = job.context.get("prior_status", "available")
        backup.updated_at = at


jobs.register(DELETE, on_finish=_on_finish)
