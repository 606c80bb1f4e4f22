"""The full `vbs-backup` command: the core commands of `vbs_backup.deployments.cli.app` plus those that run
Prefect flows (`run`, `demo`). Kept out of the core package, which never imports Prefect."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vbs_backup.deployments.cli.app import app

__all__ = ["app"]

# Feature commands register themselves on `app` when imported (one module per feature, deployments/cmd_*.py):
# serve/blocks/alerts, policies, restore/drill, share.
from vbs_backup.deployments.cli import ops, policy_audit, restore, sharing  # noqa: F401


def prefect_defaults() -> None:
    """Quiet, patient ephemeral Prefect unless the user configured otherwise (see reference notes)."""
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def stop_sending_library_logs() -> None:
    """Once the run is over, detach Prefect's API log handler from `PREFECT_LOGGING_EXTRA_LOGGERS` (e.g.
    httpx, httpcore). Prefect's log worker sends the run's last logs while the interpreter exits; its own
    requests are then logged by httpx/httpcore to that handler again, which cannot restart the worker so
    late and prints a "--- Logging error ---" traceback per record. Records already queued are still sent;
    the console keeps every record."""
    import logging

    from prefect.logging.handlers import APILogHandler
    from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

    for name in PREFECT_LOGGING_EXTRA_LOGGERS.value():
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if isinstance(h, APILogHandler)]:
            logger.removeHandler(handler)


@app.command()
def run(
    plan_file: Annotated[Path, typer.Option("--plan", exists=True, dir_okay=False, help="Plan YAML file.")],
) -> None:
    """Run the nightly flow once against the configured cloud (VBS_BACKUP_* settings). Exit 1 if it failed."""
    import asyncio

    from vbs_backup.plan import PlanError, load_plan

    try:
        backup_plan = load_plan(plan_file)
    except PlanError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    prefect_defaults()
    from vbs_backup.flows.nightly import nightly_backup

    state = asyncio.run(nightly_backup(backup_plan, return_state=True))
    stop_sending_library_logs()
    typer.echo(f"{state.name}: {state.message}")
    if not state.is_completed():
        raise typer.Exit(1)


@app.command()
def demo(
    speed: Annotated[
        float, typer.Option(min=1, help="Emulator speed: virtual seconds per real second.")
    ] = 60.0,
) -> None:
    """Back up a sample fleet twice on the embedded emulator (one disk made to fail); show the results."""
    prefect_defaults()
    from vbs_backup.deployments.demo import run_demo

    raise typer.Exit(run_demo(speed=speed))
