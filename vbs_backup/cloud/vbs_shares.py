"""VBS backup sharing (reference §2.11-§2.15): share_backup, cancel_share, list_shares (and iter_shares
over its pages), count_shares, get_share — one short async method per API operation over `CloudSession`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TypedDict

from pydantic import TypeAdapter
from typing_extensions import Unpack

from .models import Share, ShareBackupRequest
from .models.common import declared_query, decode, require_uuid
from .session import Service
from .vbs_backups import VbsBase

__all__ = ["ShareFilters", "ShareQuery", "VbsSharesApi"]

_SHARES = TypeAdapter(list[Share])


class ShareFilters(TypedDict, total=False):
    """What the shares list and count filter on (§2.13, §2.14), declared once for both. The docs spell
    the zone filter `avalilability_zone`; like every SDK we send `availability_zone`. None is the same as
    leaving a key out."""

    share_to_me: bool | None  # the shares this project received, instead of those it made
    backup_id: str | None
    volume_id: str | None
    name: str | None
    status: str | None
    from_project_id: str | None
    to_project_id: str | None
    availability_zone: str | None


class ShareQuery(ShareFilters, total=False):
    """One page of the shares list: the filters, an order, and `limit` items from `offset`."""

    sort_key: str | None
    sort_dir: str | None
    limit: int | None
    offset: int | None


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

    async def list_shares(self, **query: Unpack[ShareQuery]) -> list[Share]:
        """One page of the shares made by this project, or received with `share_to_me=True` (§2.13); see
        `iter_shares` for all of them."""
        params = declared_query(ShareQuery, query)
        body = await self._call(
            "GET", self._v2("/os-vendor-backup-sharing/detail"), "list_shares", params=params
        )
        return decode(_SHARES, (body or {}).get("shared", []), operation="vbs.list_shares")

    async def iter_shares(
        self, *, page_size: int = 100, **filters: Unpack[ShareFilters]
    ) -> AsyncIterator[Share]:
        """Every share matching `filters`, oldest first, across pages. Offset paging: the reference does
        not confirm that the server emits `shared_links` (§2.13), so a page shorter than asked ends it."""
        items = self.session.paginate(
            Service.VBS,
            self._v2("/os-vendor-backup-sharing/detail"),
            items_key="shared",
            params={**declared_query(ShareFilters, filters), "sort_dir": "asc"},
            page_size=page_size,
            style="offset",
            operation="vbs.list_shares",
        )
        async for item in items:
            yield decode(Share, item, operation="vbs.list_shares")

    async def count_shares(self, **filters: Unpack[ShareFilters]) -> int:
        """Number of shares matching the same filters as `list_shares` (§2.14)."""
        params = declared_query(ShareFilters, filters)
        body = await self._call(
            "GET", self._v2("/os-vendor-backup-sharing/count"), "count_shares", params=params
        )
        return decode(int, (body or {}).get("count"), operation="vbs.count_shares")

    async def get_share(self, share_id: str) -> Share:
        """One share with its embedded backup (§2.15): `{"shared": {...}}`, an object this time."""
        path = self._v2(f"/os-vendor-backup-sharing/{require_uuid('share_id', share_id)}")
        body = await self._call("GET", path, "get_share")
        return decode(Share, (body or {}).get("shared"), operation="vbs.get_share")
