"""Repository functions: every read and write of the ledger goes through here.

All functions are keyword-only and take the ``session`` first. Every write commits before it returns, because
the ledger is written *before* the cloud call it describes (intent first): a crash right after the call must
find the row. Text stored here (messages, error reasons) is whatever plain text the caller gives, cut to a
sane length; nothing in this module ever receives credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from vbs_backup.ledger.tables import (
    DeleteStatus,
    DiskBackup,
    DiskBackupStatus,
    RetentionAction,
    RetentionDecision,
    Run,
    RunStatus,
    utcnow,
)

__all__ = [
    "LedgerNotFoundError",
    "VolumeProtection",
    "disk_backups_for_run",
    "find_disk_backup",
    "finish_run",
    "mark_delete",
    "newest_attempt",
    "owned_backup_ids",
    "protection_status",
    "recent_runs",
    "record_intent",
    "record_outcome",
    "record_retention_decision",
    "record_submitted",
    "record_verified",
    "start_run",
]

# Error texts come from the cloud or our client; keep a row readable even when a job dumps a stack trace.
MAX_TEXT = 2000


T = TypeVar("T")


class LedgerNotFoundError(LookupError):
    """A row that the caller refers to by id does not exist."""


def _cut(text: str | None) -> str | None:
    if text is None:
        return None
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _get(session: Session, model: type[T], row_id: int) -> T:
    row = session.get(model, row_id)
    if row is None:
        raise LedgerNotFoundError(f"no {model.__name__} with id {row_id}")
    return row


def _save(session: Session, row: T) -> T:
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


# ---------------------------------------------------------------------------------------------- runs


def start_run(
    *,
    session: Session,
    plan_name: str,
    trigger: str,
    flow_run_id: str | None = None,
    deployment: str | None = None,
) -> Run:
    """Record the start of a run (status ``running``)."""
    return _save(
        session,
        Run(plan_name=plan_name, trigger=trigger, flow_run_id=flow_run_id, deployment=deployment),
    )


def finish_run(*, session: Session, run_id: int, status: RunStatus | str, message: str | None = None) -> Run:
    """Close a run: set its status and end time, and freeze its counts from the rows it owns.

    Succeeded counts ``succeeded`` and ``adopted`` disks; failed counts ``failed``, ``timed_out`` and any disk
    still unfinished (intent / submitted / running), because an unfinished disk is not protected.
    ``deletes_done`` counts the run's retention decisions whose delete is ``done``.
    """
    status = RunStatus(status)
    run = _get(session, Run, run_id)
    rows = session.exec(
        select(DiskBackup.status, func.count()).where(DiskBackup.run_id == run_id).group_by(DiskBackup.status)
    ).all()
    by_status = {DiskBackupStatus(s): n for s, n in rows}
    run.disks_total = sum(by_status.values())
    run.disks_succeeded = sum(n for s, n in by_status.items() if s in DiskBackupStatus.successes())
    run.disks_failed = run.disks_total - run.disks_succeeded
    run.deletes_done = session.exec(
        select(func.count())
        .select_from(RetentionDecision)
        .where(RetentionDecision.run_id == run_id, RetentionDecision.delete_status == DeleteStatus.done)
    ).one()
    run.status = status
    run.message = _cut(message)
    run.finished_at = utcnow()
    return _save(session, run)


def recent_runs(*, session: Session, limit: int = 20) -> list[Run]:
    """The newest runs first."""
    stmt = select(Run).order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(limit)
    return list(session.exec(stmt).all())


# ---------------------------------------------------------------------------------------------- disk backups


def record_intent(
    *,
    session: Session,
    run_id: int,
    server_id: str,
    server_name: str,
    volume_id: str,
    volume_name: str | None,
    device: str,
    size_gb: int,
    is_system_disk: bool,
    backup_name: str,
) -> DiskBackup:
    """Record that this disk is about to be backed up under ``backup_name``; call it before the create.

    Idempotent: if a row for the same volume and name exists (an earlier attempt at the same slot), that row
    is returned with ``attempts`` incremented and moved to ``run_id``; its status, job id and backup id are
    left as they are, so the caller can see that a backup may already exist and adopt it instead of
    creating a duplicate.
    """
    existing = find_disk_backup(session=session, volume_id=volume_id, backup_name=backup_name)
    if existing is None:
        row = DiskBackup(
            run_id=run_id,
            server_id=server_id,
            server_name=server_name,
            volume_id=volume_id,
            volume_name=volume_name,
            device=device,
            size_gb=size_gb,
            is_system_disk=is_system_disk,
            backup_name=backup_name,
        )
        try:
            return _save(session, row)
        except IntegrityError:
            # Another worker wrote the same intent between our read and our insert: use its row.
            session.rollback()
            existing = find_disk_backup(session=session, volume_id=volume_id, backup_name=backup_name)
            if existing is None:
                raise
    existing.attempts += 1
    existing.run_id = run_id
    return _save(session, existing)


def record_submitted(*, session: Session, disk_backup_id: int, job_id: str) -> DiskBackup:
    """Record the job id returned by the create call (status ``submitted``)."""
    row = _get(session, DiskBackup, disk_backup_id)
    row.job_id = job_id
    row.status = DiskBackupStatus.submitted
    row.submitted_at = utcnow()
    return _save(session, row)


def record_outcome(
    *,
    session: Session,
    disk_backup_id: int,
    status: DiskBackupStatus | str,
    backup_id: str | None = None,
    error_code: str | None = None,
    error_reason: str | None = None,
    incremental: bool | None = None,
) -> DiskBackup:
    """Record what became of a disk's job: ``running``, or a final status.

    A final status (succeeded, adopted, failed, timed_out) sets ``finished_at`` and replaces the error
    fields with the given ones, so a success after a failed attempt leaves no stale error. ``backup_id``
    and ``incremental`` are only written when given.
    """
    status = DiskBackupStatus(status)
    if status in (DiskBackupStatus.intent, DiskBackupStatus.submitted):
        raise ValueError(f"record_outcome takes running or a final status, not {status.value!r}")
    row = _get(session, DiskBackup, disk_backup_id)
    row.status = status
    if backup_id:
        row.backup_id = backup_id
    if incremental is not None:
        row.incremental = incremental
    if status in DiskBackupStatus.finals():
        row.finished_at = utcnow()
        row.error_code = _cut(error_code)
        row.error_reason = _cut(error_reason)
    elif error_code or error_reason:
        row.error_code = _cut(error_code)
        row.error_reason = _cut(error_reason)
    return _save(session, row)


def record_verified(*, session: Session, disk_backup_id: int, at: datetime | None = None) -> DiskBackup:
    """Record that a restore drill of this backup passed."""
    row = _get(session, DiskBackup, disk_backup_id)
    row.verified_at = at or utcnow()
    return _save(session, row)


def find_disk_backup(*, session: Session, volume_id: str, backup_name: str) -> DiskBackup | None:
    """The row of this volume's backup with this name, if any."""
    stmt = select(DiskBackup).where(DiskBackup.volume_id == volume_id, DiskBackup.backup_name == backup_name)
    return session.exec(stmt).first()


