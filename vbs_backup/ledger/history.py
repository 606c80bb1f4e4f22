"""Read-only: the plan's attempts slot by slot over a window of recent slots, for the watchdog's picture of
the last nights (``vbs_backup.watchdog.view``). No table of its own; nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from vbs_backup.ledger.tables import DiskBackup, DiskBackupStatus, Run

__all__ = ["SlotAttempt", "slot_attempts"]


@dataclass(frozen=True, slots=True)
class SlotAttempt:
    """One attempt at one disk's backup for one slot, with the run that last worked on it."""

    volume_id: str
    slot_start: datetime  # aware UTC
    requested_at: datetime
    status: DiskBackupStatus
    error_code: str | None
    error_reason: str | None
    deployment: str | None  # of the run: nightly-backup, backup-server, ... (None: outside any deployment)
    trigger: str


def slot_attempts(
    *, session: Session, plan_name: str, since: datetime, target: str | None = None
) -> list[SlotAttempt]:
    """Every attempt of the plan for a slot starting at or after `since`, oldest request first; of the runs
    of the estate target `target` only, when given. Rows of a migrated ledger that do not know their slot
    are left out."""
    stmt = (
        select(DiskBackup, Run.deployment, Run.trigger)
        .join(Run, col(Run.id) == col(DiskBackup.run_id))
        .where(DiskBackup.plan_name == plan_name, col(DiskBackup.slot_start) >= since)
    )
    if target is not None:
        # By the attempt's run (the run that last worked on it), as `protection_status` scopes the disks
        # the nights are shown for: the same rows in both, and no need of the volumes the cloud lists
        # (the watchdog shows the ledger's disks when it cannot list them). See `attempts_of_target`.
        stmt = stmt.where(Run.target == target)
    stmt = stmt.order_by(col(DiskBackup.requested_at), col(DiskBackup.id))
    attempts: list[SlotAttempt] = []
    for attempt, deployment, trigger in session.exec(stmt).all():
        assert attempt.slot_start is not None  # the `>= since` filter leaves out rows without a slot
        attempts.append(
            SlotAttempt(
                attempt.volume_id,
                attempt.slot_start,
                attempt.requested_at,
                attempt.status,
                attempt.error_code,
                attempt.error_reason,
                deployment,
                trigger,
            )
        )
    return attempts
