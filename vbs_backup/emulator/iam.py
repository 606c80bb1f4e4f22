"""IAM: the one operation a VBS client needs, `POST /v3/auth/tokens` with a password (reference §5b).

Backend: `create_token` checks the user (name + domain name) and the project scope (by id or by name),
then issues a project-scoped token through `auth.issue_token`. Route: answers 201 with the token in the
`X-Subject-Token` header and a Keystone-shaped body whose catalog points every service at this emulator
(derived from the request's Host, so it is right behind any port). Errors are Keystone-shaped (§5e).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import auth
from .errors import KeystoneError
from .http import route
from .state import CloudState, Project, Token, User


def _bad_request(detail: str) -> KeystoneError:
    return KeystoneError(400, f"The request you have made is malformed: {detail}")


def _unauthorized() -> KeystoneError:
    # Same answer for an unknown user, a wrong password and a project the user may not use, as IAM does.
    return KeystoneError(401, "Unauthorized.")


def _stable_id(kind: str, name: str) -> str:
    """Users and domains have no ids in the fleet file; derive stable 32-hex ones from their names."""
    return hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:32]


def _field(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise _bad_request(f"{'.'.join(path)} is required")
        data = data[key]
    return data


def create_token(state: CloudState, body: Any) -> tuple[Token, Project, User]:
    identity = _field(body, "auth", "identity")
    methods = _field(identity, "methods")
    if not isinstance(methods, list) or "password" not in methods:
        raise _bad_request("auth.identity.methods must contain 'password' (the only method emulated)")
    user_spec = _field(identity, "password", "user")
    name, password = _field(user_spec, "name"), _field(user_spec, "password")
    domain = user_spec.get("domain") if isinstance(user_spec, dict) else None
    domain_name = domain.get("name") if isinstance(domain, dict) else None
    if not (isinstance(name, str) and isinstance(password, str) and isinstance(domain_name, str)):
        raise _bad_request("auth.identity.password.user needs string name, password and domain.name")
    scope = body["auth"].get("scope")
    scope_project = scope.get("project") if isinstance(scope, dict) else None
    if not isinstance(scope_project, dict) or not ("id" in scope_project or "name" in scope_project):
        # Domain-scoped tokens only serve global services; VBS, EVS and ECS need a project scope.
        raise _bad_request("auth.scope.project with an id or a name is required (project-scoped tokens only)")
    candidates = [
        project
        for project in state.projects.values()
        if project.id == scope_project.get("id", project.id)
        and project.name == scope_project.get("name", project.name)
    ]
    for project in candidates:
        user = auth.find_user(project, name, domain_name)
        # Constant-time compare, so response time does not tell how much of a password was right.
        if user is not None and hmac.compare_digest(user.password.encode(), password.encode()):
            return auth.issue_token(state, project, user), project, user
    raise _unauthorized()


def _iso_z(token_time: Any) -> str:
    return token_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def catalog(base_url: str, project: Project, region: str) -> list[dict[str, Any]]:
    """Every service of the emulator at `base_url`; types as the real catalogs name them (§5d)."""
    entries = [
        ("vbsv2", "vbs", f"/v2/{project.id}"),
        ("volumev2", "evs", f"/v2/{project.id}"),
        ("ecs", "ecs", f"/v1/{project.id}"),
        ("compute", "nova", f"/v2.1/{project.id}"),
        ("identity", "iam", "/v3"),
    ]
    return [
        {
            "id": _stable_id("service", kind),
            "type": kind,
            "name": name,
            "endpoints": [
                {
                    "id": _stable_id("endpoint", kind + project.id),
                    "interface": "public",
                    "region": region,
                    "region_id": region,
                    "url": base_url + suffix,
                }
            ],
        }
        for kind, name, suffix in entries
    ]


def _create_token_route(request: Request, state: CloudState, _project: None, body: Any) -> JSONResponse:
    token, project, user = create_token(state, body)
    domain = {"id": _stable_id("domain", user.domain), "name": user.domain}
    payload: dict[str, Any] = {
        "expires_at": _iso_z(token.expires_at),
        "issued_at": _iso_z(token.issued_at),
        "methods": ["password"],
        "user": {
            "id": _stable_id("user", user.domain + "/" + user.name),
            "name": user.name,
            "domain": domain,
            "password_expires_at": "",
        },
        "project": {"id": project.id, "name": project.name, "domain": domain},
        "roles": [{"id": _stable_id("role", "te_admin"), "name": "te_admin"}],
    }
    if request.query_params.get("nocatalog", "").lower() != "true":
        base_url = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        payload["catalog"] = catalog(base_url, project, state.settings.region)
    return JSONResponse({"token": payload}, status_code=201, headers={"X-Subject-Token": token.value})


def routes() -> list[Route]:
    return [
        route(
            "/v3/auth/tokens",
            "iam.create_token",
            ["POST"],
            _create_token_route,
            body=True,
            bad_body=_bad_request("the body must be a JSON object"),
        )
    ]
