"""Sharing backups with other projects (reference §2.11-§2.15): for each disk a plan selects, its newest
good backup is shared with each target project (a disaster-recovery project, say), and the shares of its
older backups to those projects are taken back once the newest is there.

Rules kept here:
* "Good" = `available` in the cloud and the plan's (its identity on the backup and a ledger row of the
  plan, as retention reads them), so a policy backup or a hand-made one is never shared by us.
* Target project ids are checked (32 lowercase hex, not our own project) before anything is read.
* Only shares the ledger recorded are cancelled; a share made by hand is never touched. An old backup's
  share to a project is cancelled only once the newest backup is shared with that project (fail closed:
  the other project always keeps one copy). When every share of an old backup goes, one call with
  `is_backup_id=true` takes them all; otherwise each is cancelled by its share id (§2.12).
* The ledger row is written before each share or cancel call; a share whose answer was lost is found in
  the cloud by the next run and adopted (the pair, not the share id, identifies it).
* Idempotent: a second run finds everything in place and sends no share or cancel call.

The ledger is read and written in a thread (`asyncio.to_thread`), as the nightly run does, so that twenty
disks' shares go on while one of them waits for the database.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlmodel import Session

from .backup.targets import DiskTarget
from .cloud import CloudClient
from .cloud.errors import ApiError, CloudError, NotFoundError, TransportError
from .cloud.models.backups import Backup, BackupStatus
from .cloud.models.common import is_project_id
from .cloud.models.shares import Share
from .ledger import recorded_backup_ids
from .ledger.sharing import (
    ShareRecord,
    ShareStatus,
    find_share_record,
    mark_share_cancelled,
    mark_share_cancelling,
    mark_share_failed,
    mark_share_gone,
    mark_shared,
    note_share_error,
    record_share_intent,
    share_records,
)
from .plan import BackupPlan
from .retention.prune import backups_by_volume, to_records

__all__ = [
    "CancelGroup",
    "DiskShareOutcome",
    "DiskSharePlan",
    "ShareInputError",
    "ShareListing",
    "apply_disk_shares",
    "check_target_projects",
    "plan_disk_shares",
    "share_listing",
    "summary_line",
]


class ShareInputError(ValueError):
    """The target projects are malformed; nothing was read or changed."""


def check_target_projects(to_project_ids: Iterable[str], *, own_project_id: str | None = None) -> list[str]:
    """The target project ids, deduplicated in order, or `ShareInputError` listing every bad one."""
    ids = [p.strip() if isinstance(p, str) else p for p in to_project_ids]
    if not ids:
        raise ShareInputError("no target project: give at least one project id to share with")
    bad = [repr(p) for p in ids if not is_project_id(p)]
    if bad:
        raise ShareInputError(f"not a project id (32 lowercase hexadecimal characters): {', '.join(bad)}")
    if own_project_id is not None and own_project_id in ids:
        raise ShareInputError(f"{own_project_id} is this project: a backup cannot be shared with itself")
    return list(dict.fromkeys(ids))


# --------------------------------------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class CancelGroup:
    """Our shares of one older backup of a disk, to be taken back."""

    backup_id: str
    backup_name: str | None
    shares: tuple[Share, ...]
    all_of_backup: bool  # these are every share of the backup: one `is_backup_id=true` call takes them


@dataclass
class DiskSharePlan:
    disk: DiskTarget
    targets: list[str]
    newest: Backup | None
    share_to: list[str] = field(default_factory=list)  # projects that do not have the newest yet
    already: dict[str, Share] = field(default_factory=dict)  # project -> the newest's share
    adopt: list[Share] = field(default_factory=list)  # in the cloud, not (yet) active in the ledger
    cancel: list[CancelGroup] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)  # ledger rows whose share is no longer in the cloud


async def plan_disk_shares(
    client: CloudClient,
    engine: Engine,
    plan: BackupPlan,
    disks: Sequence[DiskTarget],
    targets: Sequence[str],
) -> list[DiskSharePlan]:
    """What to share and what to cancel, disk by disk (reads only: backups, our shares, the ledger)."""
    volume_ids = [d.volume_id for d in disks]
    backups = await backups_by_volume(client, volume_ids)
    volume_of = {b.id: b.volume_id for bs in backups.values() for b in bs}
    cloud: dict[str, list[Share]] = defaultdict(list)
    async for share in client.vbs.iter_shares():
        volume_id = volume_of.get(share.backup_id) or (share.backup.volume_id if share.backup else None)
        if volume_id is not None:
            cloud[volume_id].append(share)
    rows, owned = await asyncio.to_thread(_ledger_view, engine, plan, volume_ids, targets)
    live: dict[tuple[str, str], ShareRecord] = {(r.backup_id, r.to_project_id): r for r in rows}
    return [
        _plan_disk(
            disk, list(targets), backups.get(disk.volume_id, []), cloud[disk.volume_id], live, plan, owned
        )
        for disk in disks
    ]


def _ledger_view(
    engine: Engine, plan: BackupPlan, volume_ids: list[str], targets: Sequence[str]
) -> tuple[list[ShareRecord], dict[str, set[str]]]:
    """The live share rows of these disks to these projects, and each disk's backups the plan recorded."""
    with Session(engine) as session:
        rows = share_records(
            session=session, volume_ids=volume_ids, to_project_ids=targets, statuses=ShareStatus.live()
        )
        # Any backup of this plan's identity that its ledger recorded is good to share, adopted ones too.
        owned = {
            v: recorded_backup_ids(session=session, plan_name=plan.name, volume_id=v) for v in volume_ids
        }
    return rows, owned


