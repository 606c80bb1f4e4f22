"""Which disks a plan protects: servers chosen by id / name pattern / tag, and every EVS disk attached.

Discovery is batched for fleets: one paginated ECS server listing (its `volumes_attached` gives each disk's
device and boot index) and one paginated EVS volume listing (size, status, name) answer for a thousand
disks in a handful of requests, instead of two requests per server. A plan that names servers only by id
asks for exactly those servers, and an id that does not exist is an error before any backup starts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, ConfigDict

from ..cloud import CloudClient
from ..cloud.errors import NotFoundError
from ..cloud.models.ecs import Server
from ..cloud.models.evs import Volume
from ..plan import BackupPlan, ServerSelection

log = logging.getLogger(__name__)


# The status of a disk that a server lists as attached but EVS does not describe (`disks_of`).
MISSING = "missing"


class SelectionError(ValueError):
    """The plan's selection names servers that do not exist, or selects nothing."""


class DiskTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    server_id: str
    server_name: str
    volume_id: str
    volume_name: str
    device: str
    size_gb: int
    is_system: bool
    status: str  # the EVS status; MISSING when EVS could not describe an attached disk

    @property
    def missing(self) -> bool:
        """The server lists the disk but EVS cannot describe it: it cannot be backed up."""
        return self.status == MISSING

    @property
    def label(self) -> str:
        """How people name a disk: `web-01 /dev/vdb`."""
        return f"{self.server_name} {self.device}"


class ServerTarget(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    tags: dict[str, str] = {}
    disks: list[DiskTarget] = []


def server_tags(server: Server) -> dict[str, str]:
    """ECS lists tags as `key=value` strings; a bare key has an empty value."""
    tags: dict[str, str] = {}
    for item in server.tags:
        key, _, value = item.partition("=")
        tags[key] = value
    return tags


def disks_of(server: Server, volumes: dict[str, Volume], *, include_system: bool) -> list[DiskTarget]:
    """The server's disks in device order. The system disk is the one with boot index 0 or on the
    server's root device. A disk that the server lists but EVS does not describe is kept with status
    `missing`, so that its backup fails loudly instead of the disk going unprotected in silence."""
    disks = []
    for attached in server.volumes_attached:
        volume = volumes.get(attached.id)
        if volume is None:
            disks.append(
                DiskTarget(
                    server_id=server.id,
                    server_name=server.name or server.id,
                    volume_id=attached.id,
                    volume_name=attached.id,
                    device=attached.device or "unknown",
                    size_gb=0,
                    is_system=attached.boot_index == 0,
                    status=MISSING,
                )
            )
            continue
        device = attached.device or _device_from(volume, server.id) or "unknown"
        is_system = attached.boot_index == 0 or (
            server.root_device_name is not None and device == server.root_device_name
        )
        if is_system and not include_system:
            continue
        disks.append(
            DiskTarget(
                server_id=server.id,
                server_name=server.name or server.id,
                volume_id=volume.id,
                volume_name=volume.name or volume.id,
                device=device,
                size_gb=volume.size,
                is_system=is_system,
                status=str(volume.status),
            )
        )
    return sorted(disks, key=lambda d: d.device)


def _device_from(volume: Volume, server_id: str) -> str | None:
    return next((a.device for a in volume.attachments if a.server_id == server_id and a.device), None)


def select(servers: Iterable[Server], selection: ServerSelection) -> list[Server]:
    return [s for s in servers if selection.matches(server_id=s.id, name=s.name or "", tags=server_tags(s))]


async def discover_targets(client: CloudClient, plan: BackupPlan) -> list[ServerTarget]:
    """Resolve the plan to servers and their disks, or raise `SelectionError` naming what is wrong."""
    selection = plan.selection
    if selection.ids and not (selection.name_patterns or selection.tags):
        servers = await _servers_by_id(client, selection.ids)
    else:
        listed = [s async for s in client.ecs.iter_servers()]
        missing = sorted(set(selection.ids) - {s.id for s in listed})
        if missing:
            raise SelectionError(f"unknown server id(s) in the plan: {', '.join(missing)}")
        servers = listed
    chosen = select(servers, selection)
    if not chosen:
        raise SelectionError("the plan's selection matches no server")
    wanted = {a.id for s in chosen for a in s.volumes_attached}
    volumes = {v.id: v async for v in _volumes(client, wanted)}
    targets = sorted(
        (
            ServerTarget(
                id=s.id,
                name=s.name or s.id,
                tags=server_tags(s),
                disks=disks_of(s, volumes, include_system=plan.include_system_disk),
            )
            for s in chosen
        ),
        key=lambda t: (t.name, t.id),
    )
    return _once_per_volume(targets)


def _once_per_volume(targets: list[ServerTarget]) -> list[ServerTarget]:
    """A disk attached to several selected servers (multi-attach) is one disk: it is backed up once, with
    the first of its servers in name order."""
    seen: dict[str, str] = {}
    result = []
    for target in targets:
        disks = []
        for disk in target.disks:
            if disk.volume_id in seen:
                log.info("%s: shared with %s, backed up there", disk.label, seen[disk.volume_id])
                continue
            seen[disk.volume_id] = disk.label
            disks.append(disk)
        result.append(
            target if len(disks) == len(target.disks) else target.model_copy(update={"disks": disks})
        )
    return result


async def _servers_by_id(client: CloudClient, ids: Sequence[str]) -> list[Server]:
    servers, missing = [], []
    for server_id in ids:
        try:
            servers.append(await client.ecs.get_server(server_id))
        except NotFoundError:
            missing.append(server_id)
    if missing:
        raise SelectionError(f"unknown server id(s) in the plan: {', '.join(missing)}")
    return servers


async def _volumes(client: CloudClient, wanted: set[str]):
    """All wanted volumes: one listing for many disks, single GETs for a handful."""
    if len(wanted) <= 3:
        for volume_id in sorted(wanted):
            try:
                yield await client.evs.get_volume(volume_id)
            except NotFoundError:
                continue
        return
    async for volume in client.evs.iter_volumes():
        if volume.id in wanted:
            yield volume
