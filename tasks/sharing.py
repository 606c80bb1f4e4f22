"""Tasks of the share flow: find the plan's disks, plan each disk's shares, carry out one disk's shares,
publish the results."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from vbs_backup.backup.targets import DiskTarget
from vbs_backup.plan import BackupPlan
from vbs_backup.sharing import (
    DiskShareOutcome,
    DiskSharePlan,
    apply_disk_shares,
    plan_disk_shares,
    summary_line,
)
from vbs_backup.tasks.discovery import plan_disks
from vbs_backup.tasks.runtime import CloudContext, Refusal, refusing

# Disks whose shares are being changed at the same time (each is a few API calls).
DISKS_IN_FLIGHT = 20


@task(name="discover-disks", task_run_name="discover disks", cache_policy=NO_CACHE)
async def discover_disks(ctx: CloudContext, plan: BackupPlan) -> list[DiskTarget] | Refusal:
    """The disks the plan selects (and the preflight: credentials, endpoint, unknown servers); or, as a
    `Refusal` for the flow to `unwrap`, why they cannot be."""
    return await refusing(plan_disks(ctx.client, plan))


@task(name="plan-shares", task_run_name="plan shares", cache_policy=NO_CACHE)
async def plan_shares(
    ctx: CloudContext, plan: BackupPlan, disks: Sequence[DiskTarget], targets: Sequence[str]
) -> list[DiskSharePlan]:
    """Per disk: its newest good backup, who lacks it, which old shares of ours to take back."""
    return await plan_disk_shares(ctx.client, ctx.engine, plan, disks, targets)


@task(task_run_name="share {item.disk.server_name} {item.disk.device}", cache_policy=NO_CACHE)
async def share_disk(ctx: CloudContext, item: DiskSharePlan, dry_run: bool) -> DiskShareOutcome:
    """Share this disk's newest backup where it is missing, then cancel its older shares."""
    outcome = await apply_disk_shares(ctx.client, ctx.engine, item, dry_run=dry_run)
    logger = get_run_logger()
    if outcome.ok:
        verb = "would share" if dry_run else "shared"
        logger.info(
            "%s: %s %s with %s, kept %s, cancelled %d old",
            outcome.label,
            verb,
            outcome.newest_name,
            outcome.shared or "nobody new",
            outcome.kept,
            len(outcome.cancelled),
        )
    else:
        logger.error("%s: %s", outcome.label, outcome.problem or "; ".join(outcome.errors))
    return outcome


async def share_disks(
    ctx: CloudContext, items: Sequence[DiskSharePlan], *, dry_run: bool
) -> list[DiskShareOutcome]:
    """Every disk's shares, a bounded number at a time."""
    gate = asyncio.Semaphore(DISKS_IN_FLIGHT)

    async def one(item: DiskSharePlan) -> DiskShareOutcome:
        async with gate:
            return await share_disk(ctx, item, dry_run)

    return list(await asyncio.gather(*(one(i) for i in items)))


def outcome_rows(outcomes: Sequence[DiskShareOutcome]) -> list[dict[str, object]]:
    return [
        {
            "disk": o.label,
            "newest backup": o.newest_name or "",
            "shared now": ", ".join(o.shared),
            "already shared": ", ".join(o.kept),
            "cancelled": ", ".join(f"{name} -> {project}" for name, project in o.cancelled),
            "problem": o.problem or "; ".join(o.errors),
        }
        for o in sorted(outcomes, key=lambda o: o.label)
    ]


@task(name="publish-share-summary", task_run_name="publish share summary")
async def publish_share_summary(outcomes: Sequence[DiskShareOutcome], targets: Sequence[str]) -> str:
    """A table and a one-line summary on the flow run; returns the line."""
    line = summary_line(outcomes, targets)
    await acreate_table_artifact(
        key="share-backups-disks", table=outcome_rows(outcomes), description="Per-disk shares"
    )
    await acreate_markdown_artifact(key="share-backups-summary", markdown=f"**{line}**", description="Shares")
    return line
