"""The ledger: what every run did, disk by disk, and every retention decision (SQLModel on SQLite or
PostgreSQL). Build an engine with :func:`make_engine`, create the tables with :func:`init_db`, and read or
write only through the repository functions re-exported here.
"""

from vbs_backup.ledger.engine import init_db, make_engine, normalize_url
from vbs_backup.ledger.repository import (
    LedgerNotFoundError,
    VolumeProtection,
    disk_backups_for_run,
    find_disk_backup,
    finish_run,
    mark_delete,
    newest_attempt,
    owned_backup_ids,
    protection_status,
    recent_runs,
    record_intent,
    record_outcome,
    record_retention_decision,
    record_submitted,
    record_verified,
    start_run,
)
from vbs_backup.ledger.tables import (
    DeleteStatus,
    DiskBackup,
    DiskBackupStatus,
    RetentionAction,
    RetentionDecision,
    Run,
    RunStatus,
    UTCDateTime,
)

__all__ = [
    "DeleteStatus",
    "DiskBackup",
    "DiskBackupStatus",
    "LedgerNotFoundError",
    "RetentionAction",
    "RetentionDecision",
    "Run",
    "RunStatus",
    "UTCDateTime",
    "VolumeProtection",
    "disk_backups_for_run",
    "find_disk_backup",
    "finish_run",
    "init_db",
    "make_engine",
    "mark_delete",
    "newest_attempt",
    "normalize_url",
    "owned_backup_ids",
    "protection_status",
    "recent_runs",
    "record_intent",
    "record_outcome",
    "record_retention_decision",
    "record_submitted",
    "record_verified",
    "start_run",
]
