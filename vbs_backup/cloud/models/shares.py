"""Wire models of backup sharing (`/v2/{pid}/os-vendor-backup-sharing...`, reference §2.11-§2.15).

Owned here: the share record (`Share`, with the embedded backup of the detail queries) and the share
request body.
"""

from __future__ import annotations

from pydantic import Field

from .backups import Backup
from .common import OptionalUtcDateTime, WireModel, WireRequest

__all__ = ["Share", "ShareBackupRequest"]


class Share(WireModel):
    """One sharing record: one backup shared with one project."""

    id: str
    backup_id: str
    from_project_id: str | None = None
    to_project_id: str | None = None
    created_at: OptionalUtcDateTime = None  # null in the create answer
    updated_at: OptionalUtcDateTime = None
    deleted: bool | str | None = None  # "string/bool-ish", null while the share is active
    deleted_at: OptionalUtcDateTime = None
    backup: Backup | None = None  # only in the detail queries (§2.13, §2.15)


class ShareBackupRequest(WireRequest):
    """`POST /v2/{pid}/os-vendor-backup-sharing` (§2.11)."""

    wrapper = "shared"

    backup_id: str
    to_project_ids: list[str] = Field(min_length=1)
