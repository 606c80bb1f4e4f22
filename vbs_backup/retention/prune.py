"""Applying retention to a disk: read its backups, decide with the pure planner, record every decision,
then delete (unless it is a dry run), writing the intent before each delete call.

A backup is this plan's to delete only when two marks agree: the plan's identity in its description (read
back from the cloud; VBS documents no read of backup tags) and an attempt row of this very plan, in this
ledger, that recorded creating it. Another plan's backups, a backup whose marker someone copied, a backup
adopted from another ledger and a policy backup are never candidates, whatever the rules say. Backups made
before plan-scoped identities carry the old `tag_key=tag_value` description: they are this plan's only with
the plan's name prefix and a migrated ledger row of this plan that recorded their id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from ..cloud import CloudClient
from ..cloud.errors import BadRequestError, CloudError, NotFoundError
from ..cloud.models.backups import Backup, BackupStatus
from ..identity import parse_marker
from ..ledger import DeleteStatus, DiskBackupStatus, mark_delete, newest_attempt, owned_backup_ids
from ..ledger import record_retention_decision as record_decision
from ..ledger.restores import verified_backup_ids
from ..plan import BackupPlan
from .planner import BackupRecord, RetentionPlan, plan_retention

log = logging.getLogger(__name__)

FAILED_ATTEMPTS = (DiskBackupStatus.failed, DiskBackupStatus.timed_out)
# Below this many disks, one filtered listing per disk is cheaper than listing every backup of the project.
PER_DISK_LISTING_MAX = 5


@dataclass
class DecisionRow:
    backup_id: str
    backup_name: str
    created_at: datetime
    action: str
    reasons: str
    delete_status: str | None = None


@dataclass
class PruneResult:
    volume_id: str
    label: str
    suspended: bool = False
    kept: int = 0
    deleted: int = 0
    delete_failures: list[str] = field(default_factory=list)
    decisions: list[DecisionRow] = field(default_factory=list)


async def backups_by_volume(client: CloudClient, volume_ids: Iterable[str]) -> dict[str, list[Backup]]:
    """Every backup of these disks, grouped by disk, in as few requests as the fleet allows."""
    wanted = set(volume_ids)
    grouped: dict[str, list[Backup]] = defaultdict(list)
    if len(wanted) <= PER_DISK_LISTING_MAX:
        for volume_id in sorted(wanted):
            grouped[volume_id] = [b async for b in client.vbs.iter_backup_details(volume_id=volume_id)]
        return grouped
    async for backup in client.vbs.iter_backup_details(page_size=1000):
        if backup.volume_id in wanted:
            grouped[backup.volume_id].append(backup)
    return grouped


async def _going_away(client: CloudClient, backup_id: str) -> bool:
    try:
        return (await client.vbs.get_backup(backup_id)).status == BackupStatus.DELETING
    except NotFoundError:
        return True
    except CloudError:
        return False


def is_owned(backup: Backup, plan: BackupPlan, owned_ids: AbstractSet[str]) -> bool:
    """Whether `plan` created `backup` (see the module text): identity on the backup AND the ledger."""
    if backup.id not in owned_ids:
        return False
    identity = parse_marker(backup.description)
    if identity is not None:
        return identity[0] == plan.name
    return backup.description == plan.legacy_ownership_marker() and plan.is_own_backup_name(backup.name)


def to_records(
    backups: Iterable[Backup],
    plan: BackupPlan,
    owned_ids: AbstractSet[str],
    verified_ids: AbstractSet[str] = frozenset(),
) -> list[BackupRecord]:
    return [
        BackupRecord(
            id=b.id,
            name=b.name or "",
            volume_id=b.volume_id,
            status=b.status,
            created_at=b.created_at,
            owned=is_owned(b, plan, owned_ids),
            verified=b.id in verified_ids,
        )
        for b in backups
    ]


def decide(
    engine: Engine, volume_id: str, backups: list[Backup], plan: BackupPlan, now: datetime
) -> RetentionPlan:
    with Session(engine) as session:
        owned = owned_backup_ids(session=session, plan_name=plan.name, volume_id=volume_id)
        verified = verified_backup_ids(session=session, volume_id=volume_id)
        newest = newest_attempt(session=session, plan_name=plan.name, volume_id=volume_id)
    failed = newest is not None and newest.status in FAILED_ATTEMPTS
    # Only this disk's backups: a listing may hold others (a shared or re-attached disk is listed once).
    records = to_records([b for b in backups if b.volume_id == volume_id], plan, owned, verified)
    return plan_retention(records, plan.retention, now, newest_attempt_failed=failed)


async def prune_disk(
    *,
    client: CloudClient,
    engine: Engine,
    run_id: int,
    volume_id: str,
    label: str,
    backups: list[Backup],
    plan: BackupPlan,
    now: datetime,
) -> PruneResult:
    """Decide, record, and (unless `plan.dry_run`) delete. Delete failures are recorded, not raised."""
    # Ledger work runs in a thread: synchronous SQLite writes on the event loop stall every other disk.
    retention = await asyncio.to_thread(decide, engine, volume_id, backups, plan, now)
    result = PruneResult(volume_id, label, suspended=retention.pruning_suspended)
    decision_ids = await asyncio.to_thread(
        _record_decisions, engine, run_id, volume_id, retention, plan.dry_run
    )
    for decision, decision_id in zip(retention.decisions, decision_ids, strict=True):
        backup = decision.backup
        shown = DecisionRow(
            backup.id, backup.name, backup.created_at, decision.action, "; ".join(decision.reasons)
        )
        result.decisions.append(shown)
        if decision.action == "keep":
            result.kept += 1
            continue
        if plan.dry_run:
            shown.delete_status = "dry run"
            continue
        shown.delete_status = await _delete(client, engine, decision_id, backup.id, label, result)
    return result


def _record_decisions(
    engine: Engine, run_id: int, volume_id: str, retention: RetentionPlan, dry_run: bool
) -> list[int]:
    """Every decision of one disk, in one session; a delete is written as an intent before its call."""
    ids = []
    with Session(engine) as session:
        for decision in retention.decisions:
            row = record_decision(
                session=session,
                run_id=run_id,
                volume_id=volume_id,
                backup_id=decision.backup.id,
                backup_name=decision.backup.name,
                created_at_cloud=decision.backup.created_at,
                action=decision.action,
                reasons=decision.reasons,
                dry_run=dry_run,
            )
            assert row.id is not None
            ids.append(row.id)
    return ids


def _mark(engine: Engine, decision_id: int, status: DeleteStatus, error: str | None = None) -> None:
    with Session(engine) as session:
        mark_delete(session=session, decision_id=decision_id, delete_status=status, error=error)


async def _delete(
    client: CloudClient, engine: Engine, decision_id: int, backup_id: str, label: str, result: PruneResult
) -> str:
    await asyncio.to_thread(_mark, engine, decision_id, DeleteStatus.requested)
    error = None
    try:
        await client.vbs.delete_backup(backup_id)
    except NotFoundError:
        pass  # already gone: the goal of the delete is met
    except BadRequestError as exc:
        # A DELETE re-sent after a lost answer finds the backup already `deleting` (400, Cinder style).
        if not await _going_away(client, backup_id):
            error = str(exc)
    except CloudError as exc:
        error = str(exc)
    await asyncio.to_thread(
        _mark, engine, decision_id, DeleteStatus.failed if error else DeleteStatus.done, error
    )
    if error:
        log.warning("%s: delete of backup %s failed: %s", label, backup_id, error)
        result.delete_failures.append(f"{backup_id}: {error}")
        return "failed"
    result.deleted += 1
    return "done"
