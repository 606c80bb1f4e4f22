"""Task: resolve the plan's servers and their disks (the run's preflight: credentials, endpoint and
selection are all checked here, before any backup is created).

An expected failure (unknown server, wrong credentials, unreachable endpoint: `EXPECTED_FAILURES`) is
returned as a `Refusal` (`tasks.runtime.refusing`), not raised, so that Prefect logs no traceback for it; the
flow `unwrap`s it and ends Failed with its one line. Anything else (a bug) is raised and keeps its traceback.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from vbs_backup.backup.targets import DiskTarget, SelectionError, ServerTarget, discover_targets
from vbs_backup.cloud import CloudClient
from vbs_backup.plan import BackupPlan
from vbs_backup.tasks.runtime import Refusal, RunContext, refusing

__all__ = ["discover_servers", "plan_disks"]


@task(name="discover-servers", task_run_name="discover servers", cache_policy=NO_CACHE)
async def discover_servers(ctx: RunContext, one_server: str | None = None) -> list[ServerTarget] | Refusal:
    """Servers chosen by the plan, each with every attached disk to back up; or why they cannot be.
    `one_server`: the name or id a person typed (an on-demand backup), which must be exactly one server."""
    return await refusing(_discover(ctx, one_server))


async def _discover(ctx: RunContext, one_server: str | None) -> list[ServerTarget]:
    try:
        servers = await discover_targets(ctx.client, ctx.plan)
    except SelectionError:
        if one_server is None:
            raise
        raise SelectionError(f"no server is named {one_server!r} or has it as id") from None
    if one_server is not None and len(servers) > 1:
        ids = ", ".join(s.id for s in servers)
        raise SelectionError(f"{len(servers)} servers are named {one_server!r} ({ids}): give the server's id")
    return servers


async def plan_disks(client: CloudClient, plan: BackupPlan) -> list[DiskTarget]:
    """Every disk of the servers the plan selects (for the tasks that work per disk, not per server)."""
    servers = await discover_targets(client, plan)
    return [d for s in servers for d in s.disks]
