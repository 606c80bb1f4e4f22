"""`vbs-backup emulator`: the local cloud emulator (IAM, ECS, EVS, VBS) served for a fleet file, with the
settings a client needs to talk to it.

    vbs-backup emulator --fleet examples/fleet.yaml [--host 127.0.0.1] [--port 0] [--speed 1] [--seed N]
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["emulator"]


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
