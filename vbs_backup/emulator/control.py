"""The emulator's control API under `/_emulator` (unauthenticated; for tests, demos and benchmarks).

    POST   /reset          body: optional fleet dict; none = the fleet the app started with
    POST   /fleet          add a fleet (409 when an id already exists)
    GET    /state          JSON summary of every project
    GET    /requests       the request log: [{operation, method, path, status, at, project_id, account}]
                           (`at`: arrival, epoch seconds; project_id/account: the caller's, null when
                           unauthenticated)
    DELETE /requests       clear it
    GET    /faults         active fault rules;   POST /faults (add one);   DELETE /faults (clear)
    POST   /rate_limit     {"rate": 10, "burst": 10} or {"rate": null}: the global limit; with
                           {"account": "acme", ...}: that account's own bucket, shared by its projects
                           (several accounts may have one; null rate removes it) -> as GET
    GET    /rate_limit     {"rate", "burst", "accounts": {account: {"rate", "burst"}}}
    POST   /job_faults     {"mode": "fail"|"hang", "job_type"?, "volume_id"?, "error_code"?, "fail_reason"?,
                            "count"?, "probability"?};   DELETE /job_faults
    GET    /clock;  POST /clock/advance {"seconds": N}
    GET    /settings;  POST /settings (partial update)

Topology, as an operator would change it (every backup is kept: a backup belongs to its volume id):

    POST   /servers/{id}            {"name"?, "tags"?: {k: v}} rename / replace tags -> {id, name, tags,
                                    volume_ids}
    POST   /volumes/{id}/attach     {"server_id", "device": "/dev/vdd", "boot_index"?: null, "bus"?: "virtio"}
                                    -> {id, status, attachments: [{server_id, device, boot_index}]};
                                    a disk attached elsewhere gets a second attachment (multi-attach)
    POST   /volumes/{id}/detach     {"server_id"} -> the same; `available` once no attachment is left
    POST   /backups                 {"volume_id", "name", "description"?, "status"?: "available",
                                    "created_at"?: ISO 8601 (default now), "kind"?: "manual"|"auto"}
                                    -> {"id"}: a backup made by someone else (e.g. `autobk_...`), no job

A reset empties the state (projects, shares, tokens, job faults, request log), restores default settings,
removes fault rules and every rate limit (global and per account), re-seeds the state's random generator
when a seed was given, moves a `ManualClock` back to the real current time (so AK/SK signatures made with
real time are fresh again), then loads the fleet. Tick hooks (the VBS job engine) stay installed. Errors
answer `{"error": {"code": "Emulator.BadRequest"|"Emulator.Conflict", "message": ...}}`.

Request guard (a web page must not reconfigure a running emulator): every control request is refused
unless its Host names loopback (`127.0.0.1`, `localhost`, `[::1]`, any port) or a host the app was bound to
(`create_app(hosts=...)`): 421 `Emulator.MisdirectedRequest` (DNS rebinding). A request that changes state
(any method but GET/HEAD/OPTIONS) is refused with 403 `Emulator.Forbidden` when it carries a browser's
`Origin` or `Sec-Fetch-Site` header (a cross-site page can send a body-less POST), and with 415
`Emulator.UnsupportedMediaType` when it has a body or a Content-Type that is not `application/json` (a page
can send text/plain or a form without a CORS preflight, never JSON). A body-less request from a program
(no Content-Type, no Origin) stays allowed: `POST /reset`, `DELETE /requests`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ecs, evs
from .clock import ManualClock, real_now
from .errors import CloudApiError, EmulatorError
from .faults import AccountRateLimits, FaultInjector, FaultRule, RateLimiter
from .fleet import FleetError, FleetModel, apply_fleet, load_fleet, settings_from
from .http import error_response, fmt_backup_time, fmt_job_time
from .state import CloudState, JobFault, Settings, Volume
from .vbs import backups

PREFIX = "/_emulator"


def _bad(message: str) -> CloudApiError:
    return CloudApiError("Emulator.BadRequest", message, 400)


def reset(
    state: CloudState,
    fleet: FleetModel | None,
    faults: FaultInjector,
    limiter: RateLimiter,
    account_limits: AccountRateLimits,
) -> None:
    with state.locked():
        state.projects.clear()
        state.shares.clear()
        state.tokens.clear()
        state.job_faults.clear()
        state.request_log.clear()
        state.settings = Settings()
        if state.seed is not None:
            state.rng.seed(state.seed)
        if isinstance(state.clock, ManualClock):
            state.clock.set(real_now())
        if fleet is not None:
            apply_fleet(state, fleet)
    faults.clear()
    limiter.configure(None)
    account_limits.clear()


def summary(state: CloudState) -> dict[str, Any]:
    """What tests and demos look at: ids and statuses, not full wire objects."""
    with state.locked():
        return {
            "clock": state.clock.describe(),
            "settings": dataclasses.asdict(state.settings),
            "projects": {pid: _project_summary(p) for pid, p in state.projects.items()},
            "shares": [
                {
                    "id": s.id,
                    "backup_id": s.backup_id,
                    "from_project_id": s.from_project_id,
                    "to_project_id": s.to_project_id,
                }
                for s in state.shares.values()
            ],
            "job_faults": [dataclasses.asdict(f) for f in state.job_faults],
        }


def _project_summary(project: Any) -> dict[str, Any]:
    return {
        "name": project.name,
        "account": project.account,
        "servers": [
            {"id": s.id, "name": s.name, "status": s.status, "tags": s.tags, "volume_ids": list(s.volume_ids)}
            for s in project.servers.values()
        ],
        "volumes": [
            {
                "id": v.id,
                "name": v.name,
                "status": v.status,
                "size": v.size,
                "server_ids": [a.server_id for a in v.attachments],
            }
            for v in project.volumes.values()
        ],
        "backups": [
            {
                "id": b.id,
                "name": b.name,
                "status": b.status,
                "volume_id": b.volume_id,
                "size": b.size,
                "kind": b.kind,
                "description": b.description,
                "created_at": fmt_backup_time(b.created_at),
            }
            for b in project.backups.values()
        ],
        "jobs": [
            {
                "id": j.id,
                "job_type": j.job_type,
                "status": j.status,
                "entities": dict(j.entities),
                "begin_time": fmt_job_time(j.begin_time),
                "end_time": fmt_job_time(j.end_time),
            }
            for j in project.jobs.values()
        ],
        "policies": [
            {"id": p.id, "name": p.name, "status": p.status, "resource_ids": list(p.resource_ids)}
            for p in project.policies.values()
        ],
        "tasks": [
            {
                "job_id": t.job_id,
                "policy_id": t.policy_id,
                "resource_id": t.resource_id,
                "backup_name": t.backup_name,
                "status": t.status,
            }
            for t in project.tasks
        ],
    }


# Handlers: (request, body) -> JSON-able or Response ---------------------------------------------------------


def _cloud(request: Request) -> CloudState:
    return request.app.state.cloud


def _reset(request: Request, body: Any) -> Any:
    fleet = request.app.state.fleet if body is None else _fleet(body)
    app_state = request.app.state
    reset(_cloud(request), fleet, app_state.faults, app_state.rate_limiter, app_state.account_limits)
    return {"projects": list(_cloud(request).projects)}


def _add_fleet(request: Request, body: Any) -> Any:
    if body is None:
        raise _bad("a fleet is required")
    try:
        added = apply_fleet(_cloud(request), _fleet(body))
    except FleetError as exc:
        raise CloudApiError("Emulator.Conflict", str(exc), 409) from None
    return {"projects": [p.id for p in added]}


def _fleet(body: Any) -> FleetModel:
    try:
        return load_fleet(body)
    except FleetError as exc:
        raise _bad(str(exc)) from None


def _requests(request: Request, body: Any) -> Any:
    state = _cloud(request)
    with state.locked():
        if request.method == "DELETE":
            state.request_log.clear()
            return {"cleared": True}
        return [
            {
                "operation": entry.operation,
                "method": entry.method,
                "path": entry.path,
                "status": entry.status,
                "at": entry.at,
                "project_id": entry.project_id,
                "account": entry.account,
            }
            for entry in state.request_log
        ]


def _faults(request: Request, body: Any) -> Any:
    faults: FaultInjector = request.app.state.faults
    if request.method == "DELETE":
        faults.clear()
    elif request.method == "POST":
        try:
            rule = FaultRule.from_dict(_object(body))
        except (TypeError, ValueError) as exc:
            raise _bad(f"invalid fault rule: {exc}") from None
        faults.add(rule)
        return rule.describe()
    return [rule.describe() for rule in faults.rules()]


def _rate_limit(request: Request, body: Any) -> Any:
    limiter: RateLimiter = request.app.state.rate_limiter
    account_limits: AccountRateLimits = request.app.state.account_limits
    if request.method == "POST":
        data = _object(body)
        account = _typed(data, "account", str)
        if "account" in data and not account:
            raise _bad("account must be a non-empty string (leave it out for the global limit)")
        try:
            if account is None:
                limiter.configure(data.get("rate"), data.get("burst"))
            else:
                account_limits.configure(account, data.get("rate"), data.get("burst"))
        except (TypeError, ValueError) as exc:
            raise _bad(f"invalid rate limit: {exc}") from None
    return {**limiter.describe(), "accounts": account_limits.describe()}


def _job_faults(request: Request, body: Any) -> Any:
    state = _cloud(request)
    with state.locked():
        if request.method == "DELETE":
            state.job_faults.clear()
            return {"job_faults": []}
        data = _object(body)
        known = {f.name for f in dataclasses.fields(JobFault)}
        if set(data) - known:
            raise _bad(f"unknown job fault keys; known: {', '.join(sorted(known))}")
        try:
            fault = TypeAdapter(JobFault).validate_python(data)
        except ValidationError as exc:
            raise _bad(f"invalid job fault: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None
        state.job_faults.append(fault)
        return dataclasses.asdict(fault)


def _clock(request: Request, body: Any) -> Any:
    state = _cloud(request)
    if request.url.path.endswith("/advance"):
        seconds = _object(body).get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise _bad("seconds must be a number >= 0")
        with state.locked():
            state.clock.advance(seconds)
            state.tick()  # move jobs forward now, so /state shows the effect of the jump
    return state.clock.describe()


def _settings(request: Request, body: Any) -> Any:
    state = _cloud(request)
    with state.locked():
        if request.method == "POST":
            try:
                state.settings = settings_from(_object(body), base=state.settings)
            except ValueError as exc:
                raise _bad(str(exc)) from None
        return dataclasses.asdict(state.settings)


def _state(request: Request, body: Any) -> Any:
    state = _cloud(request)
    state.tick()  # a ScaledClock moves without requests: show jobs as they are now
    return summary(state)


def _update_server(request: Request, body: Any) -> Any:
    data = _fields(body, required=(), optional=("name", "tags"))
    name, tags = _typed(data, "name", str), _typed(data, "tags", dict)
    if name is None and tags is None:
        raise _bad("give a name and/or tags")
    if tags is not None and not all(isinstance(v, str) for v in tags.values()):
        raise _bad("tags must map strings to strings")
    state = _cloud(request)
    with state.locked():
        server = _checked(ecs.update_server, state, request.path_params["server_id"], name=name, tags=tags)
        return {
            "id": server.id,
            "name": server.name,
            "tags": dict(server.tags),
            "volume_ids": list(server.volume_ids),
        }


def _attach(request: Request, body: Any) -> Any:
    data = _fields(body, required=("server_id", "device"), optional=("boot_index", "bus"))
    boot_index = _typed(data, "boot_index", int)
    state = _cloud(request)
    with state.locked():
        volume = _checked(
            evs.attach_volume,
            state,
            request.path_params["volume_id"],
            _typed(data, "server_id", str),
            device=_typed(data, "device", str),
            boot_index=boot_index,
            bus=_typed(data, "bus", str) or "virtio",
        )
        return _volume_view(volume)


def _detach(request: Request, body: Any) -> Any:
    data = _fields(body, required=("server_id",), optional=())
    state = _cloud(request)
    with state.locked():
        volume = _checked(
            evs.detach_volume, state, request.path_params["volume_id"], _typed(data, "server_id", str)
        )
        return _volume_view(volume)


def _volume_view(volume: Volume) -> dict[str, Any]:
    return {
        "id": volume.id,
        "status": volume.status,
        "attachments": [
            {"server_id": a.server_id, "device": a.device, "boot_index": a.boot_index}
            for a in volume.attachments
        ],
    }


def _plant_backup(request: Request, body: Any) -> Any:
    data = _fields(
        body, required=("volume_id", "name"), optional=("description", "status", "created_at", "kind")
    )
    created_at = _typed(data, "created_at", str)
    state = _cloud(request)
    with state.locked():
        backup = _checked(
            backups.plant_backup,
            state,
            _typed(data, "volume_id", str),
            name=_typed(data, "name", str),
            description=_typed(data, "description", str),
            status=_typed(data, "status", str) or "available",
            created_at=None if created_at is None else _timestamp(created_at),
            kind=_typed(data, "kind", str) or "manual",
        )
        return {"id": backup.id}


def _fields(body: Any, *, required: tuple[str, ...], optional: tuple[str, ...]) -> dict[str, Any]:
    data = _object(body)
    unknown = sorted(set(data) - set(required) - set(optional))
    if unknown:
        raise _bad(f"unknown keys {', '.join(unknown)}; known: {', '.join(sorted(required + optional))}")
    missing = [key for key in required if data.get(key) is None]
    if missing:
        raise _bad(f"{', '.join(missing)} required")
    return data


_KINDS = {str: "a string", int: "an integer", dict: "an object"}


def _typed(data: dict[str, Any], key: str, kind: type) -> Any:
    """`data[key]` when it is a `kind` (None when absent or null); a bool is never taken for an int."""
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise _bad(f"{key} must be {_KINDS.get(kind, kind.__name__)}")
    return value


def _timestamp(text: str) -> datetime:
    """ISO 8601; without a zone it is UTC (like every time the emulator serves)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"created_at {text!r} is not an ISO 8601 time") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _checked(action: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a backend action; its `ValueError` (a refused operation) answers 400 Emulator.BadRequest."""
    try:
        return action(*args, **kwargs)
    except ValueError as exc:
        raise _bad(str(exc)) from None


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("a JSON object body is required")
    return body


# Request guard ----------------------------------------------------------------------------------------------

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def host_name(host: str) -> str:
    """The name part of a Host header (or a bind address), lower case: `[::1]:80` -> `::1`, `a:8` -> `a`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.index("]")] if "]" in host else host
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return host.split(":", 1)[0]
    return host