def _plan_disk(
    disk: DiskTarget,
    targets: list[str],
    backups: list[Backup],
    shares: list[Share],
    live: dict[tuple[str, str], ShareRecord],
    plan: BackupPlan,
    owned: dict[str, set[str]],
) -> DiskSharePlan:
    records = to_records(backups, plan, owned[disk.volume_id])
    good = {r.id for r in records if r.owned and r.status == BackupStatus.AVAILABLE}
    candidates = [b for b in backups if b.id in good]
    newest = max(candidates, key=lambda b: (b.created_at, b.id), default=None)
    result = DiskSharePlan(disk=disk, targets=targets, newest=newest)
    in_cloud = {(s.backup_id, s.to_project_id) for s in shares}
    result.gone = [
        row.id
        for (backup_id, project), row in live.items()
        if row.volume_id == disk.volume_id
        and (backup_id, project) not in in_cloud
        and not (newest is not None and backup_id == newest.id)  # re-shared below: its row is reused
        and row.id is not None
    ]
    if newest is None:
        return result  # nothing to share, so nothing old is taken back either (fail closed)
    for project in targets:
        share = next((s for s in shares if s.backup_id == newest.id and s.to_project_id == project), None)
        if share is None:
            result.share_to.append(project)
            continue
        result.already[project] = share
        row = live.get((newest.id, project))
        if row is None or row.status != ShareStatus.active or row.share_id != share.id:
            result.adopt.append(share)
    by_backup: dict[str, list[Share]] = defaultdict(list)
    for share in shares:
        by_backup[share.backup_id].append(share)
    names = {b.id: b.name for b in backups}
    for backup_id, of_backup in sorted(by_backup.items()):
        if backup_id == newest.id:
            continue
        ours = [s for s in of_backup if s.to_project_id in targets and (backup_id, s.to_project_id) in live]
        if ours:
            result.cancel.append(
                CancelGroup(backup_id, names.get(backup_id), tuple(ours), len(ours) == len(of_backup))
            )
    return result


# --------------------------------------------------------------------------------------------------------
# Applying


@dataclass
class DiskShareOutcome:
    label: str
    volume_id: str
    newest_name: str | None = None
    newest_id: str | None = None
    shared: list[str] = field(default_factory=list)  # projects the newest was shared with now
    kept: list[str] = field(default_factory=list)  # projects that already had it
    cancelled: list[tuple[str, str]] = field(default_factory=list)  # (old backup name or id, project)
    errors: list[str] = field(default_factory=list)
    problem: str | None = None  # e.g. no good backup to share
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors and self.problem is None


