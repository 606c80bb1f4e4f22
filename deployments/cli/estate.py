"""The estate from the command line: `estate check` reads an estate file and every plan it names, and
shows its targets (no cloud, no Prefect: a file an operator can check before a deployment takes it).

    vbs-backup estate check --file estate.yaml
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["estate_app"]

estate_app = typer.Typer(help="The estate: every project backed up, in one file.", no_args_is_help=True)

EstateFileOption = Annotated[
    Path, typer.Option("--file", exists=True, dir_okay=False, help="Estate YAML file.")
]


@estate_app.command("check")
def check(estate_file: EstateFileOption) -> None:
    """Validate an estate file and the plans it names; list its targets. Exit 2 on any problem."""
    from rich.console import Console
    from rich.table import Table

    from vbs_backup.estate import EstateError, load_estate

    try:
        estate = load_estate(estate_file)
    except EstateError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    table = Table(title=f"estate {estate.name}: {len(estate.targets)} target(s)")
    for column in ("target", "cloud", "region", "project", "credentials", "account", "plans"):
        table.add_column(column, overflow="fold")
    for target in estate.targets:
        plans = ", ".join(f"{p.name} ({p.schedule_timezone})" for p in target.plans)
        row = (target.name, target.cloud.value, target.region, target.project_id, target.credentials)
        table.add_row(*row, target.account, plans)
    Console().print(table)
