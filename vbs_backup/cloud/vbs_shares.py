"""VBS backup sharing (reference §2.11-§2.15): share_backup, cancel_share, list_shares, count_shares,
get_share — one short async method per API operation over `CloudSession`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import TypeAdapter

from .models import Share, ShareBackupRequest
from .models.common import decode, query_params, require_uuid
from .vbs_backups import VbsBase

__all__ = ["VbsSharesApi"]

_SHARES = TypeAdapter(list[Share])


class VbsSharesApi(VbsBase):
    async def share_backup(self, backup_id: str, to_project_ids: Sequence[str]) -> list[Share]:
        """Share a backup with other projects: one record per target project (§2.11)."""
        json = ShareBackupRequest(backup_id=backup_id, to_project_ids=list(to_project_ids)).to_body()
        body = await self._call("POST", self._v2("/os-vendor-backup-sharing"), "share_backup", json=json)
        return decode(_SHARES, (body or {}).get("shared"), operation="vbs.share_backup")

    async def cancel_share(self, share_id: str, *, is_backup_id: bool = False) -> None:
        """Remove one share, or with `is_backup_id=True` every share of the backup `share_id` (§2.12)."""
        label = "backup_id" if is_backup_id else "share_id"
        path = self._v2(f"/os-vendor-backup-sharing/{require_uuid(label, share_id)}")
        params = {"is_backup_id": "true"} if is_backup_id else None
        await self._call("DELETE", path, "cancel_share", params=params)

    async def list_shares(
        self,
        *,
        share_to_me: bool | None = None,
        backup_id: str | None = None,
        volume_id: str | None = None,
        name: str | None = None,
        status: str | None = None,
        from_project_id: str | None = None,
        to_project_id: str | None = None,
        availability_zone: str | None = None,
        sort_key: str | None = None,
        sort_dir: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Share]:
        """Shares made by this project, or received with `share_to_me=True` (§2.13). The docs spell the
        zone filter `avalilability_zone`; like every SDK we send `availability_zone`."""
        params = query_params(
            share_to_me=share_to_me,
            backup_id=backup_id,
            volume_id=volume_id,
            name=name,
            status=status,
            from_project_id=from_project_id,
            to_project_id=to_project_id,
            availability_zone=availability_zone,
            sort_key=sort_key,
            sort_dir=sort_dir,
            limit=limit,
            offset=offset,
        )
        body = await self._call(
            "GET", self._v2("/os-vendor-backup-sharing/detail"), "list_shares", params=params
        )
        return decode(_SHARES, (body or {}).get("shared", []), operation="vbs.list_shares")

    async def count_shares(
        self,
        *,
        share_to_me: bool | None = None,
        backup_id: str | None = None,
        volume_id: str | None = None,
        name: str | None = None,
        status: str | None = None,
        from_project_id: str | None = None,
        to_project_id: str | None = None,
        availability_zone: str | None = None,
    ) -> int:
        """Number of shares matching the same filters as `list_shares` (§2.14)."""
        params = query_params(
            share_to_me=share_to_me,
            backup_id=backup_id,
            volume_id=volume_id,
            name=name,
            status=status,
            from_project_id=from_project_id,
            to_project_id=to_project_id,
            availability_zone=availability_zone,
        )
        body = await self._call(
            "GET", self._v2("/os-vendor-backup-sharing/count"), "count_shares", params=params
        )
        return decode(int, (body or {}).get("count"), operation="vbs.count_shares")

    async def get_share(self, share_id: str) -> Share:
        """One share with its embedded backup (§2.15): `{"shared": {...}}`, an object this time."""
        path = self._v2(f"/os-vendor-backup-sharing/{require_uuid('share_id', share_id)}")
        body = await self._call("GET", path, "get_share")
        return decode(Share, (body or {}).get("shared"), operation="vbs.get_share")
