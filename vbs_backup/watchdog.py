"""The watchdog's checks: is every disk the plan protects really protected right now?

A backup flow that fails says so itself, and alerts. What it cannot say is that it never ran (the API was
down at 02:00, the worker was stopped, a run hangs), or that a disk appeared that nobody backs up. These
checks look from the outside, at the ledger and at what the plan selects in the cloud today:

* `missed_run`: no run of the plan started within the RPO;
* `stale`: a protected disk's newest good backup is older than the RPO;
* `never_backed_up`: a protected disk has no good backup at all (a new disk, or one that always fails);
* `discovery_failed`: the cloud could not say which disks the plan protects; the ledger's disks are then
  checked instead, so a cloud outage never hides stale backups.

Pure functions over plain data (`check_protection`) plus one read of the ledger (`ledger_snapshot`).
No Prefect here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Engine
from sqlmodel import Session, col, or_, select

from .ledger import Run, VolumeProtection, protection_status
from .targets import DiskTarget

__all__ = [
    "Finding",
    "FindingKind",
    "LedgerSnapshot",
    "WatchdogReport",
    "check_protection",
    "human_age",
    "ledger_snapshot",
]


class FindingKind(StrEnum):
    missed_run = "missed_run"
    stale = "stale"
    never_backed_up = "never_backed_up"
    discovery_failed = "discovery_failed"


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


@dataclass(frozen=True)
class WatchdogReport:
    findings: list[Finding]
    disks_checked: int

    @property
    def ok(self) -> bool:
        return not self.findings

    def message(self) -> str:
        if self.ok:
            return f"all {self.disks_checked} protected disks have a good backup within the RPO"
        return f"{len(self.findings)} protection problem(s): " + "; ".join(str(f) for f in self.findings)


def human_age(delta: timedelta) -> str:
    """`26.5 h`, `3 d 4 h`: short and exact enough for an alert."""
    hours = delta.total_seconds() / 3600
    if hours < 48:
        return f"{hours:.1f} h"
    days, rest = divmod(int(hours), 24)
    return f"{days} d {rest} h"


def ledger_snapshot(
    engine: Engine, *, plan_name: str, now: datetime, deployments: Collection[str] | None = None
) -> LedgerSnapshot:
    """Read the ledger once. A run counts for `plan_name` when it ran that plan from one of
    `deployments` or outside any deployment (the CLI); `None` counts every run of the plan."""
    with Session(engine) as session:
        protections = protection_status(session=session, now=now)
        stmt = select(Run).where(Run.plan_name == plan_name)
        if deployments is not None:
            stmt = stmt.where(or_(col(Run.deployment).is_(None), col(Run.deployment).in_(list(deployments))))
        last_run = session.exec(
            stmt.order_by(col(Run.started_at).desc(), col(Run.id).desc()).limit(1)
        ).first()
    return LedgerSnapshot(protections=protections, last_run=last_run)


def check_protection(
    *,
    plan_name: str,
    disks: Sequence[DiskTarget] | None,
    snapshot: LedgerSnapshot,
    rpo: timedelta,
    now: datetime,
    discovery_error: str | None = None,
) -> WatchdogReport:
    """Everything wrong with the protection of the plan's `disks` (as discovered in the cloud now).

    `disks=None` means discovery failed (`discovery_error` says why): every disk the ledger knows is
    checked for staleness instead, and the failure itself is a finding.
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

    by_volume = {p.volume_id: p for p in snapshot.protections}
    checked: list[tuple[str, VolumeProtection | None]]
    if disks is None:
        findings.append(
            Finding(FindingKind.discovery_failed, f"plan {plan_name}", discovery_error or "discovery failed")
        )
        checked = [(f"{p.server_name} {p.device}", p) for p in snapshot.protections]
    else:
        checked = [(d.label, by_volume.get(d.volume_id)) for d in disks]

    for label, protection in sorted(checked, key=lambda item: item[0]):
        if protection is None or protection.newest_success_at is None:
            findings.append(Finding(FindingKind.never_backed_up, label, _never_detail(protection)))
            continue
        age = now - protection.newest_success_at
        if age > rpo:
            findings.append(
                Finding(
                    FindingKind.stale,
                    label,
                    f"newest good backup is {human_age(age)} old (RPO {human_age(rpo)})"
                    + _last_attempt(protection),
                )
            )
    return WatchdogReport(findings=findings, disks_checked=len(checked))


def _never_detail(protection: VolumeProtection | None) -> str:
    if protection is None:
        return "never backed up (no run has attempted it yet)"
    return "no good backup yet" + _last_attempt(protection)


def _last_attempt(protection: VolumeProtection) -> str:
    status = protection.last_attempt_status.value
    if status in ("succeeded", "adopted"):
        return ""
    code = f" {protection.last_error_code}" if protection.last_error_code else ""
    return f"; last attempt {status}{code}"
