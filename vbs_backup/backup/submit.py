"""One disk's backup in one schedule slot: find what the cloud already has, write the intent, create what
does not exist, and record how it ended.

A backup's identity is (plan, volume, slot), written in its description (`vbs_backup.identity`). Before
creating, the cloud is asked (through the run's listing of the disks' backups, or a listing of this disk)
whether a live backup of that identity exists: if so it is adopted, whatever the ledger knows, whatever the
server is called now; so a re-run, a lost answer, a killed process or a second ledger never makes a second
backup of the slot, and a slot whose backup vanished gets a new one. Every create is an attempt with a
ledger row of its own, written before the call, so every backup we made stays ours to clean up.

A disk whose backup cannot be started is recorded as failed here, and its `DiskOutcome` built here
(`_failed`): the caller gets either a `Submission` to wait for or that outcome, never an exception to
record again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from ..cloud import CloudClient
from ..cloud.errors import ApiError, CloudError, TransportError
from ..cloud.models.backups import Backup, BackupStatus
from ..cloud.models.jobs import Job
from ..identity import CLOCK_SKEW
from ..ledger import (
    DiskBackup,
    DiskBackupStatus,
    attempts_for_slot,
    record_intent,
    record_outcome,
    record_submitted,
    take_up_attempt,
)
from ..plan import BackupPlan
from .outcomes import LIVE, from_backup
from .targets import DiskTarget
from .waiter import JobResult

log = logging.getLogger(__name__)

RUNNING_ON_DISK = "VolumeBackup.0013"  # a backup of this disk is still being created (§2.1)
VANISHED = "vbsb.BackupVanished"  # our error code: the backup a disk relied on is gone from the cloud
NOT_DESCRIBED = "vbsb.VolumeNotDescribed"  # our error code: the plan selects a disk EVS cannot describe


class VolumeNotDescribed(CloudError):
    """A server lists the disk as attached, but EVS cannot describe it: it cannot be backed up. Its `code`
    is ours, exposed as `ApiError.code` exposes the cloud's."""

    code = NOT_DESCRIBED


@dataclass(frozen=True)
class Submission:
    """A disk whose backup is under way (or already done in this slot)."""

    disk: DiskTarget
    disk_backup_id: int
    backup_name: str
    marker: str  # the identity written in the backup's description
    job_id: str | None = None  # None: adopted, followed through the backups list
    backup_id: str | None = None
    adopted: bool = False
    done: bool = False  # nothing to wait for: this slot's backup is available
    # For the waiter: the backup cannot be older than `since` (the intent, or an adopted backup's own
    # creation), and the backups in `exclude` (of this identity, there before the create) are not this job's.
    since: datetime | None = None
    exclude: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DiskOutcome:
    disk: DiskTarget
    backup_name: str
    status: DiskBackupStatus
    backup_id: str | None = None
    job_id: str | None = None
    error_code: str | None = None
    error_reason: str | None = None
    disk_backup_id: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in DiskBackupStatus.successes()


def live_of(backups: Iterable[Backup], marker: str) -> list[Backup]:
    """The backups of the identity `marker` that are not failed or going away, newest first."""
    live = [b for b in backups if b.description == marker and b.status in LIVE]
    return sorted(live, key=lambda b: (b.created_at, b.id), reverse=True)


def newest_live(backups: Iterable[Backup], marker: str) -> Backup | None:
    return next(iter(live_of(backups, marker)), None)


async def submit_disk_backup(
    *,
    client: CloudClient,
    engine: Engine,
    run_id: int,
    disk: DiskTarget,
    plan: BackupPlan,
    slot: datetime,
    known: Sequence[Backup],
    full_backup: bool = False,
    now: datetime | None = None,
    before_create: Callable[[], Awaitable[None]] | None = None,
) -> Submission | DiskOutcome:
    """Start (or find) this slot's backup of `disk`. `known` is what the cloud listed for this disk at the
    start of the run; `now` is the run's clock, recorded as the attempt's time; `before_create` is awaited
    between the intent and the create (a server's disks start together). A backup that cannot be started
    comes back as the failed disk's `DiskOutcome`, already recorded."""
    marker = plan.identity_marker(slot)
    name = plan.backup_name(disk.server_name, disk.device, slot)
    if disk.missing:
        row = await asyncio.to_thread(_new_attempt, engine, run_id, plan, slot, disk, name, now)
        exc = VolumeNotDescribed(f"{disk.label}: attached volume {disk.volume_id} cannot be described by EVS")
        return await _failed(engine, row, disk, name, exc)
    live = live_of(known, marker)
    if live:
        return await _adopt(client, engine, run_id, plan, slot, disk, name, marker, live, now)

    row = await asyncio.to_thread(_new_attempt, engine, run_id, plan, slot, disk, name, now)
    assert row.id is not None
    if before_create is not None:
        await before_create()
    # Backups of this identity already there (an earlier attempt's `error` backup) are not this job's.
    earlier = frozenset(b.id for b in known if b.description == marker)
    try:
        return await _create(client, engine, row, disk, plan, name, marker, full_backup, earlier)
    except CloudError as exc:
        return await _failed(engine, row, disk, name, exc)