async def apply_disk_shares(
    client: CloudClient, engine: Engine, item: DiskSharePlan, *, dry_run: bool
) -> DiskShareOutcome:
    """Carry out one disk's share plan (or, in a dry run, only say what it would do). Failures are
    recorded in the ledger and the outcome, never raised."""
    disk, newest = item.disk, item.newest
    out = DiskShareOutcome(label=disk.label, volume_id=disk.volume_id, dry_run=dry_run)
    if newest is None:
        out.problem = "no good backup of ours to share (none available with our name, marker and ledger row)"
    else:
        out.newest_name, out.newest_id = newest.name, newest.id
        out.kept = sorted(item.already)
    if dry_run:
        out.shared = list(item.share_to)
        out.cancelled = [
            (g.backup_name or g.backup_id, s.to_project_id or "") for g in item.cancel for s in g.shares
        ]
        return out
    await asyncio.to_thread(_record_gone_and_adopted, engine, item)
    if newest is None:
        return out
    if item.share_to:
        await _share(client, engine, newest, disk.volume_id, item.share_to, out)
    holding = set(out.kept) | set(out.shared)  # projects that have the newest backup now
    for group in item.cancel:
        await _cancel(client, engine, group, holding, out)
    return out


def _record_gone_and_adopted(engine: Engine, item: DiskSharePlan) -> None:
    """Ledger rows whose share left the cloud are closed; shares found in the cloud are recorded as ours."""
    with Session(engine) as session:
        for record_id in item.gone:
            mark_share_gone(
                session=session, record_id=record_id, reason="no longer in the cloud's share list"
            )
        for share in item.adopt:
            assert item.newest is not None
            mark_shared(
                session=session,
                backup_id=item.newest.id,
                backup_name=item.newest.name,
                volume_id=item.disk.volume_id,
                to_project_id=share.to_project_id or "",
                share_id=share.id,
            )


async def _share(
    client: CloudClient,
    engine: Engine,
    newest: Backup,
    volume_id: str,
    projects: list[str],
    out: DiskShareOutcome,
) -> None:
    rows = await asyncio.to_thread(_record_intents, engine, newest, volume_id, projects)
    try:
        made = await client.vbs.share_backup(newest.id, projects)
    except CloudError as exc:
        error = f"sharing {newest.name or newest.id} failed: {exc}"
        out.errors.append(error)
        # a refusal is final; a lost answer may hide a share made anyway: the row stays an intent, and the
        # next run adopts the share if the cloud has it
        definite = isinstance(exc, ApiError) or (
            isinstance(exc, TransportError) and not exc.may_have_reached_server
        )
        await asyncio.to_thread(_record_share_error, engine, list(rows.values()), str(exc), definite=definite)
        return
    await asyncio.to_thread(_record_made, engine, newest, volume_id, made)
    out.shared = sorted({s.to_project_id for s in made if s.to_project_id} & set(projects))


def _record_intents(
    engine: Engine, newest: Backup, volume_id: str, projects: list[str]
) -> dict[str, int | None]:
    with Session(engine) as session:
        return {
            p: record_share_intent(
                session=session,
                backup_id=newest.id,
                backup_name=newest.name,
                volume_id=volume_id,
                to_project_id=p,
            ).id
            for p in projects
        }


def _record_share_error(engine: Engine, record_ids: list[int | None], error: str, *, definite: bool) -> None:
    with Session(engine) as session:
        for record_id in record_ids:
            assert record_id is not None
            if definite:
                mark_share_failed(session=session, record_id=record_id, error=error)
            else:
                note_share_error(session=session, record_id=record_id, error=error)


def _record_made(engine: Engine, newest: Backup, volume_id: str, made: list[Share]) -> None:
    with Session(engine) as session:
        for share in made:
            mark_shared(
                session=session,
                backup_id=newest.id,
                backup_name=newest.name,
                volume_id=volume_id,
                to_project_id=share.to_project_id or "",
                share_id=share.id,
            )


