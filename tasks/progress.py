"""A long run's progress, for the operator watching it: a Prefect progress artifact on the flow run
("412 of 1,000 disks done, 3 failed") and, every `REPORT_EVERY` seconds, one log line: disks done and
failed, jobs running and how long the oldest has run, and an estimate of the end in the plan's timezone.

Real time on purpose (it is read by people); ages and the estimate come from the pace so far. Creating
and updating the artifact are best effort: a Prefect API hiccup never fails a backup.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from uuid import UUID
from zoneinfo import ZoneInfo

from prefect import get_run_logger
from prefect.artifacts import acreate_progress_artifact, aupdate_progress_artifact

from vbs_backup.backup.submit import DiskOutcome
from vbs_backup.backup.targets import DiskTarget

__all__ = ["REPORT_EVERY", "RunProgress"]

REPORT_EVERY = 30.0  # seconds between progress lines (and artifact updates)

log = logging.getLogger(__name__)


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@dataclass
class RunProgress:
    """Counts a run's disks as they are submitted and end. `start()` creates the artifact and the
    periodic report; `stop()` ends it (at 100 %)."""

    total: int
    key: str
    timezone: str = "UTC"
    every: float = REPORT_EVERY
    done: int = 0
    failed: int = 0
    _running: dict[str, float] = field(default_factory=dict)
    _started: float = field(default_factory=lambda: time.monotonic())
    _artifact: UUID | None = None
    _reporter: asyncio.Task[None] | None = None

    def submitted(self, disk: DiskTarget) -> None:
        self._running.setdefault(disk.volume_id, time.monotonic())

    def finished(self, outcome: DiskOutcome) -> None:
        self._running.pop(outcome.disk.volume_id, None)
        self.done += 1
        self.failed += 0 if outcome.ok else 1

    @property
    def percent(self) -> float:
        return 100.0 if self.total == 0 else round(100.0 * self.done / self.total, 1)

    def headline(self) -> str:
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.done:,} of {self.total:,} disks done{failed}"

    def line(self) -> str:
        """What the periodic log line says."""
        now = time.monotonic()
        text = self.headline()
        if self._running:
            oldest = now - min(self._running.values())
            jobs = len(self._running)
            text += f"; {jobs:,} job{'s' if jobs != 1 else ''} running, oldest {_ago(oldest)}"
        elapsed = now - self._started
        if 0 < self.done < self.total and elapsed > 0:
            left = elapsed / self.done * (self.total - self.done)
            end = datetime.now(UTC) + timedelta(seconds=left)
            local = end.astimezone(ZoneInfo(self.timezone))
            text += f"; estimated end {local:%H:%M} {local.tzname()} (in {_ago(left)})"
        return text

    async def start(self) -> None:
        try:
            self._artifact = await acreate_progress_artifact(
                progress=self.percent, key=self.key, description=self.headline()
            )
        except Exception as exc:  # progress is for people; the backups go on without it
            log.warning("progress artifact not created: %s", exc)
        self._reporter = asyncio.create_task(self._report(), name="vbs-run-progress")

    async def _report(self) -> None:
        logger = get_run_logger()
        while True:
            await asyncio.sleep(self.every)
            logger.info("progress: %s", self.line())
            await self._update()

    async def _update(self) -> None:
        if self._artifact is None:
            return
        try:
            await aupdate_progress_artifact(
                self._artifact, progress=self.percent, description=self.headline()
            )
        except Exception as exc:
            log.warning("progress artifact not updated: %s", exc)

    async def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.cancel()
            self._reporter = None
        await self._update()
