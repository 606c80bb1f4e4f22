"""The nightly flow: back up every disk of every server the plan selects, then apply retention."""

from __future__ import annotations

from prefect import flow
from prefect.states import State

from vbs_backup.config import BackupPlan

from .failures import failing_cleanly
from .hooks import ON_FAILURE
from .params import Credentials
from .pipeline import run_plan


@flow(name="nightly-backup", log_prints=True, **ON_FAILURE)
async def nightly_backup(
    plan: BackupPlan,
    credentials: Credentials = None,
) -> State:
    """Back up every EVS disk of the selected ECS servers, wait for the jobs, prune old backups, record
    everything in the ledger. Ends Failed, naming the disks, when any disk failed or timed out.

    Args:
        plan: Which servers to back up, how, and how long to keep their backups.
        credentials: Name of a saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(run_plan(plan, flow_name="nightly-backup", credentials=credentials))
