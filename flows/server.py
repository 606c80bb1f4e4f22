"""On-demand flows: back up one server now; apply retention alone (a dry run by default).

Their run forms ask only what an operator chooses at 3 a.m. (which server, a dry run or not, which
credentials); the plan (names, tags, retention, tuning) is the deployment's, the one the nightly runs, kept
out of the form (`SkipJsonSchema`): a one-server backup is named, tagged and pruned like the nightly's.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from prefect import flow
from prefect.states import State
from pydantic import Field
from pydantic.json_schema import SkipJsonSchema

from vbs_backup.flows.default_plan import DEFAULT
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import retention_run_name, server_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.flows.pipeline import run_plan
from vbs_backup.plan import BackupPlan, ServerSelection

# What the form accepts as a server: a name as ECS allows it or a UUID, on one line. Whitespace, glob
# characters and slashes are refused in the form itself (and by the server, which enforces the schema).
SERVER_REF = r"^[^\s*?\[\]\\/]{1,64}$"

ServerRef = Annotated[
    str,
    Field(
        pattern=SERVER_REF,
        title="Server",
        description="The ECS server's name (e.g. db-01) or id (UUID).",
    ),
]
# The deployment's plan, not shown in the form (see the module text); a direct call may pass one.
HiddenPlan = Annotated[BackupPlan | None, SkipJsonSchema()]


def server_selection(server: str) -> ServerSelection:
    """A UUID selects that server; anything else, the servers of exactly that name."""
    try:
        uuid.UUID(server)
    except ValueError:
        return ServerSelection(name_patterns=[server])
    return ServerSelection(ids=[server])


def plan_for_server(server: str, plan: BackupPlan | None) -> BackupPlan:
    """The given plan (or the default plan) narrowed to one server, in a one-minute slot: an on-demand
    backup is a new backup, not an adoption of tonight's."""
    base = plan or DEFAULT
    return base.model_copy(update={"selection": server_selection(server), "slot_minutes": 1})


@flow(name="backup-server", flow_run_name=server_run_name, **ON_FAILURE)
async def backup_server(
    server: ServerRef,
    plan: HiddenPlan = None,
    credentials: Credentials = None,
) -> State:
    """Back up every disk of one server now, then apply retention to its disks.

    Args:
        server: The ECS server's name (e.g. db-01) or id (UUID).
        plan: The deployment's plan (names, tags, retention); its server selection is replaced.
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(
        run_plan(
            plan_for_server(server, plan),
            flow_name="backup-server",
            credentials=credentials,
            one_server=server,
        )
    )


@flow(name="apply-retention", flow_run_name=retention_run_name, **ON_FAILURE)
async def apply_retention(
    plan: HiddenPlan = None,
    dry_run: Annotated[bool, Field(title="Dry run", description="Only show what would be deleted.")] = True,
    credentials: Credentials = None,
) -> State:
    """Apply the plan's retention without backing anything up; a dry run (the default) only shows it.

    Args:
        plan: The deployment's plan: which servers' disks, and the retention rules to apply.
        dry_run: Only show what would be deleted (recorded in the ledger as a dry run).
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(
        run_plan(
            (plan or DEFAULT).model_copy(update={"dry_run": dry_run}),
            flow_name="apply-retention",
            back_up_disks=False,
            credentials=credentials,
        )
    )
