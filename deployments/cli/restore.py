"""`vbs-backup restore` and `vbs-backup drill`: run the `restore-disk` and `restore-drill` flows once
against the configured cloud (VBS_BACKUP_* settings). Exit 0 when the flow completed, 1 when it failed
(a refused precondition, a failed job, a failed drill), 2 for bad input found before any flow runs.

    vbs-backup restore --volume ID (--backup ID | --before ISO-TIME) [--target-volume ID] [--dry-run]
    vbs-backup drill [--plan plan.yaml] [--sample N]
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from vbs_backup.deployments.cli.running import run_flow

__all__ = ["drill", "parse_time", "restore"]


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is UTC (as every VBS time is)."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO time such as 2024-05-01T02:00:00Z") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def restore(
    volume: Annotated[str, typer.Option("--volume", help="The disk (UUID) whose backup is restored.")],
    backup: Annotated[str | None, typer.Option("--backup", help="The backup (UUID) to restore.")] = None,
    before: Annotated[
        str | None,
        typer.Option("--before", help="Restore the newest available backup made before this ISO time."),
    ] = None,
    target_volume: Annotated[
        str | None,
        typer.Option("--target-volume", help="Detached disk (UUID) to overwrite; default: the disk itself."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and describe; change nothing.")] = False,
    wait_minutes: Annotated[int, typer.Option(min=1, max=1440, help="Wait for the job this long.")] = 60,
) -> None:
    """Restore a disk from a backup, once every documented precondition holds. Exit 1 if it failed."""
    if (backup is None) == (before is None):
        typer.echo("give exactly one of --backup ID or --before ISO-TIME", err=True)
        raise typer.Exit(2)
    when = parse_time(before) if before is not None else None
    raise typer.Exit(
        run_flow(
            "restore-disk",
            volume_id=volume,
            backup_id=backup,
            before=when,
            target_volume_id=target_volume,
            dry_run=dry_run,
            wait_minutes=wait_minutes,
        )
    )


def drill(
    plan_file: Annotated[
        Path, typer.Option("--plan", dir_okay=False, help="Plan YAML file whose disks are drilled.")
    ] = Path("plan.yaml"),
    sample: Annotated[int, typer.Option(min=1, max=100, help="How many disks to drill.")] = 2,
    wait_minutes: Annotated[int, typer.Option(min=1, max=1440, help="Wait for each restore this long.")] = 60,
) -> None:
    """Restore a sample of the plan's disks into scratch disks, check, record. Exit 1 if a drill failed."""
    from vbs_backup.plan import PlanError, load_plan

    try:
        backup_plan = load_plan(plan_file)
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_flow("restore-drill", plan=backup_plan, sample=sample, wait_minutes=wait_minutes))
