"""The estate from the command line: `estate check` reads an estate file and every plan it names, and
shows its targets (no cloud, no Prefect: a file an operator can check before a deployment takes it);
`estate limits` gives each account of the estate its request budget on the Prefect server, shared by
every worker that calls the account (vbs_backup/tasks/budget.py).

    vbs-backup estate check --file estate.yaml
    vbs-backup estate limits --file estate.yaml --rate 10 [--burst N] [--dry-run]
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from vbs_backup.estate import Estate

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

    estate = _load(estate_file)
    table = Table(title=f"estate {estate.name}: {len(estate.targets)} target(s)")
    for column in ("target", "cloud", "region", "project", "credentials", "account", "plans"):
        table.add_column(column, overflow="fold")
    for target in estate.targets:
        plans = ", ".join(f"{p.name} ({p.schedule_timezone})" for p in target.plans)
        row = (target.name, target.cloud.value, target.region, target.project_id, target.credentials)
        table.add_row(*row, target.account, plans)
    Console().print(table)


@estate_app.command("limits")
def limits(
    estate_file: EstateFileOption,
    rate: Annotated[
        float, typer.Option("--rate", help="Requests per second per account, all workers together.")
    ],
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst", min=1, help="Requests at once after a quiet spell (default: one second's worth)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; write nothing.")] = False,
) -> None:
    """Give every account of the estate its request budget on the Prefect server: one global concurrency
    limit in rate-limit mode each (vbs-backup-account-<account>), created or updated; one line per account.
    A re-run with the same numbers changes nothing. Exit 2 on an invalid estate or without a server.

    The workers calling an account then send at most BURST + RATE * T requests in any T seconds, together.
    Prefect hands out less than RATE: 60-80 % with the default burst (bench/README.md), 62 % with 1."""
    estate = _load(estate_file)
    if not rate > 0:
        typer.echo("--rate must be a positive number of requests per second", err=True)
        raise typer.Exit(2)
    from vbs_backup.deployments.cli.running import require_api

    url = require_api()  # not a throwaway server that no worker sees
    import asyncio

    from vbs_backup.tasks.budget import default_burst

    asyncio.run(_apply_limits(estate, url, rate, burst or default_burst(rate), dry_run))


def _load(estate_file: Path) -> Estate:
    from vbs_backup.estate import EstateError, load_estate

    try:
        return load_estate(estate_file)
    except EstateError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


async def _apply_limits(estate: Estate, url: str, rate: float, burst: int, dry_run: bool) -> None:
    import httpx
    from prefect.client.orchestration import get_client

    from vbs_backup.tasks.budget import apply_account_limit

    accounts: dict[str, list[str]] = {}
    for target in estate.targets:
        accounts.setdefault(target.account, []).append(target.name)
    async with get_client() as client:
        problem = await client.api_healthcheck()
        if problem is not None:
            typer.echo(f"No Prefect server reachable at {url}: {_one_line(problem)}", err=True)
            raise typer.Exit(2)
        for account, targets in accounts.items():
            try:
                change = await apply_account_limit(client, account, rate=rate, burst=burst, dry_run=dry_run)
            except httpx.HTTPError as exc:
                typer.echo(f"account {account}: the Prefect server refused: {_one_line(exc)}", err=True)
                raise typer.Exit(1) from None
            typer.echo(
                f"{change.name}: {rate:g} req/s, burst {burst}, {change.describe()}; "
                f"target(s): {', '.join(targets)}"
            )


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
