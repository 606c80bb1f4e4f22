"""Tasks: one disk's backup in two steps, submit (intent, adopt or create) and wait (job end, outcome).

Two task kinds rather than one: a task run costs ~10 ms of event-loop time to start, and a thousand
backups started at once stall the loop for ten seconds before the first request leaves. Submissions go a
few at a time (they are rate-limited anyway) and each wait task starts when its job exists, so that cost is
spread over the run (bench/nightly_fleet.py measures it).
"""

from __future__ import annotations

import logging

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from vbs_backup.cloud.errors import CloudError
from vbs_backup.disk_backups import DiskOutcome, Submission, finish_disk_backup, submit_disk_backup
from vbs_backup.ledger import DiskBackupStatus
from vbs_backup.targets import DiskTarget

from .runtime import RunContext


def wants_full_backup(ctx: RunContext) -> bool:
    """Every N days (counted from the slot's day number, so all disks agree) ask for a full backup."""
    every = ctx.plan.full_backup_every_days
    return every is not None and ctx.slot.toordinal() % every == 0


@task(task_run_name="submit {disk.server_name} {disk.device}", cache_policy=NO_CACHE)
async def submit_backup(ctx: RunContext, disk: DiskTarget) -> Submission | DiskOutcome:
    """Write the intent, then adopt this slot's backup or create it. A disk that cannot be started is
    recorded as failed and returned as its outcome."""
    try:
        return await submit_disk_backup(
            client=ctx.client,
            engine=ctx.engine,
            run_id=ctx.run_id,
            disk=disk,
            plan=ctx.plan,
            slot=ctx.slot,
            full_backup=wants_full_backup(ctx),
        )
    except CloudError as exc:  # already recorded as failed in the ledger
        name = ctx.plan.backup_name(disk.server_name, disk.device, ctx.slot)
        code = getattr(exc, "code", None) or type(exc).__name__
        return DiskOutcome(disk, name, DiskBackupStatus.failed, error_code=code, error_reason=str(exc))


@task(task_run_name="wait {submission.disk.server_name} {submission.disk.device}", cache_policy=NO_CACHE)
async def await_backup(ctx: RunContext, submission: Submission) -> DiskOutcome:
    """Wait for the job with every other job of the run (one shared waiter), then record its end."""
    result = await ctx.waiter.wait(
        submission.job_id,
        submission.backup_name,
        volume_id=submission.disk.volume_id,
        timeout=ctx.plan.disk_deadline_minutes * 60,
    )
    return await finish_disk_backup(
        client=ctx.client, engine=ctx.engine, submission=submission, result=result
    )


async def back_up_disk(ctx: RunContext, disk: DiskTarget) -> DiskOutcome:
    """One disk, start to end: submit and wait, once more after a failed job when the plan says so
    (transient HTTP errors are the client's to retry, never this layer's)."""
    attempts = 2 if ctx.plan.retry_failed_job_once else 1
    async with ctx.jobs_in_flight:
        for attempt in range(1, attempts + 1):
            async with ctx.submitting:
                started = await submit_backup(ctx, disk)
            outcome = started if isinstance(started, DiskOutcome) else await _finished(ctx, started)
            if outcome.ok or outcome.status != DiskBackupStatus.failed or attempt == attempts:
                break
            _logger().warning("%s: job failed (%s), submitting once more", disk.label, outcome.error_code)
    level = logging.INFO if outcome.ok else logging.ERROR
    _logger().log(
        level, "%s: %s %s %s", disk.label, outcome.status.value, outcome.backup_name, outcome.error_code or ""
    )
    return outcome


async def _finished(ctx: RunContext, submission: Submission) -> DiskOutcome:
    if submission.done:
        status = DiskBackupStatus.adopted if submission.adopted else DiskBackupStatus.succeeded
        return DiskOutcome(submission.disk, submission.backup_name, status, backup_id=submission.backup_id)
    return await await_backup(ctx, submission)


def _logger() -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    return get_run_logger()
