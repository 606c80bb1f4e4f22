"""HTTP routes of backup sharing (reference §2.11-§2.15): parse, call the backend, serialize.

`/detail` and `/count` come before `/{share_id}`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..http import route
from ..state import CloudState, Project
from . import serialize as ser
from . import shares

S = "/v2/{project_id}/os-vendor-backup-sharing"


def share_backup(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    records = shares.share_backup(state, project, payload)
    return {"shared": [ser.share(s, None, fresh=True) for s in records]}


def list_shares(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    rows = shares.list_shares(state, project, dict(request.query_params))
    return {"shared": [ser.share(s, b) for s, b in rows]}


def count_shares(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"count": shares.count_shares(state, project, dict(request.query_params))}


def get_share(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    share, backup = shares.get_share(state, project, request.path_params["share_id"])
    return {"shared": ser.share(share, backup)}


def cancel_share(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    by_backup = (request.query_params.get("is_backup_id") or "").lower() == "true"
    shares.cancel_share(state, project, request.path_params["share_id"], is_backup_id=by_backup)
    return None, 200


def routes() -> list[Route]:
    return [
        route(S, "vbs.share_backup", ["POST"], share_backup, body=True),
        route(f"{S}/detail", "vbs.list_shares", ["GET"], list_shares),
        route(f"{S}/count", "vbs.count_shares", ["GET"], count_shares),
        route(f"{S}/{{share_id}}", "vbs.get_share", ["GET"], get_share),
        route(f"{S}/{{share_id}}", "vbs.cancel_share", ["DELETE"], cancel_share),
    ]
