"""Waiting on many VBS backup jobs at once, at a cost that does not grow one request per job per round.

One `JobWaiter` serves a whole run. Each poll round asks the native backups list for the backups still
`creating` (one request per 1,000 backups in flight) and calls the job API only for the jobs whose backup
is no longer creating (or not yet visible), so a job costs one `get_job` at its end instead of one per
round. Every job has its own deadline; a job past it ends as `timed_out` while the others go on.

The sleep between rounds is injectable: tests pass a function that advances the emulator's clock, so no
test waits on wall-clock time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .cloud.errors import CloudError, NotFoundError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class _JobsApi(Protocol):  # the two VbsApi methods the waiter needs
    async def get_job(self, job_id: str): ...  # noqa: ANN201

    def iter_backup_details(self, *, status: str | None = None, page_size: int = 1000): ...  # noqa: ANN201


@dataclass(frozen=True)
class JobResult:
    job_id: str
    status: Literal["succeeded", "failed", "timed_out"]
    backup_id: str | None = None
    error_code: str | None = None
    error_reason: str | None = None


@dataclass
class _Pending:
    job_id: str
    backup_name: str
    deadline: float
    future: asyncio.Future[JobResult]
    seen_creating: bool = False


@dataclass
class WaiterStats:
    rounds: int = 0
    list_requests: int = 0
    job_requests: int = 0
    per_round_max: int = 0
    errors: list[str] = field(default_factory=list)


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
        self.stats = WaiterStats()

    async def wait(self, job_id: str, backup_name: str, *, timeout: float) -> JobResult:
        """Resolve when the job succeeds, fails, or `timeout` seconds (on the waiter's clock) pass."""
        if job_id in self._pending:
            return await asyncio.shield(self._pending[job_id].future)
        future: asyncio.Future[JobResult] = asyncio.get_running_loop().create_future()
        self._pending[job_id] = _Pending(job_id, backup_name, self._clock() + timeout, future)
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
        self.stats.rounds += 1
        requests = 0
        try:
            creating: set[str] = set()
            async for backup in self._vbs.iter_backup_details(status="creating", page_size=self._page_size):
                if backup.name:
                    creating.add(backup.name)
            requests += 1 + len(creating) // self._page_size
        except CloudError as exc:
            # a failed listing only costs this round: the jobs are asked directly below instead
            log.warning("backups list failed during a poll round (%s); asking the job API", exc)
            self.stats.errors.append(str(exc))
            creating = set()
        now = self._clock()
        for pending in list(self._pending.values()):
            if pending.backup_name in creating and now < pending.deadline:
                pending.seen_creating = True
                continue
            result = await self._ask_job(pending)
            requests += 1
            if result is None and now >= pending.deadline:
                result = JobResult(
                    pending.job_id,
                    "timed_out",
                    error_reason=f"job {pending.job_id} did not finish before its deadline",
                )
            if result is not None:
                del self._pending[pending.job_id]
                pending.future.set_result(result)
        self.stats.list_requests += 1
        self.stats.job_requests += requests - 1
        self.stats.per_round_max = max(self.stats.per_round_max, requests)

    async def _ask_job(self, pending: _Pending) -> JobResult | None:
        try:
            job = await self._vbs.get_job(pending.job_id)
        except NotFoundError:
            return JobResult(pending.job_id, "failed", error_code="common.0011", error_reason="job not found")
        except CloudError as exc:
            log.warning("job %s status unknown this round: %s", pending.job_id, exc)
            return None
        if job.status == "SUCCESS":
            return JobResult(pending.job_id, "succeeded", backup_id=job.entities.get("backup_id") or None)
        if job.status == "FAIL":
            return JobResult(
                pending.job_id,
                "failed",
                backup_id=job.entities.get("backup_id") or None,
                error_code=job.error_code,
                error_reason=job.fail_reason,
            )
        return None
