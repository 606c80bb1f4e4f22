"""Tasks: one disk's backup, start to end, as one task run named for the disk; and the steps around them.

One task per disk (not one per step): a task run costs ~10 ms of event-loop time, and at 10,000 disks two
per disk were the limit (bench/nightly_fleet.py). A disk's task is started only when its server's turn to
submit comes (`ServerWave`), so task starts spread over the run at the pace of the creates instead of
stalling the loop all at once; waiting costs nothing (one shared waiter polls for every job).

A server's disks are submitted as one wave: each writes its intent, then their creates are released
together, so they leave back to back through the rate limiter and a database spanning disks is backed up
as consistently as the rate allows (the create skew per server is measured by the benchmark).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.states import Failed, State

from vbs_backup.backup.reconcile import Settled, reconcile_attempts
from vbs_backup.backup.submit import (
    DiskOutcome,
    Submission,
    confirm_in_cloud,
    finish_disk_backup,
    submit_disk_backup,
    submitted_outcome,
)
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.cloud.errors import CloudError
from vbs_backup.cloud.models.backups import UNKNOWN_CREATED_AT, Backup, BackupStatus
from vbs_backup.cloud.ratelimit import prepaid_token
from vbs_backup.cloud.retry import retry_throttled_until
from vbs_backup.ledger import DiskBackupStatus
from vbs_backup.tasks.report import why
from vbs_backup.tasks.runtime import RETURNS_FAILED_STATE, RunContext


def wants_full_backup(ctx: RunContext) -> bool:
    """Every N days (counted from the night's local date, so all disks agree) ask for a full backup."""
    every = ctx.plan.full_backup_every_days
    return every is not None and ctx.slot.astimezone(ctx.plan.zone).toordinal() % every == 0


@task(name="reconcile-earlier-attempts", task_run_name="settle earlier attempts", cache_policy=NO_CACHE)
async def reconcile(ctx: RunContext, listed: dict[str, list[Backup]]) -> list[Settled]:
    """Settle what earlier runs of the plan left open (dead runs, jobs past their deadline), from what the
    cloud lists, before this run creates anything."""
    settled = await reconcile_attempts(
        client=ctx.client,
        engine=ctx.engine,
        plan_name=ctx.plan.name,
        run_id=ctx.run_id,
        listed=listed,
        target=ctx.target,
    )
    for s in settled:
        get_run_logger().info("earlier attempt %s on %s: %s -> %s", s.attempt_id, s.volume_id, s.was, s.now)
    return settled


@task(name="confirm-in-cloud", task_run_name="confirm in the cloud", cache_policy=NO_CACHE)
async def confirm(
    ctx: RunContext, outcomes: list[DiskOutcome], listed: dict[str, list[Backup]]
) -> list[DiskOutcome]:
    """A disk is backed up only if the cloud shows its backup `available` once the jobs have ended."""
    return await confirm_in_cloud(ctx.engine, outcomes, listed)


class ServerWave:
    """The disks of one server that are submitted together (at most `max_concurrent_jobs` of them).

    Entering the wave takes a job slot for each of its disks at once (under one lock, so that two servers
    never hold half their slots each and wait for each other) and one of the run's submission turns. Each
    disk calls `arrive()` once its intent is written, just before its create, and waits there until every
    disk of the wave has arrived or gone without a create; then `done()` once it has submitted or given up
    (`done()` of a disk that never arrived counts as going without a create). When the last one arrives, the
    wave takes a rate-limit token for each arrived disk in one go (nobody else is served in between) and
    hands each its token (`prepaid_token`): the creates then leave together, so neither another server's
    request nor a stall of the event loop can come between them. A wave larger than the limiter's burst
    (a slowed client) does not: its creates go one by one, as close together as the rate allows. The
    submission turn is handed on as soon as every disk is done, so the next server writes its intents while
    this one's jobs run; the job slots are held until the wave ends."""

    def __init__(self, ctx: RunContext, parties: int) -> None:
        self._ctx = ctx
        self._parties = parties
        self._waiting_for = parties  # disks that may still arrive
        self._arrived = 0
        self._unfinished = parties
        self._open = asyncio.Event()
        self._opening: asyncio.Task[None] | None = None
        self.prepaid = False  # the wave took a token for each arrived disk
        self._turn_held = False

    async def __aenter__(self) -> ServerWave:
        async with self._ctx.job_slots_lock:
            for _ in range(self._parties):
                await self._ctx.jobs_in_flight.acquire()
        await self._ctx.submitting.acquire()
        self._turn_held = True
        self._check()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._open.set()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        self._hand_on_turn()
        for _ in range(self._parties):
            self._ctx.jobs_in_flight.release()

    def member(self) -> _WaveMember:
        return _WaveMember(self)

    def _check(self) -> None:
        if self._arrived >= self._waiting_for and self._opening is None:
            self._opening = asyncio.create_task(self._open_with_tokens(self._arrived))
        if self._unfinished <= 0:
            self._hand_on_turn()

    async def _open_with_tokens(self, count: int) -> None:
        try:
            limiter = self._ctx.client.session.rate_limiter
            # Only a wave that fits in the limiter's burst leaves at once: more than that would be a clump
            # the gateway throttles (a slowed limiter has a small burst: its disks then go one by one).
            if limiter is not None and 0 < count <= limiter.burst:
                await limiter.acquire(count)
                self.prepaid = True
        finally:
            self._open.set()

    def _hand_on_turn(self) -> None:
        if self._turn_held:
            self._turn_held = False
            self._ctx.submitting.release()


class _WaveMember:
    def __init__(self, wave: ServerWave) -> None:
        self._wave = wave
        self._arrived = False
        self._done = False

    async def arrive(self) -> None:
        if self._arrived or self._done:
            return
        self._arrived = True
        self._wave._arrived += 1
        self._wave._check()
        await self._wave._open.wait()
        if self._wave.prepaid:
            prepaid_token()  # taken by the wave for this disk's create

    def done(self) -> None:
        if self._done:
            return
        self._done = True
        if not self._arrived:
            self._wave._waiting_for -= 1
        self._wave._unfinished -= 1
        self._wave._check()


@task(
    name=RETURNS_FAILED_STATE, task_run_name="back up {disk.server_name} {disk.device}", cache_policy=NO_CACHE
)
async def back_up_disk(
    ctx: RunContext, disk: DiskTarget, known: list[Backup], wave: _WaveMember | None = None
) -> DiskOutcome | State:
    """One disk, start to end: adopt this slot's backup if the cloud has it, else write the intent and
    create it; wait for its job with every other job of the run; once more after a failed job when the plan
    says so (a create that failed over HTTP is not sent again: transient HTTP errors are the client's to
    retry, never this layer's). `known`: the disk's backups as the run listed them before any create.

    A disk that is not backed up ends its task run Failed (a red bar named for the disk in the run's
    graph), with the reason as its message and the `DiskOutcome` as its data: the flow goes on with the
    other disks, retention and the report (`outcome_of`)."""
    outcome = await _back_up_disk(ctx, disk, known, wave)
    if ctx.progress is not None:
        ctx.progress.finished(outcome)
    if outcome.ok:
        return outcome
    return Failed(message=f"{disk.label}: {why(outcome)}", data=outcome)


async def outcome_of(state: State) -> DiskOutcome:
    """The `DiskOutcome` a `back_up_disk` task run ended with, Completed or Failed. Anything else (a task
    that crashed on a bug) is raised."""
    result = await state.aresult(raise_on_failure=False)
    if isinstance(result, DiskOutcome):
        return result
    if isinstance(result, BaseException):
        raise result
    raise TypeError(f"back_up_disk ended {state.name} without an outcome: {result!r}")


async def _back_up_disk(
    ctx: RunContext, disk: DiskTarget, known: list[Backup], wave: _WaveMember | None
) -> DiskOutcome:
    attempts = 2 if ctx.plan.retry_failed_job_once else 1
    budget = ctx.plan.disk_deadline_minutes * 60
    deadline = ctx.clock.monotonic() + budget  # the waiter's clock (tests drive it)
    try:
        # a throttled call (it did not run) is retried until the disk's deadline, in real time
        with retry_throttled_until(time.monotonic() + budget):
            for attempt in range(1, attempts + 1):
                mark = _Mark(ctx, wave if attempt == 1 else None)
                started = await _submit(ctx, disk, known, mark)
                if wave is not None:
                    wave.done()
                if ctx.progress is not None:
                    ctx.progress.submitted(disk)
                if isinstance(started, DiskOutcome):
                    # The create failed (an HTTP error, an answer we could not read) or the disk cannot be
                    # backed up: the client has already retried what can be retried (cloud/retry.py), and a
                    # second submit here would only multiply those attempts.
                    outcome = started
                    break
                if started.done:
                    outcome = submitted_outcome(started)
                else:
                    outcome = await _wait(ctx, started, deadline, mark.seen_before)
                # Only a job that failed in the cloud is worth a new job: no HTTP retry can give that one.
                if outcome.status != DiskBackupStatus.failed or attempt == attempts:
                    break
                _logger().warning("%s: job failed (%s), submitting once more", disk.label, outcome.error_code)
                # The retry asks the cloud again what the slot holds: a failure that was only inferred (a job
                # the job API no longer knows, say) may have left a live backup, which the retry then adopts
                # instead of duplicating. What the listing shows is not the new job's backup.
                marker = ctx.plan.identity_marker(ctx.slot)
                try:
                    known = await ctx.client.vbs.find_backups_by_description(marker, disk.volume_id)
                except CloudError as exc:
                    _logger().warning(
                        "%s: not retried, the slot's backups could not be listed: %s", disk.label, exc
                    )
                    break
                if outcome.backup_id and all(b.id != outcome.backup_id for b in known):
                    known = [*known, _ended_backup(outcome.backup_id, disk, marker)]
    finally:
        if wave is not None:
            wave.done()
    if outcome.ok:  # a failure is said once, by the task run's Failed state (back_up_disk)
        _logger().info("%s: %s %s", disk.label, outcome.status.value, outcome.backup_name)
    return outcome


class _Mark:
    """Awaited just before a create is sent: waits for the server's wave, then takes the waiter's
    `high_water`, the cloud-clock floor under which this create's backup cannot be
    (vbs_backup.backup.waiter)."""

    def __init__(self, ctx: RunContext, wave: _WaveMember | None) -> None:
        self._ctx = ctx
        self._wave = wave
        self.seen_before: datetime | None = None

    async def __call__(self) -> None:
        if self._wave is not None:
            await self._wave.arrive()
        self.seen_before = self._ctx.waiter.high_water


async def _submit(
    ctx: RunContext, disk: DiskTarget, known: list[Backup], mark: _Mark
) -> Submission | DiskOutcome:
    """A disk that cannot be started comes back as its outcome, already recorded as failed."""
    return await submit_disk_backup(
        client=ctx.client,
        engine=ctx.engine,
        run_id=ctx.run_id,
        disk=disk,
        plan=ctx.plan,
        slot=ctx.slot,
        known=known,
        full_backup=wants_full_backup(ctx),
        now=ctx.clock.now(),
        before_create=mark,
    )


async def _wait(
    ctx: RunContext, submission: Submission, deadline: float, seen_before: datetime | None
) -> DiskOutcome:
    """Wait for the job with every other job of the run (one shared waiter), then record its end."""
    result = await ctx.waiter.wait(
        submission.job_id,
        submission.marker,
        volume_id=submission.disk.volume_id,
        backup_id=submission.backup_id,
        timeout=max(0.0, deadline - ctx.clock.monotonic()),
        since=submission.since,
        seen_before=seen_before,
        exclude=submission.exclude,
    )
    return await finish_disk_backup(
        client=ctx.client, engine=ctx.engine, submission=submission, result=result
    )


def _ended_backup(backup_id: str, disk: DiskTarget, marker: str) -> Backup:
    """A stand-in for the failed attempt's backup, so that the retry's waiter never takes it for its own
    (only its id, status and identity are read)."""
    return Backup.model_construct(
        id=backup_id,
        status=BackupStatus.ERROR,
        volume_id=disk.volume_id,
        description=marker,
        created_at=UNKNOWN_CREATED_AT,
    )


def _logger() -> logging.Logger | logging.LoggerAdapter:
    return get_run_logger()
