"""Task: publish a run's results as Prefect artifacts (per-disk results, retention decisions)."""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE

from vbs_backup.disk_backups import DiskOutcome
from vbs_backup.pruning import PruneResult


def outcome_rows(outcomes: Sequence[DiskOutcome]) -> list[dict[str, object]]:
    return [
        {
            "server": o.disk.server_name,
            "device": o.disk.device,
            "volume": o.disk.volume_id,
            "size_gb": o.disk.size_gb,
            "status": o.status.value,
            "backup": o.backup_name,
            "backup_id": o.backup_id or "",
            "error": f"{o.error_code or ''} {o.error_reason or ''}".strip(),
        }
        for o in sorted(outcomes, key=lambda o: (o.disk.server_name, o.disk.device))
    ]


def decision_rows(prunes: Sequence[PruneResult]) -> list[dict[str, object]]:
    return [
        {
            "disk": p.label,
            "backup": d.backup_name,
            "created_at": d.created_at.isoformat(timespec="minutes"),
            "action": d.action,
            "reasons": d.reasons,
            "delete": d.delete_status or "",
        }
        for p in prunes
        for d in p.decisions
    ]


def summary_line(outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]) -> str:
    failed = [o for o in outcomes if not o.ok]
    deleted = sum(p.deleted for p in prunes)
    text = f"{len(outcomes) - len(failed)} of {len(outcomes)} disks backed up, {deleted} old backups deleted"
    if failed:
        names = ", ".join(
            f"{o.disk.label} ({o.status.value}{': ' + o.error_code if o.error_code else ''})" for o in failed
        )
        text += f"; FAILED: {names}"
    return text


@task(name="publish-summary", cache_policy=NO_CACHE)
async def publish_summary(
    flow_name: str, outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]
) -> str:
    """Two tables and a markdown summary on the flow run; returns the one-line summary."""
    line = summary_line(outcomes, prunes)
    await acreate_table_artifact(
        key=f"{flow_name}-disks", table=outcome_rows(outcomes), description="Per-disk backup results"
    )
    if prunes:
        await acreate_table_artifact(
            key=f"{flow_name}-retention", table=decision_rows(prunes), description="Retention decisions"
        )
    await acreate_markdown_artifact(
        key=f"{flow_name}-summary", markdown=f"**{line}**", description="Run summary"
    )
    return line
