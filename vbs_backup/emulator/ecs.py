"""ECS: the server and disk-attachment queries a backup client needs (reference §5a).

Backend functions (named as the API operations) read servers and their attached volumes from the state;
`*_wire` functions build the documented JSON; `routes()` binds them to the documented paths. ECS errors are
`{"error": {"code": "Ecs.xxxx", "message": ...}}`; the Nova path answers Nova/Cinder-style faults.

Choices where the reference is silent (each is marked where it is made): the unknown-server code
(`Ecs.0114`), the bad-parameter code (`Ecs.0005`), the tag format on the wire (`"key=value"` strings),
the `tags` / `not-tags` / `name` filter semantics, and the page size default (25, as the ECS API states).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from .errors import CinderError, CloudApiError
from .http import route
from .state import Attachment, CloudState, Project, Server, Volume

MAX_DISKS, MAX_VIRTIO, MAX_SCSI = 24, 16, 23  # fit the §5a example: 1 data disk -> 23 / 15 / 23 free


def _server_not_found(server_id: str) -> CloudApiError:
    # Ecs.0114 is ECS's "the ECS does not exist" code; HTTP 404 (status unconfirmed by the reference).
    return CloudApiError("Ecs.0114", f"Instance[{server_id}] could not be found.", 404)


def _bad_parameter(detail: str) -> CloudApiError:
    # Ecs.0005 ("invalid parameter") chosen for malformed query parameters; not in the reference.
    return CloudApiError("Ecs.0005", f"Invalid parameter: {detail}", 400)


# Backend ---------------------------------------------------------------------------------------------------


def get_server(project: Project, server_id: str) -> Server:
    server = project.servers.get(server_id)
    if server is None:
        raise _server_not_found(server_id)
    return server


def attached_disks(project: Project, server: Server) -> list[tuple[Volume, Attachment, int]]:
    """(volume, attachment, boot index) in attachment order.

    Data disks without an explicit boot index are numbered 1, 2, ... in attachment order, as in the §5a
    example (system disk 0, first data disk 1).
    """
    disks = []
    next_index = 1
    for volume_id in server.volume_ids:
        volume = project.volumes.get(volume_id)
        attachment = (
            next((a for a in volume.attachments if a.server_id == server.id), None) if volume else None
        )
        if volume is None or attachment is None:
            continue  # detached or deleted since
        if attachment.boot_index is not None:
            index = attachment.boot_index
        else:
            index = next_index
            next_index += 1
        disks.append((volume, attachment, index))
    return disks


def list_block_devices(project: Project, server_id: str) -> list[tuple[Volume, Attachment, int]]:
    return attached_disks(project, get_server(project, server_id))


def list_volume_attachments(project: Project, server_id: str) -> list[tuple[Volume, Attachment, int]]:
    server = project.servers.get(server_id)
    if server is None:
        raise CinderError(404, f"Instance {server_id} could not be found.")
    return attached_disks(project, server)


def update_server(
    state: CloudState, server_id: str, *, name: str | None = None, tags: dict[str, str] | None = None
) -> Server:
    """Rename a server and/or replace its tags, as an operator would in the console (control API).

    Its disks stay attached and every backup stays where it is (a backup belongs to its volume id).
    Raises `ValueError` for an unknown server or an invalid name/tags.
    """
    found = state.find_server(server_id)
    if found is None:
        raise ValueError(f"server {server_id} does not exist")
    _, server = found
    if name is not None and not 1 <= len(name) <= 255:
        raise ValueError("name must be 1 to 255 characters")
    # "key=value" on the wire and comma lists in the `tags` filter: keep both unambiguous.
    if tags is not None and any(not k or "=" in k or "," in k or "," in v for k, v in tags.items()):
        raise ValueError("tag keys must be non-empty without '=' or ','; tag values without ','")
    if name is not None:
        server.name = name
    if tags is not None:
        server.tags = dict(tags)
    return server


def _tag_terms(value: str) -> list[tuple[str, str | None]]:
    terms = []
    for item in value.split(","):
        if item.strip():
            key, sep, tag_value = item.strip().partition("=")
            terms.append((key, tag_value if sep else None))
    return terms


def _has_tag(server: Server, key: str, value: str | None) -> bool:
    return key in server.tags and (value is None or server.tags[key] == value)


def list_servers(
    project: Project,
    *,
    name: str | None = None,
    status: str | None = None,
    tags: str | None = None,
    not_tags: str | None = None,
    server_ids: list[str] | None = None,
    limit: int = 25,
    offset: int = 1,
) -> tuple[list[Server], int]:
    """One page of servers (oldest first) and the total number matching.

    Filters (our choices, the reference only names them): `name` is a case-sensitive substring match (ECS
    documents a fuzzy match); `tags` is `key=value` or `key`, several comma-separated terms must ALL
    match; `not-tags` drops servers that carry ANY of its terms; `status` is exact. `server_id` (a comma
    list) overrides every other filter, as ECS documents. `offset` is a 1-based page number (ECS v1
    semantics; 0 means page 1) and `limit` the page size.
    """
    servers = sorted(project.servers.values(), key=lambda s: (s.created_at is None, s.created_at, s.id))
    if server_ids:
        servers = [s for s in servers if s.id in server_ids]
    else:
        if name:
            servers = [s for s in servers if name in s.name]
        if status:
            servers = [s for s in servers if s.status == status]
        if tags:
            servers = [s for s in servers if all(_has_tag(s, k, v) for k, v in _tag_terms(tags))]
        if not_tags:
            servers = [s for s in servers if not any(_has_tag(s, k, v) for k, v in _tag_terms(not_tags))]
    page = max(offset, 1)
    return servers[(page - 1) * limit : page * limit], len(servers)


# Wire ------------------------------------------------------------------------------------------------------


def _ecs_time(server: Server) -> str | None:
    return None if server.created_at is None else server.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")


def server_wire(project: Project, server: Server) -> dict[str, Any]:
    disks = attached_disks(project, server)
    root = next((a.device for _, a, index in disks if index == 0), None)
    return {
        "id": server.id,
        "name": server.name,
        "status": server.status,
        "created": _ecs_time(server),
        "updated": _ecs_time(server),
        "tenant_id": project.id,
        "OS-EXT-AZ:availability_zone": server.availability_zone,
        "flavor": {"id": server.flavor, "name": server.flavor},
        "metadata": {},
        "addresses": {},
        "security_groups": [],
        "OS-EXT-STS:vm_state": "active" if server.status == "ACTIVE" else server.status.lower(),
        "OS-EXT-STS:task_state": None,
        "OS-EXT-STS:power_state": 1 if server.status == "ACTIVE" else 4,
        "OS-EXT-SRV-ATTR:root_device_name": root,
        # Strings, not bool/int, as documented in §5a.
        "os-extended-volumes:volumes_attached": [
            {
                "id": volume.id,
                "delete_on_termination": "false",
                "device": attachment.device,
                "bootIndex": str(index),
            }
            for volume, attachment, index in disks
        ],
        # The reference does not show the tag format; the ECS v1 detail API returns "key=value" strings.
        "tags": [f"{key}={value}" for key, value in server.tags.items()],
        "description": "",
        "locked": False,
        "progress": 0,
    }


def block_devices_wire(disks: list[tuple[Volume, Attachment, int]], server_id: str) -> dict[str, Any]:
    data = [(v, a) for v, a, index in disks if index != 0]
    virtio = sum(1 for _, a in data if a.bus == "virtio")
    return {
        "attachableQuantity": {
            "free_scsi": max(0, MAX_SCSI - (len(data) - virtio)),
            "free_blk": max(0, MAX_VIRTIO - virtio),
            "free_disk": max(0, MAX_DISKS - len(data)),
        },
        "volumeAttachments": [
            {
                "id": volume.id,
                "volumeId": volume.id,
                "serverId": server_id,
                "device": attachment.device,
                "size": volume.size,
                "bootIndex": index,
                "pciAddress": f"0000:02:{position + 1:02x}.0",
                "bus": attachment.bus,
            }
            for position, (volume, attachment, index) in enumerate(disks)
        ],
    }


# Routes ----------------------------------------------------------------------------------------------------


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_parameter(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise _bad_parameter(f"{name} must be between {low} and {high}")
    return value


def _get_server(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    return {"server": server_wire(project, get_server(project, request.path_params["server_id"]))}


def _list_block_devices(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    server_id = request.path_params["server_id"]
    return block_devices_wire(list_block_devices(project, server_id), server_id)


def _list_servers(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    query = request.query_params
    ids = [i for i in query.get("server_id", "").split(",") if i]
    servers, total = list_servers(
        project,
        name=query.get("name"),
        status=query.get("status"),
        tags=query.get("tags"),
        not_tags=query.get("not-tags"),
        server_ids=ids or None,
        limit=_int_param(request, "limit", 25, 1, 1000),
        offset=_int_param(request, "offset", 1, 0, 10**9),
    )
    return {"count": total, "servers": [server_wire(project, server) for server in servers]}


def _list_volume_attachments(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    server_id = request.path_params["server_id"]
    return {
        "volumeAttachments": [
            {"id": v.id, "volumeId": v.id, "serverId": server_id, "device": a.device}
            for v, a, _ in list_volume_attachments(project, server_id)
        ]
    }


def routes() -> list[Route]:
    base = "/v1/{project_id}/cloudservers"
    attachments = "/servers/{server_id}/os-volume_attachments"
    return [
        # `detail` before `{server_id}`, or it would be taken for a server id.
        route(f"{base}/detail", "ecs.list_servers", ["GET"], _list_servers),
        route(f"{base}/{{server_id}}/block_device", "ecs.list_block_devices", ["GET"], _list_block_devices),
        route(f"{base}/{{server_id}}", "ecs.get_server", ["GET"], _get_server),
        route(
            "/v2.1/{project_id}" + attachments,
            "ecs.list_volume_attachments",
            ["GET"],
            _list_volume_attachments,
        ),
        route(
            "/v2/{project_id}" + attachments, "ecs.list_volume_attachments", ["GET"], _list_volume_attachments
        ),
    ]
