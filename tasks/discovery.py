"""Task: resolve the plan's servers and their disks (the run's preflight: credentials, endpoint and
selection are all checked here, before any backup is created)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from vbs_backup.targets import ServerTarget, discover_targets

from .runtime import RunContext


@task(name="discover-servers", cache_policy=NO_CACHE)
async def discover_servers(ctx: RunContext) -> list[ServerTarget]:
    """Servers chosen by the plan, each with every attached disk to back up."""
    return await discover_targets(ctx.client, ctx.plan)
