"""`vbs-backup share`: share the newest backups of a plan's disks with other projects (runs the
`share-backups` flow), or show the shares this project made and received (`--list`, `--count`,
`--show SHARE_ID`, no Prefect needed).

    vbs-backup share --plan plan.yaml --to 5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b [--to ...] [--dry-run]
    vbs-backup share --list | --count | --show SHARE_ID
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer

from vbs_backup.deployments.cli.running import run_flow

__all__ = ["share"]


def share(
    plan_file: Annotated[
        Path | None, typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML file: its disks.")
    ] = None,
    to: Annotated[
        list[str] | None, typer.Option("--to", help="Target project id (32 hex); repeat for several.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be shared.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List shares made and received.")] = False,
    count: Annotated[bool, typer.Option("--count", help="Count shares made and received.")] = False,
    show: Annotated[str | None, typer.Option("--show", help="Show one share by its id.")] = None,
) -> None:
    """Share the newest good backup of each disk of a plan with other projects and take back the shares
    of older ones (exit 1 if a disk could not be shared); or show shares (--list, --count, --show)."""
    modes = [m for m, on in (("--plan", plan_file is not None), ("--list", list_), ("--count", count)) if on]
    if show is not None:
        modes.append("--show")
    if len(modes) != 1:
        typer.echo("give exactly one of --plan (with --to), --list, --count or --show", err=True)
        raise typer.Exit(2)
    if plan_file is None:
        raise typer.Exit(_show_shares(list_=list_, share_id=show))
    raise typer.Exit(_run_share_flow(plan_file, to or [], dry_run=dry_run))


def _run_share_flow(plan_file: Path, to: list[str], *, dry_run: bool) -> int:
    from vbs_backup.plan import PlanError, load_plan
    from vbs_backup.sharing import ShareInputError, check_target_projects

    try:
        plan = load_plan(plan_file)
        check_target_projects(to)
    except (PlanError, ShareInputError) as exc:
        typer.echo(str(exc), err=True)
        return 2
    if dry_run:
        plan = plan.model_copy(update={"dry_run": True})
    return run_flow("share-backups", plan=plan, to_project_ids=to)


def _show_shares(*, list_: bool, share_id: str | None) -> int:
    from rich.console import Console

    from vbs_backup.cloud.errors import CloudError
    from vbs_backup.connection import connect
    from vbs_backup.settings import ConfigError, Settings

    try:
        client = connect(Settings())
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        return 2
    console = Console(width=160)
    try:
        asyncio.run(_print_shares(client, console, list_=list_, share_id=share_id))
    except ValueError as exc:  # a malformed share id, refused before any request
        typer.echo(str(exc), err=True)
        return 2
    except CloudError as exc:
        typer.echo(str(exc), err=True)
        return 1
    return 0


async def _print_shares(client: Any, console: Any, *, list_: bool, share_id: str | None) -> None:
    from rich.table import Table

    from vbs_backup.sharing import share_listing

    async with client:
        if share_id is not None:
            item = await client.vbs.get_share(share_id)
            backup = item.backup
            rows = {
                "share id": item.id,
                "backup": f"{backup.name if backup else ''} ({item.backup_id})",
                "disk": backup.volume_id if backup else "",
                "backup status": str(backup.status) if backup else "",
                "from project": item.from_project_id or "",
                "to project": item.to_project_id or "",
                "created": item.created_at.isoformat(timespec="seconds") if item.created_at else "",
            }
            for key, value in rows.items():
                console.print(f"{key:>14}: {value}")
            return
        listing = await share_listing(client, counts_only=not list_)
        if not list_:
            console.print(f"shared by this project: {listing.made_count}")
            console.print(f"shared with this project: {listing.received_count}")
            return
        for title, shares, count, other in (
            ("Shared by this project", listing.made, listing.made_count, "to project"),
            ("Shared with this project", listing.received, listing.received_count, "from project"),
        ):
            table = Table(title=f"{title} ({count})")
            for column in ("share id", "backup", "disk", other, "created"):
                table.add_column(column)
            for s in shares:
                table.add_row(
                    s.id,
                    (s.backup.name if s.backup else None) or s.backup_id,
                    s.backup.volume_id if s.backup else "",
                    (s.to_project_id if other == "to project" else s.from_project_id) or "",
                    s.created_at.isoformat(timespec="seconds") if s.created_at else "",
                )
            console.print(table)
