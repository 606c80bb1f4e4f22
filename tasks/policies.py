"""Tasks of the policy audit: list the policies, audit one policy's tasks (read all pages, record them),
name the disks of the findings, publish the results."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from prefect import get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from vbs_backup.cloud.models.policies import Policy
from vbs_backup.policies.audit import PolicyAudit, audit_policy, audit_summary, disk_names, finding_text
from vbs_backup.tasks.runtime import CloudContext, Refusal, refusing


@task(name="list-policies", task_run_name="list policies", cache_policy=NO_CACHE)
async def list_policies(ctx: CloudContext) -> list[Policy] | Refusal:
    """The project's backup policies (the preflight too: credentials, endpoint); or, as a `Refusal` for the
    flow to `unwrap`, why they cannot be read."""
    return await refusing(ctx.client.vbs.list_policies())


@task(task_run_name="audit {policy.backup_policy_name}", cache_policy=NO_CACHE)
async def audit_policy_tasks(
    ctx: CloudContext, policy: Policy, since: datetime, now: datetime
) -> PolicyAudit:
    """Every task the policy ran, recorded in the ledger; the failed or timed-out ones since `since`."""
    audit = await audit_policy(ctx.client, ctx.engine, policy, since=since, now=now)
    get_run_logger().info(
        "policy %s: %d tasks (%d new), %d failed or timed out in the window",
        audit.policy_name,
        audit.tasks,
        audit.inserted,
        len(audit.findings),
    )
    return audit


@task(name="name-disks", task_run_name="name disks", cache_policy=NO_CACHE)
async def name_disks(ctx: CloudContext, volume_ids: Iterable[str]) -> dict[str, str]:
    """Disk names for the findings, so the alert says which disk."""
    return await disk_names(ctx.client, volume_ids)


@task(name="publish-audit", task_run_name="publish audit")
async def publish_audit(audits: Sequence[PolicyAudit], names: dict[str, str]) -> tuple[str, bool]:
    """A table of the findings and a one-line summary; returns the line and whether it is a failure."""
    line, failed = audit_summary(audits, names)
    await acreate_table_artifact(
        key="policy-audit-policies",
        table=[
            {
                "policy": a.policy_name,
                "tasks": a.tasks,
                "new": a.inserted,
                "skipped in window": a.skipped,
                "failed or timed out": "; ".join(finding_text(f, names) for f in a.findings),
            }
            for a in audits
        ],
        description="Policy tasks audited",
    )
    await acreate_markdown_artifact(key="policy-audit-summary", markdown=f"**{line}**", description="Audit")
    return line, failed
