"""A run's results as Prefect artifacts on the flow run, for the operator who opens it at 3 a.m.:

* `<flow>-summary` (markdown): the one-line verdict, then the failed disks, each with its reason, then a
  compact per-disk table (a mark, server, device, status, backup);
* `<flow>-disks` (table): every disk in detail (ids, sizes, error codes), failures first;
* `<flow>-retention` (table): every keep/delete decision and its reasons.

They are created from the flow's body, not from a task, so that they hang off the flow run itself (the
run page's Artifacts tab), not off a task run two clicks away. `summary_line` is also the run's state
message, which alerts carry: it names each failed disk with its error code and reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact

from vbs_backup.backup.submit import DiskOutcome
from vbs_backup.retention.prune import PruneResult
from vbs_backup.text import one_line

OK_MARK, FAILED_MARK = "✅", "❌"
# The state message (and so the alert) names at most this many failed disks, each reason cut to REASON_MAX.
LINE_FAILURES_MAX = 10
REASON_MAX = 120
# The summary's compact table lists at most this many disks (every failure is listed above it anyway).
COMPACT_ROWS_MAX = 500


def _ordered(outcomes: Sequence[DiskOutcome]) -> list[DiskOutcome]:
    """Failures first, then by server and device."""
    return sorted(outcomes, key=lambda o: (o.ok, o.disk.server_name, o.disk.device))


def why(outcome: DiskOutcome, limit: int = REASON_MAX) -> str:
    """`failed: VolumeBackup.0064: <the job's reason>`, the status alone when nothing more is known."""
    parts = [p for p in (outcome.error_code, outcome.error_reason) if p]
    if outcome.error_code and outcome.error_reason and outcome.error_reason.startswith(outcome.error_code):
        parts = [outcome.error_reason]
    detail = one_line(": ".join(parts), limit) if parts else ""
    return f"{outcome.status.value}: {detail}" if detail else outcome.status.value


def outcome_rows(outcomes: Sequence[DiskOutcome]) -> list[dict[str, object]]:
    return [
        {
            "ok": OK_MARK if o.ok else FAILED_MARK,
            "server": o.disk.server_name,
            "device": o.disk.device,
            "status": o.status.value,
            "error": f"{o.error_code or ''} {o.error_reason or ''}".strip(),
            "backup": o.backup_name,
            "backup_id": o.backup_id or "",
            "volume": o.disk.volume_id,
            "size_gb": o.disk.size_gb,
        }
        for o in _ordered(outcomes)
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


def _counts(outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]) -> str:
    backed_up = sum(1 for o in outcomes if o.ok)
    deleted = sum(p.deleted for p in prunes)
    return f"{backed_up} of {len(outcomes)} disks backed up, {deleted} old backups deleted"


def summary_line(outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]) -> str:
    """The run's verdict on one line: counts, then each failed disk with its reason (the first
    LINE_FAILURES_MAX of them), then retention's failed deletes."""
    failed = [o for o in _ordered(outcomes) if not o.ok]
    text = _counts(outcomes, prunes)
    if failed:
        shown = "; ".join(f"{o.disk.label} ({why(o)})" for o in failed[:LINE_FAILURES_MAX])
        more = f"; and {len(failed) - LINE_FAILURES_MAX} more" if len(failed) > LINE_FAILURES_MAX else ""
        text += f"; FAILED: {shown}{more}"
    delete_failures = [f for p in prunes for f in p.delete_failures]
    if delete_failures:
        text += f"; {len(delete_failures)} old backups could not be deleted"
    return text


def summary_markdown(outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]) -> str:
    ordered = _ordered(outcomes)
    failed = [o for o in ordered if not o.ok]
    parts = [f"**{_counts(outcomes, prunes)}**", ""]
    if failed:
        parts += [f"### {FAILED_MARK} {len(failed)} failed", ""]
        parts += [f"- **{o.disk.label}**: {why(o, limit=300)}" for o in failed]
        parts.append("")
    delete_failures = [(p.label, f) for p in prunes for f in p.delete_failures]
    if delete_failures:
        parts += [f"### {FAILED_MARK} {len(delete_failures)} old backups not deleted", ""]
        parts += [f"- **{label}**: {one_line(f, 300)}" for label, f in delete_failures]
        parts.append("")
    if ordered:
        parts += ["### Disks", "", "| | server | device | status | backup |", "|---|---|---|---|---|"]
        parts += [
            f"| {OK_MARK if o.ok else FAILED_MARK} | {o.disk.server_name} | {o.disk.device} "
            f"| {o.status.value} | {o.backup_name} |"
            for o in ordered[:COMPACT_ROWS_MAX]
        ]
        if len(ordered) > COMPACT_ROWS_MAX:
            parts.append(f"\n… and {len(ordered) - COMPACT_ROWS_MAX} more disks: see the per-disk table.")
    return "\n".join(parts) + "\n"


async def publish_summary(
    flow_name: str, outcomes: Sequence[DiskOutcome], prunes: Sequence[PruneResult]
) -> str:
    """Publish the run's artifacts on the flow run (call it from the flow's body); return the summary
    line."""
    line = summary_line(outcomes, prunes)
    if outcomes:
        await acreate_table_artifact(
            key=f"{flow_name}-disks", table=outcome_rows(outcomes), description="Per-disk results (detail)"
        )
    if prunes:
        await acreate_table_artifact(
            key=f"{flow_name}-retention", table=decision_rows(prunes), description="Retention decisions"
        )
    # Last, so that the run page's Artifacts tab (newest first) shows it first.
    await acreate_markdown_artifact(
        key=f"{flow_name}-summary",
        markdown=summary_markdown(outcomes, prunes),
        description="Run summary: failures first",
    )
    return line
