"""Restore flows: `restore_disk` (on demand: one disk from a chosen backup) and `restore_drill` (scheduled:
prove that a sample of protected disks restores, on scratch disks that are always deleted afterwards).

Both end Failed, with a message naming the problem, when a precondition is unmet, a job fails or a drill
fails, so that alert automations fire.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

from prefect import flow
from prefect.states import Completed, Failed, State
from pydantic import Field

from vbs_backup.flows.default_plan import DEFAULT
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import drill_run_name, restore_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.plan import BackupPlan
from vbs_backup.restore.restore import RestoreRequest
from vbs_backup.tasks.restore import (
    check_restore,
    choose_drill_disks,
    clean_up_scratch_disks,
    drill,
    perform_restore,
    protected_disks,
    publish_drills,
    publish_restore,
    record_restore,
)
from vbs_backup.tasks.runtime import open_cloud, unwrap

WaitMinutes = Annotated[
    int,
    Field(
        ge=1,
        le=1440,
        title="Wait (minutes)",
        description="How long to wait for a restore job before recording it as timed out.",
    ),
]


@flow(name="restore-disk", flow_run_name=restore_run_name, log_prints=True, **ON_FAILURE)
async def restore_disk(
    volume_id: Annotated[
        str, Field(title="Disk", description="The EVS disk (UUID) whose backup is restored.")
    ],
    backup_id: Annotated[
        str | None,
        Field(title="Backup", description="The backup (UUID) to restore; empty: choose by time."),
    ] = None,
    before: Annotated[
        datetime | None,
        Field(
            title="Newest backup before",
            description="Restore the disk's newest available backup created before this time (no "
            "offset: UTC). Empty (and no backup given): the newest available backup.",
        ),
    ] = None,
    target_volume_id: Annotated[
        str | None,
        Field(
            title="Target disk",
            description="The detached disk (UUID) to overwrite; empty: the disk itself (detach it first).",
        ),
    ] = None,
    dry_run: Annotated[bool, Field(title="Dry run", description="Only say what would happen.")] = False,
    wait_minutes: WaitMinutes = 60,
    credentials: Credentials = None,
) -> State:
    """Restore a disk from a backup: check every documented precondition first (detached target, large
    enough, no backup running, backup available and our own), record the request, restore, wait for the
    job and record its outcome. A dry run checks and describes, and changes nothing.

    Args:
        volume_id: The EVS disk (UUID) whose backup is restored.
        backup_id: The backup (UUID) to restore; empty: choose by time.
        before: Restore the newest available backup created before this time (UTC); empty: the newest.
        target_volume_id: The detached disk (UUID) to overwrite; empty: the disk itself (detach it first).
        dry_run: Only say what would happen.
        wait_minutes: How long to wait for the restore job.
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    request = RestoreRequest(volume_id, backup_id, before, target_volume_id)
    return await failing_cleanly(_restore_disk(request, dry_run, wait_minutes, credentials))


async def _restore_disk(
    request: RestoreRequest, dry_run: bool, wait_minutes: int, credentials: Credentials
) -> State:
    async with open_cloud(credentials) as cloud:
        checked = unwrap(await check_restore(cloud, request))  # an expected failure: raised, run Failed
        restore_id = await record_restore(cloud, checked, dry_run)
        if not checked.ok:
            await publish_restore(checked.refusal)
            return Failed(message=checked.refusal)
        if dry_run:
            line = f"dry run, nothing changed: would {checked.describe()}"
            await publish_restore(line)
            return Completed(message=line)
        outcome = await perform_restore(cloud, checked, restore_id, wait_minutes)
        await publish_restore(outcome.message)
        return Completed(message=outcome.message) if outcome.ok else Failed(message=outcome.message)


@flow(name="restore-drill", flow_run_name=drill_run_name, log_prints=True, **ON_FAILURE)
async def restore_drill(
    plan: BackupPlan = DEFAULT,
    sample: Annotated[
        int,
        Field(ge=1, le=100, title="Disks per drill", description="How many protected disks to drill."),
    ] = 2,
    wait_minutes: WaitMinutes = 60,
    credentials: Credentials = None,
) -> State:
    """For a sample of the plan's disks (verified longest ago first): restore the newest good backup into
    a scratch disk, check the job and the disk, record the result and the time it took, mark the backup
    verified, delete the scratch disk. Ends Failed when any drill failed. A dry-run plan only names the
    disks it would drill.

    Args:
        plan: Which disks are protected (the drill samples them).
        sample: How many protected disks to drill.
        wait_minutes: How long to wait for each restore job.
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(_restore_drill(plan, sample, wait_minutes, credentials))


async def _restore_drill(plan: BackupPlan, sample: int, wait_minutes: int, credentials: Credentials) -> State:
    async with open_cloud(credentials) as cloud:
        disks = unwrap(await protected_disks(cloud, plan))  # an expected failure: raised, run Failed
        chosen = await choose_drill_disks(cloud, disks, sample)
        if plan.dry_run:
            return Completed(
                message="dry run: would drill " + (", ".join(d.label for d in chosen) or "nothing")
            )
        leftovers = await clean_up_scratch_disks(cloud, wait_minutes)
        results = await asyncio.gather(*(drill(cloud, plan, disk, wait_minutes) for disk in chosen))
        line = await publish_drills(results, leftovers)
        if leftovers or any(not r.ok for r in results):
            return Failed(message=line)
        return Completed(message=line)
