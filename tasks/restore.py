"""Tasks of the restore and restore-drill flows: check a restore, record the request, restore and wait;
find the protected disks, choose a drill sample, clean up leftovers, drill one disk, publish the results.

Each task is one meaningful step over the Prefect-free core (`vbs_backup.restore.restore`,
`vbs_backup.restore.drill`); waiting goes through the run's clock, so tests drive the emulator's clock
instead of sleeping, and the ledger is read and written in a thread (`asyncio.to_thread`), off the event
loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta

from prefect import get_run_logger, runtime, task
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine
from sqlmodel import Session

from vbs_backup.backup.targets import DiskTarget
from vbs_backup.ledger.restores import last_passed_drills
from vbs_backup.plan import BackupPlan
from vbs_backup.restore.drill import DrillResult, choose_sample, clean_leftovers, drill_disk
from vbs_backup.restore.restore import (
    RestoreOutcome,
    RestorePlan,
    RestoreRequest,
    plan_restore,
    record_request,
    run_restore,
)
from vbs_backup.tasks.discovery import plan_disks
from vbs_backup.tasks.runtime import CloudContext, Refusal, refusing


def _flow_run_id() -> str | None:
    return str(runtime.flow_run.id) if runtime.flow_run.id else None


# ------------------------------------------------------------------------------------------- restore


@task(name="check-restore", task_run_name="check restore", cache_policy=NO_CACHE)
async def check_restore(cloud: CloudContext, request: RestoreRequest) -> RestorePlan | Refusal:
    """Choose the backup and check every documented precondition (reads only); or, as a `Refusal` for the
    flow to `unwrap`, why the cloud could not be asked (credentials, endpoint)."""
    return await refusing(plan_restore(cloud.client, request, now=cloud.clock.now()))


@task(name="record-restore-request", task_run_name="record restore request", cache_policy=NO_CACHE)
async def record_restore(cloud: CloudContext, plan: RestorePlan, dry_run: bool) -> int:
    """The ledger row: refused (every problem), dry run, or the intent written before the restore call."""
    return await asyncio.to_thread(
        record_request, cloud.engine, plan, dry_run=dry_run, at=cloud.clock.now(), flow_run_id=_flow_run_id()
    )


@task(name="restore-and-wait", task_run_name="restore and wait", cache_policy=NO_CACHE)
async def perform_restore(
    cloud: CloudContext, plan: RestorePlan, restore_id: int, wait_minutes: int
) -> RestoreOutcome:
    """Call the restore, wait for its job, read the disk back, record the outcome."""
    outcome = await run_restore(
        cloud.client, cloud.engine, plan, restore_id, timeout=wait_minutes * 60, clock=cloud.clock
    )
    logger = get_run_logger()
    (logger.info if outcome.ok else logger.error)(outcome.message)
    return outcome


@task(name="publish-restore", task_run_name="publish restore")
async def publish_restore(line: str) -> None:
    await acreate_markdown_artifact(key="restore-disk-summary", markdown=f"**{line}**", description="Restore")


# ------------------------------------------------------------------------------------------- drills


@task(name="clean-up-scratch-disks", task_run_name="clean up scratch disks", cache_policy=NO_CACHE)
async def clean_up_scratch_disks(cloud: CloudContext, wait_minutes: int) -> list[str]:
    """Delete scratch disks that earlier drills left behind; returns what could not be deleted."""
    now = cloud.clock.now()
    problems = await clean_leftovers(
        cloud.client, cloud.engine, now=now, started_before=now - timedelta(minutes=2 * wait_minutes)
    )
    for problem in problems:
        get_run_logger().error(problem)
    return problems


@task(name="discover-protected-disks", task_run_name="discover protected disks", cache_policy=NO_CACHE)
async def protected_disks(cloud: CloudContext, plan: BackupPlan) -> list[DiskTarget] | Refusal:
    """Every disk the plan protects (its servers' disks, as the nightly run sees them); or, as a `Refusal`
    for the flow to `unwrap`, why they cannot be listed (credentials, endpoint, unknown servers)."""
    return await refusing(plan_disks(cloud.client, plan))


@task(name="choose-drill-disks", task_run_name="choose drill disks", cache_policy=NO_CACHE)
async def choose_drill_disks(
    cloud: CloudContext, disks: Sequence[DiskTarget], sample: int
) -> list[DiskTarget]:
    """The `sample` disks verified longest ago (never-verified first)."""
    last = await asyncio.to_thread(_last_passed, cloud.engine, [d.volume_id for d in disks])
    chosen = choose_sample(disks, last, sample)
    get_run_logger().info("drilling %s", ", ".join(d.label for d in chosen) or "nothing")
    return chosen


def _last_passed(engine: Engine, volume_ids: list[str]) -> dict[str, datetime]:
    with Session(engine) as session:
        return last_passed_drills(session=session, volume_ids=volume_ids)


@task(task_run_name="drill {disk.server_name} {disk.device}", cache_policy=NO_CACHE)
async def drill(cloud: CloudContext, plan: BackupPlan, disk: DiskTarget, wait_minutes: int) -> DrillResult:
    """Restore the disk's newest good backup into a scratch disk, check it, record it, delete the scratch."""
    result = await drill_disk(
        client=cloud.client,
        engine=cloud.engine,
        plan=plan,
        disk=disk,
        timeout=wait_minutes * 60,
        clock=cloud.clock,
        interval=plan.poll_interval_seconds,
        flow_run_id=_flow_run_id(),
    )
    logger = get_run_logger()
    if result.ok:
        logger.info(
            "%s: backup %s restored in %.0f s", disk.label, result.backup_name, result.duration_seconds or 0
        )
    else:
        logger.error("%s: drill failed: %s %s", disk.label, result.error_code, result.error)
    return result


def drill_rows(results: Sequence[DrillResult]) -> list[dict[str, object]]:
    return [
        {
            "disk": r.label,
            "volume": r.volume_id,
            "backup": r.backup_name or r.backup_id or "",
            "status": r.status.value,
            "restore_seconds": round(r.duration_seconds, 1) if r.duration_seconds is not None else "",
            "scratch_disk": r.scratch_volume_id or "",
            "error": f"{r.error_code or ''} {r.error or ''}".strip(),
        }
        for r in results
    ]


def drill_summary(results: Sequence[DrillResult], cleanup_problems: Sequence[str]) -> str:
    failed = [r for r in results if not r.ok]
    line = f"{len(results) - len(failed)} of {len(results)} restore drills passed"
    if failed:
        line += "; FAILED: " + ", ".join(f"{r.label} ({r.error_code})" for r in failed)
    if cleanup_problems:
        line += "; LEFTOVER SCRATCH DISKS: " + "; ".join(cleanup_problems)
    return line


@task(name="publish-drills", task_run_name="publish drills")
async def publish_drills(results: Sequence[DrillResult], cleanup_problems: Sequence[str]) -> str:
    """A table of drill results and a one-line summary on the flow run; returns the line."""
    line = drill_summary(results, cleanup_problems)
    await acreate_table_artifact(
        key="restore-drill-results", table=drill_rows(results), description="Restore drill results"
    )
    await acreate_markdown_artifact(key="restore-drill-summary", markdown=f"**{line}**", description="Drills")
    return line