def _new_attempt(
    engine: Engine,
    run_id: int,
    plan: BackupPlan,
    slot: datetime,
    disk: DiskTarget,
    name: str,
    now: datetime | None,
) -> DiskBackup:
    with Session(engine) as session:
        return record_intent(
            session=session,
            run_id=run_id,
            plan_name=plan.name,
            slot_start=slot,
            server_id=disk.server_id,
            server_name=disk.server_name,
            volume_id=disk.volume_id,
            volume_name=disk.volume_name,
            device=disk.device,
            size_gb=disk.size_gb,
            is_system_disk=disk.is_system,
            backup_name=name,
            requested_at=now,
        )


async def _create(
    client: CloudClient,
    engine: Engine,
    row: DiskBackup,
    disk: DiskTarget,
    plan: BackupPlan,
    name: str,
    marker: str,
    full_backup: bool,
    earlier: frozenset[str],
) -> Submission:
    assert row.id is not None

    async def create() -> str:
        return await client.vbs.create_backup(
            disk.volume_id, name, description=marker, tags=plan.backup_tags(), full_backup=full_backup
        )

    try:
        new_job = await create()
    except TransportError:
        # The answer was lost; the create may have happened. Look before trying again (never blindly).
        found = newest_live(await client.vbs.find_backups_by_description(marker, disk.volume_id), marker)
        if found is not None:
            log.warning("%s: create answer lost, adopting backup %s", disk.label, found.id)
            return await _claim(engine, row, name, marker, disk, found, created_by_us=True)
        log.warning(
            "%s: create answer lost and no backup of %s exists; creating once more", disk.label, marker
        )
        new_job = await create()
    except ApiError as exc:
        if exc.code != RUNNING_ON_DISK:
            raise
        found = newest_live(await client.vbs.find_backups_by_description(marker, disk.volume_id), marker)
        if found is None:
            raise  # another backup (not of this identity) is running on this disk
        # Someone else (another worker, another ledger) is creating this identity: protect, never delete.
        return await _claim(engine, row, name, marker, disk, found, created_by_us=False)
    await asyncio.to_thread(_write_submitted, engine, row.id, new_job)
    return Submission(disk, row.id, name, marker, job_id=new_job, since=row.requested_at, exclude=earlier)


def _write_submitted(engine: Engine, row_id: int, job_id: str) -> None:
    with Session(engine) as session:
        record_submitted(session=session, disk_backup_id=row_id, job_id=job_id)


