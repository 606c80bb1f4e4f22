"""Waiting on many VBS backup jobs at once, at a cost that does not grow one request per job per round.

One `JobWaiter` serves a whole run. Each poll round asks the native backups list for the backups still
`creating` (one request per 1,000 backups in flight) and calls the job API only for the jobs whose backup
is no longer creating (or not yet visible), so a job costs one `get_job` at its end instead of one per
round. A backup is recognised by its identity (its volume and the identity marker in its description),
never by its name. When the job API cannot answer (an error other than "not found"), the backup itself,
found by its identity, says how the job ended. Every job has its own deadline; a job past it ends as
`timed_out` (with the id of its still-running backup, so that a later run can reconcile it) while the
others go on.

The sleep between rounds is injectable: tests pass a function that advances the emulator's clock, so no
test waits on wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from .cloud.errors import CloudError, NotFoundError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class _JobsApi(Protocol):  # the two VbsApi methods the waiter needs
    async def get_job(self, job_id: str): ...

    def iter_backup_details(self, *, status: str | None = None, page_size: int = 1000): ...

    async def find_backups_by_description(self, description: str, volume_id: str): ...


@dataclass(frozen=True)
class JobResult:
    key: str  # the job id, or an identity key for a backup adopted without one
    status: Literal["succeeded", "failed", "timed_out"]
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


class JobWaiter:
    """Await backup jobs together. `wait()` may be called from many coroutines; one loop polls for all."""

    def __init__(
        self,
        vbs: _JobsApi,
        *,
        interval: float = 10.0,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        page_size: int = 1000,
    ) -> None:
        self._vbs = vbs
        self.interval = interval
        self._sleep = sleep
        self._clock = clock
        self._page_size = page_size
        self._pending: dict[str, _Pending] = {}
        self._loop_task: asyncio.Task[None] | None = None

    async def wait(
        self,
        job_id: str | None,
        marker: str,
        *,
        volume_id: str,
        timeout: float,
        backup_id: str | None = None,
    ) -> JobResult:
        """Resolve when the job succeeds, fails, or `timeout` seconds (on the waiter's clock) pass. Without
        a job id (a backup adopted by identity) the backup's own status says how it ended."""
        key = job_id or f"identity:{volume_id}:{marker}"
        if key in self._pending:
            return await asyncio.shield(self._pending[key].future)
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(
            key, job_id, marker, volume_id, backup_id, self._clock() + timeout, future
        )
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._run(), name="vbs-job-waiter")
        return await future

    async def _run(self) -> None:
        try:
            while self._pending:
                await self._sleep(self.interval)
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
            creating = {
                (b.volume_id, b.description)
                async for b in self._vbs.iter_backup_details(status="creating", page_size=self._page_size)
            }
        except CloudError as exc:
            # a failed listing only costs this round: the jobs are asked directly below instead
            log.warning("backups list failed during a poll round (%s); asking the job API", exc)
            creating = set()
        now = self._clock()
        for pending in list(self._pending.values()):
            if (pending.volume_id, pending.marker) in creating and now < pending.deadline:
                continue
            result = await (self._ask_job(pending) if pending.job_id else self._ask_backup(pending))
            if result is None and now >= pending.deadline:
                result = await self._timed_out(pending)
            if result is not None:
                del self._pending[pending.key]
                pending.future.set_result(result)

    async def _ask_job(self, pending: _Pending) -> JobResult | None:
        assert pending.job_id is not None
        try:
            job = await self._vbs.get_job(pending.job_id)
        except NotFoundError:
            return JobResult(pending.key, "failed", error_code="common.0011", error_reason="job not found")
        except CloudError as exc:
            log.warning("job %s status unknown (%s); asking the backup itself", pending.job_id, exc)
            return await self._ask_backup(pending)
        if job.status == "SUCCESS":
            return JobResult(pending.key, "succeeded", backup_id=job.backup_id)
        if job.status == "FAIL":
            return JobResult(
                pending.key,
                "failed",
                backup_id=job.backup_id,
                error_code=job.error_code,
                error_reason=job.fail_reason,
            )
        return None

    async def _ask_backup(self, pending: _Pending) -> JobResult | None:
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
            return JobResult(pending.key, "failed", error_reason=f"backup {pending.marker} disappeared")
        if backup.status == "available":
            return JobResult(pending.key, "succeeded", backup_id=backup.id)
        if backup.status == "error":
            return JobResult(pending.key, "failed", backup_id=backup.id, error_reason=backup.fail_reason)
        return None

    async def _find(self, pending: _Pending):  # type: ignore[no-untyped-def]
        """The backup this wait is about: the known one, else the newest of its identity."""
        found = await self._vbs.find_backups_by_description(pending.marker, pending.volume_id)
        if pending.backup_id:
            return next((b for b in found if b.id == pending.backup_id), None)
        return max(found, key=lambda b: (b.created_at, b.id), default=None)

    async def _timed_out(self, pending: _Pending) -> JobResult:
        what = f"job {pending.job_id}" if pending.job_id else f"backup {pending.marker}"
        backup_id = pending.backup_id
        if backup_id is None:
            try:  # record the still-running backup, so that a later run can reconcile it
                backup = await self._find(pending)
                backup_id = backup.id if backup is not None else None
            except CloudError as exc:
                log.warning("%s: could not look up its backup: %s", what, exc)
        return JobResult(
            pending.key,
            "timed_out",
            backup_id=backup_id,
            error_reason=f"{what} did not finish before its deadline",
        )