def owned_backup_ids(*, session: Session, volume_id: str) -> set[str]:
    """Ids of every backup of this volume that the ledger knows we created (any status)."""
    stmt = select(DiskBackup.backup_id).where(
        DiskBackup.volume_id == volume_id, col(DiskBackup.backup_id).is_not(None), DiskBackup.backup_id != ""
    )
    return {b for b in session.exec(stmt).all() if b}


def newest_attempt(*, session: Session, volume_id: str) -> DiskBackup | None:
    """This volume's most recently requested backup, whatever its status (for fail-closed retention)."""
    stmt = (
        select(DiskBackup)
        .where(DiskBackup.volume_id == volume_id)
        .order_by(col(DiskBackup.requested_at).desc(), col(DiskBackup.id).desc())
        .limit(1)
    )
    return session.exec(stmt).first()


def disk_backups_for_run(*, session: Session, run_id: int) -> list[DiskBackup]:
    """The disk rows of one run, by server name and device."""
    stmt = (
        select(DiskBackup)
        .where(DiskBackup.run_id == run_id)
        .order_by(col(DiskBackup.server_name), col(DiskBackup.device), col(DiskBackup.id))
    )
    return list(session.exec(stmt).all())


# ---------------------------------------------------------------------------------------------- retention


def record_retention_decision(
    *,
    session: Session,
    run_id: int,
    volume_id: str,
    backup_id: str,
    backup_name: str | None,
    created_at_cloud: datetime,
    action: RetentionAction | str,
    reasons: str | Sequence[str],
    dry_run: bool = False,
) -> RetentionDecision:
    """Record one keep/delete decision with its reasons (a list is joined with ``"; "``).

    A real (not dry-run) delete is recorded with ``delete_status = intent``: this row is the intent that
    must exist before the delete call. Then :func:`mark_delete` follows its progress.
    """
    action = RetentionAction(action)
    text = reasons if isinstance(reasons, str) else "; ".join(reasons)
    decision = RetentionDecision(
        run_id=run_id,
        volume_id=volume_id,
        backup_id=backup_id,
        backup_name=backup_name,
        created_at_cloud=created_at_cloud,
        action=action,
        reasons=_cut(text) or "",
        dry_run=dry_run,
        delete_status=DeleteStatus.intent if action is RetentionAction.delete and not dry_run else None,
    )
    return _save(session, decision)


