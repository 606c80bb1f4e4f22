"""One disk's backup in one schedule slot: write the intent, adopt what exists, create what does not, and
record how it ended.

The backup name is deterministic (plan, server, device, slot), so whatever interrupted an earlier attempt
(a lost response, a retry, a killed process) is found by that name and adopted instead of being created a
second time. The ledger row is written before the create call and carries the job id right after it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from .cloud import CloudClient
from .cloud.errors import ApiError, CloudError, TransportError
from .cloud.models.backups import Backup
from .config import BackupPlan
from .ledger import DiskBackupStatus, record_intent, record_outcome, record_submitted
from .targets import DiskTarget
from .waiting import JobResult

log = logging.getLogger(__name__)

RUNNING_ON_DISK = "VolumeBackup.0013"  # a backup of this disk is still being created (§2.1)


@dataclass(frozen=True)
class Submission:
    """A disk whose backup is under way (or already done in this slot)."""

    disk: DiskTarget
    disk_backup_id: int
    backup_name: str
    job_id: str | None = None  # None: adopted by name, followed through the backups list
    backup_id: str | None = None
    adopted: bool = False
    done: bool = False  # nothing to wait for: this slot's backup already succeeded


@dataclass(frozen=True)
class DiskOutcome:
    disk: DiskTarget
    backup_name: str
    status: DiskBackupStatus
    backup_id: str | None = None
    job_id: str | None = None
    error_code: str | None = None
    error_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in (DiskBackupStatus.succeeded, DiskBackupStatus.adopted)


async def submit_disk_backup(
    *,
    client: CloudClient,
    engine: Engine,
    run_id: int,
    disk: DiskTarget,
    plan: BackupPlan,
    slot: datetime,
    full_backup: bool = False,
) -> Submission:
    """Start (or find) this slot's backup of `disk`. When it cannot be started the disk is recorded as
    failed and the `CloudError` is raised."""
    name = plan.backup_name(disk.server_name, disk.device, slot)
    row_id, status, job_id, backup_id, fresh = await asyncio.to_thread(
        _write_intent, engine, run_id, disk, name
    )
    try:
        return await _start(
            client, engine, row_id, status, job_id, backup_id, disk, plan, name, full_backup, fresh
        )
    except CloudError as exc:
        await asyncio.to_thread(record_failure, engine, row_id, exc)
        raise


def _write_intent(
    engine: Engine, run_id: int, disk: DiskTarget, name: str
) -> tuple[int, DiskBackupStatus, str | None, str | None, bool]:
    with Session(engine) as session:
        row = record_intent(
            session=session,
            run_id=run_id,
            server_id=disk.server_id,
            server_name=disk.server_name,
            volume_id=disk.volume_id,
            volume_name=disk.volume_name,
            device=disk.device,
            size_gb=disk.size_gb,
            is_system_disk=disk.is_system,
            backup_name=name,
        )
        assert row.id is not None
        # A row written just now (first attempt, nothing submitted) cannot have a backup in the cloud yet.
        fresh = row.attempts == 1 and row.status == DiskBackupStatus.intent
        return row.id, row.status, row.job_id, row.backup_id, fresh


async def _start(
    client: CloudClient,
    engine: Engine,
    row_id: int,
    status: DiskBackupStatus,
    job_id: str | None,
    backup_id: str | None,
    disk: DiskTarget,
    plan: BackupPlan,
    name: str,
    full_backup: bool,
    fresh: bool,
) -> Submission:
    if status in (DiskBackupStatus.succeeded, DiskBackupStatus.adopted):
        return Submission(disk, row_id, name, job_id=job_id, backup_id=backup_id, done=True)
    if job_id and status in (DiskBackupStatus.submitted, DiskBackupStatus.running):
        log.info("%s: resuming job %s of an earlier attempt", disk.label, job_id)
        return Submission(disk, row_id, name, job_id=job_id, backup_id=backup_id)

    # Look for this slot's backup before creating it, unless the intent is brand new: that look-up is
    # one request per disk, a third of a nightly run's requests at fleet scale (bench/nightly_fleet.py).
    found = None if fresh else await _live_backup_named(client, name, disk.volume_id)
    if found is not None:
        return await _adopt(engine, disk, row_id, name, found)

    async def create() -> str:
        return await client.vbs.create_backup(
            disk.volume_id,
            name,
            description=plan.ownership_marker(),
            tags=plan.backup_tags(),
            full_backup=full_backup,
        )

    try:
        new_job = await create()
    except TransportError:
        # The answer was lost; the create may have happened. Look before trying again (never blindly).
        found = await _live_backup_named(client, name, disk.volume_id)
        if found is not None:
            log.warning("%s: create answer lost, adopting backup %s", disk.label, found.id)
            return await _adopt(engine, disk, row_id, name, found)
        log.warning(
            "%s: create answer lost and no backup named %s exists; creating once more", disk.label, name
        )
        new_job = await create()
    except ApiError as exc:
        if exc.code != RUNNING_ON_DISK:
            raise
        found = await _live_backup_named(client, name, disk.volume_id)
        if found is None:
            raise  # another backup (not ours) is running on this disk
        return await _adopt(engine, disk, row_id, name, found)
    await asyncio.to_thread(_write_submitted, engine, row_id, new_job)
    return Submission(disk, row_id, name, job_id=new_job)


def _write_submitted(engine: Engine, row_id: int, job_id: str) -> None:
    with Session(engine) as session:
        record_submitted(session=session, disk_backup_id=row_id, job_id=job_id)


async def _live_backup_named(client: CloudClient, name: str, volume_id: str) -> Backup | None:
    """This disk's newest backup with `name` that is not failed or going away."""
    found = [
        b
        for b in await client.vbs.find_backups_by_name(name, volume_id)
        if str(b.status) in ("creating", "available", "restoring")
    ]
    return max(found, key=lambda b: (b.created_at, b.id), default=None)


