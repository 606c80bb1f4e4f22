"""Helpers every emulator route uses: one handler wrapper, JSON in and out, time formats.

Routes stay thin (parse, call the backend, serialize); the wrapper takes the state lock, moves
asynchronous work forward (`state.tick()`), resolves the project named in the path (the gateway has already
checked that the caller may use it) and turns `EmulatorError`s into their wire shapes.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import CinderError, CloudApiError, EmulatorError
from .state import CloudState, Project

Handler = Callable[[Request, CloudState, Project | None, Any], Any]


def request_id(request: Request) -> str:
    return getattr(request.state, "request_id", "0" * 32)


def error_response(request: Request, exc: EmulatorError) -> Response:
    headers = {"X-Request-Id": request_id(request), **exc.headers()}
    return JSONResponse(exc.body(request_id(request)), status_code=exc.status, headers=headers)


def reply(body: Any = None, status: int = 200) -> Response:
    if body is None:
        return Response(status_code=status)
    return JSONResponse(body, status_code=status)


async def read_json(request: Request, *, bad: EmulatorError, empty: EmulatorError | None = None) -> Any:
    """The request body as JSON; `bad` is raised for an empty or non-JSON body (each API has its code).

    `empty`, when given, is raised instead of `bad` for an empty body (the policy API tells the two apart:
    AutoBackup.0000 empty request vs AutoBackup.0008 not JSON).
    """
    raw = await request.body()
    if not raw:
        raise empty or bad
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad from exc


def route(
    path: str,
    name: str,
    methods: list[str],
    handler: Callable[..., Any],
    *,
    body: bool = False,
    bad_body: EmulatorError | None = None,
    not_found: Callable[[str], EmulatorError] | None = None,
    empty_body: EmulatorError | None = None,
) -> Route:
    """A Starlette route whose name is the API operation (`vbs.create_backup`), used by faults and logs.

    The handler is called as `handler(request, state, project, payload)` under the state lock, where
    `project` is the project of the `{project_id}` path parameter (None for paths without one) and
    `payload` is the decoded JSON body when `body=True` (else None). It returns a Response, or a
    `(body, status)` tuple, or a plain JSON-able body (status 200).
    """

    async def endpoint(request: Request) -> Response:
        state: CloudState = request.app.state.cloud
        try:
            payload = None
            if body:
                payload = await read_json(
                    request,
                    bad=bad_body or CloudApiError("VolumeBackup.0002", "api request parameter instance null"),
                    empty=empty_body,
                )
            with state.locked():
                state.tick()
                project = None
                pid = request.path_params.get("project_id")
                if pid is not None:
                    project = state.project(pid)
                    if project is None:
                        raise (not_found or _project_not_found)(pid)
                result = handler(request, state, project, payload)
                if isinstance(result, Awaitable):  # pragma: no cover - handlers are sync
                    result = await result
        except EmulatorError as exc:
            return error_response(request, exc)
        if isinstance(result, Response):
            return result
        if isinstance(result, tuple):
            return reply(result[0], result[1])
        return reply(result)

    return Route(path, endpoint, methods=methods, name=name)


def _project_not_found(pid: str) -> EmulatorError:
    return CloudApiError("Common.0001", f"project {pid} does not exist", 404)


def cinder_not_found(kind: str) -> Callable[[str], EmulatorError]:
    return lambda ident: CinderError(404, f"{kind} {ident} could not be found.")


# Time formats of reference §0.3 ---------------------------------------------------------------------------


def fmt_backup_time(ts: datetime | None) -> str | None:
    """Backups, volumes, shares: `YYYY-MM-DDTHH:MM:SS.ffffff`, no zone (UTC)."""
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%S.%f")


def fmt_job_time(ts: datetime | None) -> str | None:
    """Jobs: `YYYY-MM-DDTHH:MM:SS.mmmZ`."""
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def fmt_task_time(ts: datetime | None) -> str | None:
    """Policy backup tasks: `YYYY-MM-DDTHH:MM:SS.mmm`, no zone."""
    return None if ts is None else ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}"
