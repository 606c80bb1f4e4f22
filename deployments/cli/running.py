"""Running a flow from the command line, the one way every command does it (`run`, `restore`, `drill`,
`share`, `policies audit`, `demo`): Prefect's defaults set before Prefect is imported, the flow found by
its deployment's name in the catalog and run once in this process, and its final state told as one line
and an exit code (0 completed, 1 otherwise).

Prefect is imported inside each function, so registering the commands that use them costs nothing.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:  # pragma: no cover
    from prefect import Flow, State

__all__ = ["final_state", "prefect_defaults", "run_flow"]


def prefect_defaults() -> None:
    """Quiet, patient ephemeral Prefect unless the user configured otherwise (see reference notes). Prefect
    reads them when it is first imported: call this before."""
    import os

    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def require_api() -> str:
    """The Prefect server's API URL; without one, Prefect would start a throwaway server that nothing
    else can see, so refuse with the fix."""
    prefect_defaults()
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        typer.echo(
            "No Prefect server configured: set PREFECT_API_URL (e.g. http://127.0.0.1:4200/api) or "
            "`prefect config set PREFECT_API_URL=...`.",
            err=True,
        )
        raise typer.Exit(2)
    return url


def final_state(deployment: str, **parameters: Any) -> State:
    """Run the flow of the catalog's deployment `deployment` once, in this process (against the configured
    Prefect server, else an ephemeral one), and return its final state."""
    import asyncio

    prefect_defaults()
    from vbs_backup.deployments.catalog import by_name

    flow: Flow[..., Coroutine[Any, Any, State]] = by_name(deployment).load_flow()
    return asyncio.run(flow(**parameters, return_state=True))


def run_flow(deployment: str, **parameters: Any) -> int:
    """`final_state`, then the state as one line (`Completed: ...`, `Failed: ...`); the exit code is 0 when
    the run completed, 1 otherwise."""
    state = final_state(deployment, **parameters)
    _stop_sending_library_logs()
    typer.echo(f"{state.name}: {state.message}")
    return 0 if state.is_completed() else 1


def _stop_sending_library_logs() -> None:
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
