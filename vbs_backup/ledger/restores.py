"""The ledger of restores and restore drills: the `Restore` and `RestoreDrill` tables and their repository
functions (keyword-only, ``session`` first, every write committed before it returns).

A restore row is written before the restore call (status ``intent``), carries the job id right after it,
and ends ``succeeded``, ``failed`` or ``timed_out``; a request refused by our precondition checks is
recorded as ``refused`` and a dry run as ``dry_run``, so the ledger shows every restore someone asked for.

A drill row is written before its scratch disk is created (its name is derived from the row id, so a lost
create answer is found by name), gets the scratch disk's id as soon as it exists, and ends ``passed`` or
``failed``; ``scratch_deleted_at`` stays empty until the scratch disk is gone, so the next drill can delete
what a killed one left behind. Drilled-good backups are marked on their `DiskBackup` row (``verified_at``),
which retention's ``min_verified`` reads through :func:`verified_backup_ids`.

Times are given by the caller (the flows' clock, virtual in tests); text is plain and never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func, or_
from sqlmodel import Field, Session, SQLModel, col, select

from vbs_backup.ledger._rows import cut_text, get_row, save_row
from vbs_backup.ledger.repository import record_verified
from vbs_backup.ledger.tables import DiskBackup, StrEnumColumn, UTCDateTime, utcnow

__all__ = [
    "DrillStatus",
    "Restore",
    "RestoreDrill",
    "RestoreStatus",
    "finish_drill",
    "finish_restore",
    "last_passed_drills",
    "leftover_scratch_drills",
    "mark_backup_verified",
    "recent_drills",
    "recent_restores",
    "record_drill_job",
    "record_restore_request",
    "record_restore_submitted",
    "record_scratch_deleted",
    "record_scratch_volume",
    "start_drill",
    "verified_backup_ids",
]


class RestoreStatus(StrEnum):
    dry_run = "dry_run"  # shown, nothing done
    refused = "refused"  # a documented precondition was not met; nothing was sent
    intent = "intent"  # written before the restore call
    submitted = "submitted"  # the restore call returned a job id
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"  # still running at the deadline; it may finish in the cloud


class DrillStatus(StrEnum):
    running = "running"
    passed = "passed"
    failed = "failed"


class Restore(SQLModel, table=True):
    """One restore of a disk from a backup (asked for, refused, shown or done)."""

    __tablename__ = "restores"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str | None = Field(default=None, max_length=64)
    volume_id: str = Field(index=True, max_length=64)  # the disk whose backup is restored
    backup_id: str | None = Field(default=None, index=True, max_length=64)  # None: none could be chosen
    backup_name: str | None = Field(default=None, max_length=255)
    target_volume_id: str = Field(index=True, max_length=64)  # the disk overwritten
    dry_run: bool = False
    status: RestoreStatus = Field(default=RestoreStatus.intent, sa_type=StrEnumColumn(RestoreStatus))
    job_id: str | None = Field(default=None, max_length=64)
    error_code: str | None = Field(default=None, max_length=64)
    error: str | None = None  # the refusal (every unmet precondition) or the job's failure
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class RestoreDrill(SQLModel, table=True):
    """One restore drill of one protected disk: its newest good backup restored into a scratch disk."""

    __tablename__ = "restore_drills"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str | None = Field(default=None, max_length=64)
    volume_id: str = Field(index=True, max_length=64)
    disk_label: str = Field(max_length=255)  # "web-01 /dev/vdb"
    backup_id: str | None = Field(default=None, max_length=64)  # None: the disk had no good backup
    backup_name: str | None = Field(default=None, max_length=255)
    scratch_name: str | None = Field(default=None, max_length=255)
    scratch_volume_id: str | None = Field(default=None, max_length=64)
    job_id: str | None = Field(default=None, max_length=64)
    status: DrillStatus = Field(default=DrillStatus.running, sa_type=StrEnumColumn(DrillStatus))
    error_code: str | None = Field(default=None, max_length=64)
    error: str | None = None
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Restore request to checked disk, on the flow's clock: what an operator's RTO estimate needs.
    duration_seconds: float | None = None
    scratch_deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


# ---------------------------------------------------------------------------------------------- restores


def record_restore_request(
    *,
    session: Session,
    volume_id: str,
    target_volume_id: str,
    backup_id: str | None,
    backup_name: str | None,
    at: datetime,
    dry_run: bool = False,
    refused: str | None = None,
    flow_run_id: str | None = None,
) -> Restore:
    """Record a restore request: ``refused`` (with the reason) and ``dry_run`` rows are final at once;
    otherwise the row is the ``intent`` written before the restore call."""
    status = RestoreStatus.refused if refused else RestoreStatus.dry_run if dry_run else RestoreStatus.intent
    final = status is not RestoreStatus.intent
    return save_row(
        session,
        Restore(
            flow_run_id=flow_run_id,
            volume_id=volume_id,
            target_volume_id=target_volume_id,
            backup_id=backup_id,
            backup_name=backup_name,
            dry_run=dry_run,
            status=status,
            error=cut_text(refused),
            requested_at=at,
            finished_at=at if final else None,
        ),
    )


def record_restore_submitted(*, session: Session, restore_id: int, job_id: str) -> Restore:
    row = get_row(session, Restore, restore_id)
    row.job_id = job_id
    row.status = RestoreStatus.submitted
    return save_row(session, row)


def finish_restore(
    *,
    session: Session,
    restore_id: int,
    status: RestoreStatus | str,
    at: datetime,
    error_code: str | None = None,
    error: str | None = None,
) -> Restore:
    """Record how a restore ended (succeeded, failed or timed_out)."""
    status = RestoreStatus(status)
    if status not in (RestoreStatus.succeeded, RestoreStatus.failed, RestoreStatus.timed_out):
        raise ValueError(f"finish_restore takes succeeded, failed or timed_out, not {status.value!r}")
    row = get_row(session, Restore, restore_id)
    row.status = status
    row.finished_at = at
    row.error_code = cut_text(error_code)
    row.error = cut_text(error)
    return save_row(session, row)


def recent_restores(*, session: Session, limit: int = 20) -> list[Restore]:
    stmt = select(Restore).order_by(col(Restore.requested_at).desc(), col(Restore.id).desc()).limit(limit)
    return list(session.exec(stmt).all())


# ---------------------------------------------------------------------------------------------- drills


def start_drill(
    *,
    session: Session,
    volume_id: str,
    disk_label: str,
    backup_id: str | None,
    backup_name: str | None,
    at: datetime,
    flow_run_id: str | None = None,
) -> RestoreDrill:
    """Record that a drill of this disk starts (before its scratch disk is created)."""
    return save_row(
        session,
        RestoreDrill(
            flow_run_id=flow_run_id,
            volume_id=volume_id,
            disk_label=disk_label,
            backup_id=backup_id,
            backup_name=backup_name,
            started_at=at,
        ),
    )


def record_scratch_volume(
    *, session: Session, drill_id: int, scratch_name: str, scratch_volume_id: str | None = None
) -> RestoreDrill:
    """The scratch disk's name (before the create call) and, once known, its id."""
    row = get_row(session, RestoreDrill, drill_id)
    row.scratch_name = scratch_name
    if scratch_volume_id:
        row.scratch_volume_id = scratch_volume_id
    return save_row(session, row)


