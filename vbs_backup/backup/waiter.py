"""Waiting on many VBS backup jobs at once, at about no request per job.

One `JobWaiter` serves a whole run. Each poll round reads the native backups list, newest first
(`created_at` descending, the documented default), and only the pages that can hold a backup this run is
waiting for: it stops at the first backup created before the oldest wait began. The list says which of
those backups are still `creating`, which are `available` and which ended in `error`, so most jobs end
without a single `get_job`. The job API is asked only where the list cannot tell:

* the backup ended in `error` (the job has the error code; the list has only a reason);
* no backup of the job is visible yet after a few rounds (a job that fails before it makes a backup);
  asked again after 2, 4, 8... rounds, so a slow start costs a handful of requests, not one per round;
* more than one backup could be the job's (someone copied our identity during the run);
* the list itself could not be read this round (then every job is asked, as a fallback).

A backup is recognised by its identity (its volume and the identity marker in its description), never by
its name; a job's backup is one of that identity that appeared after its create was sent and that no
earlier wait of the run (or before it) accounted for (`exclude`, and every backup a wait of this waiter
settled).

"Appeared after its create was sent" is judged on the cloud's own clock, without guessing the skew between
clocks: the waiter keeps the newest `created_at` of every listing it has finished reading (`high_water`);
a create sent after that listing made a backup no older than it. So the caller takes `waiter.high_water`
just before sending the create and hands it to `wait(seen_before=...)`; the rounds then read only back to
the oldest such mark of the jobs still pending (about the last job's duration of creates: one page for a
thousand). Where no mark exists yet (the first creates of a run in an empty project) our own clock, less
`CLOCK_SKEW`, is the floor.
Every job has its own deadline; a job past it ends as `timed_out` (with the id of its still-running
backup, so that a later run can reconcile it) while the others go on.

The waiter waits with a `Clock` (vbs_backup.clock): tests pass one whose sleeping advances the emulator's
clock, so no test waits on wall-clock time. It runs its own rounds rather than `poll_until`: one round
answers every pending wait, each with its own deadline, and waits come and go while the rounds run.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from typing_extensions import Unpack

from ..clock import SYSTEM_CLOCK, Clock
from ..cloud.errors import CloudError, NotFoundError
from ..cloud.models.backups import UNREADABLE_STATUS, Backup
from ..cloud.vbs_backups import BackupDetailQuery
from ..identity import CLOCK_SKEW
from ..ledger.tables import DiskBackupStatus
from .outcomes import from_backup, from_job

log = logging.getLogger(__name__)

# Rounds without a visible backup before the job API is asked (then after twice as many, and so on).
ASK_JOB_AFTER_ROUNDS = 2


class _JobsApi(Protocol):  # the VbsApi methods the waiter needs
    async def get_job(self, job_id: str): ...

    def iter_backup_details(
        self, *, page_size: int = 100, **query: Unpack[BackupDetailQuery]
    ) -> AsyncIterator[Backup]: ...

    async def find_backups_by_description(self, description: str, volume_id: str): ...


@dataclass(frozen=True)
class JobResult:
    key: str  # the job id, or an identity key for a backup adopted without one
    status: DiskBackupStatus  # succeeded, failed or timed_out: the ledger's words for how a job ended
    backup_id: str | None = None
    error_code: str | None = None
    error_reason: str | None = None


@dataclass
class _Pending:
    key: str
    job_id: str | None  # None: a backup adopted by identity, followed through the backups list
    marker: str  # the identity marker in the backup's description
    volume_id: str
    backup_id: str | None  # when known (adopted): this very backup, not another of the same identity
    deadline: float
    future: asyncio.Future[JobResult]
    floor: datetime | None  # on the cloud's clock, the backup is no older than this (None: unknown)
    exclude: frozenset[str]  # backups of the identity known not to be this job's
    unseen_rounds: int = 0
    ask_at: int = ASK_JOB_AFTER_ROUNDS


class JobWaiter:
    """Await backup jobs together. `wait()` may be called from many coroutines; one loop polls for all."""

    def __init__(
        self,
        vbs: _JobsApi,
        *,
        interval: float = 10.0,
        clock: Clock = SYSTEM_CLOCK,
        page_size: int = 1000,
    ) -> None:
        self._vbs = vbs
        self.interval = interval
        self._clock = clock
        self._page_size = page_size
        self._pending: dict[str, _Pending] = {}
        self._settled: set[str] = set()  # backups that waits of this waiter ended on
        self.high_water: datetime | None = None  # newest created_at of any finished listing
        self._loop_task: asyncio.Task[None] | None = None

    async def wait(
        self,
        job_id: str | None,
        marker: str,
        *,
        volume_id: str,
        timeout: float,
        backup_id: str | None = None,
        since: datetime | None = None,
        seen_before: datetime | None = None,
        exclude: Collection[str] = (),
    ) -> JobResult:
        """Resolve when the job succeeds, fails, or `timeout` seconds (on the waiter's clock) pass. Without
        a job id (a backup adopted by identity) the backup's own status says how it ended. `since`: when
        the create was sent on our clock (or an adopted backup's own `created_at`); `seen_before`: this
        waiter's `high_water` taken just before the create was sent. The backup is looked for no earlier
        than the later of the two (`since` less `CLOCK_SKEW`); with neither, the whole list is read every
        round. `exclude`: backups of this identity that existed before the create (an earlier attempt's
        `error` backup)."""
        key = job_id or f"identity:{volume_id}:{marker}"
        if key in self._pending:
            return await asyncio.shield(self._pending[key].future)
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(
            key,
            job_id,
            marker,
            volume_id,
            backup_id,
            self._clock.monotonic() + timeout,
            future,
            _floor(since, seen_before),
            frozenset(exclude),
        )
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="vbs-job-waiter")
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                await self._clock.sleep(self.interval)
                await self._round()
        except BaseException as exc:  # never leave a waiter hanging on a dead loop
            for pending in list(self._pending.values()):
                if not pending.future.done():
                    pending.future.set_exception(exc if isinstance(exc, Exception) else CloudError(str(exc)))
            self._pending.clear()
            if not isinstance(exc, Exception):
                raise

    async def _round(self) -> None:
        try:
            listed: dict[tuple[str, str], list[Backup]] | None = await self._recent_backups()
        except CloudError as exc:
            # a failed listing only costs this round: the jobs are asked directly below instead
            log.warning("backups list failed during a poll round (%s); asking the job API", exc)
            listed = None
        now = self._clock.monotonic()
        for pending in list(self._pending.values()):
            if listed is None:
                result = await (self._ask_job(pending) if pending.job_id else self._ask_backup(pending))
            else:
                result = await self._from_list(pending, listed.get((pending.volume_id, pending.marker), []))
            if result is None and now >= pending.deadline:
                result = await self._timed_out(pending, listed)
            if result is not None:
                self._settle(pending, result)

    def _settle(self, pending: _Pending, result: JobResult) -> None:
        del self._pending[pending.key]
        if result.backup_id:
            self._settled.add(result.backup_id)
        pending.future.set_result(result)

    def note_listing(self, backups: Iterable[Backup]) -> None:
        """A listing that has been read in full: its newest backup raises `high_water` (the run's listing
        before any create gives the first creates their mark)."""
        newest = max((b.created_at for b in backups if b.status != UNREADABLE_STATUS), default=None)
        if newest is not None and (self.high_water is None or newest > self.high_water):
            self.high_water = newest

    async def _recent_backups(self) -> dict[tuple[str, str], list[Backup]]:
        """The backups created since the oldest pending wait's floor, by (volume, description): the first
        pages of the list, newest first, read until a backup older than that."""
        floors = [p.floor for p in self._pending.values()]
        cutoff = None if any(f is None for f in floors) else min(f for f in floors if f is not None)
        found: dict[tuple[str, str], list[Backup]] = defaultdict(list)
        read: list[Backup] = []
        async for backup in self._vbs.iter_backup_details(
            page_size=self._page_size, sort_key="created_at", sort_dir="desc"
        ):
            if cutoff is not None and backup.created_at < cutoff:
                break
            read.append(backup)
            found[(backup.volume_id, backup.description or "")].append(backup)
        self.note_listing(read)
        return found

    async def _from_list(self, pending: _Pending, same_identity: list[Backup]) -> JobResult | None:
        """What the list says of this wait's backup; the job API only where the list cannot tell."""
        candidates = self._candidates(pending, same_identity)
        if len(candidates) > 1:
            return await self._ask_job(pending) if pending.job_id else None
        if not candidates:
            if not pending.job_id:
                return JobResult(
                    pending.key, DiskBackupStatus.failed, error_reason=f"backup {pending.marker} disappeared"
                )
            pending.unseen_rounds += 1
            if pending.unseen_rounds < pending.ask_at:
                return None
            pending.ask_at *= 2
            return await self._ask_job(pending)  # no backup visible yet, rounds after the create
        backup = candidates[0]
        status = from_backup(backup.status)
        if status is DiskBackupStatus.running:
            return None
        if pending.job_id and status is not DiskBackupStatus.succeeded:
            # the job has the error code, or explains the status
            return await self._ask_job(pending)
        return self._ended(pending, backup)

    def _candidates(self, pending: _Pending, same_identity: Iterable[Backup]) -> list[Backup]:
        """The backups of the wait's identity that can be its own: the one it knows, else any that was not
        there before its create, that no other wait of this waiter ended on, and no older than its floor."""
        if pending.backup_id:
            return [b for b in same_identity if b.id == pending.backup_id]
        return [
            b
            for b in same_identity
            if b.id not in pending.exclude
            and b.id not in self._settled
            and (pending.floor is None or b.created_at >= pending.floor)
        ]

    async def _ask_job(self, pending: _Pending) -> JobResult | None:
        assert pending.job_id is not None
        try:
            job = await self._vbs.get_job(pending.job_id)
        except NotFoundError:
            return JobResult(
                pending.key, DiskBackupStatus.failed, error_code="common.0011", error_reason="job not found"
            )
        except CloudError as exc:
            log.warning("job %s status unknown (%s); asking the backup itself", pending.job_id, exc)
            return await self._ask_backup(pending)
        status = from_job(job.status)
        if status is DiskBackupStatus.succeeded:
            return JobResult(pending.key, status, backup_id=job.backup_id)
        if status is DiskBackupStatus.failed:
            return JobResult(
                pending.key,
                status,
                backup_id=job.backup_id,
                error_code=job.error_code,
                error_reason=job.fail_reason,
            )
        return None

    async def _ask_backup(self, pending: _Pending) -> JobResult | None:
        """The fallback when neither the list nor the job could answer: this disk's backups."""
        try:
            backup = await self._find(pending)
        except CloudError as exc:
            log.warning(
                "backup %s of %s status unknown this round: %s", pending.marker, pending.volume_id, exc
            )
            return None
        if backup is None:
            if pending.job_id:
                return None  # not visible yet: the job's own answer will come
            return JobResult(
                pending.key, DiskBackupStatus.failed, error_reason=f"backup {pending.marker} disappeared"
            )
        return self._ended(pending, backup)

    def _ended(self, pending: _Pending, backup: Backup) -> JobResult | None:
        status = from_backup(backup.status)
        if status is DiskBackupStatus.succeeded:
            return JobResult(pending.key, status, backup_id=backup.id)
        if status is DiskBackupStatus.failed:
            return JobResult(pending.key, status, backup_id=backup.id, error_reason=backup.fail_reason)
        return None

    async def _find(self, pending: _Pending) -> Backup | None:
        """The backup this wait is about, asked of this disk's backups: the newest of its candidates."""
        found = await self._vbs.find_backups_by_description(pending.marker, pending.volume_id)
        return max(self._candidates(pending, found), key=lambda b: (b.created_at, b.id), default=None)

    async def _timed_out(
        self, pending: _Pending, listed: dict[tuple[str, str], list[Backup]] | None
    ) -> JobResult:
        what = f"job {pending.job_id}" if pending.job_id else f"backup {pending.marker}"
        backup_id = pending.backup_id
        if backup_id is None:
            # record the still-running backup, so that a later run can reconcile it
            mine = self._candidates(pending, (listed or {}).get((pending.volume_id, pending.marker), []))
            if len(mine) == 1:
                backup_id = mine[0].id
            else:
                try:
                    backup = await self._find(pending)
                    backup_id = backup.id if backup is not None else None
                except CloudError as exc:
                    log.warning("%s: could not look up its backup: %s", what, exc)
        return JobResult(
            pending.key,
            DiskBackupStatus.timed_out,
            backup_id=backup_id,
            error_reason=f"{what} did not finish before its deadline",
        )


def _floor(since: datetime | None, seen_before: datetime | None) -> datetime | None:
    """The later of the two lower bounds on a backup's `created_at` (`since` is on our clock)."""
    bounds = [b for b in (since - CLOCK_SKEW if since is not None else None, seen_before) if b is not None]
    return max(bounds, default=None)
