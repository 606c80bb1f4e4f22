"""Reconciling the ledger with the cloud at the start of a run: what earlier runs left unfinished.

A run that died (killed, machine lost) leaves attempts at `intent`, `submitted` or `running`; a job that
outlived its deadline leaves an attempt `timed_out` although its backup may be good by now. Before a run
creates anything, each such attempt of the plan, on the disks the run looks at, is settled from what the
cloud says (the run's listing of those disks' backups, one `get_job` where the listing cannot tell; their
statuses read in the ledger's words by `outcomes`):

* its backup is known: `available` -> succeeded, `error` -> failed, gone -> failed (vanished), still
  `creating` -> left for the run in that slot, or a later one;
* its backup is not known but its job is: the ended job says which backup it made and how it ended (a
  job still running is left for the run in that slot, which waits for it, or a later one);
* neither is known (the run died between the create and writing the job id): the backup of its identity,
  with the name its create sent, that appeared after the intent and that no other attempt recorded is
  claimed as the attempt's;
* nothing appeared and no job id was recorded: the create never happened (`abandoned`).

Attempts of a run that is still alive (fresh heartbeat) are left alone. Runs whose heartbeat stopped are
marked `abandoned` first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlmodel import Session

from ..cloud import CloudClient
from ..cloud.errors import CloudError, NotFoundError
from ..cloud.models.backups import Backup
from ..identity import identity_marker
from ..ledger import (
    DiskBackup,
    DiskBackupStatus,
    live_run_ids,
    mark_abandoned_runs,
    record_outcome,
    recorded_backup_ids,
    unreconciled_attempts,
)
from .outcomes import from_backup, from_job
from .submit import VANISHED, may_have_made

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settled:
    volume_id: str
    attempt_id: int
    was: DiskBackupStatus
    now: DiskBackupStatus
    backup_id: str | None


def open_attempts(
    engine: Engine, *, plan_name: str, run_id: int, volume_ids: Sequence[str], target: str | None = None
) -> list[DiskBackup]:
    """Mark dead runs of the plan (of `target` only, in an estate: another target's plan of the same name
    is another plan), then list the attempts to settle (not those of live runs)."""
    with Session(engine) as session:
        for run in mark_abandoned_runs(session=session, plan_name=plan_name, target=target):
            log.warning("run %s of plan %s %s", run.id, plan_name, run.message)
        alive = live_run_ids(session=session, plan_name=plan_name, target=target) | {run_id}
        return unreconciled_attempts(
            session=session, plan_name=plan_name, volume_ids=volume_ids, exclude_run_ids=alive
        )


async def reconcile_attempts(
    *,
    client: CloudClient,
    engine: Engine,
    plan_name: str,
    run_id: int,
    listed: Mapping[str, Sequence[Backup]],
    target: str | None = None,
) -> list[Settled]:
    """Settle the plan's open attempts on the listed disks (see the module text); returns what changed."""
    settled = []
    volume_ids = list(listed)
    for row in open_attempts(
        engine, plan_name=plan_name, run_id=run_id, volume_ids=volume_ids, target=target
    ):
        change = await _settle(client, engine, row, listed.get(row.volume_id, []))
        if change is not None:
            assert row.id is not None
            settled.append(Settled(row.volume_id, row.id, row.status, change[0], change[1]))
    return settled


async def _settle(
    client: CloudClient, engine: Engine, row: DiskBackup, backups: Sequence[Backup]
) -> tuple[DiskBackupStatus, str | None] | None:
    by_id = {b.id: b for b in backups}
    if row.backup_id:
        backup = by_id.get(row.backup_id)
        if backup is None:
            return _write(
                engine, row, DiskBackupStatus.failed, error_code=VANISHED, error_reason="backup gone"
            )
        return _from_backup(engine, row, backup)
    if row.job_id:
        return await _from_job(client, engine, row, by_id)
    if row.slot_start is not None:
        claimed = _claimed(engine, row)
        marker = identity_marker(row.plan_name, row.slot_start)
        appeared = [
            b for b in backups if b.description == marker and b.id not in claimed and may_have_made(row, b)
        ]
        if appeared:
            # The first to appear after the intent: the create follows its intent at once, and a copy of
            # our backup is always newer than the backup it copies.
            return _from_backup(engine, row, min(appeared, key=lambda b: (b.created_at, b.id)))
    reason = "the run died before a backup of this attempt appeared in the cloud"
    return _write(engine, row, DiskBackupStatus.abandoned, error_reason=reason)


def _claimed(engine: Engine, row: DiskBackup) -> set[str]:
    with Session(engine) as session:
        return recorded_backup_ids(session=session, plan_name=row.plan_name, volume_id=row.volume_id)


def _from_backup(
    engine: Engine, row: DiskBackup, backup: Backup
) -> tuple[DiskBackupStatus, str | None] | None:
    status = from_backup(backup.status)
    if status is None or (status is DiskBackupStatus.running and row.status is DiskBackupStatus.timed_out):
        return None  # still under way (or restoring): a later run will look again
    if status is DiskBackupStatus.running and row.backup_id == backup.id and row.status is status:
        return None
    reason = backup.fail_reason if status is DiskBackupStatus.failed else None
    return _write(engine, row, status, backup_id=backup.id, error_reason=reason)


async def _from_job(
    client: CloudClient, engine: Engine, row: DiskBackup, by_id: Mapping[str, Backup]
) -> tuple[DiskBackupStatus, str | None] | None:
    assert row.job_id is not None
    try:
        job = await client.vbs.get_job(row.job_id)
    except NotFoundError:
        return _write(
            engine, row, DiskBackupStatus.failed, error_code="common.0011", error_reason="job not found"
        )
    except CloudError as exc:
        log.warning("attempt %s: job %s unknown for now: %s", row.id, row.job_id, exc)
        return None
    ended = from_job(job.status)
    if ended is DiskBackupStatus.failed:
        return _write(
            engine,
            row,
            DiskBackupStatus.failed,
            backup_id=job.backup_id,
            error_code=job.error_code,
            error_reason=job.fail_reason,
        )
    if ended is DiskBackupStatus.succeeded:
        if job.backup_id and job.backup_id in by_id:
            return _from_backup(engine, row, by_id[job.backup_id])
        return _write(
            engine,
            row,
            DiskBackupStatus.failed,
            backup_id=job.backup_id,
            error_code=VANISHED,
            error_reason="backup gone",
        )
    return None  # still running


def _write(
    engine: Engine, row: DiskBackup, status: DiskBackupStatus, **fields: str | None
) -> tuple[DiskBackupStatus, str | None]:
    assert row.id is not None
    with Session(engine) as session:
        done = record_outcome(session=session, disk_backup_id=row.id, status=status, **fields)  # type: ignore[arg-type]
    log.info("attempt %s (%s): %s -> %s", row.id, row.volume_id, row.status.value, status.value)
    return status, done.backup_id
