"""The ledger of backup shares: which of our backups we shared with which project, and when we took the
share back (table ``share_records``, with its repository functions).

One row per (backup, target project). The row is written *before* the share or cancel call (status
``intent`` / ``cancelling``), so that a lost answer is found again by the next run: the cloud's share record
for the same pair is adopted, never created twice. The row keeps the backup's disk, so that "the shares of
this disk" needs no cloud call. Only shares that have a row here are ever cancelled by this product: a share
made by hand is left alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from sqlalchemy import UniqueConstraint
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from vbs_backup.ledger._rows import cut_text, get_row, save_row
from vbs_backup.ledger.tables import StrEnumColumn, UTCDateTime, utcnow

__all__ = [
    "ShareRecord",
    "ShareStatus",
    "find_share_record",
    "mark_share_cancelled",
    "mark_share_cancelling",
    "mark_share_failed",
    "mark_share_gone",
    "mark_shared",
    "note_share_error",
    "record_share_intent",
    "share_records",
]


class ShareStatus(StrEnum):
    intent = "intent"  # written before the share call
    active = "active"  # the cloud has the share (made by us, or adopted after a lost answer)
    cancelling = "cancelling"  # written before the cancel call
    cancelled = "cancelled"  # we took it back
    gone = "gone"  # it disappeared without us (backup deleted, cancelled by hand)
    failed = "failed"  # the share call was refused; error says why

    @classmethod
    def live(cls) -> frozenset[ShareStatus]:
        """Rows that may stand for a share in the cloud."""
        return frozenset({cls.intent, cls.active, cls.cancelling})


class ShareRecord(SQLModel, table=True):
    """One of our backups shared with one other project."""

    __tablename__ = "share_records"
    __table_args__ = (UniqueConstraint("backup_id", "to_project_id", name="uq_share_records_backup_project"),)

    id: int | None = Field(default=None, primary_key=True)
    backup_id: str = Field(index=True, max_length=64)
    backup_name: str | None = Field(default=None, max_length=255)
    volume_id: str = Field(index=True, max_length=64)
    to_project_id: str = Field(index=True, max_length=32)
    share_id: str | None = Field(default=None, max_length=64)  # the cloud's share record id
    status: ShareStatus = Field(default=ShareStatus.intent, sa_type=StrEnumColumn(ShareStatus))
    cancelled_by_backup: bool = False  # cancelled with `is_backup_id=true` (all shares of the backup at once)
    error: str | None = None
    requested_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # the share became active
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


def find_share_record(*, session: Session, backup_id: str, to_project_id: str) -> ShareRecord | None:
    stmt = select(ShareRecord).where(
        ShareRecord.backup_id == backup_id, ShareRecord.to_project_id == to_project_id
    )
    return session.exec(stmt).first()


def record_share_intent(
    *,
    session: Session,
    backup_id: str,
    backup_name: str | None,
    volume_id: str,
    to_project_id: str,
    at: datetime | None = None,
) -> ShareRecord:
    """Before the share call: the pair's row in status ``intent`` (an old row of the pair, say a share
    cancelled earlier and wanted again, is reused and its history reset)."""
    row = find_share_record(session=session, backup_id=backup_id, to_project_id=to_project_id)
    if row is None:
        row = ShareRecord(
            backup_id=backup_id, backup_name=backup_name, volume_id=volume_id, to_project_id=to_project_id
        )
    row.status = ShareStatus.intent
    row.share_id = None
    row.error = None
    row.cancelled_at = None
    row.cancelled_by_backup = False
    row.requested_at = at or utcnow()
    try:
        return save_row(session, row)
    except IntegrityError:
        # another worker wrote the same pair between our read and our insert: use its row
        session.rollback()
        found = find_share_record(session=session, backup_id=backup_id, to_project_id=to_project_id)
        if found is None:
            raise
        return found


def mark_shared(
    *,
    session: Session,
    backup_id: str,
    backup_name: str | None,
    volume_id: str,
    to_project_id: str,
    share_id: str,
    at: datetime | None = None,
) -> ShareRecord:
    """The cloud has the share: after our call, or found there with no row / an ``intent`` row (adopted)."""
    row = find_share_record(session=session, backup_id=backup_id, to_project_id=to_project_id)
    if row is None:
        row = ShareRecord(
            backup_id=backup_id, backup_name=backup_name, volume_id=volume_id, to_project_id=to_project_id
        )
    row.share_id = share_id
    row.status = ShareStatus.active
    row.error = None
    row.created_at = row.created_at or at or utcnow()
    return save_row(session, row)


def mark_share_failed(*, session: Session, record_id: int, error: str) -> ShareRecord:
    row = get_row(session, ShareRecord, record_id)
    row.status = ShareStatus.failed
    row.error = cut_text(error)
    return save_row(session, row)


def note_share_error(*, session: Session, record_id: int, error: str) -> ShareRecord:
    """Keep the row's status (the outcome is unknown, or will be retried) and say what went wrong."""
    row = get_row(session, ShareRecord, record_id)
    row.error = cut_text(error)
    return save_row(session, row)


def mark_share_cancelling(*, session: Session, record_id: int, by_backup: bool = False) -> ShareRecord:
    """Before the cancel call."""
    row = get_row(session, ShareRecord, record_id)
    row.status = ShareStatus.cancelling
    row.cancelled_by_backup = by_backup
    return save_row(session, row)


def mark_share_cancelled(*, session: Session, record_id: int, at: datetime | None = None) -> ShareRecord:
    row = get_row(session, ShareRecord, record_id)
    row.status = ShareStatus.cancelled
    row.error = None
    row.cancelled_at = at or utcnow()
    return save_row(session, row)


def mark_share_gone(
    *, session: Session, record_id: int, reason: str, at: datetime | None = None
) -> ShareRecord:
    """The share is no longer in the cloud and we did not take it back (or our cancel's answer was lost)."""
    row = get_row(session, ShareRecord, record_id)
    if row.status == ShareStatus.cancelling:
        # our own cancel went through even though its answer never came back
        return mark_share_cancelled(session=session, record_id=record_id, at=at)
    row.status = ShareStatus.gone
    row.error = cut_text(reason)
    row.cancelled_at = at or utcnow()
    return save_row(session, row)


def share_records(
    *,
    session: Session,
    volume_ids: Iterable[str] | None = None,
    to_project_ids: Iterable[str] | None = None,
    statuses: Iterable[ShareStatus] | None = None,
) -> list[ShareRecord]:
    """Rows filtered by disk, target project and status, oldest first."""
    stmt = select(ShareRecord)
    if volume_ids is not None:
        stmt = stmt.where(col(ShareRecord.volume_id).in_(list(volume_ids)))
    if to_project_ids is not None:
        stmt = stmt.where(col(ShareRecord.to_project_id).in_(list(to_project_ids)))
    if statuses is not None:
        stmt = stmt.where(col(ShareRecord.status).in_([ShareStatus(s).value for s in statuses]))
    return list(session.exec(stmt.order_by(col(ShareRecord.requested_at), col(ShareRecord.id))).all())
