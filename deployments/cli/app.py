"""The `vbs-backup` command line: one small function per command (typer).

    vbs-backup emulator --fleet examples/fleet.yaml [--host 127.0.0.1] [--port 0] [--speed 1] [--seed N]

Heavy imports happen inside each command, so `vbs-backup --help` stays fast and commands do not pay for
each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:  # pragma: no cover
    pass

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
    import logging
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
    # The server logs one WARNING when bound beyond loopback; show it as such on stderr.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    server = EmulatorServer(create_app(state, fleet=fleet_model, hosts=[host]), host=host, port=port)
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
    """Recent runs, each with its kind (nightly, on demand, retention, direct), and, per protected disk,
    the age of its newest good backup."""
    from rich.console import Console

    from vbs_backup.ledger import init_db, make_engine
    from vbs_backup.reporting import protection_table, runs_table
    from vbs_backup.settings import Settings

    url = database_url or Settings().database_url
    engine = make_engine(url)
    init_db(engine)
    console = Console()
    console.print(runs_table(engine, limit=limit))
    # Per disk, the ledger's protection_status: the same facts the watchdog's protection view starts from
    # (where the watchdog can read the cloud, the cloud's newest good backup replaces the ledger's).
    console.print(protection_table(engine))


ledger_app = typer.Typer(help="The ledger database: schema revision and migrations.", no_args_is_help=True)
app.add_typer(ledger_app, name="ledger")

LedgerUrlOption = Annotated[
    str | None, typer.Option(help="Ledger URL (default: VBS_BACKUP_DATABASE_URL or the local SQLite file).")
]


def _ledger_settings(database_url: str | None):
    from vbs_backup.settings import Settings

    return Settings() if database_url is None else Settings(database_url=database_url)


def _ledger_failed(where: str, exc: Exception) -> typer.Exit:
    # One line, not a traceback: the database's own message (a DBAPIError's `orig`), never the URL.
    typer.echo(f"{where}: {getattr(exc, 'orig', None) or exc}", err=True)
    return typer.Exit(1)


@ledger_app.command("upgrade")
def ledger_upgrade(database_url: LedgerUrlOption = None) -> None:
    """Migrate the ledger to this version's schema (every run also does it at start). Exit 1 if that
    fails, or if the ledger was written by a newer vbs-backup."""
    from sqlalchemy.exc import SQLAlchemyError

    from vbs_backup.ledger import LedgerVersionError, make_engine, upgrade_ledger

    settings = _ledger_settings(database_url)
    where = f"ledger {settings.database_url_redacted()}"  # never the password
    engine = make_engine(settings.database_url)
    try:
        old, new = upgrade_ledger(engine)
    except (LedgerVersionError, SQLAlchemyError) as exc:
        raise _ledger_failed(where, exc) from None
    finally:
        engine.dispose()
    if old == new:
        typer.echo(f"{where}: already at revision {new}")
    elif old is None:
        typer.echo(f"{where}: created at revision {new}")
    else:
        typer.echo(f"{where}: migrated from revision {old} to {new}")


@ledger_app.command("version")
def ledger_version(database_url: LedgerUrlOption = None) -> None:
    """Show the ledger's schema revision and the one this vbs-backup writes (reads only)."""
    from sqlalchemy.exc import SQLAlchemyError

    from vbs_backup.ledger import ledger_head, ledger_revision, make_engine

    settings = _ledger_settings(database_url)
    where = f"ledger {settings.database_url_redacted()}"
    engine = make_engine(settings.database_url)
    try:
        current = ledger_revision(engine)
    except SQLAlchemyError as exc:
        raise _ledger_failed(where, exc) from None
    finally:
        engine.dispose()
    head = ledger_head()
    typer.echo(f"{where}: revision {current or 'none'}, this vbs-backup writes {head}")
    if current != head:
        typer.echo("`vbs-backup ledger upgrade` (or the next run) migrates it, unless newer code wrote it")


@app.command()
def plan(
    plan_file: Annotated[Path, typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML file.")],
) -> None:
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
