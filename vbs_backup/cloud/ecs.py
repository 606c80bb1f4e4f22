"""The ECS facade: `EcsApi`, the server calls that find which disks to back up (reference §5a).

Operations: list_block_devices, get_server, list_servers, list_volume_attachments; helper iter_servers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from pydantic import TypeAdapter

from .models import BlockDeviceList, Server, ServerList, VolumeAttachment
from .models.common import decode, query_params, require_opaque_id
from .session import CloudSession, Service

__all__ = ["MAX_SERVER_PAGE", "EcsApi"]

MAX_SERVER_PAGE = 1000  # the documented maximum `limit` of the server list
_ATTACHMENTS = TypeAdapter(list[VolumeAttachment])


class EcsApi:
    """`EcsApi(session)`. Server ids are checked to be non-empty URL-safe ids (they are UUIDs in the
    cloud, but §0.3 does not list them, so we do not insist on the form)."""

    def __init__(self, session: CloudSession) -> None:
        self.session = session

    async def _get(self, path: str, operation: str, params: dict[str, Any] | None = None) -> Any:
        return await self.session.json(
            Service.ECS, "GET", path, params=params or None, operation=f"ecs.{operation}"
        )

    async def list_block_devices(self, server_id: str) -> BlockDeviceList:
        """The server's disks with size and boot order (bootIndex 0 = system disk)."""
        sid = require_opaque_id("server_id", server_id)
        path = f"/v1/{self.session.project_id}/cloudservers/{sid}/block_device"
        return decode(
            BlockDeviceList, await self._get(path, "list_block_devices"), operation="ecs.list_block_devices"
        )

    async def get_server(self, server_id: str) -> Server:
        """One server; an unknown id raises `NotFoundError`."""
        path = f"/v1/{self.session.project_id}/cloudservers/{require_opaque_id('server_id', server_id)}"
        body = await self._get(path, "get_server")
        return decode(Server, (body or {}).get("server"), operation="ecs.get_server")

    async def list_servers(
        self,
        *,
        offset: int | None = None,
        limit: int | None = None,
        name: str | None = None,
        status: str | None = None,
        tags: str | None = None,
        not_tags: str | None = None,
    ) -> ServerList:
        """One page of servers. In this API `offset` is a 1-based PAGE number, not an item offset, and
        `limit` (the page size) is at most 1000. `name` is a fuzzy match; `tags`/`not_tags` are passed
        through as the API takes them (a tag string such as `key=value`; the exact match rules are the
        service's)."""
        if limit is not None and not 1 <= limit <= MAX_SERVER_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_SERVER_PAGE}, got {limit}")
        if offset is not None and offset < 1:
            raise ValueError(f"offset is a 1-based page number, got {offset}")
        params = query_params(offset=offset, limit=limit, name=name, status=status, tags=tags)
        if not_tags is not None:
            params["not-tags"] = not_tags
        path = f"/v1/{self.session.project_id}/cloudservers/detail"
        return decode(ServerList, await self._get(path, "list_servers", params), operation="ecs.list_servers")

    async def iter_servers(
        self,
        *,
        name: str | None = None,
        tags: str | None = None,
        status: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Server]:
        """Every matching server across pages (`offset` = 1-based page number: the session's "page"
        style, which stops at a short or empty page)."""
        if not 1 <= page_size <= MAX_SERVER_PAGE:
            raise ValueError(f"page_size must be between 1 and {MAX_SERVER_PAGE}, got {page_size}")
        items = self.session.paginate(
            Service.ECS,
            f"/v1/{self.session.project_id}/cloudservers/detail",
            items_key="servers",
            params=query_params(name=name, tags=tags, status=status),
            page_size=page_size,
            style="page",
            operation="ecs.list_servers",
        )
        async for item in items:
            yield decode(Server, item, operation="ecs.list_servers")

    async def list_volume_attachments(self, server_id: str) -> list[VolumeAttachment]:
        """Nova's view of the attached disks (ids and devices only)."""
        sid = require_opaque_id("server_id", server_id)
        path = f"/v2.1/{self.session.project_id}/servers/{sid}/os-volume_attachments"
        body = await self._get(path, "list_volume_attachments")
        return decode(
            _ATTACHMENTS, (body or {}).get("volumeAttachments", []), operation="ecs.list_volume_attachments"
        )
