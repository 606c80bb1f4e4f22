"""Does tonight fit in the project's backup quotas? (reference §2.16 quotas, §2.1 / §4.1 `VolumeBackup.0080`
/ `.0081` when a create meets an exhausted quota.)

Without this a night that would exceed the quota finds out disk by disk: the first creates succeed, the
rest fail with `.0080` (count) or `.0081` (capacity). The preflight (`tasks.quota.check_quota`) compares,
before the first create, what the night needs with what the project has left, and refuses the whole night
with one line when it does not fit.

What the night needs: one new backup per disk that has no live backup of this slot's identity in the
run's listing (a disk that has one adopts it and creates nothing, `vbs_backup.backup.submit`). A backup
weighs its volume's size in GiB. Room that retention would free does not count: retention runs only after
the night's backups exist (we never delete before the new backup is there), so tonight's creates must fit
in what is free now.

Pure logic over plain data (the client's `Quotas` model, the plan's disks and the run's listing); no
Prefect here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..cloud.models.backups import Backup, QuotaItem, Quotas
from .submit import live_of
from .targets import DiskTarget

__all__ = [
    "BACKUPS",
    "GIGABYTES",
    "NightNeed",
    "QuotaCheck",
    "QuotaUse",
    "check_night",
    "night_need",
    "quota_use",
]

BACKUPS = "backups"  # §2.16 quota types
GIGABYTES = "backup_gigabytes"
UNITS = {BACKUPS: "backups", GIGABYTES: "GiB"}


@dataclass(frozen=True)
class NightNeed:
    """The new backups the night will create, and what they weigh."""

    backups: int
    gigabytes: int


def night_need(disks: Sequence[DiskTarget], listed: Mapping[str, Sequence[Backup]], marker: str) -> NightNeed:
    """One new backup for each disk without a live backup of the slot's identity `marker` in `listed` (the
    run's listing of the disks' backups before any create); such a disk adopts, it does not create.

    * Size: a backup counts as its volume's `size_gb`. The unit of a backup's `size` (and so of the
      `backup_gigabytes` quota) is unconfirmed (reference §1: "Cinder convention = GiB of the source
      volume"); we take the conservative reading, the whole disk, even where an incremental backup would
      store less.
    * `retry_failed_job_once` still counts one backup per disk: a retry only follows a failed job, whose
      backup ends in `error` and which the retry replaces; a preflight cannot foresee failures, and counting
      two per disk would refuse nights that fit. (Should the error backup still hold quota, the retry's
      create meets `.0080` and that one disk fails, as it would have without the preflight.)
    * A disk EVS cannot describe (`DiskTarget.missing`) is failed without a create, so it needs nothing.
    """
    new = [d for d in disks if not d.missing and not live_of(listed.get(d.volume_id, ()), marker)]
    return NightNeed(backups=len(new), gigabytes=sum(d.size_gb for d in new))


@dataclass(frozen=True)
class QuotaUse:
    """One quota (`backups` or `backup_gigabytes`) against what the night needs of it."""

    type: str
    limit: int  # -1: unlimited (or not listed by the cloud: nothing to check against)
    used: int  # used + reserved: both are taken
    need: int = 0

    @property
    def unlimited(self) -> bool:
        return self.limit < 0

    @property
    def free(self) -> int | None:
        """What is left (never below 0: a project over its quota has nothing left); None when unlimited."""
        return None if self.unlimited else max(0, self.limit - self.used)

    @property
    def shortfall(self) -> int:
        free = self.free
        return 0 if free is None else max(0, self.need - free)

    @property
    def usage_ratio(self) -> float | None:
        """used / limit (1.0 = full; above 1.0 = over); None when unlimited. A zero quota is full."""
        if self.unlimited:
            return None
        if self.limit == 0:
            return 1.0 if self.used == 0 else float("inf")
        return self.used / self.limit

    @property
    def unit(self) -> str:
        return UNITS.get(self.type, self.type)

    def left(self) -> str:
        """`200 backups left of 1,000 (short by 800)`, `unlimited GiB`."""
        if self.free is None:
            return f"unlimited {self.unit}"
        short = f" (short by {self.shortfall:,})" if self.shortfall else ""
        return f"{self.free:,} {self.unit} left of {self.limit:,}{short}"


def quota_use(quotas: Quotas, type_: str, need: int = 0) -> QuotaUse:
    """One quota as listed; a type the cloud does not list is taken as unlimited (nothing to check)."""
    item: QuotaItem | None = quotas.get(type_)
    if item is None:
        return QuotaUse(type=type_, limit=-1, used=0, need=need)
    return QuotaUse(type=type_, limit=item.quota, used=item.used + item.reserved, need=need)


@dataclass(frozen=True)
class QuotaCheck:
    """The night's need against both quotas."""

    backups: QuotaUse
    gigabytes: QuotaUse

    @property
    def ok(self) -> bool:
        return not (self.backups.shortfall or self.gigabytes.shortfall)

    def message(self) -> str:
        """One line. Refused:

        `quota shortfall: this night needs 1,000 new backups (41,200 GiB); the project has 200 backups left
        of 1,000 (short by 800) and unlimited GiB. Retention runs only after the night's backups exist, so
        the old backups it would delete cannot make room: raise the quota or delete backups first`

        Fine: `quota headroom: this night needs ...; the project has ... left of ...`.
        """
        plural = "s" if self.backups.need != 1 else ""
        need = (
            f"this night needs {self.backups.need:,} new backup{plural} ({self.gigabytes.need:,} GiB); "
            f"the project has {self.backups.left()} and {self.gigabytes.left()}"
        )
        if self.ok:
            return f"quota headroom: {need}"
        return (
            f"quota shortfall: {need}. Retention runs only after the night's backups exist, so the old "
            "backups it would delete cannot make room: raise the quota or delete backups first"
        )


def check_night(quotas: Quotas, need: NightNeed) -> QuotaCheck:
    return QuotaCheck(
        backups=quota_use(quotas, BACKUPS, need.backups),
        gigabytes=quota_use(quotas, GIGABYTES, need.gigabytes),
    )
