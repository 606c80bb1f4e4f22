"""Restore drills: proof that the backups restore. For a sample of the plan's protected disks, the newest
good backup is restored into a scratch disk made for the purpose, the job and the disk are checked, the
result and the time it took are recorded, the backup is marked verified, and the scratch disk is deleted:
always, also after a failure.

Owned here: choosing the sample (`choose_sample`), the scratch disk's lifecycle (`scratch_name`,
`create_scratch`, `delete_scratch`, and `clean_leftovers` for what a killed run left behind) and
`drill_disk`, one disk's drill end to end. The ledger rows are written first: the drill row exists before
the scratch disk, and the scratch disk's deterministic name is stored before the create call, so a lost
create answer or a crash can always be traced to a disk and cleaned up.

A scratch disk is an empty EVS disk of the backup's size in the source disk's AZ and volume type,
restored through VBS (`restore_backup`, the operation a real recovery uses), rather than an EVS disk created
from the backup: the drill tests the restore path an operator would take.

The ledger is written in a thread (`asyncio.to_thread`), as the nightly run does: a drill's waits and
calls go on while a write waits for the database.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine
from sqlmodel import Session

from ..backup.targets import DiskTarget
from ..clock import Clock, poll_until
from ..cloud import CloudClient
from ..cloud.errors import ApiError, CloudError, NotFoundError, TransportError
from ..cloud.models.backups import Backup, BackupStatus
from ..cloud.models.evs import Volume, VolumeStatus
from ..ledger.restores import (
    DrillStatus,
    finish_drill,
    leftover_scratch_drills,
    mark_backup_verified,
    record_drill_job,
    record_scratch_deleted,
    record_scratch_volume,
    start_drill,
)
from ..plan import BackupPlan
from .restore import POLL_SECONDS, restore_and_wait

log = logging.getLogger(__name__)

__all__ = [
    "DrillError",
    "DrillResult",
    "choose_sample",
    "clean_leftovers",
    "create_scratch",
    "delete_scratch",
    "drill_disk",
    "newest_good_backup",
    "scratch_name",
]

_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_NEVER = datetime.min.replace(tzinfo=UTC)
DEFAULT_VOLUME_TYPE = "SAS"  # when the source disk does not say (every cloud of the reference has SAS)


class DrillError(Exception):
    """A drill step failed in a way the cloud did not report as an API error (scratch disk state)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DrillResult:
    drill_id: int
    label: str
    volume_id: str
    status: DrillStatus
    backup_id: str | None = None
    backup_name: str | None = None
    scratch_volume_id: str | None = None
    duration_seconds: float | None = None
    error_code: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is DrillStatus.passed


def choose_sample(
    disks: Sequence[DiskTarget], last_passed: Mapping[str, datetime], sample: int
) -> list[DiskTarget]:
    """The `sample` disks verified longest ago: never-passed disks first (a failed drill is retried next
    time), then the oldest pass; ties by server name and device, so the choice is deterministic and a
    weekly drill works its way through the whole fleet."""
    unique = {d.volume_id: d for d in disks}.values()
    ordered = sorted(
        unique,
        key=lambda d: (
            d.volume_id in last_passed,
            last_passed.get(d.volume_id, _NEVER),
            d.server_name,
            d.device,
            d.volume_id,
        ),
    )
    return ordered[: max(0, sample)]


def scratch_name(plan: BackupPlan, drill_id: int, disk: DiskTarget) -> str:
    """`vbsb-drill-17-web-01-vdb`: our prefix, the drill row id (unique), the disk; at most 64 chars."""
    device = disk.device.rstrip("/").rsplit("/", 1)[-1]
    label = _NOT_NAME.sub("-", f"{disk.server_name}-{device}").strip("-") or "disk"
    return f"{plan.name_prefix}-drill-{drill_id}-{label}"[:64].rstrip("-")


async def newest_good_backup(client: CloudClient, volume_id: str) -> Backup | None:
    """The disk's newest `available` backup, whoever made it: the one a recovery would use."""
    found = [
        b
        async for b in client.vbs.iter_backup_details(volume_id=volume_id, status=BackupStatus.AVAILABLE)
        if b.volume_id == volume_id and b.status == BackupStatus.AVAILABLE
    ]
    return max(found, key=lambda b: (b.created_at, b.id), default=None)


async def _volumes_named(client: CloudClient, name: str) -> list[Volume]:
    """Detached disks with exactly this name: never anything attached, whatever its name."""
    page = await client.evs.list_volumes(name=name)
    return [v for v in page.volumes if v.name == name and not v.attachments]


