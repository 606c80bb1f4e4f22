"""On-demand flows: back up one server now; apply retention alone (a dry run by default)."""

from __future__ import annotations

from typing import Annotated

from prefect import flow
from prefect.states import State
from pydantic import Field

from vbs_backup.config import BackupPlan, ServerSelection

from .failures import failing_cleanly
from .hooks import ON_FAILURE
from .params import Credentials
from .pipeline import run_plan


def plan_for_server(server_id: str, plan: BackupPlan | None) -> BackupPlan:
    """The given plan (or the defaults) narrowed to one server, in a one-minute slot: an on-demand backup
    is a new backup, not an adoption of tonight's."""
    base = plan or BackupPlan(name="on-demand", selection=ServerSelection(ids=[server_id]))
    return base.model_copy(update={"selection": ServerSelection(ids=[server_id]), "slot_minutes": 1})


@flow(name="backup-server", **ON_FAILURE)
async def backup_server(
    server_id: Annotated[str, Field(title="Server id", description="The ECS server (UUID) to back up now.")],
    plan: BackupPlan | None = None,
    credentials: Credentials = None,
) -> State:
    """Back up every disk of one server now, then apply retention to its disks.

    Args:
        server_id: The ECS server (UUID) to back up now.
        plan: Backup options and retention (its server selection is replaced by this server).
        credentials: Name of a saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(
        run_plan(plan_for_server(server_id, plan), flow_name="backup-server", credentials=credentials)
    )


@flow(name="apply-retention", **ON_FAILURE)
async def apply_retention(
    plan: BackupPlan,
    dry_run: Annotated[bool, Field(title="Dry run", description="Only show what would be deleted.")] = True,
    credentials: Credentials = None,
) -> State:
    """Apply the plan's retention without backing anything up; a dry run (the default) only shows it.

    Args:
        plan: Which servers' disks, and the retention rules to apply.
        dry_run: Only show what would be deleted (recorded in the ledger as a dry run).
        credentials: Name of a saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(
        run_plan(
            plan.model_copy(update={"dry_run": dry_run}),
            flow_name="apply-retention",
            back_up_disks=False,
            credentials=credentials,
        )
    )
