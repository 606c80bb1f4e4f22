"""The watchdog's checks: is every disk the plan protects really protected right now?

A backup flow that fails says so itself, and alerts. What it cannot say is that it never ran (the API was
down at 02:00, the worker was stopped, a run hangs), or that a disk appeared that nobody backs up. These
checks look from the outside, at the ledger and at what the plan selects in the cloud today:

* `missed_run`: no run of the plan started within the RPO;
* `stale`: a protected disk's newest good backup is older than the RPO;
* `never_backed_up`: a protected disk has no good backup at all (a new disk, or one that always fails);
* `discovery_failed`: the cloud could not say which disks the plan protects; the ledger's disks are then
  checked instead, so a cloud outage never hides stale backups;
* `abandoned_run`: a run of the plan died without saying so (its heartbeat stopped); it is marked so;
* `quota_exhausted`: a backup quota of the project (§2.16) is used up (>= 100 %): the next night's creates
  would fail (its preflight refuses it);

and warnings, which are reported (logged, in the artifact, in the message) but do not fail the run:

* `quota_high`: a backup quota is at or above 80 % (`QUOTA_WARNING`): time to raise it or keep fewer;
* `quota_unread`: the quotas could not be read (the protection checks are not affected).

The cloud is the truth: when the disks' backups could be listed, a disk's newest good backup is the newest
`available` backup carrying the plan's identity in the cloud (`newest_in_cloud`), whatever the ledger says;
a backup the ledger remembers but the cloud lost does not protect anything.

Pure functions over plain data (`check_protection`, `newest_in_cloud`) plus the ledger's reads and the
marking of dead runs (`ledger_snapshot`). No Prefect here.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session, col, or_, select

from ..backup.quotas import BACKUPS, GIGABYTES, quota_use
from ..backup.targets import DiskTarget
from ..cloud.models.backups import Backup, BackupStatus, Quotas
from ..identity import parse_marker
from ..ledger import DiskBackupStatus, Run, VolumeProtection, mark_abandoned_runs, protection_status

__all__ = [
    "DiskProtection",
    "Finding",
    "FindingKind",
    "LedgerSnapshot",
    "WatchdogReport",
    "check_protection",
    "check_quotas",
    "human_age",
    "ledger_snapshot",
]


class FindingKind(StrEnum):
    missed_run = "missed_run"
    stale = "stale"
    never_backed_up = "never_backed_up"
    discovery_failed = "discovery_failed"
    abandoned_run = "abandoned_run"
    quota_exhausted = "quota_exhausted"
    quota_high = "quota_high"  # a warning
    quota_unread = "quota_unread"  # a warning


# A quota used to this share (used / limit) or more is a warning; used up (1.0) is a problem.
QUOTA_WARNING = 0.8


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    subject: str  # "db-01 /dev/vdb", or "plan nightly"
    detail: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.detail}"


@dataclass(frozen=True)
class LedgerSnapshot:
    """What the ledger says: per volume, its newest good backup; the plan's newest run (or None)."""

    protections: Sequence[VolumeProtection]
    last_run: Run | None
    abandoned: Sequence[Run] = ()  # runs found dead (and marked) while reading


@dataclass(frozen=True)
class DiskProtection:
    """One protected disk as the watchdog judged it: the per-disk facts that its findings and the
    protection view (``vbs_backup.watchdog.view``) both show, so they never disagree.

    ``protection`` is the ledger's line (``protection_status``) with the newest good backup replaced by the
    cloud's when the cloud could be read (``None``: no run ever attempted the disk and the cloud has no
    backup of the plan); ``finding`` is what is wrong with it (``None``: a good backup within the RPO)."""

    label: str  # "db-01 /dev/vdb"
    server_name: str
    device: str
    volume_id: str
    protection: VolumeProtection | None
    finding: Finding | None

    @property
    def ok(self) -> bool:
        return self.finding is None

    @property
    def newest_good_at(self) -> datetime | None:
        return self.protection.newest_success_at if self.protection is not None else None


@dataclass(frozen=True)
class WatchdogReport:
    findings: list[Finding]  # problems: the run fails
    disks_checked: int
    warnings: list[Finding] = field(default_factory=list)  # reported, the run does not fail
    disks: list[DiskProtection] = field(default_factory=list)  # every disk checked, by label
    last_run: Run | None = None  # the plan's newest nightly run, as the ledger has it

    @property
    def disks_ok(self) -> int:
        return sum(1 for d in self.disks if d.ok)

    @property
    def ok(self) -> bool:
        return not self.findings

    def message(self) -> str:
        if self.ok:
            text = f"all {self.disks_checked} protected disks have a good backup within the RPO"
        else:
            text = f"{len(self.findings)} protection problem(s): " + "; ".join(str(f) for f in self.findings)
        if self.warnings:
            text += f"; {len(self.warnings)} warning(s): " + "; ".join(str(w) for w in self.warnings)
        return text


