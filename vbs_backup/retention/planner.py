"""Retention planning: which backups of one disk to keep and which to delete, and why.

This module owns the view of a backup that the planner needs (`BackupRecord`) and the pure planner
`plan_retention`, which turns the backups of
ONE disk, the rules and the current time into a `RetentionPlan`: one `Decision` per backup, each with the
reasons behind it. It does no I/O: the caller lists the backups, computes ownership, records the plan in the
ledger and performs the deletions.

The keep rules follow restic's `forget` semantics and are OR-ed: a backup is kept if ANY rule keeps it.
On top of the rules, safety rules that hold for every input (and that the property tests check):

1. A backup we do not own, a policy backup (``autobk_…``) or a backup in a transitional state (any status
   other than ``available`` and ``error``) is never deleted.
2. The newest ``min_successful`` of our own successful backups are always kept. Backups we do not own also
   count as successful backups of the disk, but we never rely on them: a VBS policy or a person may delete
   them at any time. Because every other backup is kept anyway, the disk never drops below
   ``min(min_successful, number of available backups)`` available backups.
3. When the newest backup attempt of the disk failed, nothing is deleted at all (fail closed).
4. With ``min_verified`` the newest N of our successful backups that passed a restore drill are kept too.

Days, weeks, months and years are counted in the rules' timezone; rules that name none count in the
timezone of the plan that holds them (its ``schedule_timezone``, see :meth:`RetentionRules.in_timezone`), and
in UTC when used on their own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
)

from ..cloud.models.backups import AUTO_BACKUP_PREFIX, BackupStatus
from ..cloud.models.common import known_or_raw
from ..plan import RetentionRules

__all__ = [
    "BackupRecord",
    "Decision",
    "RetentionPlan",
    "plan_retention",
]

SUSPENDED = "newest attempt failed: pruning suspended"


class BackupRecord(BaseModel):
    """What the planner needs to know about one cloud backup of a disk."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    volume_id: str
    # cloud status: available, error, creating, deleting, restoring, error_restoring, ...; an undocumented
    # one stays text (and is kept: see `_protections`)
    status: Annotated[BackupStatus | str, known_or_raw(BackupStatus)]
    created_at: AwareDatetime
    owned: bool  # our name prefix AND our tag AND a ledger row; computed by the caller
    verified: bool = False  # a restore drill succeeded; counted by `min_verified`

    @property
    def is_policy_backup(self) -> bool:
        """Made by a VBS backup policy: it belongs to the policy, never to us."""
        return self.name.startswith(AUTO_BACKUP_PREFIX)


class Decision(BaseModel):
    """Keep or delete one backup, with every reason that led there (never empty)."""

    model_config = ConfigDict(frozen=True)

    backup: BackupRecord
    action: Literal["keep", "delete"]
    reasons: tuple[str, ...] = Field(min_length=1)


class RetentionPlan(BaseModel):
    """The decisions for every backup of one disk, newest first."""

    model_config = ConfigDict(frozen=True)

    decisions: list[Decision]
    pruning_suspended: bool = False

    @property
    def to_delete(self) -> list[BackupRecord]:
        return [d.backup for d in self.decisions if d.action == "delete"]

    @property
    def to_keep(self) -> list[BackupRecord]:
        return [d.backup for d in self.decisions if d.action == "keep"]


def _newest_first(backups: Sequence[BackupRecord]) -> list[BackupRecord]:
    # Ties on created_at are broken by id, so the plan never depends on the order of the input.
    return sorted(backups, key=lambda b: (b.created_at, b.id), reverse=True)


def _check_one_disk(backups: Sequence[BackupRecord]) -> None:
    volumes = sorted({b.volume_id for b in backups})
    if len(volumes) > 1:
        raise ValueError(f"plan_retention plans one disk at a time, got backups of volumes {volumes}")
    duplicates = sorted(i for i, n in Counter(b.id for b in backups).items() if n > 1)
    if duplicates:
        raise ValueError(f"duplicate backup ids: {duplicates}")


def _days_before(now: datetime, days: int, tz: ZoneInfo) -> datetime:
    """The instant `days` local calendar days before `now`, at the same wall-clock time in `tz`. A wall time
    that occurs twice or never that day gives the earlier of its two readings (when in doubt, keep)."""
    wall = now.astimezone(tz).replace(fold=0) - timedelta(days=days)
    return min(wall.replace(fold=fold).astimezone(UTC) for fold in (0, 1))


