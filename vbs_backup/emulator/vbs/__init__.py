"""The emulated Volume Backup Service (VBS): backups, jobs, sharing, quotas, policies, tasks and tags.

The app factory plugs it in with two calls:

    routes()        the Starlette routes, named `vbs.<operation>` (operation names equal the client's
                    method names), paths exactly as in `reference/vbs-api.md`
    install(state)  adds the tick hook that moves clock-driven jobs, backup removals and scheduled policy
                    runs forward (see jobs.py for the timing model)

Layout (moto style): routes_*.py parse, call the backend and serialize; backups.py, deletes.py,
restores.py, queries.py, shares.py, policies.py, executions.py and tags.py hold the rules and raise
domain errors that know their wire shape; jobs.py is the job engine; serialize.py the wire shapes.
"""

from __future__ import annotations

from starlette.routing import Route

from ..state import CloudState
from . import deletes, executions, jobs, policies, routes_backups, routes_policies, routes_shares


def routes() -> list[Route]:
    return [*routes_backups.routes(), *routes_shares.routes(), *routes_policies.routes()]


def tick(state: CloudState) -> None:
    """Run every VBS event due by now, in time order (called under the state lock)."""

    def collect(agenda: jobs.Agenda) -> None:
        for project in list(state.projects.values()):
            policies.reconcile(project)
            jobs.collect_due(project, state, agenda)
            deletes.collect_due(project, agenda)
            executions.collect_due(state, project, agenda)

    jobs.run_tick(state, collect)


def install(state: CloudState) -> None:
    """Append the VBS tick hook once (installing twice is harmless)."""
    if tick not in state.tick_hooks:
        state.tick_hooks.append(tick)


__all__ = ["install", "routes", "tick"]