def human_age(delta: timedelta) -> str:
    """`26.5 h`, `3 d 4 h`: short and exact enough for an alert."""
    hours = delta.total_seconds() / 3600
    if hours < 48:
        return f"{hours:.1f} h"
    days, rest = divmod(int(hours), 24)
    return f"{days} d {rest} h"


def ledger_snapshot(
    engine: Engine,
    *,
    plan_name: str,
    now: datetime,
    deployments: Collection[str] | None = None,
    target: str | None = None,
) -> LedgerSnapshot:
    """Read the ledger once, after marking the plan's dead runs. A run counts for `plan_name` when it ran
    that plan from one of `deployments` or outside any deployment (the CLI); `None` counts every run of the
    plan. With `target`, only the runs of that estate target count, and only theirs are marked: another
    target's plan of the same name is another plan."""
    with Session(engine) as session:
        abandoned = mark_abandoned_runs(session=session, plan_name=plan_name, target=target)
        protections = protection_status(session=session, now=now, plan_name=plan_name, target=target)
        stmt = select(Run).where(Run.plan_name == plan_name)
        if target is not None:
            stmt = stmt.where(Run.target == target)
        if deployments is not None:
            stmt = stmt.where(or_(col(Run.deployment).is_(None), col(Run.deployment).in_(list(deployments))))
        last_run = session.exec(
            stmt.order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(1)
        ).first()
    return LedgerSnapshot(protections=protections, last_run=last_run, abandoned=abandoned)


def newest_in_cloud(
    plan_name: str, backups: Mapping[str, Sequence[Backup]]
) -> dict[str, tuple[str, datetime] | None]:
    """Per volume: (id, created_at) of its newest `available` backup carrying the plan's identity."""
    newest: dict[str, tuple[str, datetime] | None] = {}
    for volume_id, listed in backups.items():
        good = [
            b
            for b in listed
            if b.status == BackupStatus.AVAILABLE and (parse_marker(b.description) or ("",))[0] == plan_name
        ]
        best = max(good, key=lambda b: (b.created_at, b.id), default=None)
        newest[volume_id] = (best.id, best.created_at) if best is not None else None
    return newest


def check_protection(
    *,
    plan_name: str,
    disks: Sequence[DiskTarget] | None,
    snapshot: LedgerSnapshot,
    rpo: timedelta,
    now: datetime,
    discovery_error: str | None = None,
    cloud: Mapping[str, tuple[str, datetime] | None] | None = None,
    quotas: Quotas | None = None,
    quota_error: str | None = None,
) -> WatchdogReport:
    """Everything wrong with the protection of the plan's `disks` (as discovered in the cloud now).

    `disks=None` means discovery failed (`discovery_error` says why): every disk the ledger knows is
    checked for staleness instead, and the failure itself is a finding. `cloud` (from `newest_in_cloud`)
    is what the cloud holds: where given, it, not the ledger, says how old a disk's newest good backup is.
    `quotas` (or `quota_error`, why they could not be read) adds the project's quota checks
    (`check_quotas`).
    """
    if rpo <= timedelta(0):
        raise ValueError("the RPO must be positive")
    findings: list[Finding] = []
    run = snapshot.last_run
    if run is None:
        findings.append(
            Finding(FindingKind.missed_run, f"plan {plan_name}", "no nightly run of this plan recorded yet")
        )
    elif now - run.started_at > rpo:
        findings.append(
            Finding(
                FindingKind.missed_run,
                f"plan {plan_name}",
                f"no run started in the last {human_age(rpo)} "
                f"(the last one started {human_age(now - run.started_at)} ago, {run.status.value})",
            )
        )

    for dead in snapshot.abandoned:
        findings.append(
            Finding(FindingKind.abandoned_run, f"run {dead.id} of plan {plan_name}", dead.message or "")
        )

    by_volume: dict[str, VolumeProtection | None] = {p.volume_id: p for p in snapshot.protections}
    if cloud is not None:
        by_volume = {v: _as_in_cloud(by_volume.get(v), cloud.get(v)) for v in set(by_volume) | set(cloud)}
    checked: list[tuple[str, str, str, str, VolumeProtection | None]]  # label, server, device, volume
    if disks is None:
        findings.append(
            Finding(FindingKind.discovery_failed, f"plan {plan_name}", discovery_error or "discovery failed")
        )
        checked = [
            (f"{p.server_name} {p.device}", p.server_name, p.device, p.volume_id, p)
            for p in snapshot.protections
        ]
    else:
        checked = [(d.label, d.server_name, d.device, d.volume_id, by_volume.get(d.volume_id)) for d in disks]

    judged: list[DiskProtection] = []
    for label, server, device, volume_id, protection in sorted(checked, key=lambda item: item[0]):
        finding = _disk_finding(label, protection, now=now, rpo=rpo)
        if finding is not None:
            findings.append(finding)
        judged.append(DiskProtection(label, server, device, volume_id, protection, finding))
    problems, warnings = check_quotas(quotas, error=quota_error)
    return WatchdogReport(
        findings=findings + problems,
        disks_checked=len(checked),
        warnings=warnings,
        disks=judged,
        last_run=run,
    )


