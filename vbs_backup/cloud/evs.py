"""The EVS facade: `EvsApi`, disk details and the disk calls a restore test needs (reference §5a).

Operations: get_volume, list_volumes, create_volume, delete_volume; helper iter_volumes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from .models import CreateVolumeRequest, CreateVolumeResult, JobRef, Volume, VolumeList
from .models.common import decode, query_params, require_uuid
from .session import CloudSession, Service

__all__ = ["EvsApi"]


class EvsApi:
    """`EvsApi(session)`: `/v2/{project_id}/cloudvolumes...` on the EVS endpoint."""

    def __init__(self, session: CloudSession) -> None:
        self.session = session

    def _path(self, path: str = "") -> str:
        return f"/v2/{self.session.project_id}/cloudvolumes{path}"

    async def _call(self, method: str, path: str, operation: str, **kwargs: Any) -> Any:
        return await self.session.json(Service.EVS, method, path, operation=f"evs.{operation}", **kwargs)

    async def get_volume(self, volume_id: str) -> Volume:
        body = await self._call("GET", self._path(f"/{require_uuid('volume_id', volume_id)}"), "get_volume")
        return decode(Volume, (body or {}).get("volume"), operation="evs.get_volume")

    async def list_volumes(
        self,
        *,
        server_id: str | None = None,
        status: str | None = None,
        name: str | None = None,
        availability_zone: str | None = None,
        limit: int | None = None,
        marker: str | None = None,
        offset: int | None = None,
        sort_key: str | None = None,
        sort_dir: str | None = None,
    ) -> VolumeList:
        """One page of disks (`limit` 1-1000); `server_id` gives the disks attached to one server."""
        params = query_params(
            server_id=server_id,
            status=status,
            name=name,
            availability_zone=availability_zone,
            limit=limit,
            marker=marker,
            offset=offset,
            sort_key=sort_key,
            sort_dir=sort_dir,
        )
        body = await self._call("GET", self._path("/detail"), "list_volumes", params=params or None)
        return decode(VolumeList, body, operation="evs.list_volumes")

    async def iter_volumes(
        self,
        *,
        server_id: str | None = None,
        status: str | None = None,
        name: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Volume]:
        """Every matching disk across pages (marker paging over `volumes_links`)."""
        items = self.session.paginate(
            Service.EVS,
            self._path("/detail"),
            items_key="volumes",
            links_key="volumes_links",
            params=query_params(server_id=server_id, status=status, name=name),
            page_size=page_size,
            style="marker",
            operation="evs.list_volumes",
        )
        async for item in items:
            yield decode(Volume, item, operation="evs.list_volumes")

    async def create_volume(
        self,
        *,
        name: str,
        size: int,
        volume_type: str,
        availability_zone: str,
        backup_id: str | None = None,
        description: str | None = None,
    ) -> CreateVolumeResult:
        """Create a disk, from a backup when `backup_id` is given. The real EVS answers `{"job_id"}` (its
        normal code is not in our reference: 200 and 202 are both taken as success); the emulator answers
        200 with `volume_ids` and the disk already `available` (a documented simplification)."""
        request = CreateVolumeRequest(
            name=name,
            size=size,
            volume_type=volume_type,
            availability_zone=availability_zone,
            backup_id=backup_id,
            description=description,
        )
        body = await self._call("POST", self._path(), "create_volume", json=request.to_body(), ok=(200, 202))
        return decode(CreateVolumeResult, body, operation="evs.create_volume")

    async def delete_volume(self, volume_id: str) -> str:
        """Delete a detached (`available`) disk; returns the job id. Its backups are kept (§4.11)."""
        path = self._path(f"/{require_uuid('volume_id', volume_id)}")
        body = await self._call("DELETE", path, "delete_volume", ok=(200, 202))
        return decode(JobRef, body, operation="evs.delete_volume").job_id