async def create_scratch(
    client: CloudClient,
    *,
    name: str,
    size: int,
    volume_type: str,
    zone: str,
    timeout: float,
    clock: Clock,
    interval: float = POLL_SECONDS,
) -> Volume:
    """Create the scratch disk and wait until it is `available`. The real EVS answers only a job id (the
    emulator adds the disk id): without an id the disk is found by its unique name."""
    volume_id: str | None = None
    try:
        created = await client.evs.create_volume(
            name=name,
            size=size,
            volume_type=volume_type,
            availability_zone=zone,
            description="restore drill scratch disk, deleted by the drill",
        )
        volume_id = created.volume_ids[0] if created.volume_ids else None
    except TransportError as exc:
        if not exc.may_have_reached_server:
            raise
        log.warning("create answer for scratch disk %s lost; looking it up by name", name)
    disk = await poll_until(
        lambda: _scratch_disk(client, name, volume_id),
        lambda disk: disk is not None and (disk.status == VolumeStatus.AVAILABLE or _in_error(disk)),
        timeout=timeout,
        interval=interval,
        clock=clock,
    )
    if disk is not None and disk.status == VolumeStatus.AVAILABLE:
        return disk
    if disk is not None and _in_error(disk):
        raise DrillError("ScratchDisk", f"scratch disk {name} ({disk.id}) is {disk.status}")
    state = f"is {disk.status}" if disk is not None else "was not found"
    raise DrillError("ScratchDisk", f"scratch disk {name} {state} after {timeout / 60:g} minutes")


def _in_error(disk: Volume) -> bool:
    """Any error status, documented (`error`, `error_restoring`) or not (`error_extending`, ...)."""
    return str(disk.status).startswith("error")


async def _scratch_disk(client: CloudClient, name: str, volume_id: str | None) -> Volume | None:
    if volume_id is not None:
        try:
            return await client.evs.get_volume(volume_id)
        except NotFoundError:
            return None
    named = await _volumes_named(client, name)
    return named[0] if named else None


async def delete_scratch(client: CloudClient, name: str, volume_id: str | None) -> str | None:
    """Delete the scratch disk (by id, else every detached disk with its exact name); None when nothing of
    it is left, else the error text. A disk already gone is fine."""
    errors: list[str] = []
    try:
        if volume_id is not None:
            found = await _scratch_disk(client, name, volume_id)
            doomed = [found] if found is not None and found.name == name else []
        else:
            doomed = await _volumes_named(client, name)
    except CloudError as exc:
        return f"could not look up scratch disk {name}: {exc}"
    for disk in doomed:
        try:
            await client.evs.delete_volume(disk.id)
        except NotFoundError:
            continue
        except CloudError as exc:
            errors.append(f"scratch disk {name} ({disk.id}, {disk.status}) could not be deleted: {exc}")
    return "; ".join(errors) or None


def _code(exc: Exception) -> str:
    if isinstance(exc, ApiError | DrillError):
        return exc.code or type(exc).__name__
    return type(exc).__name__


@dataclass
class _Progress:
    scratch_id: str | None = None
    job_id: str | None = None
    seconds: float | None = None
    code: str | None = None
    error: str | None = None


async def drill_disk(
    *,
    client: CloudClient,
    engine: Engine,
    plan: BackupPlan,
    disk: DiskTarget,
    timeout: float,
    clock: Clock,
    interval: float = POLL_SECONDS,
    flow_run_id: str | None = None,
) -> DrillResult:
    """One disk's drill. Failures are recorded and returned, never raised; the scratch disk is deleted
    whatever happened, and a delete that fails fails the drill (the disk costs money and needs a look)."""
    lookup_error: str | None = None
    try:
        backup = await newest_good_backup(client, disk.volume_id)
    except CloudError as exc:  # recorded as this disk's failed drill; the other disks go on
        backup, lookup_error = None, f"could not list the backups of disk {disk.label}: {exc}"
    drill_id = await asyncio.to_thread(_start, engine, disk, backup, clock.now(), flow_run_id)
    progress = _Progress()
    if lookup_error is not None:
        progress.code, progress.error = "BackupLookup", lookup_error
    elif backup is None:
        progress.code, progress.error = "NoBackup", f"disk {disk.label} has no available backup to restore"
    else:
        name = scratch_name(plan, drill_id, disk)
        await asyncio.to_thread(_record_scratch, engine, drill_id, name)
        try:
            await _restore_into_scratch(
                client, engine, drill_id, disk, backup, name, progress, timeout, clock, interval
            )
        except (CloudError, DrillError) as exc:
            progress.code, progress.error = _code(exc), str(exc)
        finally:
            cleanup = await delete_scratch(client, name, progress.scratch_id)
            if cleanup is None:
                await asyncio.to_thread(_record_deleted, engine, drill_id, clock.now())
            else:
                progress.code = progress.code or "ScratchDelete"
                progress.error = f"{progress.error}; {cleanup}" if progress.error else cleanup
    passed = progress.error is None
    status = DrillStatus.passed if passed else DrillStatus.failed
    await asyncio.to_thread(_finish, engine, drill_id, status, clock.now(), progress)
    return DrillResult(
        drill_id,
        disk.label,
        disk.volume_id,
        status,
        backup.id if backup else None,
        backup.name if backup else None,
        progress.scratch_id,
        progress.seconds,
        progress.code,
        progress.error,
    )


