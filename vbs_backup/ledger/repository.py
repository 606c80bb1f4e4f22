"""Repository functions: every read and write of the ledger goes through here.

All functions are keyword-only and take the ``session`` first. Every write commits before it returns, because
the ledger is written *before* the cloud call it describes (intent first): a crash right after the call must
find the row. Text stored here (messages, error reasons) is whatever plain text the caller gives, cut to a
sane length; nothing in this module ever receives credentials.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from vbs_backup.ledger._rows import cut_text, get_row, save_row
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
    "RUN_LEASE",
    "VolumeProtection",
    "attempts_for_slot",
    "attempts_of_target",
    "beat",
    "disk_backups_for_run",
    "find_disk_backup",
    "finish_run",
    "live_run_ids",
    "mark_abandoned_runs",
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
    "recorded_backup_ids",
    "run_targets",
    "start_run",
    "take_up_attempt",
    "unreconciled_attempts",
]

# A running run writes its heartbeat every minute or so (HEARTBEAT_EVERY in tasks/runtime.py); one silent for
# this long is dead: its process was killed, or its machine or the Prefect server went away.
RUN_LEASE = timedelta(minutes=10)

# Plan names repeat across the targets of an estate (every project may have its `nightly`), which one ledger
# records together: every read of runs by plan name takes a `target` keyword. None reads every run of the
# plan, as a ledger outside any estate always has; a target's name reads only the runs of that target.

# ---------------------------------------------------------------------------------------------- runs


def start_run(
    *,
    session: Session,
    plan_name: str,
    trigger: str,
    flow_run_id: str | None = None,
    deployment: str | None = None,
    target: str | None = None,
    project_id: str | None = None,
) -> Run:
    """Record the start of a run (status ``running``): of the estate target `target` (None: outside any
    estate), working on the project `project_id`."""
    now = utcnow()
    return save_row(
        session,
        Run(
            plan_name=plan_name,
            trigger=trigger,
            flow_run_id=flow_run_id,
            deployment=deployment,
            target=target,
            project_id=project_id,
            started_at=now,
            heartbeat_at=now,
        ),
    )


def beat(*, session: Session, run_id: int) -> None:
    """A live run says so (see RUN_LEASE)."""
    run = get_row(session, Run, run_id)
    if run.status is RunStatus.running:
        run.heartbeat_at = utcnow()
        save_row(session, run)


def _dead_runs_query(plan_name: str | None, target: str | None, now: datetime, lease: timedelta):
    # A run from before heartbeats has none: its start is its last sign of life.
    last_sign = func.coalesce(Run.heartbeat_at, Run.started_at)
    stmt = select(Run).where(Run.status == RunStatus.running, last_sign < now - lease)
    if plan_name is not None:
        stmt = stmt.where(Run.plan_name == plan_name)
    return stmt if target is None else stmt.where(Run.target == target)


def mark_abandoned_runs(
    *,
    session: Session,
    plan_name: str | None = None,
    target: str | None = None,
    now: datetime | None = None,
    lease: timedelta = RUN_LEASE,
) -> list[Run]:
    """Mark `abandoned` every `running` run (of `plan_name`, or of any plan; of `target`, or of any) whose
    heartbeat stopped longer than `lease` ago, freezing its counts; a live run keeps beating and is never
    touched."""
    now = now or utcnow()
    dead = list(session.exec(_dead_runs_query(plan_name, target, now, lease)).all())
    marked = []
    for run in dead:
        assert run.id is not None
        seen = run.heartbeat_at or run.started_at
        message = f"abandoned: no sign of life since {seen.isoformat(timespec='seconds')} (process killed?)"
        marked.append(finish_run(session=session, run_id=run.id, status=RunStatus.abandoned, message=message))
    return marked


def live_run_ids(
    *,
    session: Session,
    plan_name: str,
    target: str | None = None,
    now: datetime | None = None,
    lease: timedelta = RUN_LEASE,
) -> set[int]:
    """Runs of the plan (of `target`, when given) that are `running` with a fresh heartbeat: their attempts
    are theirs to finish."""
    now = now or utcnow()
    last_sign = func.coalesce(Run.heartbeat_at, Run.started_at)
    stmt = select(Run.id).where(
        Run.plan_name == plan_name, Run.status == RunStatus.running, last_sign >= now - lease
    )
    if target is not None:
        stmt = stmt.where(Run.target == target)
    return {i for i in session.exec(stmt).all() if i is not None}


def finish_run(*, session: Session, run_id: int, status: RunStatus | str, message: str | None = None) -> Run:
    """Close a run: set its status and end time, and freeze its counts from the rows it owns.

    Each disk counts once, by its newest attempt in the run. Succeeded counts ``succeeded`` and ``adopted``
    disks; failed counts every other status, because an unfinished disk is not protected.
    ``deletes_done`` counts the run's retention decisions whose delete is ``done``.
    """
    status = RunStatus(status)
    run = get_row(session, Run, run_id)
    # One disk may have several attempts in a run (a failed job retried): its newest attempt counts.
    newest: dict[str, DiskBackup] = {}
    for row in session.exec(select(DiskBackup).where(DiskBackup.run_id == run_id)).all():
        if row.volume_id not in newest or (row.attempt, row.id or 0) > (
            newest[row.volume_id].attempt,
            newest[row.volume_id].id or 0,
        ):
            newest[row.volume_id] = row
    run.disks_total = len(newest)
    run.disks_succeeded = sum(1 for r in newest.values() if r.status in DiskBackupStatus.successes())
    run.disks_failed = run.disks_total - run.disks_succeeded
    run.deletes_done = session.exec(
        select(func.count())
        .select_from(RetentionDecision)
        .where(RetentionDecision.run_id == run_id, RetentionDecision.delete_status == DeleteStatus.done)
    ).one()
    run.status = status
    run.message = cut_text(message)
    run.finished_at = utcnow()
    return save_row(session, run)


def recent_runs(*, session: Session, limit: int = 20, targets: Collection[str] | None = None) -> list[Run]:
    """The newest runs first (of these estate `targets` only, when given)."""
    stmt = select(Run)
    if targets is not None:
        stmt = stmt.where(col(Run.target).in_(list(targets)))
    stmt = stmt.order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(limit)
    return list(session.exec(stmt).all())


def run_targets(*, session: Session) -> list[str]:
    """The estate targets the ledger has runs of, by name."""
    stmt = select(Run.target).where(col(Run.target).is_not(None)).distinct()
    return sorted(t for t in session.exec(stmt).all() if t is not None)


# ---------------------------------------------------------------------------------------------- disk backups


def record_intent(
    *,
    session: Session,
    run_id: int,
    plan_name: str,
    slot_start: datetime,
    server_id: str,
    server_name: str,
    volume_id: str,
    volume_name: str | None,
    device: str,
    size_gb: int,
    is_system_disk: bool,
    backup_name: str,
    requested_at: datetime | None = None,
) -> DiskBackup:
    """Record a new attempt at the backup (plan, volume, slot); call it before the create. `requested_at`
    (default: now) is compared with the cloud's `created_at` to tell whether a backup appeared after it,
    so callers pass the time of the clock they run on.

    Every attempt gets a row of its own (``attempt`` = 1, 2, ...), so a backup left behind by an earlier
    attempt (a failed job's ``error`` backup) stays recorded as ours. Two workers racing for the same
    attempt number are told apart by the unique constraint: the loser takes the next number.
    """
    for _ in range(5):
        previous = session.exec(
            select(func.max(DiskBackup.attempt)).where(
                DiskBackup.plan_name == plan_name,
                DiskBackup.volume_id == volume_id,
                DiskBackup.slot_start == slot_start,
            )
        ).one()
        row = DiskBackup(
            run_id=run_id,
            plan_name=plan_name,
            slot_start=slot_start,
            attempt=(previous or 0) + 1,
            server_id=server_id,
            server_name=server_name,
            volume_id=volume_id,
            volume_name=volume_name,
            device=device,
            size_gb=size_gb,
            is_system_disk=is_system_disk,
            backup_name=backup_name,
            requested_at=requested_at or utcnow(),
        )
        try:
            return save_row(session, row)
        except IntegrityError:
            session.rollback()
            taken = session.exec(
                select(DiskBackup.id).where(
                    DiskBackup.plan_name == plan_name,
                    DiskBackup.volume_id == volume_id,
                    DiskBackup.slot_start == slot_start,
                    DiskBackup.attempt == row.attempt,
                )
            ).first()
            if taken is None:
                raise  # not a race for the attempt number (e.g. an unknown run): say what it is
            # another worker took that attempt number: take the next one
    raise RuntimeError(
        f"could not record an attempt for {plan_name} {volume_id} {slot_start}: too many races"
    )


def take_up_attempt(*, session: Session, disk_backup_id: int, run_id: int) -> DiskBackup:
    """A run carries on an earlier attempt (resumes its job, or adopts its backup)."""
    row = get_row(session, DiskBackup, disk_backup_id)
    row.attempts += 1
    row.run_id = run_id
    return save_row(session, row)


def attempts_for_slot(
    *, session: Session, plan_name: str, volume_id: str, slot_start: datetime
) -> list[DiskBackup]:
    """The attempts at one backup identity, oldest first."""
    stmt = (
        select(DiskBackup)
        .where(
            DiskBackup.plan_name == plan_name,
            DiskBackup.volume_id == volume_id,
            DiskBackup.slot_start == slot_start,
        )
        .order_by(col(DiskBackup.attempt), col(DiskBackup.id))
    )
    return list(session.exec(stmt).all())


def unreconciled_attempts(
    *, session: Session, plan_name: str, volume_ids: Sequence[str], exclude_run_ids: set[int]
) -> list[DiskBackup]:
    """Attempts of the plan on these volumes whose end the ledger does not know (unfinished, or timed out:
    the job may have finished after its deadline), left by runs that are no longer alive."""
    open_states = [*DiskBackupStatus.unfinished(), DiskBackupStatus.timed_out]
    stmt = select(DiskBackup).where(
        DiskBackup.plan_name == plan_name,
        col(DiskBackup.volume_id).in_(list(volume_ids)),
        col(DiskBackup.status).in_(open_states),
    )
    if exclude_run_ids:
        stmt = stmt.where(col(DiskBackup.run_id).not_in(list(exclude_run_ids)))
    return list(session.exec(stmt.order_by(col(DiskBackup.id))).all())


def record_submitted(*, session: Session, disk_backup_id: int, job_id: str) -> DiskBackup:
    """Record the job id returned by the create call (status ``submitted``)."""
    row = get_row(session, DiskBackup, disk_backup_id)
    row.job_id = job_id
    row.status = DiskBackupStatus.submitted
    row.submitted_at = utcnow()
    return save_row(session, row)


def record_outcome(
    *,
    session: Session,
    disk_backup_id: int,
    status: DiskBackupStatus | str,
    backup_id: str | None = None,
    error_code: str | None = None,
    error_reason: str | None = None,
    incremental: bool | None = None,
    created_by_us: bool | None = None,
) -> DiskBackup:
    """Record what became of a disk's job: ``running``, or a final status.

    A final status (succeeded, adopted, failed, timed_out) sets ``finished_at`` and replaces the error
    fields with the given ones, so a success after a failed attempt leaves no stale error. ``backup_id``
    and ``incremental`` are only written when given.
    """
    status = DiskBackupStatus(status)
    if status in (DiskBackupStatus.intent, DiskBackupStatus.submitted):
        raise ValueError(f"record_outcome takes running or a final status, not {status.value!r}")
    row = get_row(session, DiskBackup, disk_backup_id)
    row.status = status
    if backup_id:
        row.backup_id = backup_id
    if incremental is not None:
        row.incremental = incremental
    if created_by_us is not None:
        row.created_by_us = created_by_us
    if status in DiskBackupStatus.finals():
        row.finished_at = utcnow()
        row.error_code = cut_text(error_code)
        row.error_reason = cut_text(error_reason)
    elif error_code or error_reason:
        row.error_code = cut_text(error_code)
        row.error_reason = cut_text(error_reason)
    return save_row(session, row)


def record_verified(*, session: Session, disk_backup_id: int, at: datetime | None = None) -> DiskBackup:
    """Record that a restore drill of this backup passed."""
    row = get_row(session, DiskBackup, disk_backup_id)
    row.verified_at = at or utcnow()
    return save_row(session, row)


def find_disk_backup(*, session: Session, volume_id: str, backup_name: str) -> DiskBackup | None:
    """The newest attempt row of this volume's backup with this name, if any (names are decoration: the
    identity is (plan, volume, slot); this is for people and tests looking a name up)."""
    stmt = (
        select(DiskBackup)
        .where(DiskBackup.volume_id == volume_id, DiskBackup.backup_name == backup_name)
        .order_by(col(DiskBackup.attempt).desc(), col(DiskBackup.id).desc())
    )
    return session.exec(stmt).first()


def recorded_backup_ids(
    *, session: Session, plan_name: str, volume_id: str, created_by_us_only: bool = False
) -> set[str]:
    """Ids of this volume's backups that the plan's attempts recorded (any status)."""
    stmt = select(DiskBackup.backup_id).where(
        DiskBackup.plan_name == plan_name,
        DiskBackup.volume_id == volume_id,
        col(DiskBackup.backup_id).is_not(None),
        DiskBackup.backup_id != "",
    )
    if created_by_us_only:
        stmt = stmt.where(DiskBackup.created_by_us == True)  # noqa: E712 (SQL, not Python)
    return {b for b in session.exec(stmt).all() if b}


def owned_backup_ids(*, session: Session, plan_name: str, volume_id: str) -> set[str]:
    """Ids of this volume's backups that the plan itself created, as its ledger recorded them. Backups it
    only adopted without proof of creating them (another ledger's) are not among them."""
    return recorded_backup_ids(
        session=session, plan_name=plan_name, volume_id=volume_id, created_by_us_only=True
    )


def newest_attempt(*, session: Session, plan_name: str, volume_id: str) -> DiskBackup | None:
    """The plan's most recent attempt on this volume, whatever its status (for fail-closed retention)."""
    stmt = (
        select(DiskBackup)
        .where(DiskBackup.plan_name == plan_name, DiskBackup.volume_id == volume_id)
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
        reasons=cut_text(text) or "",
        dry_run=dry_run,
        delete_status=DeleteStatus.intent if action is RetentionAction.delete and not dry_run else None,
    )
    return save_row(session, decision)


def mark_delete(
    *, session: Session, decision_id: int, delete_status: DeleteStatus | str, error: str | None = None
) -> RetentionDecision:
    """Record the progress of a delete (requested, done, failed) with the error text on failure."""
    delete_status = DeleteStatus(delete_status)
    decision = get_row(session, RetentionDecision, decision_id)
    if decision.action is not RetentionAction.delete or decision.dry_run:
        raise ValueError(f"retention decision {decision_id} is not a real delete: nothing to mark")
    decision.delete_status = delete_status
    decision.delete_error = cut_text(error)
    return save_row(session, decision)


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
    target: str | None = None  # the estate target of the newest attempt's run (None: outside any estate)


def attempts_of_target(target: str) -> ColumnElement[bool]:
    """A condition on `DiskBackup` rows: those of `target`'s runs.

    A row belongs to the run that last worked on it (`run_id`), not to the one that created it. Either is
    the target's: one (project, plan) has one owner in an estate (vbs_backup/estate.py refuses two) and a
    volume lives in one project, so every run that can take up an attempt at (plan, volume, slot) is the
    same target's (a run outside the estate that took one up, e.g. `vbs-backup run` with the plan by hand,
    takes it out of the target's view). Scoping by the run rather than by the volumes the target has today
    works where those are not known: the watchdog checks the ledger's disks when the cloud cannot list
    them, and a disk gone from the project still has its history."""
    return col(DiskBackup.run_id).in_(select(Run.id).where(Run.target == target))


def protection_status(
    *,
    session: Session,
    now: datetime | None = None,
    plan_name: str | None = None,
    target: str | None = None,
) -> list[VolumeProtection]:
    """One line per volume the ledger knows (for one plan, or all plans; from the runs of one estate
    target, or from every run), sorted by server name and device."""
    now = now or utcnow()
    of_plan: list[ColumnElement[bool]] = [] if plan_name is None else [col(DiskBackup.plan_name) == plan_name]
    if target is not None:
        of_plan.append(attempts_of_target(target))
    rank = (
        func.row_number()
        .over(
            partition_by=DiskBackup.volume_id,
            order_by=(col(DiskBackup.requested_at).desc(), col(DiskBackup.id).desc()),
        )
        .label("rank")
    )
    covered_at = func.coalesce(DiskBackup.submitted_at, DiskBackup.requested_at)

    latest = select(col(DiskBackup.id), rank).where(*of_plan).subquery()
    newest_attempts = session.exec(
        select(DiskBackup, Run.target)
        .join(latest, col(DiskBackup.id) == latest.c.id)
        .join(Run, col(Run.id) == col(DiskBackup.run_id))
        .where(latest.c.rank == 1)
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
        .where(col(DiskBackup.status).in_(list(DiskBackupStatus.successes())), *of_plan)
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
    for row, run_target in newest_attempts:
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
                target=run_target,
            )
        )
    result.sort(key=lambda p: (p.server_name, p.device, p.volume_id))
    return result
