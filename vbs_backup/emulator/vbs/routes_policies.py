"""HTTP routes of backup policies, their resources, tasks and tags (reference §3): parse, call, serialize.

`/backuppolicy/tags` and `/backuppolicy/resource_instances/action` come before `/backuppolicy/{policy_id}…`
(the latter would otherwise swallow them as a policy id). Bodies: empty -> `AutoBackup.0000`, not JSON ->
`AutoBackup.0008`.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from ..errors import CloudApiError
from ..http import route
from ..state import CloudState, Project
from . import executions, policies, tags
from . import serialize as ser
from .policies import ResourceResult

P = "/v2/{project_id}"
POLICY = f"{P}/backuppolicy/{{policy_id}}"
EMPTY = CloudApiError("AutoBackup.0000", "the request is empty")
NOT_JSON = CloudApiError("AutoBackup.0008", "failed to convert the request into a JSON object")


def _pid(request: Request) -> str:
    return request.path_params["policy_id"]


def create_policy(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"backup_policy_id": policies.create_policy(state, project, payload).id}


def list_policies(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"backup_policies": [ser.policy(p) for p in project.policies.values()]}


def update_policy(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"backup_policy_id": policies.update_policy(state, project, _pid(request), payload).id}


def delete_policy(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    policies.delete_policy(state, project, _pid(request))
    return None, 204


def _resource(r: ResourceResult, *, full: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"resource_id": r.resource_id}
    if full:
        zone = r.volume.availability_zone if r.volume else None
        out.update(
            resource_type=r.resource_type,
            availability_zone=zone,
            os_vol_host_attr=f"pod01.{zone}" if zone else None,
        )
    if r.code:
        out.update(code=r.code, message=r.message)
    return out


def associate_resources(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    ok, failed = policies.associate_resources(state, project, payload)
    return {
        "success_resources": [_resource(r, full=True) for r in ok],
        "fail_resources": [_resource(r, full=True) for r in failed],
    }


def disassociate_resources(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    ok, failed = policies.disassociate_resources(state, project, _pid(request), payload)
    return {
        "success_resources": [_resource(r, full=False) for r in ok],
        "fail_resources": [_resource(r, full=False) for r in failed],
    }


def execute_policy(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    executions.execute_policy(state, project, _pid(request))
    return None, 204


def list_policy_tasks(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    rows, count = policies.list_policy_tasks(state, project, _pid(request), dict(request.query_params))
    return {"tasks": [ser.task(t) for t in rows], "count": count}


def add_policy_tag(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    tags.add_policy_tag(project, _pid(request), payload)
    return None, 204


def delete_policy_tag(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    tags.delete_policy_tag(project, _pid(request), request.path_params["key"])
    return None, 204


def list_policy_tags(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"tags": ser.tags(tags.list_policy_tags(project, _pid(request)))}


def list_project_policy_tags(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    return {"tags": [{"key": k, "values": v} for k, v in tags.list_project_policy_tags(project).items()]}


def batch_policy_tags(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    tags.batch_policy_tags(project, _pid(request), payload)
    return None, 204


def query_policies_by_tags(request: Request, state: CloudState, project: Project, payload: Any) -> Any:
    total, found = tags.query_policies_by_tags(project, payload)
    if found is None:
        return {"total_count": total}
    return {
        "total_count": total,
        "resources": [
            {"resource_id": p.id, "resource_name": p.name, "resource_detail": None, "tags": ser.tags(p.tags)}
            for p in found
        ],
    }


def routes() -> list[Route]:
    def with_body(path: str, name: str, methods: list[str], handler: Any) -> Route:
        return route(path, name, methods, handler, body=True, bad_body=NOT_JSON, empty_body=EMPTY)

    return [
        with_body(f"{P}/backuppolicy", "vbs.create_policy", ["POST"], create_policy),
        route(f"{P}/backuppolicy", "vbs.list_policies", ["GET"], list_policies),
        route(f"{P}/backuppolicy/tags", "vbs.list_project_policy_tags", ["GET"], list_project_policy_tags),
        with_body(
            f"{P}/backuppolicy/resource_instances/action",
            "vbs.query_policies_by_tags",
            ["POST"],
            query_policies_by_tags,
        ),
        with_body(POLICY, "vbs.update_policy", ["PUT"], update_policy),
        route(POLICY, "vbs.delete_policy", ["DELETE"], delete_policy),
        with_body(f"{P}/backuppolicyresources", "vbs.associate_resources", ["POST"], associate_resources),
        with_body(
            f"{P}/backuppolicyresources/{{policy_id}}/deleted_resources",
            "vbs.disassociate_resources",
            ["POST"],
            disassociate_resources,
        ),
        route(f"{POLICY}/action", "vbs.execute_policy", ["POST"], execute_policy),
        route(f"{POLICY}/backuptasks", "vbs.list_policy_tasks", ["GET"], list_policy_tasks),
        with_body(f"{POLICY}/tags/action", "vbs.batch_policy_tags", ["POST"], batch_policy_tags),
        with_body(f"{POLICY}/tags", "vbs.add_policy_tag", ["POST"], add_policy_tag),
        route(f"{POLICY}/tags", "vbs.list_policy_tags", ["GET"], list_policy_tags),
        route(f"{POLICY}/tags/{{key}}", "vbs.delete_policy_tag", ["DELETE"], delete_policy_tag),
    ]
