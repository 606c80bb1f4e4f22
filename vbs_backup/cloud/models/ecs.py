"""Wire models of the ECS calls that find a server's disks (reference §5a).

Owned here: `BlockDevice` (ECS block_device: size and boot order), `Server` (cloudservers detail, whose
`os-extended-volumes:volumes_attached` items carry *strings* for bootIndex and delete_on_termination),
the server list page and Nova's `VolumeAttachment`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator

from .common import LenientInt, WireModel, wire_name

__all__ = [
    "AttachableQuantity",
    "BlockDevice",
    "BlockDeviceList",
    "Server",
    "ServerList",
    "ServerVolume",
    "VolumeAttachment",
]


class BlockDevice(WireModel):
    """One disk from `GET /v1/{pid}/cloudservers/{id}/block_device`."""

    id: str | None = None
    volume_id: Annotated[str, wire_name("volumeId")]
    server_id: Annotated[str | None, wire_name("serverId")] = None
    device: str | None = None  # /dev/vda
    size: LenientInt = None  # GiB; an int, or a string on one OTC page
    boot_index: Annotated[LenientInt, wire_name("bootIndex")] = None  # 0 = system disk
    pci_address: Annotated[str | None, wire_name("pciAddress")] = None
    bus: str | None = None  # virtio / scsi

    @property
    def is_system_disk(self) -> bool:
        return self.boot_index == 0


class AttachableQuantity(WireModel):
    free_scsi: int | None = None
    free_blk: int | None = None
    free_disk: int | None = None


class BlockDeviceList(WireModel):
    attachable_quantity: Annotated[AttachableQuantity | None, wire_name("attachableQuantity")] = None
    volume_attachments: Annotated[list[BlockDevice], wire_name("volumeAttachments")] = []


class ServerVolume(WireModel):
    """An item of `os-extended-volumes:volumes_attached`: `"bootIndex": "0"`, `"delete_on_termination":
    "false"` are strings on the wire."""

    id: str
    delete_on_termination: bool | None = None
    device: str | None = None
    boot_index: Annotated[LenientInt, wire_name("bootIndex")] = None


def _tag_strings(value: Any) -> Any:
    # ECS lists tags as "key=value" strings; accept {key: value} and [{key, value}] too and normalise.
    if value is None:
        return []
    if isinstance(value, dict):
        return [f"{k}={v}" for k, v in value.items()]
    if isinstance(value, list):
        return [
            f"{item.get('key')}={item.get('value', '')}" if isinstance(item, dict) else item for item in value
        ]
    return value


class Server(WireModel):
    """An ECS (`GET /v1/{pid}/cloudservers/{id}` and the detail list)."""

    id: str
    name: str | None = None
    status: str | None = None  # ACTIVE, SHUTOFF, ...
    tags: Annotated[list[str], BeforeValidator(_tag_strings)] = []
    volumes_attached: Annotated[list[ServerVolume], wire_name("os-extended-volumes:volumes_attached")] = []
    root_device_name: Annotated[str | None, wire_name("OS-EXT-SRV-ATTR:root_device_name")] = None
    availability_zone: Annotated[str | None, wire_name("OS-EXT-AZ:availability_zone")] = None
    metadata: dict[str, Any] = {}

    @property
    def tag_map(self) -> dict[str, str]:
        """Tags as a dict; a tag without `=` maps to ""."""
        pairs = (tag.partition("=") for tag in self.tags)
        return {key: value for key, _, value in pairs}


class ServerList(WireModel):
    """One page of `GET /v1/{pid}/cloudservers/detail`; `count` is the total over all pages."""

    count: int | None = None
    servers: list[Server] = []


class VolumeAttachment(WireModel):
    """Nova `os-volume_attachments` item (`id` is the volume id)."""

    id: str | None = None
    volume_id: Annotated[str, wire_name("volumeId")]
    server_id: Annotated[str | None, wire_name("serverId")] = None
    device: str | None = None