async def _adopt(
    client: CloudClient,
    engine: Engine,
    run_id: int,
    plan: BackupPlan,
    slot: datetime,
    disk: DiskTarget,
    name: str,
    marker: str,
    live: list[Backup],
    now: datetime | None,
) -> Submission:
    """Live backups of this identity exist (`live`, newest first): carry on the attempt that made one
    (recorded by its id; or an open attempt that may have made it: its ended job names it, its running job
    is waited for, or, with no job id written, it bears the name the attempt's create sent), or else record
    an attempt that adopts the newest (made by someone this ledger does not know, so never ours to
    delete)."""
    rows = await asyncio.to_thread(_attempts, engine, plan, disk, slot)
    row, backup = _recorded(rows, live)
    claimed = False
    if row is None:
        row, backup = await _made_by_open_attempt(client, rows, live)
        claimed = row is not None
        if row is not None and backup is None:  # its job still runs: wait for it, it names its backup
            assert row.id is not None and row.job_id is not None
            await asyncio.to_thread(_take_up, engine, row.id, run_id)
            log.info("%s: resuming job %s of an earlier attempt", disk.label, row.job_id)
            return Submission(disk, row.id, name, marker, job_id=row.job_id, since=row.requested_at)
    if row is None or backup is None:
        backup = live[0]
        new = await asyncio.to_thread(_new_attempt, engine, run_id, plan, slot, disk, name, now)
        log.info("%s: adopting backup %s of %s, made outside this ledger", disk.label, backup.id, marker)
        return await _claim(engine, new, name, marker, disk, backup, created_by_us=False)
    assert row.id is not None
    await asyncio.to_thread(_take_up, engine, row.id, run_id)
    creating = from_backup(backup.status) is DiskBackupStatus.running
    if claimed or (not creating and row.status not in DiskBackupStatus.successes()):
        # A job id means we created it: succeeded; only an intent: adopted (found, not seen created).
        status = DiskBackupStatus.succeeded if row.job_id else DiskBackupStatus.adopted
        status = DiskBackupStatus.running if creating else status
        await asyncio.to_thread(
            _write_outcome, engine, row.id, status, backup_id=backup.id, created_by_us=True
        )
        row.status = status
    if creating:
        log.info("%s: resuming backup %s of an earlier attempt", disk.label, backup.id)
        return Submission(
            disk,
            row.id,
            name,
            marker,
            job_id=row.job_id,
            backup_id=backup.id,
            adopted=not row.job_id,
            since=backup.created_at,
        )
    adopted = row.status is DiskBackupStatus.adopted
    return Submission(disk, row.id, name, marker, backup_id=backup.id, adopted=adopted, done=True)


def _attempts(engine: Engine, plan: BackupPlan, disk: DiskTarget, slot: datetime) -> list[DiskBackup]:
    with Session(engine) as session:
        return attempts_for_slot(
            session=session, plan_name=plan.name, volume_id=disk.volume_id, slot_start=slot
        )


def _take_up(engine: Engine, row_id: int, run_id: int) -> None:
    with Session(engine) as session:
        take_up_attempt(session=session, disk_backup_id=row_id, run_id=run_id)


def _recorded(rows: list[DiskBackup], live: list[Backup]) -> tuple[DiskBackup | None, Backup | None]:
    """The newest live backup that an attempt recorded, with that attempt."""
    for backup in live:
        row = next((r for r in rows if r.backup_id == backup.id), None)
        if row is not None:
            return row, backup
    return None, None


async def _made_by_open_attempt(
    client: CloudClient, rows: list[DiskBackup], live: list[Backup]
) -> tuple[DiskBackup | None, Backup | None]:
    """An open attempt (newest first) and the live backup it made, if any. An attempt whose job is still
    running comes back without a backup (the job names its backup only once it has ended, §2.8): the run
    then waits for that job rather than guessing which backup is its."""
    by_id = {b.id: b for b in live}
    for row in reversed(rows):
        if row.status not in DiskBackupStatus.unfinished() or row.backup_id:
            continue
        if row.job_id:
            job = await _job(client, row.job_id)
            if job is not None and not job.is_finished:
                return row, None
            made = by_id.get(job.backup_id or "") if job is not None else None
        else:
            # oldest first: a copy of the backup this attempt made is always newer than it
            made = next((b for b in reversed(live) if may_have_made(row, b)), None)
        if made is not None:
            return row, made
    return None, None


async def _job(client: CloudClient, job_id: str) -> Job | None:
    try:
        return await client.vbs.get_job(job_id)
    except CloudError as exc:
        log.warning("job %s: could not read it: %s", job_id, exc)
        return None


def may_have_made(row: DiskBackup, backup: Backup) -> bool:
    """Whether the attempt `row`, which recorded neither a backup nor a job (its job, when recorded, says
    which backup it made), may have created `backup`: it bears the name that attempt's create sent, and it
    appeared after the attempt's intent. (A copy of our description made by someone else has another
    name; only a copy of both, made after our intent, would pass.)"""
    return (
        not row.backup_id
        and not row.job_id
        and backup.name == row.backup_name
        and backup.created_at >= row.requested_at - CLOCK_SKEW
    )