def mark_delete(
    *, session: Session, decision_id: int, delete_status: DeleteStatus | str, error: str | None = None
) -> RetentionDecision:
    """Record the progress of a delete (requested, done, failed) with the error text on failure."""
    delete_status = DeleteStatus(delete_status)
    decision = _get(session, RetentionDecision, decision_id)
    if decision.action is not RetentionAction.delete or decision.dry_run:
        raise ValueError(f"retention decision {decision_id} is not a real delete: nothing to mark")
    decision.delete_status = delete_status
    decision.delete_error = _cut(error)
    return _save(session, decision)


# ---------------------------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class VolumeProtection:
    """How well one volume is protected, from the ledger's point of view.

    ``newest_success_at`` is the point in time the newest successful backup covers (when it was
    submitted, or requested if it was adopted without a submission); ``age`` is ``now`` minus that.
    Server, volume name and device come from the newest attempt.
    """

    volume_id: str
    volume_name: str | None
    server_id: str
    server_name: str
    device: str
    newest_success_at: datetime | None
    newest_success_backup_id: str | None
    age: timedelta | None
    last_attempt_status: DiskBackupStatus
    last_attempt_at: datetime
    last_error_code: str | None


def protection_status(*, session: Session, now: datetime | None = None) -> list[VolumeProtection]:
    """One line per volume the ledger knows, sorted by server name and device."""
    now = now or utcnow()
    rank = (
        func.row_number()
        .over(
            partition_by=DiskBackup.volume_id,
            order_by=(col(DiskBackup.requested_at).desc(), col(DiskBackup.id).desc()),
        )
        .label("rank")
    )
    covered_at = func.coalesce(DiskBackup.submitted_at, DiskBackup.requested_at)

    latest = select(col(DiskBackup.id), rank).subquery()
    newest_attempts = session.exec(
        select(DiskBackup).join(latest, col(DiskBackup.id) == latest.c.id).where(latest.c.rank == 1)
    ).all()

    success_rank = (
        func.row_number()
        .over(partition_by=DiskBackup.volume_id, order_by=(covered_at.desc(), col(DiskBackup.id).desc()))
        .label("rank")
    )
    successes = (
        select(
            col(DiskBackup.volume_id), col(DiskBackup.backup_id), covered_at.label("covered_at"), success_rank
        )
        .where(col(DiskBackup.status).in_(list(DiskBackupStatus.successes())))
        .subquery()
    )
    best = {
        volume_id: (backup_id, at)
        for volume_id, backup_id, at in session.exec(
            select(successes.c.volume_id, successes.c.backup_id, successes.c.covered_at).where(
                successes.c.rank == 1
            )
        ).all()
    }

    result = []
    for row in newest_attempts:
        backup_id, at = best.get(row.volume_id, (None, None))
        result.append(
            VolumeProtection(
                volume_id=row.volume_id,
                volume_name=row.volume_name,
                server_id=row.server_id,
                server_name=row.server_name,
                device=row.device,
                newest_success_at=at,
                newest_success_backup_id=backup_id,
                age=(now - at) if at is not None else None,
                last_attempt_status=row.status,
                last_attempt_at=row.requested_at,
                last_error_code=row.error_code,
            )
        )
    result.sort(key=lambda p: (p.server_name, p.device, p.volume_id))
    return result
