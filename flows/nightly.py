"""The nightly flow: back up every disk of every server the plan selects, then apply retention."""

from __future__ import annotations

from prefect import flow
from prefect.states import State

from vbs_backup.flows.default_plan import DEFAULT
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import nightly_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.flows.pipeline import run_plan
from vbs_backup.plan import BackupPlan


@flow(name="nightly-backup", flow_run_name=nightly_run_name, log_prints=True, **ON_FAILURE)
async def nightly_backup(
    plan: BackupPlan = DEFAULT,
    credentials: Credentials = None,
) -> State:
    """Back up every EVS disk of the selected ECS servers, wait for the jobs, prune old backups, record
    everything in the ledger. Ends Failed, naming the disks, when any disk failed or timed out.

    Args:
        plan: Which servers to back up, how, and how long to keep their backups (default: every server
            tagged backup=nightly, 7 daily and 4 weekly backups, Europe/Paris).
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(run_plan(plan, flow_name="nightly-backup", credentials=credentials))
