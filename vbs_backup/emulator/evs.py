"""EVS: disk details, the filtered disk list, and creating/deleting disks (reference §5a, §4.9).

Backend functions carry the operation names (`get_volume`, `list_volumes`, `create_volume`,
`delete_volume`; `attach_volume` / `detach_volume` serve the control API only, as operator actions);
`volume_wire` builds the documented volume JSON; `routes()` binds them to
`/v2/{project_id}/cloudvolumes...`. Errors are `{"error": {"code": "EVS.xxxx", "message": ...}}` with the
documented codes where there is one (EVS.1002 disk id, EVS.1006 backup id, EVS.1008-1010 create body,
EVS.1023 limit, EVS.1024 marker) and a marked choice otherwise.

Simplification (documented choice): the real `POST /v2/{pid}/cloudvolumes` is asynchronous and answers
`{"job_id"}`; here the disk exists and is `available` at once, the answer is 200
`{"job_id": ..., "volume_ids": [id]}`, and the job is recorded already `SUCCESS` (job_type `createVolume`)
so that `GET /v1/{pid}/jobs/{job_id}` finds it. `DELETE` likewise removes the disk at once and records a
`deleteVolume` job.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.routing import Route

from .ecs import attached_disks
from .errors import CloudApiError
from .http import fmt_backup_time, route
from .state import Attachment, CloudState, Job, Project, Server, Volume, new_job_id, new_uuid

VOLUME_TYPES = ("SATA", "SAS", "SSD", "GPSSD", "ESSD")
DELETABLE = ("available", "error", "error_restoring", "error_extending")  # ECS/EVS delete constraints
SORT_KEYS = ("id", "status", "size", "created_at")
MIN_SIZE, MAX_SIZE = 10, 32768  # EVS data disk limits, GiB


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _evs(code: str, message: str, status: int = 400) -> CloudApiError:
    return CloudApiError(code, message, status)


# Backend ---------------------------------------------------------------------------------------------------


def get_volume(project: Project, volume_id: str) -> Volume:
    if not _is_uuid(volume_id):
        raise _evs("EVS.1002", f"invalid volume id! {volume_id} is not a UUID")
    volume = project.volumes.get(volume_id)
    if volume is None:
        # The reference documents EVS.1002 for a bad id but no not-found code; 404 with EVS.1002 (choice).
        raise _evs("EVS.1002", f"invalid volume id! volume {volume_id} could not be found", 404)
    return volume


def list_volumes(
    project: Project,
    *,
    server_id: str | None = None,
    status: str | None = None,
    name: str | None = None,
    availability_zone: str | None = None,
    limit: int = 1000,
    marker: str | None = None,
    offset: int = 0,
    sort_key: str = "created_at",
    sort_dir: str = "desc",
) -> tuple[list[Volume], int, bool]:
    """(page, total matching, more after this page). `name` is an exact match, as in Cinder (choice)."""
    volumes = list(project.volumes.values())
    if server_id:
        volumes = [v for v in volumes if any(a.server_id == server_id for a in v.attachments)]
    if status:
        volumes = [v for v in volumes if v.status == status]
    if name:
        volumes = [v for v in volumes if v.name == name]
    if availability_zone:
        volumes = [v for v in volumes if v.availability_zone == availability_zone]
    # The id breaks ties, so pages are stable when several disks share a creation time.
    volumes.sort(key=lambda v: v.id)
    volumes.sort(key=lambda v: _sort_value(v, sort_key), reverse=sort_dir == "desc")
    total = len(volumes)
    start = 0
    if marker:
        position = next((i for i, v in enumerate(volumes) if v.id == marker), None)
        if position is None:
            raise _evs("EVS.1024", f"invalid marker! volume {marker} is not in the list")
        start = position + 1
    start += offset
    page = volumes[start : start + limit]
    return page, total, start + limit < len(volumes)


def _sort_value(volume: Volume, key: str) -> Any:
    if key == "created_at":
        return volume.created_at.isoformat() if volume.created_at else ""
    return getattr(volume, key)


def create_volume(state: CloudState, project: Project, body: Any) -> tuple[Volume, Job]:
    spec = body.get("volume") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise _evs("EVS.1008", 'null createVolumeReq! the body must be {"volume": {...}}')
    zone, volume_type = spec.get("availability_zone"), spec.get("volume_type")
    if not isinstance(zone, str) or not zone:
        raise _evs("EVS.1009", "invalid volumeForCreate! availability_zone is required")
    if volume_type not in VOLUME_TYPES:
        raise _evs(
            "EVS.1009", f"invalid volumeForCreate! volume_type must be one of {', '.join(VOLUME_TYPES)}"
        )
    name = spec.get("name", "")
    if not isinstance(name, str) or len(name) > 255:
        raise _evs("EVS.1003", "invalid volume name! a string of at most 255 characters is expected")
    backup = None
    backup_id = spec.get("backup_id")
    if backup_id is not None:
        backup = _usable_backup(state, project, backup_id)
    size = spec.get("size", backup.size if backup else None)
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_SIZE <= size <= MAX_SIZE:
        raise _evs(
            "EVS.1010", f"invalid volume size! size must be an integer from {MIN_SIZE} to {MAX_SIZE} GiB"
        )
    if backup is not None and size < backup.size:
        # §4.9: a disk created from a backup must be at least as large as the backup's source disk.
        raise _evs(
            "EVS.1010", f"invalid volume size! {size} GiB is smaller than the backup ({backup.size} GiB)"
        )
    now = state.now()
    volume = Volume(
        id=new_uuid(state.rng),
        name=name,
        size=size,
        status="available",
        volume_type=volume_type,
        availability_zone=zone,
        description=str(spec.get("description") or ""),
        created_at=now,
        updated_at=now,
    )
    project.volumes[volume.id] = volume
    return volume, _finished_job(state, project, "createVolume", volume.id)


def _usable_backup(state: CloudState, project: Project, backup_id: Any) -> Any:
    """A backup this project owns, or one shared to it (§2.11: that is how shared backups are used)."""
    if not isinstance(backup_id, str) or not _is_uuid(backup_id):
        raise _evs("EVS.1006", "invalid backup id! backup_id must be a UUID")
    found = state.find_backup(backup_id)
    if found is None:
        raise _evs("EVS.1006", f"invalid backup id! backup {backup_id} does not exist")
    owner, backup = found
    shared = any(s.backup_id == backup_id and s.to_project_id == project.id for s in state.shares.values())
    if owner.id != project.id and not shared:
        raise _evs(
            "EVS.1006",
            f"invalid backup id! backup {backup_id} is neither owned by nor shared with the project",
        )
    if backup.status != "available":
        raise _evs("EVS.1006", f"invalid backup id! backup {backup_id} is {backup.status}, not available")
    return backup


def delete_volume(state: CloudState, project: Project, volume_id: str) -> Job:
    volume = get_volume(project, volume_id)
    if volume.status not in DELETABLE or volume.attachments:
        # No code is documented for this; EVS.2024 is our choice (unconfirmed).
        raise _evs(
            "EVS.2024",
            f"volume {volume_id} is {volume.status}; only a detached disk in "
            f"{', '.join(DELETABLE)} can be deleted",
        )
    del project.volumes[volume_id]
    # Deleting a disk keeps its backups (§4.11) but drops its policy association, as VBS does.
    for policy in project.policies.values():
        if volume_id in policy.resource_ids:
            policy.resource_ids.remove(volume_id)
    return _finished_job(state, project, "deleteVolume", volume_id)


# Attaching and detaching (control API only: the documented API has no attach/detach call) --------------

DEVICE_RE = re.compile(r"^/dev/[a-z]+[a-z0-9]*$")  # the fleet file's rule
JOB_STATUSES = ("backing-up", "restoring-backup")  # a VBS job restores `status_before_job` when it ends


def attach_volume(
    state: CloudState,
    volume_id: str,
    server_id: str,
    *,
    device: str,
    boot_index: int | None = None,
    bus: str = "virtio",
) -> Volume:
    """Attach a disk to a server under `device`, as an operator would; raises `ValueError` when refused.

    A disk already attached to another server gets a second attachment (multi-attach: a shared disk,
    `multiattach` true from then on) and shows on both servers. Refused: an unknown server or disk, a
    server in another project, the same server twice, a device (or the system disk slot, boot index 0)
    already taken on that server. The disk's backups are untouched.
    """
    project, server, volume = _server_and_volume(state, volume_id, server_id)
    if any(a.server_id == server.id for a in volume.attachments):
        raise ValueError(f"volume {volume.id} is already attached to server {server.id}")
    if not DEVICE_RE.match(device):
        raise ValueError(f"device {device!r} is not a device name like /dev/vdb")
    if boot_index is not None and boot_index < 0:
        raise ValueError("boot_index must be null or an integer >= 0")
    if bus not in ("virtio", "scsi"):
        raise ValueError("bus must be virtio or scsi")
    disks = attached_disks(project, server)
    taken = next((v for v, a, _ in disks if a.device == device), None)
    if taken is not None:
        raise ValueError(f"device {device} is already used on server {server.id} by volume {taken.id}")
    if boot_index == 0 and any(index == 0 for _, _, index in disks):
        raise ValueError(f"server {server.id} already has a system disk (boot_index 0)")
    now = state.now()
    volume.attachments.append(
        Attachment(
            server_id=server.id,
            device=device,
            boot_index=boot_index,
            attachment_id=new_uuid(state.rng),
            attached_at=now,
            bus=bus,
        )
    )
    if len(volume.attachments) > 1:
        volume.multiattach = True
    server.volume_ids.append(volume.id)  # attachment order: the newest disk comes last
    _settle_status(volume, now)
    return volume


def detach_volume(state: CloudState, volume_id: str, server_id: str) -> Volume:
    """Detach a disk from one server; it turns `available` when no attachment is left.

    Raises `ValueError` for an unknown server or disk, or a disk not attached to that server. The disk's
    other attachments and its backups are untouched.
    """
    _, server, volume = _server_and_volume(state, volume_id, server_id)
    attachment = next((a for a in volume.attachments if a.server_id == server.id), None)
    if attachment is None:
        raise ValueError(f"volume {volume.id} is not attached to server {server.id}")
    volume.attachments.remove(attachment)
    if volume.id in server.volume_ids:
        server.volume_ids.remove(volume.id)
    _settle_status(volume, state.now())
    return volume


def _server_and_volume(state: CloudState, volume_id: str, server_id: str) -> tuple[Project, Server, Volume]:
    found_volume, found_server = state.find_volume(volume_id), state.find_server(server_id)
    if found_volume is None:
        raise ValueError(f"volume {volume_id} does not exist")
    if found_server is None:
        raise ValueError(f"server {server_id} does not exist")
    (project, volume), (server_project, server) = found_volume, found_server
    if server_project is not project:
        raise ValueError(f"volume {volume_id} and server {server_id} are in different projects")
    return project, server, volume


def _settle_status(volume: Volume, now: datetime) -> None:
    """`in-use` while attached, else `available`; during a VBS job, the status the job will restore.

    Other statuses (`error`, `error_restoring`, ...) stay: attaching does not repair a broken disk.
    """
    resting = "in-use" if volume.attachments else "available"
    if volume.status in ("available", "in-use"):
        volume.status = resting
    elif volume.status in JOB_STATUSES and volume.status_before_job in ("available", "in-use"):
        volume.status_before_job = resting
    volume.updated_at = now


def _finished_job(state: CloudState, project: Project, job_type: str, volume_id: str) -> Job:
    now = state.now()
    job = Job(
        id=new_job_id(state.rng),
        project_id=project.id,
        job_type=job_type,
        status="SUCCESS",
        begin_time=now,
        end_time=now,
        entities={"volume_id": volume_id},
    )
    project.jobs[job.id] = job
    return job


# Wire ------------------------------------------------------------------------------------------------------


def volume_wire(volume: Volume, project: Project, base_url: str, region: str) -> dict[str, Any]:
    return {
        "id": volume.id,
        "name": volume.name,
        "description": volume.description,
        "status": volume.status,
        "size": volume.size,
        "bootable": "true" if volume.bootable else "false",  # a string, as documented
        "attachments": [
            {
                "server_id": a.server_id,
                "attachment_id": a.attachment_id,
                "attached_at": fmt_backup_time(a.attached_at),
                "host_name": None,
                "volume_id": volume.id,
                "device": a.device,
                "id": volume.id,
            }
            for a in volume.attachments
        ],
        "availability_zone": volume.availability_zone,
        "volume_type": volume.volume_type,
        "metadata": dict(volume.metadata),
        "encrypted": volume.metadata.get("__system__encrypted") == "1",
        "multiattach": volume.multiattach,
        "shareable": "true" if volume.multiattach else "false",
        "snapshot_id": None,
        "source_volid": None,
        "os-vol-tenant-attr:tenant_id": project.id,
        "os-vol-host-attr:host": f"pod01.{region}#{volume.volume_type}",
        "volume_image_metadata": {},
        "created_at": fmt_backup_time(volume.created_at),
        "updated_at": fmt_backup_time(volume.updated_at or volume.created_at),
        "links": [
            {"href": f"{base_url}/v2/{project.id}/volumes/{volume.id}", "rel": "self"},
            {"href": f"{base_url}/{project.id}/volumes/{volume.id}", "rel": "bookmark"},
        ],
        "replication_status": "disabled",
        "consistencygroup_id": None,
        "service_type": "EVS",
        "tags": dict(volume.tags),
    }


# Routes ----------------------------------------------------------------------------------------------------


def _base_url(request: Request) -> str:
    return f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"


def _int_param(request: Request, name: str, default: int, low: int, high: int, code: str) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise _evs(code, f"invalid {name}! {name} must be an integer from {low} to {high}")
    return value


def _get_volume(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    volume = get_volume(project, request.path_params["volume_id"])
    return {"volume": volume_wire(volume, project, _base_url(request), state.settings.region)}


def _list_volumes(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    query = request.query_params
    limit = _int_param(request, "limit", 1000, 1, 1000, "EVS.1023")
    # EVS.1022 for a bad offset, EVS.1025/1026 for sort key/direction: our choices next to the documented
    # EVS.1023 (limit) and EVS.1024 (marker); the reference names no code for them.
    offset = _int_param(request, "offset", 0, 0, 10**9, "EVS.1022")
    marker = query.get("marker") or None
    if marker is not None and not _is_uuid(marker):
        raise _evs("EVS.1024", "invalid marker! marker must be a volume id (UUID)")
    sort_key, sort_dir = query.get("sort_key", "created_at"), query.get("sort_dir", "desc")
    if sort_key not in SORT_KEYS:
        raise _evs("EVS.1025", f"invalid sort_key! use one of {', '.join(SORT_KEYS)}")
    if sort_dir not in ("asc", "desc"):
        raise _evs("EVS.1026", "invalid sort_dir! use asc or desc")
    page, total, more = list_volumes(
        project,
        server_id=query.get("server_id"),
        status=query.get("status"),
        name=query.get("name"),
        availability_zone=query.get("availability_zone"),
        limit=limit,
        marker=marker,
        offset=offset,
        sort_key=sort_key,
        sort_dir=sort_dir,
    )
    base = _base_url(request)
    body: dict[str, Any] = {
        "volumes": [volume_wire(v, project, base, state.settings.region) for v in page],
        "count": total,
    }
    if more and page:
        params = {k: v for k, v in query.items() if k not in ("marker", "offset")}
        params.update(limit=str(limit), marker=page[-1].id)
        href = f"{base}/v2/{project.id}/cloudvolumes/detail?{urlencode(params)}"
        body["volumes_links"] = [{"href": href, "rel": "next"}]
    return body


def _create_volume(request: Request, state: CloudState, project: Project, body: Any) -> Any:
    volume, job = create_volume(state, project, body)
    return {"job_id": job.id, "volume_ids": [volume.id]}


def _delete_volume(request: Request, state: CloudState, project: Project, _body: None) -> Any:
    return {"job_id": delete_volume(state, project, request.path_params["volume_id"]).id}


def routes() -> list[Route]:
    base = "/v2/{project_id}/cloudvolumes"
    bad_body = _evs("EVS.1008", "null createVolumeReq! the body must be a JSON object")
    return [
        route(f"{base}/detail", "evs.list_volumes", ["GET"], _list_volumes),  # before {volume_id}
        route(f"{base}/{{volume_id}}", "evs.get_volume", ["GET"], _get_volume),
        route(f"{base}/{{volume_id}}", "evs.delete_volume", ["DELETE"], _delete_volume),
        route(base, "evs.create_volume", ["POST"], _create_volume, body=True, bad_body=bad_body),
    ]