def _apply_keep_rules(
    candidates: list[BackupRecord], rules: RetentionRules, now: datetime
) -> dict[str, list[str]]:
    """Reasons to keep each candidate (owned, non-policy, available), newest first; empty = no rule."""
    keep: dict[str, list[str]] = {b.id: [] for b in candidates}
    tz = rules.tz

    if rules.keep_last:
        for rank, backup in enumerate(candidates[: rules.keep_last], start=1):
            keep[backup.id].append(f"keep_last {rules.keep_last} (#{rank})")

    if rules.keep_within_days:
        # Inclusive boundary: a backup exactly D days old is still "within D days". Days of the rules'
        # timezone: the same wall-clock time D days ago (D days and an hour when a DST change lies between).
        since = _days_before(now, rules.keep_within_days, tz)
        for backup in candidates:
            if backup.created_at >= since:
                keep[backup.id].append(f"within {rules.keep_within_days} days")

    periods: list[tuple[int | None, str, Callable[[datetime], str]]] = [
        (rules.keep_daily, "keep_daily", lambda d: d.strftime("%Y-%m-%d")),
        (rules.keep_weekly, "keep_weekly", lambda d: "{}-W{:02d}".format(*d.isocalendar()[:2])),
        (rules.keep_monthly, "keep_monthly", lambda d: d.strftime("%Y-%m")),
        (rules.keep_yearly, "keep_yearly", lambda d: d.strftime("%Y")),
    ]
    for count, name, period in periods:
        if not count:
            continue
        # Periods are counted in the rules' timezone; candidates are sorted, so each period is one run.
        last: str | None = None
        remaining = count
        for backup in candidates:
            if remaining == 0:
                break
            key = period(backup.created_at.astimezone(tz))
            if key != last:
                keep[backup.id].append(f"{name} {count} ({key})")
                last = key
                remaining -= 1

    if rules.keep_first_of_month:
        # The oldest candidate of every calendar month (local time), however many months there are.
        firsts: dict[str, BackupRecord] = {}
        for backup in candidates:  # newest first, so the last one seen per month is the first of it
            firsts[backup.created_at.astimezone(tz).strftime("%Y-%m")] = backup
        for month, backup in firsts.items():
            keep[backup.id].append(f"first of month {month}")

    # Safety, not a rule: only our own backups count, since others may vanish without notice.
    for backup in candidates[: rules.min_successful]:
        keep[backup.id].append(f"min_successful {rules.min_successful}")
    # Restore drills proved these restore: the newest N of them survive even when newer ones replace them.
    verified = [b for b in candidates if b.verified]
    for backup in verified[: rules.min_verified]:
        keep[backup.id].append(f"min_verified {rules.min_verified}")
    return keep


def _protections(backup: BackupRecord) -> list[str]:
    """Reasons that forbid deleting a backup whatever the rules say."""
    reasons: list[str] = []
    if not backup.owned:
        reasons.append("not owned")
    if backup.is_policy_backup:
        reasons.append(f"policy backup ({AUTO_BACKUP_PREFIX})")
    if backup.status not in (BackupStatus.AVAILABLE, BackupStatus.ERROR):
        # Unknown statuses land here too: when in doubt, keep.
        reasons.append(f"transitional status {backup.status}")
    return reasons


def plan_retention(
    backups: Sequence[BackupRecord],
    rules: RetentionRules,
    now: datetime,
    *,
    newest_attempt_failed: bool = False,
) -> RetentionPlan:
    """Decide, for every backup of ONE disk, whether to keep or delete it, with the reasons.

    Only our own (owned, non-policy) ``available`` backups are counted by the keep rules. Our own ``error``
    backups are garbage once a newer successful backup of ours exists ("failed backup"); the ones newer than
    our newest successful backup are kept so that the failure can be diagnosed. With
    ``newest_attempt_failed`` nothing is deleted, and every decision says so.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    ordered = _newest_first(backups)
    _check_one_disk(ordered)

    candidates = [b for b in ordered if not _protections(b) and b.status == BackupStatus.AVAILABLE]
    keep = _apply_keep_rules(candidates, rules, now)
    newest_success = (candidates[0].created_at, candidates[0].id) if candidates else None

    decisions = []
    for backup in ordered:
        action: Literal["keep", "delete"]
        reasons = _protections(backup)
        if reasons:
            action = "keep"
        elif backup.status == BackupStatus.AVAILABLE:
            reasons = keep[backup.id]
            action = "keep" if reasons else "delete"
            reasons = reasons or ["no rule keeps it"]
        elif newest_success is not None and (backup.created_at, backup.id) < newest_success:
            action, reasons = "delete", ["failed backup"]
        else:
            action, reasons = "keep", ["failed backup newer than any successful one (kept for diagnosis)"]

        if newest_attempt_failed:
            if action == "delete":
                reasons = [SUSPENDED, *(f"would delete: {r}" for r in reasons)]
            else:
                reasons = [*reasons, SUSPENDED]
            action = "keep"
        decisions.append(Decision(backup=backup, action=action, reasons=tuple(reasons)))
    return RetentionPlan(decisions=decisions, pruning_suspended=newest_attempt_failed)
