"""Rich tables for the command line: recent runs, protection status per disk, a plan's targets."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from rich.table import Table
from sqlalchemy import Engine
from sqlmodel import Session

from .backup.targets import ServerTarget
from .ledger import protection_status, recent_runs
from .plan import BackupPlan
from .watchdog.view import run_kind


def age(delta: timedelta | None) -> str:
    if delta is None:
        return "never"
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"


def runs_table(engine: Engine, *, limit: int = 10) -> Table:
    """The newest runs first; a run's kind tells the nightly runs of a plan from its on-demand ones (a
    one-server backup or a retention run of plan `nightly` is not a nightly run)."""
    table = Table(title="Recent runs")
    for column in ("run", "plan", "kind", "started (UTC)", "status", "disks ok/total", "deleted", "message"):
        table.add_column(column)
    with Session(engine) as session:
        for run in recent_runs(session=session, limit=limit):
            kind = run_kind(run.deployment, run.trigger)
            retention_only = kind == "retention" and not run.disks_total
            table.add_row(
                str(run.id),
                run.plan_name,
                kind,
                run.started_at.strftime("%Y-%m-%d %H:%M"),
                run.status.value,
                "-" if retention_only else f"{run.disks_succeeded}/{run.disks_total}",
                str(run.deletes_done),
                (run.message or "")[:80],
            )
    return table


def protection_table(engine: Engine) -> Table:
    table = Table(title="Protection per disk")
    for column in ("server", "device", "volume", "newest good backup", "age", "last attempt"):
        table.add_column(column)
    with Session(engine) as session:
        rows = protection_status(session=session)
    for row in sorted(rows, key=lambda r: (r.server_name or "", r.device or "")):
        last = row.last_attempt_status.value if row.last_attempt_status else "-"
        if row.last_error_code:
            last += f" ({row.last_error_code})"
        table.add_row(
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
