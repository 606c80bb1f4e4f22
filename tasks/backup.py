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
from vbs_backup.cloud.models.backups import Backup
from vbs_backup.disk_backups import (
    DiskOutcome,
    Submission,
    confirm_in_cloud,
    finish_disk_backup,
    submit_disk_backup,
    submitted_outcome,
)
from vbs_backup.ledger import DiskBackupStatus
from vbs_backup.reconcile import Settled, reconcile_attempts
from vbs_backup.targets import DiskTarget

from .runtime import RunContext


def wants_full_backup(ctx: RunContext) -> bool:
    """Every N days (counted from the slot's day number, so all disks agree) ask for a full backup."""
    every = ctx.plan.full_backup_every_days
    return every is not None and ctx.slot.toordinal() % every == 0


@task(name="reconcile-earlier-attempts", cache_policy=NO_CACHE)
async def reconcile(ctx: RunContext, listed: dict[str, list[Backup]]) -> list[Settled]:
    """Settle what earlier runs of the plan left open (dead runs, jobs past their deadline), from what the
    cloud lists, before this run creates anything."""
    settled = await reconcile_attempts(
        client=ctx.client, engine=ctx.engine, plan_name=ctx.plan.name, run_id=ctx.run_id, listed=listed
    )
    for s in settled:
        get_run_logger().info("earlier attempt %s on %s: %s -> %s", s.attempt_id, s.volume_id, s.was, s.now)
    return settled


@task(name="confirm-in-cloud", cache_policy=NO_CACHE)
async def confirm(
    ctx: RunContext, outcomes: list[DiskOutcome], listed: dict[str, list[Backup]]
) -> list[DiskOutcome]:
    """A disk is backed up only if the cloud shows its backup `available` once the jobs have ended."""
    return await confirm_in_cloud(ctx.engine, outcomes, listed)


@task(task_run_name="submit {disk.server_name} {disk.device}", cache_policy=NO_CACHE)
async def submit_backup(
    ctx: RunContext, disk: DiskTarget, known: list[Backup] | None = None
) -> Submission | DiskOutcome:
    """Adopt this slot's backup if the cloud has it, else write the intent and create it. A disk that
    cannot be started is recorded as failed and returned as its outcome."""
    try:
        return await submit_disk_backup(
            client=ctx.client,
            engine=ctx.engine,
            run_id=ctx.run_id,
            disk=disk,
            plan=ctx.plan,
            slot=ctx.slot,
            full_backup=wants_full_backup(ctx),
            known=known,
            now=ctx.time.now(),
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
        submission.marker,
        volume_id=submission.disk.volume_id,
        backup_id=submission.backup_id,
        timeout=ctx.plan.disk_deadline_minutes * 60,
    )
    return await finish_disk_backup(
        client=ctx.client, engine=ctx.engine, submission=submission, result=result
    )


async def back_up_disk(ctx: RunContext, disk: DiskTarget, known: list[Backup] | None = None) -> DiskOutcome:
    """One disk, start to end: submit and wait, once more after a failed job when the plan says so
    (transient HTTP errors are the client's to retry, never this layer's). `known`: the disk's backups as
    the run listed them before any create."""
    attempts = 2 if ctx.plan.retry_failed_job_once else 1
    async with ctx.jobs_in_flight:
        for attempt in range(1, attempts + 1):
            async with ctx.submitting:
                # A retry knows the slot has no live backup: the one attempt of it just failed.
                started = await submit_backup(ctx, disk, known if attempt == 1 else [])
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
        return submitted_outcome(submission)
    return await await_backup(ctx, submission)


def _logger() -> logging.Logger | logging.LoggerAdapter:  # type: ignore[type-arg]
    return get_run_logger()
