"""Restoring a disk from a VBS backup (reference §2.3, §4.10, §6.4): choosing the backup, checking every
documented precondition before anything is sent, describing a dry run, and running the restore with the
ledger written first.

* `plan_restore` picks the backup (by id, or the newest `available` backup of the disk created before a
  time) and lists every unmet precondition at once: the target disk exists, is detached (`available`; an
  attached disk must be detached first), is not in `error`, has no backup being created, and is at least
  as large as the backup; the backup is `available` and this project's own (a backup shared *to* us can
  only create a new disk through EVS, never restore an existing one). Nothing is changed by it.
* `restore_and_wait` calls the cloudbackups restore (a job, `bksRestoreBackup`), waits for the job with an
  injectable `Clock` and reads the target disk back. It never re-sends the restore after a lost
  answer: it follows the disk's status instead (a second restore would only be refused or, worse, run
  twice). Drills reuse it; `run_restore` wraps it with the ledger.

The API itself refuses most of these cases too (VolumeBackup.0202/.0205/.0206/.0209/.0089/.0111), but one
code at a time and only for the first problem it meets; checking first lets the operator fix everything in
one go, and keeps a refused request from touching the cloud at all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from ..clock import Clock, poll_until
from ..cloud import CloudClient
from ..cloud.errors import (
    ApiError,
    CloudError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
    TransportError,
)
from ..cloud.models.backups import Backup, BackupStatus
from ..cloud.models.common import require_uuid
from ..cloud.models.evs import Volume, VolumeStatus
from ..ledger.restores import (
    RestoreStatus,
    finish_restore,
    record_restore_request,
    record_restore_submitted,
)

log = logging.getLogger(__name__)

__all__ = [
    "RestoreOutcome",
    "RestorePlan",
    "RestoreRequest",
    "RestoreResult",
    "as_utc",
    "plan_restore",
    "record_request",
    "restore_and_wait",
    "run_restore",
]

# The reference advises polling jobs no faster than every 5-10 s (§5f).
POLL_SECONDS = 10.0


def as_utc(when: datetime) -> datetime:
    """A time without an offset is UTC, as every time on the VBS wire is (§0.3)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None or when.utcoffset() is None else when


@dataclass(frozen=True)
class RestoreRequest:
    """What the operator asked for. `target_volume_id` defaults to the disk itself (restore in place)."""

    volume_id: str
    backup_id: str | None = None
    before: datetime | None = None
    target_volume_id: str | None = None

    @property
    def target(self) -> str:
        return self.target_volume_id or self.volume_id


@dataclass(frozen=True)
class RestorePlan:
    """The chosen backup, the target disk as it is now, and every unmet precondition (empty: go)."""

    request: RestoreRequest
    backup: Backup | None
    target: Volume | None
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems and self.backup is not None and self.target is not None

    @property
    def refusal(self) -> str:
        """One message naming every unmet precondition; nothing was sent to restore."""
        numbered = "; ".join(f"({i}) {p}" for i, p in enumerate(self.problems, start=1))
        return f"restore of disk {self.request.target} refused, nothing was changed: {numbered}"

    def describe(self) -> str:
        """What the restore does, in one line (a dry run prefixes "would")."""
        backup, target = self.backup, self.target
        if backup is None or target is None:
            return self.refusal
        made = backup.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        where = "in place" if target.id == backup.volume_id else f"of disk {backup.volume_id}"
        return (
            f"restore backup {backup.name or backup.id} ({backup.id}, {made}, {backup.size} GiB {where}) "
            f"into disk {_label(target)} ({target.size} GiB, {target.status}), overwriting all its data"
        )


def _label(volume: Volume) -> str:
    return f"{volume.name} ({volume.id})" if volume.name else volume.id


