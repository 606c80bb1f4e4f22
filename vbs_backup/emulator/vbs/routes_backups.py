"""HTTP routes of VBS backups, jobs and quotas (reference §2.1-§2.10, §2.16): parse, call, serialize.

Order matters: `/cloudbackups/quota` before `/cloudbackups/{backup_id}` and `/backups/detail` before
`/backups/{backup_id}`. Native paths answer Cinder-shaped errors, cloud paths `{"error": {...}}`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..errors import CinderError, CloudApiError
from ..http import cinder_not_found, route
from ..state import CloudState, Project
from . import backups, deletes, jobs, queries, restores
from . import serialize as ser

P = "/v2/{project_id}"
CINDER_BAD_BODY = CinderError(400, "Malformed request body")
RESTORE_BAD_BODY = CloudApiError(
    "VolumeBackup.0210", "the format of the disk restoration request is incorrect"
)


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def create_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"job_id": backups.create_backup(state, project, payload).id}


def get_quotas(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return backups.get_quotas(project)


def delete_cloud_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"job_id": deletes.delete_cloud_backup(state, project, request.path_params["backup_id"]).id}


def restore_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    job = restores.restore_backup(state, project, request.path_params["backup_id"], payload)
    return {"job_id": job.id}


def create_native_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    backup = backups.create_native_backup(state, project, payload)
    return {"backup": ser.backup_brief(backup, base_url(request))}, 202


def _listing(request: Request, project: Project, *, detail: bool) -> Any:
    params = dict(request.query_params)
    page = queries.list_backups(project, params)
    base = base_url(request)
    shape = ser.backup_detail if detail else ser.backup_brief
    body: dict[str, Any] = {"backups": [shape(b, base) for b in page.backups]}
    if page.next_marker is not None:
        path = "backups/detail" if detail else "backups"
        body["backups_links"] = [ser.next_link(base, project.id, path, params, page.limit, page.next_marker)]
    return body


def list_backups(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return _listing(request, project, detail=False)


def list_backup_details(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return _listing(request, project, detail=True)


def get_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    backup = queries.get_backup(project, request.path_params["backup_id"])
    return {"backup": ser.backup_detail(backup, base_url(request))}


def delete_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    deletes.delete_backup(state, project, request.path_params["backup_id"])
    return None, 202


def restore_native_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    backup, volume = restores.restore_native_backup(state, project, request.path_params["backup_id"], payload)
    return {"restore": {"backup_id": backup.id, "volume_id": volume.id, "volume_name": volume.name}}, 202


def get_job(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return ser.job(jobs.get_job(state, project, request.path_params["job_id"]))


def routes() -> list[Route]:
    native_project = cinder_not_found("Project")
    return [
        route(f"{P}/cloudbackups", "vbs.create_backup", ["POST"], create_backup, body=True),
        route(f"{P}/cloudbackups/quota", "vbs.get_quotas", ["GET"], get_quotas),
        route(
            f"{P}/cloudbackups/{{backup_id}}",
            "vbs.delete_cloud_backup",
            ["POST", "DELETE"],
            delete_cloud_backup,
        ),
        route(
            f"{P}/cloudbackups/{{backup_id}}/restore",
            "vbs.restore_backup",
            ["POST"],
            restore_backup,
            body=True,
            bad_body=RESTORE_BAD_BODY,
        ),
        route(
            f"{P}/backups",
            "vbs.create_native_backup",
            ["POST"],
            create_native_backup,
            body=True,
            bad_body=CINDER_BAD_BODY,
            not_found=native_project,
        ),
        route(f"{P}/backups", "vbs.list_backups", ["GET"], list_backups, not_found=native_project),
        route(
            f"{P}/backups/detail",
            "vbs.list_backup_details",
            ["GET"],
            list_backup_details,
            not_found=native_project,
        ),
        route(f"{P}/backups/{{backup_id}}", "vbs.get_backup", ["GET"], get_backup, not_found=native_project),
        route(
            f"{P}/backups/{{backup_id}}",
            "vbs.delete_backup",
            ["DELETE"],
            delete_backup,
            not_found=native_project,
        ),
        route(
            f"{P}/backups/{{backup_id}}/restore",
            "vbs.restore_native_backup",
            ["POST"],
            restore_native_backup,
            body=True,
            bad_body=CINDER_BAD_BODY,
            not_found=native_project,
        ),
        route("/v1/{project_id}/jobs/{job_id}", "vbs.get_job", ["GET"], get_job),
    ]
