"""The nightly backup from the command line: `plan` shows what a plan selects in the cloud (no Prefect),
`run` runs the `nightly-backup` flow once, `demo` runs it for two nights on the embedded emulator.

    vbs-backup plan --plan plan.yaml
    vbs-backup run --plan plan.yaml
    vbs-backup demo [--speed 60]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbs_backup.deployments.cli.running import prefect_defaults, run_flow

__all__ = ["demo", "plan", "run"]

PlanFileOption = Annotated[Path, typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML file.")]


def plan(plan_file: PlanFileOption) -> None:
    """Validate a plan and show the servers and disks it selects in the configured cloud (no changes)."""
    import asyncio

    from rich.console import Console

    from vbs_backup.backup.targets import SelectionError, discover_targets
    from vbs_backup.connection import connect
    from vbs_backup.plan import PlanError, load_plan
    from vbs_backup.reporting import targets_table
    from vbs_backup.settings import ConfigError, Settings

    try:
        backup_plan = load_plan(plan_file)
        client = connect(Settings())
    except (PlanError, ConfigError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None

    async def discover():
        async with client:
            return await discover_targets(client, backup_plan)

    try:
        servers = asyncio.run(discover())
    except SelectionError as exc:
        typer.echo(f"plan {plan_file}: {exc}", err=True)
        raise typer.Exit(2) from None
    Console().print(targets_table(servers, backup_plan))


def run(plan_file: PlanFileOption) -> None:
    """Run the nightly flow once against the configured cloud (VBS_BACKUP_* settings). Exit 1 if it failed."""
    from vbs_backup.plan import PlanError, load_plan

    try:
        backup_plan = load_plan(plan_file)
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(run_flow("nightly-backup", plan=backup_plan))


def demo(
    speed: Annotated[
        float, typer.Option(min=1, help="Emulator speed: virtual seconds per real second.")
    ] = 60.0,
) -> None:
    """Back up a sample fleet twice on the embedded emulator (one disk made to fail); show the results."""
    prefect_defaults()  # before the demo's modules import Prefect
    from vbs_backup.deployments.cli.demo import run_demo

    raise typer.Exit(run_demo(speed=speed))
