"""The ledger's tables: one row per run, per disk backup attempt, per retention decision.

The schema is versioned: every change goes through an Alembic migration in ``migrations/versions`` (see
:func:`vbs_backup.ledger.engine.init_db`), so a ledger written by an earlier version is migrated, never
silently reinterpreted.

The ledger, not Prefect's history, is the record of what happened. Timestamps are stored in UTC and always
come back timezone-aware (UTC), on PostgreSQL (``timestamptz``) and on SQLite (which has no timezone type:
see :class:`UTCDateTime`). Status columns are plain strings in the database, so that adding a status never
needs a type migration, and come back as the ``StrEnum`` members below.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import DateTime, Dialect, String, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "DeleteStatus",
    "DiskBackup",
    "DiskBackupStatus",
    "RetentionAction",
    "RetentionDecision",
    "Run",
    "RunStatus",
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC.

    Naive datetimes are refused on the way in (their meaning is a guess). SQLite stores the UTC wall time
    without an offset, and it is marked UTC on the way out; PostgreSQL's ``timestamptz`` answers in the
    session's timezone, and it is converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} given to the ledger: use a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnumColumn(TypeDecorator[Any]):
    """A ``StrEnum`` stored as a short string and read back as the enum member."""

    impl = String(16)
    cache_ok = True

    def __init__(self, enum_cls: type[StrEnum]) -> None:
        super().__init__()
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum_cls(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        return None if value is None else self.enum_cls(value)


class RunStatus(StrEnum):
    running = "running"
    completed = "completed"
    failed = "failed"
    crashed = "crashed"  # the flow raised out of its body; set on the way out
    abandoned = "abandoned"  # the process died: its heartbeat stopped; set by the next run or the watchdog


class DiskBackupStatus(StrEnum):
    intent = "intent"  # written before the create call
    submitted = "submitted"  # the create call returned a job id
    running = "running"  # the job was seen running
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"  # the per-disk deadline passed; the job may still finish in the cloud
    adopted = "adopted"  # a backup of this identity already existed (earlier crash, retry, other ledger)
    abandoned = "abandoned"  # the run died before any backup of this attempt appeared in the cloud

    @classmethod
    def successes(cls) -> frozenset[DiskBackupStatus]:
        return frozenset({cls.succeeded, cls.adopted})

    @classmethod
    def finals(cls) -> frozenset[DiskBackupStatus]:
        return frozenset({cls.succeeded, cls.adopted, cls.failed, cls.timed_out, cls.abandoned})

    @classmethod
    def unfinished(cls) -> frozenset[DiskBackupStatus]:
        return frozenset({cls.intent, cls.submitted, cls.running})


class RetentionAction(StrEnum):
    keep = "keep"
    delete = "delete"


class DeleteStatus(StrEnum):
    intent = "intent"  # written before the delete call
    requested = "requested"  # the delete call was accepted
    done = "done"  # the backup is gone
    failed = "failed"


class Run(SQLModel, table=True):
    """One execution of a backup plan (one flow run, or one CLI run)."""

    __tablename__ = "runs"

    id: int | None = Field(default=None, primary_key=True)
    flow_run_id: str | None = Field(default=None, index=True, max_length=64)  # Prefect flow run id
    deployment: str | None = Field(default=None, max_length=255)
    # One ledger may record the runs of every target of an estate (vbs_backup/estate.py), whose plan names
    # repeat: `target` is the estate target's name (NULL for a run outside any estate), and reads of a
    # target's runs are scoped by it; `project_id` is the project the run worked on (NULL when unknown,
    # e.g. the runs of a ledger from before this column).
    target: str | None = Field(default=None, index=True, max_length=64)
    project_id: str | None = Field(default=None, max_length=64)
    plan_name: str = Field(max_length=64)
    trigger: str = Field(max_length=32)  # schedule, manual, cli, demo, ...
    started_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    status: RunStatus = Field(default=RunStatus.running, sa_type=StrEnumColumn(RunStatus))
    # Written at the start and then every minute or so while the run lives: a `running` run whose heartbeat
    # is older than the lease is dead, and the next run (or the watchdog) marks it `abandoned`.
    heartbeat_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Counts are computed from the rows below by finish_run and frozen there.
    disks_total: int = 0
    disks_succeeded: int = 0
    disks_failed: int = 0
    deletes_done: int = 0
    message: str | None = None


class DiskBackup(SQLModel, table=True):
    """One attempt at backing up one disk for one plan and one schedule slot: the intent, then the job, then
    the outcome.

    A backup's identity is (plan, volume, slot); ``attempt`` counts the attempts at one identity (a failed
    job retried, a slot whose backup vanished), so that every backup we ever created has a row of its own
    and stays ours to clean up. ``backup_name`` is readable decoration: the identity is carried on the
    backup itself, in its description (see ``vbs_backup.identity``).
    """

    __tablename__ = "disk_backups"
    __table_args__ = (
        UniqueConstraint("plan_name", "volume_id", "slot_start", "attempt", name="uq_disk_backups_attempt"),
    )

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)  # the latest run that worked on this attempt
    plan_name: str = Field(index=True, max_length=64)
    # Start of the schedule slot (UTC); None only on a migrated row whose old name did not tell it.
    slot_start: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    attempt: int = 1  # 1, 2, ... within (plan, volume, slot)
    server_id: str = Field(max_length=64)
    server_name: str = Field(max_length=255)
    volume_id: str = Field(index=True, max_length=64)
    volume_name: str | None = Field(default=None, max_length=255)
    device: str = Field(max_length=64)  # e.g. /dev/vdb
    size_gb: int
    is_system_disk: bool
    backup_name: str = Field(index=True, max_length=64)
    job_id: str | None = Field(default=None, max_length=64)
    backup_id: str | None = Field(default=None, index=True, max_length=64)
    status: DiskBackupStatus = Field(default=DiskBackupStatus.intent, sa_type=StrEnumColumn(DiskBackupStatus))
    error_code: str | None = Field(default=None, max_length=64)  # e.g. VolumeBackup.0064
    error_reason: str | None = None  # plain text from the job or the client, never a secret
    incremental: bool | None = None  # None: not known
    attempts: int = 1  # how many runs took this attempt up (a resumed run counts again)
    # False when the backup was found in the cloud without any proof that this ledger asked for it (a lost
    # or second ledger adopting by identity): such a backup protects its slot but is never deleted by us.
    created_by_us: bool = True
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    submitted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # last restore drill that passed


class RetentionDecision(SQLModel, table=True):
    """One keep/delete decision about one of our backups, with its reasons and the delete's progress."""

    __tablename__ = "retention_decisions"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="runs.id", index=True)
    volume_id: str = Field(index=True, max_length=64)
    backup_id: str = Field(index=True, max_length=64)
    backup_name: str | None = Field(default=None, max_length=255)
    created_at_cloud: datetime = Field(sa_type=UTCDateTime)  # the backup's created_at in the cloud
    action: RetentionAction = Field(sa_type=StrEnumColumn(RetentionAction))
    reasons: str  # joined with "; "
    dry_run: bool = False
    # None for a keep or a dry run; intent -> requested -> done | failed for a real delete.
    delete_status: DeleteStatus | None = Field(default=None, sa_type=StrEnumColumn(DeleteStatus))
    delete_error: str | None = None
    decided_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
