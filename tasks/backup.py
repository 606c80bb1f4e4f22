"""Task: one disk's backup, from the ledger intent to the recorded outcome."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from vbs_backup.cloud.errors import CloudError
from vbs_backup.disk_backups import DiskOutcome, finish_disk_backup, submit_disk_backup
from vbs_backup.ledger import DiskBackupStatus
from vbs_backup.targets import DiskTarget
from vbs_backup.waiting import JobResult

from .runtime import RunContext


def wants_full_backup(ctx: RunContext) -> bool:
    """Every N days (counted from the slot's day number, so all disks agree) ask for a full backup."""
    every = ctx.plan.full_backup_every_days
    return every is not None and ctx.slot.toordinal() % every == 0


@task(task_run_name="backup {disk.server_name} {disk.device}", cache_policy=NO_CACHE)
async def backup_disk(ctx: RunContext, disk: DiskTarget) -> DiskOutcome:
    """Create (or adopt) this slot's backup of one disk, wait for it, record the outcome. A failed job is
    submitted once more when the plan asks for it; transient HTTP errors are the client's to retry."""
    logger = get_run_logger()
    attempts = 2 if ctx.plan.retry_failed_job_once else 1
    outcome: DiskOutcome | None = None
    async with ctx.jobs_in_flight:
        for attempt in range(1, attempts + 1):
            outcome = await _one_attempt(ctx, disk)
            if outcome.ok or outcome.status != DiskBackupStatus.failed or attempt == attempts:
                break
            logger.warning("%s: job failed (%s), submitting once more", disk.label, outcome.error_code)
    assert outcome is not None
    log = logger.info if outcome.ok else logger.error
    log("%s: %s %s %s", disk.label, outcome.status.value, outcome.backup_name, outcome.error_code or "")
    return outcome


async def _one_attempt(ctx: RunContext, disk: DiskTarget) -> DiskOutcome:
    full = wants_full_backup(ctx)
    try:
        submission = await submit_disk_backup(
            client=ctx.client,
            engine=ctx.engine,
            run_id=ctx.run_id,
            disk=disk,
            plan=ctx.plan,
            slot=ctx.slot,
            full_backup=full,
        )
    except CloudError as exc:  # already recorded as failed in the ledger
        name = ctx.plan.backup_name(disk.server_name, disk.device, ctx.slot)
        code = getattr(exc, "code", None) or type(exc).__name__
        return DiskOutcome(disk, name, DiskBackupStatus.failed, error_code=code, error_reason=str(exc))
    if submission.done:
        status = DiskBackupStatus.adopted if submission.adopted else DiskBackupStatus.succeeded
        return DiskOutcome(disk, submission.backup_name, status, backup_id=submission.backup_id)
    deadline = ctx.plan.disk_deadline_minutes * 60
    result: JobResult = await ctx.waiter.wait(
        submission.job_id, submission.backup_name, volume_id=disk.volume_id, timeout=deadline
    )
    return await finish_disk_backup(
        client=ctx.client, engine=ctx.engine, submission=submission, result=result
    )