def _id_problem(what: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        require_uuid(what, value)
    except ValueError as exc:
        return str(exc)
    return None


async def plan_restore(client: CloudClient, request: RestoreRequest, *, now: datetime) -> RestorePlan:
    """Choose the backup and check every documented precondition; reads only, changes nothing."""
    problems: list[str] = []
    if request.backup_id and request.before:
        problems.append("give a backup id or a time (before), not both")
    malformed = [
        p
        for p in (
            _id_problem("volume id", request.volume_id),
            _id_problem("backup id", request.backup_id),
            _id_problem("target volume id", request.target_volume_id),
        )
        if p
    ]
    if malformed or problems:
        return RestorePlan(request, None, None, tuple(problems + malformed))
    backup = await _choose_backup(client, request, now, problems)
    target = await _check_target(client, request.target, problems)
    if backup is not None:
        _check_backup(client, request, backup, problems)
    if backup is not None and target is not None and backup.size is not None and target.size < backup.size:
        problems.append(
            f"target disk {_label(target)} has {target.size} GiB, less than the backup's {backup.size} GiB: "
            f"restore into a disk of at least {backup.size} GiB (VolumeBackup.0209)"
        )
    return RestorePlan(request, backup, target, tuple(problems))


async def _choose_backup(
    client: CloudClient, request: RestoreRequest, now: datetime, problems: list[str]
) -> Backup | None:
    if request.backup_id:
        try:
            return await client.vbs.get_backup(request.backup_id)
        except NotFoundError:
            problems.append(await _missing_backup(client, request.backup_id))
            return None
    before = as_utc(request.before or now)
    found = [
        b
        async for b in client.vbs.iter_backup_details(
            volume_id=request.volume_id, status=BackupStatus.AVAILABLE
        )
        if b.volume_id == request.volume_id and b.status == BackupStatus.AVAILABLE and b.created_at < before
    ]
    if not found:
        problems.append(
            f"disk {request.volume_id} has no available backup created before "
            f"{before.astimezone(UTC).isoformat(timespec='seconds')}"
        )
        return None
    return max(found, key=lambda b: (b.created_at, b.id))


async def _missing_backup(client: CloudClient, backup_id: str) -> str:
    """Why a backup id is unknown here: it may be another project's backup shared with us."""
    try:
        shares = await client.vbs.list_shares(share_to_me=True, backup_id=backup_id)
    except CloudError as exc:  # the sharing API is not needed to refuse; say what we know
        log.warning("could not look up shares of backup %s: %s", backup_id, exc)
        shares = []
    if shares:
        owner = shares[0].from_project_id or "another project"
        return (
            f"backup {backup_id} belongs to project {owner} and is only shared with this project: a shared "
            "backup can create a new disk (EVS) but cannot restore an existing one (§2.3)"
        )
    return f"backup {backup_id} does not exist in this project (VolumeBackup.0111)"


def _check_backup(client: CloudClient, request: RestoreRequest, backup: Backup, problems: list[str]) -> None:
    name = f"{backup.name or ''} ({backup.id})".strip()
    if backup.status != BackupStatus.AVAILABLE:
        problems.append(
            f"backup {name} is {backup.status}; only an available backup can be restored (VolumeBackup.0089)"
        )
    if backup.tenant_id and backup.tenant_id != client.project_id:
        problems.append(
            f"backup {name} belongs to project {backup.tenant_id}, not to this project: only the project's "
            "own backups can restore its disks (§2.3)"
        )
    if request.backup_id and backup.volume_id != request.volume_id:
        problems.append(
            f"backup {name} is a backup of disk {backup.volume_id}, not of disk {request.volume_id}: name "
            "its own disk, and the disk to overwrite as the target"
        )


async def _check_target(client: CloudClient, target_id: str, problems: list[str]) -> Volume | None:
    try:
        target = await client.evs.get_volume(target_id)
    except NotFoundError:
        problems.append(f"target disk {target_id} does not exist")
        return None
    status = target.status
    running = [
        b async for b in client.vbs.iter_backup_details(volume_id=target_id, status=BackupStatus.CREATING)
    ]
    if status == VolumeStatus.IN_USE or target.attachments:
        servers = ", ".join(target.server_ids) or "a server"
        problems.append(
            f"target disk {_label(target)} is attached to server {servers} ({status}): stop the server and "
            "detach the disk first; VBS restores detached disks only (§2.3, §4.10), re-attach it afterwards"
        )
    elif status == VolumeStatus.ERROR:
        problems.append(
            f"target disk {_label(target)} is in error and cannot be restored (VolumeBackup.0202)"
        )
    elif status not in (VolumeStatus.AVAILABLE, VolumeStatus.BACKING_UP):
        problems.append(
            f"target disk {_label(target)} is {status}; it must be available (detached and idle) "
            "(VolumeBackup.0205)"
        )
    if running or status == VolumeStatus.BACKING_UP:
        names = ", ".join(b.name or b.id for b in running) or "a backup"
        problems.append(
            f"a backup of target disk {_label(target)} is being created ({names}): wait until it ends "
            "(VolumeBackup.0206)"
        )
    return target


# --------------------------------------------------------------------------------------------------------
# Running a restore


@dataclass(frozen=True)
class RestoreResult:
    """How one restore call ended (succeeded, failed or timed_out: the ledger's words). `seconds` runs from
    the call to the checked disk (on the clock)."""

    status: RestoreStatus
    seconds: float
    job_id: str | None = None
    error_code: str | None = None
    error: str | None = None
    disk: Volume | None = None  # the target as read after the restore, when it could be read

    @property
    def ok(self) -> bool:
        return self.status is RestoreStatus.succeeded


async def restore_and_wait(
    client: CloudClient,
    backup_id: str,
    volume_id: str,
    *,
    timeout: float,
    clock: Clock,
    interval: float = POLL_SECONDS,
    on_submitted: Callable[[str], Awaitable[None]] | None = None,
) -> RestoreResult:
    """Restore `volume_id` from `backup_id`, wait for the job, read the disk back. Refusals and failures
    come back as a failed result (with the cloud's code), never as an exception, so the caller's cleanup
    and ledger write always happen. `on_submitted` is awaited with the job id as soon as there is one."""
    started = clock.monotonic()

    def took() -> float:
        return max(0.0, clock.monotonic() - started)

    try:
        job_id = await client.vbs.restore_backup(backup_id, volume_id)
    except TransportError as exc:
        if not exc.may_have_reached_server:
            return RestoreResult(RestoreStatus.failed, took(), error_code="TransportError", error=str(exc))
        # The answer was lost, the restore may be running: follow the disk, never send it twice.
        log.warning("restore answer lost for disk %s; following the disk's status", volume_id)
        return await _follow_disk(client, volume_id, started, timeout=timeout, clock=clock, interval=interval)
    except ApiError as exc:
        return RestoreResult(RestoreStatus.failed, took(), error_code=exc.code, error=str(exc))
    if on_submitted is not None:
        await on_submitted(job_id)
    try:
        await client.vbs.wait_for_job(job_id, timeout=timeout, interval=interval, clock=clock)
    except JobFailedError as exc:
        disk = await _read_disk(client, volume_id)
        state = f"; disk {volume_id} is now {disk.status}" if disk is not None else ""
        text = f"restore job {job_id} failed: {exc.error_code or 'no code'} {exc.fail_reason or ''}".strip()
        return RestoreResult(RestoreStatus.failed, took(), job_id, exc.error_code, text + state, disk)
    except JobTimeoutError:
        return RestoreResult(
            RestoreStatus.timed_out,
            took(),
            job_id,
            "JobTimeoutError",
            f"restore job {job_id} still running after {timeout / 60:g} minutes; it may still finish, "
            f"check the job and disk {volume_id} before trying again",
        )
    except CloudError as exc:
        code = exc.code if isinstance(exc, ApiError) else type(exc).__name__
        text = f"lost track of restore job {job_id} (it may still be running): {exc}"
        return RestoreResult(RestoreStatus.failed, took(), job_id, code, text)
    return _checked(await _read_disk(client, volume_id), volume_id, took(), job_id)


def _checked(disk: Volume | None, volume_id: str, seconds: float, job_id: str | None) -> RestoreResult:
    if disk is None:
        return RestoreResult(
            RestoreStatus.failed, seconds, job_id, "NotFound", f"disk {volume_id} vanished after restore"
        )
    if disk.status != VolumeStatus.AVAILABLE:
        text = f"restore ended but disk {volume_id} is {disk.status}, not available"
        return RestoreResult(RestoreStatus.failed, seconds, job_id, "DiskState", text, disk)
    return RestoreResult(RestoreStatus.succeeded, seconds, job_id, disk=disk)


async def _read_disk(client: CloudClient, volume_id: str) -> Volume | None:
    try:
        return await client.evs.get_volume(volume_id)
    except CloudError as exc:
        log.warning("could not read disk %s after its restore: %s", volume_id, exc)
        return None


async def _follow_disk(
    client: CloudClient, volume_id: str, started: float, *, timeout: float, clock: Clock, interval: float
) -> RestoreResult:
    """Without a job id: the disk is `restoring-backup` while the restore runs, then `available` or
    `error_restoring` (§2.3, §6.4). A disk that cannot be read is asked again, until the deadline."""
    disk = await poll_until(
        lambda: _read_disk(client, volume_id),
        lambda disk: disk is not None and disk.status != VolumeStatus.RESTORING_BACKUP,
        timeout=timeout,
        interval=interval,
        clock=clock,
        started=started,
    )
    seconds = max(0.0, clock.monotonic() - started)
    if disk is not None and disk.status == VolumeStatus.ERROR_RESTORING:
        text = f"disk {volume_id} is error_restoring"
        return RestoreResult(RestoreStatus.failed, seconds, None, "error_restoring", text, disk)
    if disk is not None and disk.status != VolumeStatus.RESTORING_BACKUP:
        return _checked(disk, volume_id, seconds, None)
    text = f"disk {volume_id} still restoring after {timeout / 60:g} minutes (restore answer was lost)"
    return RestoreResult(RestoreStatus.timed_out, seconds, None, "JobTimeoutError", text, disk)


# --------------------------------------------------------------------------------------------------------
# With the ledger


@dataclass(frozen=True)
class RestoreOutcome:
    restore_id: int
    status: RestoreStatus
    message: str
    job_id: str | None = None
    error_code: str | None = None
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is RestoreStatus.succeeded


def record_request(
    engine: Engine, plan: RestorePlan, *, dry_run: bool, at: datetime, flow_run_id: str | None = None
) -> int:
    """The ledger row of a request: refused (with every problem), dry run, or the intent before the call."""
    backup = plan.backup
    with Session(engine) as session:
        row = record_restore_request(
            session=session,
            volume_id=plan.request.volume_id,
            target_volume_id=plan.request.target,
            backup_id=backup.id if backup is not None else plan.request.backup_id,
            backup_name=backup.name if backup is not None else None,
            at=at,
            dry_run=dry_run,
            refused=None if plan.ok else plan.refusal,
            flow_run_id=flow_run_id,
        )
    assert row.id is not None
    return row.id


async def run_restore(
    client: CloudClient,
    engine: Engine,
    plan: RestorePlan,
    restore_id: int,
    *,
    timeout: float,
    clock: Clock,
    interval: float = POLL_SECONDS,
) -> RestoreOutcome:
    """Restore as planned (the intent row `restore_id` exists), recording the job id and the outcome. The
    ledger writes run in a thread (`asyncio.to_thread`), off the event loop."""
    if not plan.ok or plan.backup is None or plan.target is None:
        raise ValueError("run_restore needs a plan whose preconditions all hold")
    backup, target = plan.backup, plan.target

    async def submitted(job_id: str) -> None:
        await asyncio.to_thread(_write_submitted, engine, restore_id, job_id)

    result = await restore_and_wait(
        client,
        backup.id,
        target.id,
        timeout=timeout,
        clock=clock,
        interval=interval,
        on_submitted=submitted,
    )
    await asyncio.to_thread(_write_finished, engine, restore_id, result, clock.now())
    what = f"disk {_label(target)} from backup {backup.name or backup.id}"
    if result.ok:
        message = f"restored {what} in {result.seconds:.0f} s"
    else:
        message = f"restore of {what} {result.status.value}: {result.error}"
    return RestoreOutcome(
        restore_id, result.status, message, result.job_id, result.error_code, result.seconds
    )


def _write_submitted(engine: Engine, restore_id: int, job_id: str) -> None:
    with Session(engine) as session:
        record_restore_submitted(session=session, restore_id=restore_id, job_id=job_id)


def _write_finished(engine: Engine, restore_id: int, result: RestoreResult, at: datetime) -> None:
    with Session(engine) as session:
        finish_restore(
            session=session,
            restore_id=restore_id,
            status=result.status,
            at=at,
            error_code=result.error_code,
            error=result.error,
        )
