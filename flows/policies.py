"""The policy audit flow: what the native VBS backup policies did (their backup tasks), recorded in the
ledger; Failed, naming policy, disk and backup, when a task failed or timed out within the window."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.states import Completed, Failed, State
from pydantic import Field

from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import policy_audit_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.tasks.policies import audit_policy_tasks, list_policies, name_disks, publish_audit
from vbs_backup.tasks.runtime import open_cloud, unwrap

SinceHours = Annotated[
    int,
    Field(
        ge=1,
        le=24 * 31,
        title="Window (hours)",
        description="Alert on tasks that failed or timed out this many hours back (tasks end within it).",
    ),
]


@flow(name="policy-audit", flow_run_name=policy_audit_run_name, log_prints=True, **ON_FAILURE)
async def policy_audit(credentials: Credentials = None, since_hours: SinceHours = 24) -> State:
    """Read every backup task of every VBS backup policy, record them in the ledger, and end Failed when
    one ended EXECUTE_FAIL or EXECUTE_TIMEOUT within the last `since_hours` hours.

    Args:
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
        since_hours: Alert on failed policy tasks that ended within this many hours.
    """
    return await failing_cleanly(_policy_audit(credentials, since_hours))


async def _policy_audit(credentials: Credentials, since_hours: int) -> State:
    async with open_cloud(credentials) as ctx:
        now = ctx.clock.now()
        since = now - timedelta(hours=since_hours)
        policies = unwrap(await list_policies(ctx))  # an expected failure: raised, run Failed
        audits = await asyncio.gather(*(audit_policy_tasks(ctx, p, since, now) for p in policies))
        names = await name_disks(ctx, [f.resource_id for a in audits for f in a.findings if f.resource_id])
        line, failed = await publish_audit(audits, names)
    get_run_logger().info(line)
    return Failed(message=line) if failed else Completed(message=line)
