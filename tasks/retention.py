"""Tasks: read the disks' backups in one batch, then apply retention server by server."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from vbs_backup.backup.targets import DiskTarget, ServerTarget
from vbs_backup.cloud.models.backups import Backup
from vbs_backup.retention.prune import PruneResult, backups_by_volume, prune_disk
from vbs_backup.tasks.runtime import RunContext


@task(name="list-backups", task_run_name="list backups", cache_policy=NO_CACHE)
async def list_backups(ctx: RunContext, disks: Sequence[DiskTarget]) -> dict[str, list[Backup]]:
    """Every backup of these disks, grouped by disk (a few paginated requests for a whole fleet)."""
    return await backups_by_volume(ctx.client, [d.volume_id for d in disks])


@task(task_run_name="retention {server.name}", cache_policy=NO_CACHE)
async def apply_server_retention(
    ctx: RunContext, server: ServerTarget, backups: dict[str, list[Backup]]
) -> list[PruneResult]:
    """Keep or delete each backup of each of the server's disks, recording every decision and its reason.
    One task per server, not per disk: a task run costs ~10 ms of event-loop time to start."""
    logger = get_run_logger()
    results = []
    for disk in server.disks:
        result = await prune_disk(
            client=ctx.client,
            engine=ctx.engine,
            run_id=ctx.run_id,
            volume_id=disk.volume_id,
            label=disk.label,
            backups=backups.get(disk.volume_id, []),
            plan=ctx.plan,
            now=ctx.clock.now(),
        )
        if result.suspended:
            # not "kept 1, deleted 0": the point is that nothing was pruned, and why
            logger.warning("%s: newest backup attempt failed, nothing pruned", disk.label)
        elif result.decisions:
            verb = "would delete" if ctx.plan.dry_run else "deleted"
            deleted = sum(1 for d in result.decisions if d.action == "delete")
            logger.info("%s: kept %d, %s %d", disk.label, result.kept, verb, deleted)
        results.append(result)
    return results