async def _restore_into_scratch(
    client: CloudClient,
    engine: Engine,
    drill_id: int,
    disk: DiskTarget,
    backup: Backup,
    name: str,
    progress: _Progress,
    timeout: float,
    clock: Clock,
    interval: float,
) -> None:
    source = await client.evs.get_volume(disk.volume_id)
    size = backup.size or disk.size_gb
    zone = source.availability_zone or backup.availability_zone
    if not zone:
        raise DrillError("NoZone", f"neither disk {disk.label} nor its backup names an availability zone")
    scratch = await create_scratch(
        client,
        name=name,
        size=size,
        volume_type=source.volume_type or DEFAULT_VOLUME_TYPE,
        zone=zone,
        timeout=timeout,
        clock=clock,
        interval=interval,
    )
    progress.scratch_id = scratch.id
    await asyncio.to_thread(_record_scratch, engine, drill_id, name, scratch.id)

    async def submitted(job_id: str) -> None:
        progress.job_id = job_id
        await asyncio.to_thread(_record_job, engine, drill_id, job_id)

    result = await restore_and_wait(
        client,
        backup.id,
        scratch.id,
        timeout=timeout,
        clock=clock,
        interval=interval,
        on_submitted=submitted,
    )
    progress.seconds = result.seconds
    if not result.ok:
        progress.code, progress.error = result.error_code, result.error
        return
    restored = result.disk
    if restored is not None and restored.size < size:
        progress.code = "DiskSize"
        progress.error = f"restored scratch disk has {restored.size} GiB, expected {size} GiB"
        return
    await asyncio.to_thread(_mark_verified, engine, backup.id, clock.now())


async def clean_leftovers(
    client: CloudClient, engine: Engine, *, now: datetime, started_before: datetime
) -> list[str]:
    """Delete the scratch disks earlier drills left behind (a killed run, a failed delete); returns what
    could not be deleted. A drill that was still `running` is closed as failed: its run is gone."""
    leftovers = await asyncio.to_thread(_leftovers, engine, started_before)
    problems = []
    for drill_id, name, volume_id, status in leftovers:
        error = await delete_scratch(client, name, volume_id)
        await asyncio.to_thread(_close_leftover, engine, drill_id, status, deleted=error is None, at=now)
        if error is not None:
            problems.append(f"leftover of drill {drill_id}: {error}")
        else:
            log.info("deleted scratch disk %s left by drill %d", name, drill_id)
    return problems


# --------------------------------------------------------------------------------------------------------
# Ledger writes: synchronous, so the coroutines above run them in a thread (`asyncio.to_thread`)


def _start(
    engine: Engine, disk: DiskTarget, backup: Backup | None, at: datetime, flow_run_id: str | None
) -> int:
    with Session(engine) as session:
        row = start_drill(
            session=session,
            volume_id=disk.volume_id,
            disk_label=disk.label,
            backup_id=backup.id if backup else None,
            backup_name=backup.name if backup else None,
            at=at,
            flow_run_id=flow_run_id,
        )
        assert row.id is not None
        return row.id


def _record_scratch(engine: Engine, drill_id: int, name: str, volume_id: str | None = None) -> None:
    with Session(engine) as session:
        record_scratch_volume(
            session=session, drill_id=drill_id, scratch_name=name, scratch_volume_id=volume_id
        )


def _record_job(engine: Engine, drill_id: int, job_id: str) -> None:
    with Session(engine) as session:
        record_drill_job(session=session, drill_id=drill_id, job_id=job_id)


def _record_deleted(engine: Engine, drill_id: int, at: datetime) -> None:
    with Session(engine) as session:
        record_scratch_deleted(session=session, drill_id=drill_id, at=at)


def _mark_verified(engine: Engine, backup_id: str, at: datetime) -> None:
    with Session(engine) as session:
        mark_backup_verified(session=session, backup_id=backup_id, at=at)


def _finish(engine: Engine, drill_id: int, status: DrillStatus, at: datetime, progress: _Progress) -> None:
    with Session(engine) as session:
        finish_drill(
            session=session,
            drill_id=drill_id,
            status=status,
            at=at,
            duration_seconds=progress.seconds,
            error_code=progress.code,
            error=progress.error,
        )


def _leftovers(engine: Engine, started_before: datetime) -> list[tuple[int, str, str | None, DrillStatus]]:
    """The drills whose scratch disk may still exist: (drill id, scratch name, its id if known, status)."""
    leftovers = []
    with Session(engine) as session:
        for row in leftover_scratch_drills(session=session, started_before=started_before):
            assert row.id is not None and row.scratch_name is not None
            leftovers.append((row.id, row.scratch_name, row.scratch_volume_id, row.status))
    return leftovers


def _close_leftover(
    engine: Engine, drill_id: int, status: DrillStatus, *, deleted: bool, at: datetime
) -> None:
    """A leftover's drill that was still `running` ends failed; a deleted scratch disk is recorded."""
    with Session(engine) as session:
        if status is DrillStatus.running:
            finish_drill(
                session=session,
                drill_id=drill_id,
                status=DrillStatus.failed,
                at=at,
                error_code="Interrupted",
                error="the run that started this drill ended before it finished",
            )
        if deleted:
            record_scratch_deleted(session=session, drill_id=drill_id, at=at)
