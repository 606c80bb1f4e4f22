"""The emulator's control API under `/_emulator` (unauthenticated; for tests, demos and benchmarks).

    POST   /reset          body: optional fleet dict; none = the fleet the app started with
    POST   /fleet          add a fleet (409 when an id already exists)
    GET    /state          JSON summary of every project
    GET    /requests       the request log: [{operation, method, path, status}]
    DELETE /requests       clear it
    GET    /faults         active fault rules;   POST /faults (add one);   DELETE /faults (clear)
    POST   /rate_limit     {"rate": 10, "burst": 10} or {"rate": null}
    POST   /job_faults     {"mode": "fail"|"hang", "job_type"?, "volume_id"?, "error_code"?, "fail_reason"?,
                            "count"?, "probability"?};   DELETE /job_faults
    GET    /clock;  POST /clock/advance {"seconds": N}
    GET    /settings;  POST /settings (partial update)

A reset empties the state (projects, shares, tokens, job faults, request log), restores default settings,
removes fault rules and the rate limit, re-seeds the state's random generator when a seed was given, moves
a `ManualClock` back to the real current time (so AK/SK signatures made with real time are fresh again),
then loads the fleet. Tick hooks (the VBS job engine) stay installed. Errors answer
`{"error": {"code": "Emulator.BadRequest"|"Emulator.Conflict", "message": ...}}`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .clock import ManualClock, real_now
from .errors import CloudApiError, EmulatorError
from .faults import FaultInjector, FaultRule, RateLimiter
from .fleet import FleetError, FleetModel, apply_fleet, load_fleet, settings_from
from .http import error_response, fmt_backup_time, fmt_job_time
from .state import CloudState, JobFault, Settings

PREFIX = "/_emulator"


def _bad(message: str) -> CloudApiError:
    return CloudApiError("Emulator.BadRequest", message, 400)


def reset(state: CloudState, fleet: FleetModel | None, faults: FaultInjector, limiter: RateLimiter) -> None:
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
    reset(_cloud(request), fleet, request.app.state.faults, request.app.state.rate_limiter)
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
            {"operation": op, "method": method, "path": path, "status": status}
            for op, method, path, status in state.request_log
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
    data = _object(body)
    limiter: RateLimiter = request.app.state.rate_limiter
    try:
        limiter.configure(data.get("rate"), data.get("burst"))
    except (TypeError, ValueError) as exc:
        raise _bad(f"invalid rate limit: {exc}") from None
    return limiter.describe()


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


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("a JSON object body is required")
    return body


def _endpoint(handler: Callable[[Request, Any], Any]) -> Callable[[Request], Any]:
    async def endpoint(request: Request) -> Response:
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
        ("/rate_limit", _rate_limit, ["POST"]),
        ("/job_faults", _job_faults, ["POST", "DELETE"]),
        ("/clock", _clock, ["GET"]),
        ("/clock/advance", _clock, ["POST"]),
        ("/settings", _settings, ["GET", "POST"]),
    ]
    return [
        Route(
            PREFIX + path,
            _endpoint(handler),
            methods=methods,
            name="emulator." + path.strip("/").replace("/", "_"),
        )
        for path, handler, methods in table
    ]
