"""The `vbs-backup` command, put together: the root app and every command on it, registered here and
nowhere else, in the order `vbs-backup --help` lists them (commands, then groups).

Each module owns one feature's commands, as plain functions or a typer sub-app (ledger, blocks, alerts,
policies). Heavy imports, Prefect's above all, happen inside each command, so `vbs-backup --help` stays
fast and commands do not pay for each other; those that run a flow do it through `running`.
"""

from __future__ import annotations

import typer

from vbs_backup.deployments.cli import emulator, estate, ledger, nightly, ops, policies, restore, sharing

__all__ = ["app"]

app = typer.Typer(
    name="vbs-backup",
    help="Back up every EVS disk of chosen ECS servers through VBS, as Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """vbs-backup: scheduled VBS backups of ECS servers' disks."""


app.command()(emulator.emulator)
app.command()(ledger.report)
app.command()(nightly.plan)
app.command()(ops.serve)
app.command()(restore.restore)
app.command()(restore.drill)
app.command()(sharing.share)
app.command()(nightly.run)
app.command()(nightly.demo)
app.add_typer(ledger.ledger_app, name="ledger")
app.add_typer(ops.blocks_app, name="blocks")
app.add_typer(ops.alerts_app, name="alerts")
app.add_typer(policies.policies_app, name="policies")
app.add_typer(estate.estate_app, name="estate")
