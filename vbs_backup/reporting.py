"""Rich tables for the command line: recent runs, protection status per disk, a plan's targets.

A ledger may hold the runs of every target of an estate (plan names repeat across targets): the runs and
disks tables then take the targets to show (None: every run), and get a `target` column as soon as a row
they show has one; a ledger outside any estate reads as it always has.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import timedelta

from rich.table import Table
from sqlalchemy import Engine
from sqlmodel import Session

from .backup.targets import ServerTarget
from .ledger import VolumeProtection, protection_status, recent_runs
from .plan import BackupPlan
from .watchdog.view import run_kind


def age(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def runs_table(engine: Engine, *, limit: int = 10, targets: Collection[str] | None = None) -> Table:
    """The newest runs first (of these estate `targets`, when given); a run's kind tells the nightly runs
    of a plan from its on-demand ones (a one-server backup or a retention run of plan `nightly` is not a
    nightly run)."""
    table = Table(title="Recent runs")
    with Session(engine) as session:
        runs = recent_runs(session=session, limit=limit, targets=targets)
    by_target = any(run.target is not None for run in runs)
    columns = ("run", "plan", "kind", "started (UTC)", "status", "disks ok/total", "deleted", "message")
    for column in ("run", "target", *columns[1:]) if by_target else columns:
        table.add_column(column)
    for run in runs:
        kind = run_kind(run.deployment, run.trigger)
        retention_only = kind == "retention" and not run.disks_total
        table.add_row(
            str(run.id),
            *([run.target or "-"] if by_target else []),
            run.plan_name,
            kind,
            run.started_at.strftime("%Y-%m-%d %H:%M"),
            run.status.value,
            "-" if retention_only else f"{run.disks_succeeded}/{run.disks_total}",
            str(run.deletes_done),
            (run.message or "")[:80],
        )
    return table


def protection_table(engine: Engine, *, targets: Collection[str] | None = None) -> Table:
    """Per disk, its newest good backup as the ledger has it (from the runs of these estate `targets`,
    when given)."""
    table = Table(title="Protection per disk")
    rows: list[VolumeProtection] = []
    with Session(engine) as session:
        if targets is None:
            rows = protection_status(session=session)
        else:
            for target in dict.fromkeys(targets):
                rows += protection_status(session=session, target=target)
    by_target = any(row.target is not None for row in rows)
    columns = ("server", "device", "volume", "newest good backup", "age", "last attempt")
    for column in ("target", *columns) if by_target else columns:
        table.add_column(column)
    for row in sorted(rows, key=lambda r: (r.target or "", r.server_name or "", r.device or "")):
        last = row.last_attempt_status.value if row.last_attempt_status else "-"
        if row.last_error_code:
            last += f" ({row.last_error_code})"
        table.add_row(
            *([row.target or "-"] if by_target else []),
            row.server_name or "",
            row.device or "",
            row.volume_id,
            row.newest_success_at.strftime("%Y-%m-%d %H:%M") if row.newest_success_at else "never",
            age(row.age),
            last,
        )
    return table


def targets_table(servers: Sequence[ServerTarget], plan: BackupPlan) -> Table:
    table = Table(
        title=f"Plan {plan.name}: {sum(len(s.disks) for s in servers)} disks on {len(servers)} servers"
    )
    for column in ("server", "device", "volume", "size GiB", "system", "status"):
        table.add_column(column)
    for server in servers:
        for disk in server.disks:
            table.add_row(
                server.name, disk.device, disk.volume_id, str(disk.size_gb), str(disk.is_system), disk.status
            )
    return table
