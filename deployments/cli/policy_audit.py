"""`vbs-backup policies ...`: the Prefect-free commands of `vbs_backup.deployments.cli.policies` (plan, apply,
import, execute, list, tags) plus `audit`, which runs the `policy-audit` flow once.

    vbs-backup policies audit [--since-hours 24]
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from vbs_backup.deployments.cli.policies import policies_app

__all__ = ["audit"]


@policies_app.command("audit")
def audit(
    since_hours: Annotated[
        int, typer.Option(min=1, max=24 * 31, help="Fail on tasks that failed within this many hours.")
    ] = 24,
) -> None:
    """Record every policy backup task in the ledger; exit 1 if one failed or timed out in the window."""
    from vbs_backup.deployments.cli import prefect_defaults

    prefect_defaults()
    from vbs_backup.flows.policies import policy_audit

    state = asyncio.run(policy_audit(since_hours=since_hours, return_state=True))
    typer.echo(f"{state.name}: {state.message}")
    if not state.is_completed():
        raise typer.Exit(1)
