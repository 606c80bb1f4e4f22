"""The share flow: the newest good backup of each disk a plan selects, shared with other projects (a
disaster-recovery project, say); older shares of those disks to those projects taken back."""

from __future__ import annotations

from typing import Annotated

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import Field

from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import share_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.plan import BackupPlan
from vbs_backup.sharing import ShareInputError, check_target_projects
from vbs_backup.tasks.runtime import open_cloud, unwrap
from vbs_backup.tasks.sharing import discover_disks, plan_shares, publish_share_summary, share_disks

ProjectIds = Annotated[
    list[str],
    Field(
        title="Target projects",
        description="Project ids (32 lowercase hex) that receive the newest backup of each disk.",
    ),
]


@flow(name="share-backups", flow_run_name=share_run_name, log_prints=True, **ON_FAILURE)
async def share_backups(
    plan: BackupPlan, to_project_ids: ProjectIds, credentials: Credentials = None
) -> State:
    """Share each selected disk's newest good backup with every target project and cancel the shares of
    its older backups there; everything is recorded in the ledger. A dry run (the plan's) changes nothing.
    Ends Failed, naming the disks, when a disk has no backup to share or a share or cancel failed.

    Args:
        plan: Which servers' disks to share the newest good backups of.
        to_project_ids: The projects (32 hex ids) to share with, e.g. a disaster-recovery project.
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(_share_backups(plan, to_project_ids, credentials))


async def _share_backups(plan: BackupPlan, to_project_ids: list[str], credentials: Credentials) -> State:
    logger = get_run_logger()
    try:
        targets = check_target_projects(to_project_ids)
    except ShareInputError as exc:
        return Failed(message=str(exc))
    async with open_cloud(credentials) as ctx:
        try:
            targets = check_target_projects(targets, own_project_id=ctx.client.project_id)
        except ShareInputError as exc:
            return Failed(message=str(exc))
        disks = unwrap(await discover_disks(ctx, plan))  # an expected failure: raised, run Failed
        items = await plan_shares(ctx, plan, disks, targets)
        outcomes = await share_disks(ctx, items, dry_run=plan.dry_run)
        line = await publish_share_summary(outcomes, targets)
    logger.info(line)
    if any(not o.ok for o in outcomes):
        return Failed(message=line)
    return Completed(message=line)