def _disk_finding(
    label: str, protection: VolumeProtection | None, *, now: datetime, rpo: timedelta
) -> Finding | None:
    """What is wrong with one disk's protection; None when its newest good backup is within the RPO."""
    if (
        protection is not None
        and protection.newest_success_at is None
        and protection.newest_success_backup_id
    ):
        gone = protection.newest_success_backup_id
        detail = f"no good backup of the plan in the cloud (the ledger's newest, {gone}, is gone)"
        return Finding(FindingKind.never_backed_up, label, detail)
    if protection is None or protection.newest_success_at is None:
        return Finding(FindingKind.never_backed_up, label, _never_detail(protection))
    age = now - protection.newest_success_at
    if age > rpo:
        return Finding(
            FindingKind.stale,
            label,
            f"newest good backup is {human_age(age)} old (RPO {human_age(rpo)})" + _last_attempt(protection),
        )
    return None


def check_quotas(quotas: Quotas | None, *, error: str | None = None) -> tuple[list[Finding], list[Finding]]:
    """(problems, warnings) of the project's backup quotas: used up (>= 100 %) is a problem, since the next
    night cannot create; at or above `QUOTA_WARNING` a warning. An unlimited quota (-1) is never either.
    Quotas not read (`error`) are a warning: the protection checks say whether backups are missing."""
    problems: list[Finding] = []
    warnings: list[Finding] = []
    if quotas is None:
        if error is not None:
            warnings.append(Finding(FindingKind.quota_unread, "project quotas", error))
        return problems, warnings
    for type_ in (BACKUPS, GIGABYTES):
        use = quota_use(quotas, type_)
        ratio = use.usage_ratio
        if ratio is None or ratio < QUOTA_WARNING:
            continue
        percent = "100+" if ratio == float("inf") else str(math.floor(ratio * 100))  # 99.6 % is not 100
        detail = f"{percent} % used ({use.used:,} of {use.limit:,} {use.unit})"
        if ratio >= 1.0:
            problems.append(
                Finding(
                    FindingKind.quota_exhausted, f"quota {type_}", f"{detail}: the next night cannot back up"
                )
            )
        else:
            warnings.append(Finding(FindingKind.quota_high, f"quota {type_}", detail))
    return problems, warnings


def _as_in_cloud(
    protection: VolumeProtection | None, newest: tuple[str, datetime] | None
) -> VolumeProtection | None:
    """The ledger's line for a disk, with its newest good backup replaced by the cloud's (kept: the ledger's
    backup id when the cloud has none, so that the finding can name what vanished)."""
    if protection is None:
        if newest is None:
            return None
        # A backup of the plan that this ledger never recorded (another ledger made it): it protects.
        return VolumeProtection(
            volume_id="",
            volume_name=None,
            server_id="",
            server_name="",
            device="",
            newest_success_at=newest[1],
            newest_success_backup_id=newest[0],
            age=None,
            last_attempt_status=DiskBackupStatus.adopted,
            last_attempt_at=newest[1],
            last_error_code=None,
        )
    if newest is None:
        return replace(protection, newest_success_at=None, age=None)
    return replace(protection, newest_success_backup_id=newest[0], newest_success_at=newest[1])


def _never_detail(protection: VolumeProtection | None) -> str:
    if protection is None:
        return "never backed up (no run has attempted it yet)"
    return "no good backup yet" + _last_attempt(protection)


def _last_attempt(protection: VolumeProtection) -> str:
    if protection.last_attempt_status in DiskBackupStatus.successes():
        return ""
    code = f" {protection.last_error_code}" if protection.last_error_code else ""
    return f"; last attempt {protection.last_attempt_status.value}{code}"
