"""The `vbs-backup` command line: one small function per command (typer).

    vbs-backup emulator --fleet examples/fleet.yaml [--host 127.0.0.1] [--port 0] [--speed 1] [--seed N]

Heavy imports happen inside each command, so `vbs-backup --help` stays fast and commands do not pay for
each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="vbs-backup",
    help="Back up every EVS disk of chosen ECS servers through VBS, as Prefect flows.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """vbs-backup: scheduled VBS backups of ECS servers' disks."""


@app.command()
def emulator(
    fleet: Annotated[
        Path, typer.Option("--fleet", exists=True, dir_okay=False, readable=True, help="Fleet YAML file.")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port; 0 picks a free one.")] = 0,
    speed: Annotated[
        float, typer.Option(min=0.001, help="Virtual seconds per real second (100: a 10-min job takes 6 s).")
    ] = 1.0,
    seed: Annotated[
        int | None, typer.Option(help="Seed for ids and random job faults (reproducible runs).")
    ] = None,
) -> None:
    """Serve the local cloud emulator (IAM, ECS, EVS, VBS) for a fleet, until interrupted."""
    import random
    import signal
    import threading

    from vbs_backup.emulator.app import create_app
    from vbs_backup.emulator.clock import ScaledClock
    from vbs_backup.emulator.fleet import FleetError, load_fleet
    from vbs_backup.emulator.server import EmulatorServer
    from vbs_backup.emulator.state import CloudState

    try:
        fleet_model = load_fleet(fleet)
    except FleetError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    state = CloudState(clock=ScaledClock(speed), seed=seed, rng=random.Random(seed))
    server = EmulatorServer(create_app(state, fleet=fleet_model), host=host, port=port)
    try:
        server.start()
    except OSError as exc:
        typer.echo(f"cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(1) from None

    # These are the emulator's own made-up credentials, printed on purpose so a client can be pointed at it.
    typer.echo(f"emulator ready at {server.url}")
    for index, project in enumerate(fleet_model.projects):
        prefix = "" if index == 0 else "# "
        if index:
            typer.echo(f"# project {project.name}:")
        lines = [f"VBS_BACKUP_ENDPOINT={server.url}", f"VBS_BACKUP_REGION={fleet_model.region}"]
        lines.append(f"VBS_BACKUP_PROJECT_ID={project.id}")
        if project.access_keys:
            lines += [
                f"VBS_BACKUP_AK={project.access_keys[0].ak}",
                f"VBS_BACKUP_SK={project.access_keys[0].sk}",
            ]
        if project.users:
            user = project.users[0]
            lines += [
                f"VBS_BACKUP_USERNAME={user.name}",
                f"VBS_BACKUP_PASSWORD={user.password}",
                f"VBS_BACKUP_DOMAIN={user.domain}",
            ]
        for line in lines:
            typer.echo(prefix + line)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
def report(
    limit: Annotated[int, typer.Option(min=1, help="How many recent runs to show.")] = 10,
    database_url: Annotated[
        str | None,
        typer.Option(help="Ledger URL (default: VBS_BACKUP_DATABASE_URL or the local SQLite file)."),
    ] = None,
) -> None:
    """Recent runs and, per protected disk, the age of its newest good backup."""
    from rich.console import Console

    from vbs_backup.config import Settings
    from vbs_backup.ledger import init_db, make_engine
    from vbs_backup.reporting import protection_table, runs_table

    url = database_url or Settings().database_url
    engine = make_engine(url)
    init_db(engine)
    console = Console()
    console.print(runs_table(engine, limit=limit))
    console.print(protection_table(engine))


@app.command()
def plan(
    plan_file: Annotated[Path, typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML file.")],
) -> None:
    """Validate a plan and show the servers and disks it selects in the configured cloud (no changes)."""
    import asyncio

    from rich.console import Console

    from vbs_backup.config import ConfigError, PlanError, Settings, load_plan
    from vbs_backup.connection import connect
    from vbs_backup.reporting import targets_table
    from vbs_backup.targets import SelectionError, discover_targets

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
