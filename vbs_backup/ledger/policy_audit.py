"""The ledger of native policy backup tasks: every job a VBS backup policy triggered, as the policy audit
last saw it (table ``policy_task_records``, with its repository functions).

The cloud keeps policy tasks for about 30 days (reference §3.9); this table keeps them for as long as the
ledger lives. Rows are upserted by the task's ``job_id``: an audit that sees a task again (still running,
then finished) updates the same row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from vbs_backup.ledger.tables import UTCDateTime, utcnow

__all__ = ["PolicyTaskRecord", "TaskSighting", "policy_task_records", "upsert_policy_tasks"]


class PolicyTaskRecord(SQLModel, table=True):
    """One backup task of a VBS backup policy (one disk, one execution)."""

    __tablename__ = "policy_task_records"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(unique=True, max_length=64)  # the task's id in the backup-tasks API
    policy_id: str = Field(index=True, max_length=64)
    policy_name: str | None = Field(default=None, max_length=64)
    resource_id: str | None = Field(default=None, index=True, max_length=64)  # the disk
    backup_name: str | None = Field(default=None, max_length=255)  # autobk_xxxx
    # plain text, not an enum: the service may answer statuses the docs do not list
    status: str = Field(max_length=32)
    vbs_job_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_type=UTCDateTime, index=True)  # in the cloud
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    first_seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)  # the last audit that saw it


@dataclass(frozen=True)
class TaskSighting:
    """A task as one audit read it from the cloud."""

    job_id: str
    policy_id: str
    policy_name: str | None
    resource_id: str | None
    backup_name: str | None
    status: str
    created_at: datetime
    finished_at: datetime | None = None
    vbs_job_id: str | None = None


def _apply(row: PolicyTaskRecord, task: TaskSighting, seen_at: datetime) -> None:
    row.policy_id = task.policy_id
    row.policy_name = task.policy_name
    row.resource_id = task.resource_id
    row.backup_name = task.backup_name
    row.status = task.status
    row.vbs_job_id = task.vbs_job_id or row.vbs_job_id
    row.created_at = task.created_at
    row.finished_at = task.finished_at
    row.seen_at = seen_at


def upsert_policy_tasks(
    *, session: Session, tasks: Sequence[TaskSighting], seen_at: datetime | None = None
) -> tuple[int, int]:
    """Insert new tasks, update known ones (by job id); one commit. Returns (inserted, updated)."""
    seen_at = seen_at or utcnow()
    ids = [t.job_id for t in tasks]
    known = {
        r.job_id: r
        for r in session.exec(select(PolicyTaskRecord).where(col(PolicyTaskRecord.job_id).in_(ids))).all()
    }
    inserted = updated = 0
    for task in tasks:
        row = known.get(task.job_id)
        if row is None:
            row = PolicyTaskRecord(
                job_id=task.job_id,
                policy_id=task.policy_id,
                status=task.status,
                created_at=task.created_at,
                first_seen_at=seen_at,
            )
            known[task.job_id] = row
            inserted += 1
        else:
            updated += 1
        _apply(row, task, seen_at)
        session.add(row)
    try:
        session.commit()
    except IntegrityError:
        # another audit inserted some of them meanwhile: their rows exist now, so update instead
        session.rollback()
        return upsert_policy_tasks(session=session, tasks=tasks, seen_at=seen_at)
    return inserted, updated


def policy_task_records(
    *, session: Session, policy_id: str | None = None, since: datetime | None = None
) -> list[PolicyTaskRecord]:
    """Rows of one policy (or all), created at or after `since`, oldest first."""
    stmt = select(PolicyTaskRecord)
    if policy_id is not None:
        stmt = stmt.where(PolicyTaskRecord.policy_id == policy_id)
    if since is not None:
        stmt = stmt.where(col(PolicyTaskRecord.created_at) >= since)
    return list(session.exec(stmt.order_by(col(PolicyTaskRecord.created_at), col(PolicyTaskRecord.id))).all())