def record_drill_job(*, session: Session, drill_id: int, job_id: str) -> RestoreDrill:
    row = get_row(session, RestoreDrill, drill_id)
    row.job_id = job_id
    return save_row(session, row)


def finish_drill(
    *,
    session: Session,
    drill_id: int,
    status: DrillStatus | str,
    at: datetime,
    duration_seconds: float | None = None,
    error_code: str | None = None,
    error: str | None = None,
) -> RestoreDrill:
    status = DrillStatus(status)
    if status is DrillStatus.running:
        raise ValueError("finish_drill takes passed or failed")
    row = get_row(session, RestoreDrill, drill_id)
    row.status = status
    row.finished_at = at
    row.duration_seconds = duration_seconds
    row.error_code = cut_text(error_code)
    row.error = cut_text(error)
    return save_row(session, row)


def record_scratch_deleted(
    *, session: Session, drill_id: int, at: datetime, error: str | None = None
) -> RestoreDrill:
    """The scratch disk is gone; a drill that had passed but could not clean up is marked failed by the
    caller through `error` (appended, so the restore's own result stays readable)."""
    row = get_row(session, RestoreDrill, drill_id)
    row.scratch_deleted_at = at
    if error:
        row.error = cut_text(f"{row.error}; {error}" if row.error else error)
    return save_row(session, row)


def leftover_scratch_drills(*, session: Session, started_before: datetime) -> list[RestoreDrill]:
    """Drills whose scratch disk (or its create call) may still exist in the cloud because a failed delete
    or a killed run left it behind. A drill still ``running`` counts only when it started before
    `started_before` (the caller's deadline): a younger one may belong to a run that is still going."""
    stmt = (
        select(RestoreDrill)
        .where(
            col(RestoreDrill.scratch_name).is_not(None),
            col(RestoreDrill.scratch_deleted_at).is_(None),
            or_(
                col(RestoreDrill.status) != DrillStatus.running, col(RestoreDrill.started_at) < started_before
            ),
        )
        .order_by(col(RestoreDrill.id))
    )
    return list(session.exec(stmt).all())


def last_passed_drills(*, session: Session, volume_ids: Iterable[str]) -> dict[str, datetime]:
    """When each of these disks last passed a drill (disks that never did are absent)."""
    wanted = list(set(volume_ids))
    if not wanted:
        return {}
    stmt = (
        select(RestoreDrill.volume_id, func.max(RestoreDrill.started_at))
        .where(col(RestoreDrill.volume_id).in_(wanted), RestoreDrill.status == DrillStatus.passed)
        .group_by(RestoreDrill.volume_id)
    )
    # max() keeps the column's type, so the times come back aware (UTC) on SQLite too
    return dict(session.exec(stmt).all())


def recent_drills(*, session: Session, limit: int = 20) -> list[RestoreDrill]:
    stmt = (
        select(RestoreDrill)
        .order_by(col(RestoreDrill.started_at).desc(), col(RestoreDrill.id).desc())
        .limit(limit)
    )
    return list(session.exec(stmt).all())


# ---------------------------------------------------------------------------------------------- verification


def mark_backup_verified(*, session: Session, backup_id: str, at: datetime) -> DiskBackup | None:
    """Mark the ledger row of this backup verified by a drill; None when the backup is not one of ours
    (a policy backup, say): nothing to mark."""
    row = session.exec(select(DiskBackup).where(DiskBackup.backup_id == backup_id)).first()
    if row is None or row.id is None:
        return None
    return record_verified(session=session, disk_backup_id=row.id, at=at)


def verified_backup_ids(*, session: Session, volume_id: str) -> set[str]:
    """Ids of this disk's backups that passed a restore drill (read by retention's ``min_verified``)."""
    stmt = select(DiskBackup.backup_id).where(
        DiskBackup.volume_id == volume_id, col(DiskBackup.verified_at).is_not(None)
    )
    return {b for b in session.exec(stmt).all() if b}
