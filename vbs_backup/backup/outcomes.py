"""What the cloud's statuses mean for a disk's backup: the one mapping from the wire's words (a backup's
`BackupStatus`, a job's `JobStatus`) to the ledger's (`DiskBackupStatus`), and the backup statuses that
hold a slot (`LIVE`).

Every place that learns how a create ended (the waiter, reconciling earlier attempts) asks here, so that
the cloud's vocabulary meets the ledger's in one table each, not in string comparisons across the code.
"""

from __future__ import annotations

from ..cloud.models.backups import UNREADABLE_STATUS, BackupStatus
from ..cloud.models.jobs import JobStatus
from ..ledger import DiskBackupStatus

__all__ = ["LIVE", "from_backup", "from_job"]

# A backup of these statuses holds its slot: it is adopted, never duplicated. `UNREADABLE_STATUS`, a listed
# backup we could not read (see cloud.models.backups), may well be the slot's backup, so it is adopted
# rather than duplicated, and the disk then fails loudly in `submit.confirm_in_cloud`.
LIVE: frozenset[BackupStatus | str] = frozenset(
    {BackupStatus.CREATING, BackupStatus.AVAILABLE, BackupStatus.RESTORING, UNREADABLE_STATUS}
)

_BY_BACKUP: dict[BackupStatus | str, DiskBackupStatus] = {
    BackupStatus.AVAILABLE: DiskBackupStatus.succeeded,
    BackupStatus.ERROR: DiskBackupStatus.failed,
    BackupStatus.CREATING: DiskBackupStatus.running,
}

_BY_JOB: dict[JobStatus | str, DiskBackupStatus] = {
    JobStatus.SUCCESS: DiskBackupStatus.succeeded,
    JobStatus.FAIL: DiskBackupStatus.failed,
    JobStatus.INIT: DiskBackupStatus.running,
    JobStatus.RUNNING: DiskBackupStatus.running,
}


def from_backup(status: BackupStatus | str) -> DiskBackupStatus | None:
    """How the create of a backup in `status` went: succeeded, failed or still running; None for a status
    that does not say (restoring, deleting, unreadable, undocumented)."""
    return _BY_BACKUP.get(status)


def from_job(status: JobStatus | str) -> DiskBackupStatus:
    """How a create job in `status` went: succeeded, failed, or running for any other status (an
    undocumented one is polled on, as golangsdk's WaitForJobSuccess does)."""
    return _BY_JOB.get(status, DiskBackupStatus.running)
