"""Task: resolve the plan's servers and their disks (the run's preflight: credentials, endpoint and
selection are all checked here, before any backup is created).

An expected failure (unknown server, wrong credentials, unreachable endpoint: `EXPECTED_FAILURES`) is
returned as a `Refusal`, not raised, so that Prefect logs no traceback for it; the flow ends Failed with its
one line. Anything else (a bug) is raised and keeps its traceback.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from vbs_backup.targets import ServerTarget, discover_targets

from .runtime import EXPECTED_FAILURES, Refusal, RunContext


@task(name="discover-servers", cache_policy=NO_CACHE)
async def discover_servers(ctx: RunContext) -> list[ServerTarget] | Refusal:
    """Servers chosen by the plan, each with every attached disk to back up; or why they cannot be."""
    try:
        return await discover_targets(ctx.client, ctx.plan)
    except EXPECTED_FAILURES as exc:
        return Refusal.of(exc)


def discovered(found: list[ServerTarget] | Refusal) -> list[ServerTarget]:
    """The servers `discover_servers` found; a `Refusal` is raised (as `RunRefused`) in the flow."""
    if isinstance(found, Refusal):
        found.throw()
    return found
