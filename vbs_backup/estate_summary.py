"""One estate-wide night in one page: each target's run (its Prefect state) and its disks (from the ledger).

The parent flow (flows/estate.py) starts one child run per target and waits for them; what each child did
to its disks is in the ledger they all write to, found by the child's flow run id. `target_disks` reads
that, `TargetResult` pairs it with the child's final state, and `render` and `estate_line` say it the way
the nightly flow says one plan's night: the verdict, what failed and why, then a table (targets x disks
protected, failed, oldest good backup).

A disk of a target counts as protected when its newest attempt of that night ended good (`succeeded` or
`adopted`); anything else (failed, timed out, or left unfinished by a child that crashed) counts as not.
The oldest good backup is, over the night's disks, the oldest of each disk's newest good backup: how far
the least protected disk of the target lags (a disk never backed up makes it "never").

Prefect-free: the flow hands in the states it read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from .ledger import DiskBackup, DiskBackupStatus, Run
from .text import one_line

__all__ = ["TargetDisks", "TargetResult", "estate_line", "render", "target_disks"]

OK_MARK, FAILED_MARK = "✅", "❌"
# The state message (and so the alert) says at most this much of each failed target's own message.
TARGET_REASON_MAX = 300


@dataclass(frozen=True)
class TargetDisks:
    """What one child run did to its target's disks, from the ledger."""

    protected: int = 0
    failed: int = 0
    oldest_good: datetime | None = None  # the oldest of the disks' newest good backups
    never: int = 0  # disks of the night without any good backup in the ledger

    @property
    def total(self) -> int:
        return self.protected + self.failed


@dataclass(frozen=True)
class TargetResult:
    """One target's child run as the parent saw it end: `state` is Prefect's state name (Completed,
    Failed, Crashed, Cancelled, ...; `TimedOut` when the parent gave up waiting, `NotStarted` when it
    could not start it), `message` the child's state message."""

    target: str
    state: str
    ok: bool
    message: str = ""
    flow_run_id: str | None = None
    disks: TargetDisks = TargetDisks()

    def line(self) -> str:
        message = one_line(self.message, TARGET_REASON_MAX) if self.message else ""
        return f"{self.target} {self.state}" + (f": {message}" if message else "")


def target_disks(session: Session, flow_run_id: str) -> TargetDisks:
    """The disks the child run `flow_run_id` worked on (every plan of its target), from the ledger."""
    run_ids = list(session.exec(select(Run.id).where(Run.flow_run_id == flow_run_id)).all())
    if not run_ids:
        return TargetDisks()
    rows = session.exec(
        select(DiskBackup)
        .where(col(DiskBackup.run_id).in_(run_ids))
        .order_by(col(DiskBackup.requested_at), col(DiskBackup.id))
    ).all()
    newest: dict[tuple[str, str], DiskBackup] = {}
    for row in rows:  # ordered: the last one of each (plan, volume) is its newest attempt
        newest[(row.plan_name, row.volume_id)] = row
    good = DiskBackupStatus.successes()
    protected = sum(1 for row in newest.values() if row.status in good)
    covered_at = func.coalesce(DiskBackup.submitted_at, DiskBackup.requested_at)
    newest_good: dict[tuple[str, str], datetime] = {}
    keys = list(newest)
    for plan_name in {plan for plan, _ in keys}:
        volumes = [volume for plan, volume in keys if plan == plan_name]
        found = session.exec(
            select(DiskBackup.volume_id, func.max(covered_at))
            .where(
                DiskBackup.plan_name == plan_name,
                col(DiskBackup.volume_id).in_(volumes),
                col(DiskBackup.status).in_(list(good)),
            )
            .group_by(col(DiskBackup.volume_id))
        ).all()
        newest_good.update({(plan_name, volume): at for volume, at in found if at is not None})
    return TargetDisks(
        protected=protected,
        failed=len(newest) - protected,
        oldest_good=min(newest_good.values(), default=None),
        never=len(newest) - len(newest_good),
    )


def estate_line(estate: str, results: Sequence[TargetResult]) -> str:
    """The parent's state message (alerts carry it): the verdict, then each failed target and why."""
    failed = [r for r in results if not r.ok]
    disks = sum(r.disks.total for r in results)
    protected = sum(r.disks.protected for r in results)
    head = (
        f"estate {estate}: {len(results) - len(failed)} of {len(results)} targets ok, "
        f"{protected} of {disks} disks protected"
    )
    if not failed:
        return head
    return f"{head}; failed: " + "; ".join(r.line() for r in failed)


def _age(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    hours = (now - at) / timedelta(hours=1)
    return f"{at:%Y-%m-%d %H:%M} UTC ({hours:.0f} h ago)"


def _cell(text: str) -> str:
    return one_line(text, TARGET_REASON_MAX).replace("|", "\\|")


def render(estate: str, results: Sequence[TargetResult], *, now: datetime) -> str:
    """The estate-wide summary artifact (markdown): verdict, failures with their reasons, then the table."""
    failed = [r for r in results if not r.ok]
    mark = FAILED_MARK if failed else OK_MARK
    lines = [f"# {mark} Estate {estate}: {len(results) - len(failed)} of {len(results)} targets ok", ""]
    if failed:
        lines += [f"## {FAILED_MARK} {len(failed)} failed", ""]
        lines += [f"- **{r.target}** {r.state}: {_cell(r.message) or '(no message)'}" for r in failed]
        lines.append("")
    lines += [
        "| | target | state | disks protected | failed | oldest good backup | flow run |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for r in sorted(results, key=lambda r: (r.ok, r.target)):
        d = r.disks
        never = f" ({d.never} never)" if d.never and d.oldest_good is not None else ""
        lines.append(
            f"| {OK_MARK if r.ok else FAILED_MARK} | {r.target} | {r.state} | {d.protected} of {d.total} "
            f"| {d.failed} | {_age(d.oldest_good, now)}{never} | {r.flow_run_id or ''} |"
        )
    return "\n".join(lines) + "\n"
