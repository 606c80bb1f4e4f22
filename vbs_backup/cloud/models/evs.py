"""Wire models of EVS disks (reference §5a, `/v2/{pid}/cloudvolumes...`).

Owned here: `Volume` (`bootable` is the string "true"/"false" on the wire), its attachments, the list page
and the create/delete bodies and answers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from .common import Link, OptionalUtcDateTime, WireModel, WireRequest, known_or_raw, next_marker, wire_name

__all__ = [
    "CreateVolumeRequest",
    "CreateVolumeResult",
    "DiskAttachment",
    "Volume",
    "VolumeList",
    "VolumeStatus",
]


class VolumeStatus(StrEnum):
    """The EVS statuses VBS cares about (§0.4); others arrive as plain strings."""

    AVAILABLE = "available"
    IN_USE = "in-use"
    CREATING = "creating"
    BACKING_UP = "backing-up"
    RESTORING_BACKUP = "restoring-backup"
    ERROR_RESTORING = "error_restoring"
    DELETING = "deleting"
    ERROR = "error"


class DiskAttachment(WireModel):
    server_id: str | None = None
    attachment_id: str | None = None
    attached_at: OptionalUtcDateTime = None
    host_name: str | None = None
    volume_id: str | None = None
    device: str | None = None
    id: str | None = None


class Volume(WireModel):
    id: str
    name: str | None = None
    description: str | None = None
    status: Annotated[VolumeStatus | str, known_or_raw(VolumeStatus)]
    size: int  # GiB
    bootable: bool = False  # "true"/"false" on the wire
    attachments: list[DiskAttachment] = []
    availability_zone: str | None = None
    volume_type: str | None = None  # SATA, SAS, SSD, GPSSD, ESSD
    metadata: dict[str, Any] = {}
    encrypted: bool | None = None
    multiattach: bool | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None
    tenant_id: Annotated[str | None, wire_name("os-vol-tenant-attr:tenant_id")] = None
    created_at: OptionalUtcDateTime = None
    updated_at: OptionalUtcDateTime = None
    links: list[Link] = []

    @property
    def server_ids(self) -> list[str]:
        return [a.server_id for a in self.attachments if a.server_id]

    @property
    def can_be_backed_up(self) -> bool:
        """VBS backs up `available` and `in-use` disks only (§4.10)."""
        return self.status in (VolumeStatus.AVAILABLE, VolumeStatus.IN_USE)


class VolumeList(WireModel):
    volumes: list[Volume] = []
    count: int | None = None
    volumes_links: list[Link] = []

    @property
    def next_marker(self) -> str | None:
        return next_marker(self.volumes_links)


class CreateVolumeRequest(WireRequest):
    """`POST /v2/{pid}/cloudvolumes`; with `backup_id` the new disk is made from a backup (§2.10, §4.9)."""

    wrapper = "volume"

    name: str
    size: int
    volume_type: str
    availability_zone: str
    backup_id: str | None = None
    description: str | None = None


class CreateVolumeResult(WireModel):
    """The real EVS answers `{"job_id"}` only; the emulator adds `volume_ids` (a documented
    simplification: its disk is `available` at once), so `volume_ids` may be empty against the cloud."""

    job_id: str
    volume_ids: list[str] = []