def allowed_hosts(extra: Any = ()) -> frozenset[str]:
    """The Host names the control API answers: loopback, plus the host(s) the emulator was bound to."""
    return LOOPBACK_HOSTS | {host_name(h) for h in extra if host_name(h)}


def _guard(request: Request) -> None:
    """Refuse what a web page could send (CSRF) or route here (DNS rebinding); see the module docstring."""
    hosts = getattr(request.app.state, "control_hosts", LOOPBACK_HOSTS)
    if host_name(request.headers.get("host", "")) not in hosts:
        raise CloudApiError(
            "Emulator.MisdirectedRequest",
            f"the control API answers only Host {', '.join(sorted(hosts))} (any port)",
            421,
        )
    if request.method in SAFE_METHODS:
        return
    if "origin" in request.headers or "sec-fetch-site" in request.headers:
        raise CloudApiError("Emulator.Forbidden", "the control API does not take requests from browsers", 403)
    content_type = request.headers.get("content-type")
    has_body = "transfer-encoding" in request.headers or request.headers.get("content-length", "0") != "0"
    if (content_type is not None or has_body) and (
        (content_type or "").split(";", 1)[0].strip().lower() != "application/json"
    ):
        raise CloudApiError(
            "Emulator.UnsupportedMediaType", "a control request body must be sent as application/json", 415
        )