async def _adopt(engine: Engine, disk: DiskTarget, row_id: int, name: str, backup: Backup) -> Submission:
    done = str(backup.status) != "creating"
    status = DiskBackupStatus.adopted if done else DiskBackupStatus.running
    await asyncio.to_thread(_write_outcome, engine, row_id, status, backup_id=backup.id)
    return Submission(disk, row_id, name, backup_id=backup.id, adopted=True, done=done)


def record_failure(engine: Engine, row_id: int, exc: Exception) -> None:
    """A disk that could not even be started is a failed disk, with the error's code and text."""
    code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
    _write_outcome(engine, row_id, DiskBackupStatus.failed, error_code=code, error_reason=str(exc))


def _write_outcome(engine: Engine, row_id: int, status: DiskBackupStatus, **fields: str | None) -> None:
    """Ledger writes are synchronous: callers on the event loop run this in a thread (`to_thread`), so
    that a thousand disks' writes do not stall every other coroutine (measured: ~10 ms a disk on SQLite)."""
    with Session(engine) as session:
        record_outcome(session=session, disk_backup_id=row_id, status=status, **fields)  # type: ignore[arg-type]


async def finish_disk_backup(
    *, client: CloudClient, engine: Engine, submission: Submission, result: JobResult
) -> DiskOutcome:
    """Record a job's end. A failed job's backup (status `error`) is looked up by name and recorded, so
    that retention may later clean it up as ours."""
    status = {
        "succeeded": DiskBackupStatus.adopted if submission.adopted else DiskBackupStatus.succeeded,
        "failed": DiskBackupStatus.failed,
        "timed_out": DiskBackupStatus.timed_out,
    }[result.status]
    backup_id = result.backup_id or submission.backup_id
    if status == DiskBackupStatus.failed and not backup_id:
        try:
            named = await client.vbs.find_backups_by_name(submission.backup_name, submission.disk.volume_id)
            backup_id = max(named, key=lambda b: (b.created_at, b.id)).id if named else None
        except CloudError as exc:  # the failure is recorded anyway; only the id is missing
            log.warning("%s: could not look up the failed backup: %s", submission.disk.label, exc)
    await asyncio.to_thread(
        _write_outcome,
        engine,
        submission.disk_backup_id,
        status,
        backup_id=backup_id,
        error_code=result.error_code,
        error_reason=result.error_reason,
    )
    return DiskOutcome(
        submission.disk,
        submission.backup_name,
        status,
        backup_id=backup_id,
        job_id=submission.job_id,
        error_code=result.error_code,
        error_reason=result.error_reason,
    )