async def _cancel(
    client: CloudClient, engine: Engine, group: CancelGroup, holding: set[str], out: DiskShareOutcome
) -> None:
    shares = [s for s in group.shares if s.to_project_id in holding]
    if not shares:
        return
    by_backup = group.all_of_backup and len(shares) == len(group.shares)
    rows = await asyncio.to_thread(_mark_cancelling, engine, group.backup_id, shares, by_backup=by_backup)
    calls = [(group.backup_id, True, shares)] if by_backup else [(s.id, False, [s]) for s in shares]
    for target_id, is_backup_id, covered in calls:
        error = None
        try:
            await client.vbs.cancel_share(target_id, is_backup_id=is_backup_id)
        except NotFoundError:
            pass  # already gone: the goal of the cancel is met
        except CloudError as exc:
            # 409 included: the TF provider tolerates it, but what it means is undocumented (§2.12); the
            # row stays `cancelling` and the next run finds the share still there (and retries) or gone
            error = f"cancelling the share of {group.backup_name or group.backup_id} failed: {exc}"
        covered_ids = [i for s in covered if (i := rows.get(s.id)) is not None]
        await asyncio.to_thread(_record_cancel, engine, covered_ids, error)
        if error:
            out.errors.append(error)
        else:
            out.cancelled += [(group.backup_name or group.backup_id, s.to_project_id or "") for s in covered]


def _mark_cancelling(
    engine: Engine, backup_id: str, shares: list[Share], *, by_backup: bool
) -> dict[str, int | None]:
    """Our live ledger rows of these shares, marked `cancelling` before the call: share id -> row id."""
    with Session(engine) as session:
        rows = {}
        for share in shares:
            row = _live_row(session, backup_id, share.to_project_id or "")
            if row is not None and row.id is not None:
                rows[share.id] = mark_share_cancelling(
                    session=session, record_id=row.id, by_backup=by_backup
                ).id
    return rows


def _record_cancel(engine: Engine, record_ids: list[int], error: str | None) -> None:
    with Session(engine) as session:
        for record_id in record_ids:
            if error:
                note_share_error(session=session, record_id=record_id, error=error)
            else:
                mark_share_cancelled(session=session, record_id=record_id)


def _live_row(session: Session, backup_id: str, project: str) -> ShareRecord | None:
    row = find_share_record(session=session, backup_id=backup_id, to_project_id=project)
    return row if row is not None and row.status in ShareStatus.live() else None


def summary_line(outcomes: Sequence[DiskShareOutcome], targets: Sequence[str]) -> str:
    dry = any(o.dry_run for o in outcomes)
    shared = sum(len(o.shared) for o in outcomes)
    cancelled = sum(len(o.cancelled) for o in outcomes)
    verb = ("would share", "would cancel") if dry else ("shared", "cancelled")
    text = (
        f"{len(outcomes)} disks, {len(targets)} target projects: {verb[0]} {shared}, "
        f"already shared {sum(len(o.kept) for o in outcomes)}, {verb[1]} {cancelled} old shares"
    )
    failed = [o for o in outcomes if not o.ok]
    if failed:
        text += "; FAILED: " + "; ".join(f"{o.label} ({o.problem or ' / '.join(o.errors)})" for o in failed)
    return text


# --------------------------------------------------------------------------------------------------------
# Listing (the `share --list / --count / --show` command)


@dataclass
class ShareListing:
    made: list[Share]
    received: list[Share]
    made_count: int
    received_count: int


async def share_listing(client: CloudClient, *, counts_only: bool = False) -> ShareListing:
    """Shares this project made and received, with the service's own counts (§2.13, §2.14)."""
    made_count = await client.vbs.count_shares()
    received_count = await client.vbs.count_shares(share_to_me=True)
    if counts_only:
        return ShareListing([], [], made_count, received_count)
    made = [s async for s in client.vbs.iter_shares()]
    received = [s async for s in client.vbs.iter_shares(share_to_me=True)]
    return ShareListing(made, received, made_count, received_count)