def _endpoint(handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
        try:
            _guard(request)
        except EmulatorError as exc:
            return error_response(request, exc)
        raw = await request.body()
        try:
            try:
                body = json.loads(raw) if raw.strip() else None
            except ValueError:
                raise _bad("the body is not JSON") from None
            result = handler(request, body)
        except EmulatorError as exc:
            return error_response(request, exc)
        return result if isinstance(result, Response) else JSONResponse(result)

    return endpoint


def routes() -> list[Route]:
    table: list[tuple[str, Callable[[Request, Any], Any], list[str]]] = [
        ("/reset", _reset, ["POST"]),
        ("/fleet", _add_fleet, ["POST"]),
        ("/state", _state, ["GET"]),
        ("/requests", _requests, ["GET", "DELETE"]),
        ("/faults", _faults, ["GET", "POST", "DELETE"]),
        ("/rate_limit", _rate_limit, ["GET", "POST"]),
        ("/job_faults", _job_faults, ["POST", "DELETE"]),
        ("/clock", _clock, ["GET"]),
        ("/clock/advance", _clock, ["POST"]),
        ("/settings", _settings, ["GET", "POST"]),
        ("/servers/{server_id}", _update_server, ["POST"]),
        ("/volumes/{volume_id}/attach", _attach, ["POST"]),
        ("/volumes/{volume_id}/detach", _detach, ["POST"]),
        ("/backups", _plant_backup, ["POST"]),
    ]
    return [
        Route(
            PREFIX + path,
            _endpoint(handler),
            methods=methods,
            name="emulator." + path.strip("/").replace("/", "_").replace("{", "").replace("}", ""),
        )
        for path, handler, methods in table
    ]