async def _claim(
    engine: Engine,
    row: DiskBackup,
    name: str,
    marker: str,
    disk: DiskTarget,
    backup: Backup,
    *,
    created_by_us: bool,
) -> Submission:
    assert row.id is not None
    done = from_backup(backup.status) is not DiskBackupStatus.running
    status = DiskBackupStatus.adopted if done else DiskBackupStatus.running
    await asyncio.to_thread(
        _write_outcome, engine, row.id, status, backup_id=backup.id, created_by_us=created_by_us
    )
    return Submission(
        disk, row.id, name, marker, backup_id=backup.id, adopted=True, done=done, since=backup.created_at
    )


async def _failed(
    engine: Engine, row: DiskBackup, disk: DiskTarget, name: str, exc: CloudError
) -> DiskOutcome:
    """A disk that could not even be started is a failed disk, with the error's code (the cloud's, ours for
    VolumeNotDescribed, else the kind of error: `TransportError`, a code-less `ServerError`) and text:
    recorded, and returned as its outcome."""
    assert row.id is not None
    code = (exc.code if isinstance(exc, ApiError | VolumeNotDescribed) else None) or type(exc).__name__
    await asyncio.to_thread(
        _write_outcome, engine, row.id, DiskBackupStatus.failed, error_code=code, error_reason=str(exc)
    )
    return DiskOutcome(
        disk, name, DiskBackupStatus.failed, error_code=code, error_reason=str(exc), disk_backup_id=row.id
    )


def _write_outcome(engine: Engine, row_id: int, status: DiskBackupStatus, **fields: object) -> None:
    """Ledger writes are synchronous: callers on the event loop run this in a thread (`to_thread`), so
    that a thousand disks' writes do not stall every other coroutine (measured: ~10 ms a disk on SQLite)."""
    with Session(engine) as session:
        record_outcome(session=session, disk_backup_id=row_id, status=status, **fields)  # type: ignore[arg-type]


async def finish_disk_backup(
    *, client: CloudClient, engine: Engine, submission: Submission, result: JobResult
) -> DiskOutcome:
    """Record a job's end (succeeded, failed or timed out; an adopted backup that became available is
    `adopted`). A failed job's backup (status `error`) is looked up by identity and recorded, so that
    retention may later clean it up as ours."""
    status = result.status
    if status is DiskBackupStatus.succeeded and submission.adopted:
        status = DiskBackupStatus.adopted
    backup_id = result.backup_id or submission.backup_id
    if status is DiskBackupStatus.failed and not backup_id:
        try:
            found = await client.vbs.find_backups_by_description(submission.marker, submission.disk.volume_id)
            failed = [b for b in found if b.status == BackupStatus.ERROR]
            backup_id = max(failed, key=lambda b: (b.created_at, b.id)).id if failed else None
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
        disk_backup_id=submission.disk_backup_id,
    )


def submitted_outcome(submission: Submission) -> DiskOutcome:
    """The outcome of a submission that had nothing to wait for."""
    status = DiskBackupStatus.adopted if submission.adopted else DiskBackupStatus.succeeded
    return DiskOutcome(
        submission.disk,
        submission.backup_name,
        status,
        backup_id=submission.backup_id,
        job_id=submission.job_id,
        disk_backup_id=submission.disk_backup_id,
    )


async def confirm_in_cloud(
    engine: Engine, outcomes: Sequence[DiskOutcome], listed: dict[str, list[Backup]]
) -> list[DiskOutcome]:
    """The cloud is the truth for "protected": a disk counts as backed up only if its backup is seen
    `available` in the listing taken after the jobs ended. One that vanished since fails the disk (a re-run
    in the slot makes a new one)."""
    confirmed = []
    for outcome in outcomes:
        if outcome.ok:
            seen = {b.id: b.status for b in listed.get(outcome.disk.volume_id, [])}
            status = seen.get(outcome.backup_id or "")
            if status != BackupStatus.AVAILABLE:
                reason = (
                    f"backup {outcome.backup_id} is not available in the cloud any more ({status or 'gone'})"
                )
                log.error("%s: %s", outcome.disk.label, reason)
                if outcome.disk_backup_id is not None:
                    await asyncio.to_thread(
                        _write_outcome,
                        engine,
                        outcome.disk_backup_id,
                        DiskBackupStatus.failed,
                        error_code=VANISHED,
                        error_reason=reason,
                    )
                outcome = replace(
                    outcome, status=DiskBackupStatus.failed, error_code=VANISHED, error_reason=reason
                )
        confirmed.append(outcome)
    return confirmed
