"""The API gateway in front of every emulated service: a pure ASGI middleware.

For each HTTP request it, in order:

1. gives the request an id (32 hex, in `request.state.request_id` and the `X-Request-Id` response header)
   and notes its arrival time (`wall_clock`);
2. lets the control API (`/_emulator/...`) through untouched (no auth, no faults, not logged);
3. finds the route, hence the operation name (`vbs.create_backup`), or answers the gateway's 404
   `APIGW.0101` (a method a path does not offer is also an unpublished API);
4. authenticates, except `iam.create_token`: `X-Auth-Token` (issued by this emulator, unexpired) or an AK/SK
   signature (reference §5c), and checks that the caller's project is the one in the path / `X-Project-Id`
   (401 `APIGW.0301`, 403 `APIGW.0302`);
5. applies the caller's account's rate limit, then the global one (429 `APIGW.0308` with `Retry-After`);
6. applies the first fault rule that fires (error, latency, drop_before, drop_after);
7. runs the operation, and appends a `LoggedRequest` (operation, method, path, status, arrival time, the
   caller's project and account) to `state.request_log`. A request dropped before the operation ran is
   logged with status 0; one dropped after it ran is logged with the status the caller never received. The
   caller is known once its credentials are verified (a 403 for another project is logged with the
   caller's own); the token request and a request failing authentication are logged without one.

Dropping a connection: behind uvicorn the socket is closed without a response (the client sees "server
disconnected"); in-process (httpx `ASGITransport`) there is no socket, so the gateway raises
`httpx.RemoteProtocolError`, which is exactly what httpx raises to a caller in the socket case.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import auth
from .errors import EmulatorError, GatewayError, gateway_not_found
from .faults import AccountRateLimits, FaultInjector, RateLimiter
from .state import CloudState, LoggedRequest, Project

CONTROL_PREFIX = "/_emulator"
UNAUTHENTICATED_OPERATIONS = {"iam.create_token"}


class Gateway:
    def __init__(
        self,
        app: ASGIApp,
        *,
        faults: FaultInjector,
        rate_limiter: RateLimiter,
        account_limits: AccountRateLimits | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.app = app
        self.faults = faults
        self.rate_limiter = rate_limiter
        self.account_limits = account_limits if account_limits is not None else AccountRateLimits()
        self.wall_clock = wall_clock  # real time: the AK/SK signature window, and arrival times in the log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(16)
        scope.setdefault("state", {})["request_id"] = request_id
        status: list[int] = [0]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*headers, (b"x-request-id", request_id.encode())]}
            await send(message)

        if scope["path"] == CONTROL_PREFIX or scope["path"].startswith(CONTROL_PREFIX + "/"):
            await self.app(scope, receive, send_with_id)
            return

        at = self.wall_clock()
        state: CloudState = scope["app"].state.cloud
        operation, path_params = self._match(scope)
        caller: Project | None = None
        rule = None

        def log(answered: int) -> None:
            entry = LoggedRequest(
                operation,
                scope["method"],
                scope["path"],
                answered,
                at,
                caller.id if caller is not None else None,
                caller.account if caller is not None else None,
            )
            with state.locked():
                state.request_log.append(entry)

        try:
            if operation is None:
                raise gateway_not_found()
            body, receive = await _buffer_body(receive)
            if operation not in UNAUTHENTICATED_OPERATIONS:
                caller = self._authenticate(state, scope, body)
                auth.check_project(caller, path_params.get("project_id"), _header(scope, b"x-project-id"))
            throttled = self.account_limits.acquire(caller.account if caller is not None else None)
            if throttled is not None:
                raise throttled
            retry_after = self.rate_limiter.acquire()
            if retry_after is not None:
                raise self.rate_limiter.throttled(retry_after)
            rule = self.faults.pick(operation)
            if rule is not None and rule.kind == "error":
                raise rule.error(operation)
        except EmulatorError as exc:
            await _error_response(scope, receive, send_with_id, exc)
            log(status[0])
            return

        if rule is not None and rule.kind == "latency":
            await asyncio.sleep(rule.latency)
        if rule is not None and rule.kind == "drop_before":
            log(0)
            await _drop(receive)
            return
        if rule is not None and rule.kind == "drop_after":
            await self.app(scope, receive, _swallow(status))
            log(status[0])
            await _drop(receive)
            return
        await self.app(scope, receive, send_with_id)
        log(status[0])

    @staticmethod
    def _match(scope: Scope) -> tuple[str | None, dict[str, Any]]:
        for candidate in scope["app"].routes:
            match, child = candidate.matches(scope)
            if match == Match.FULL:
                return getattr(candidate, "name", None), child.get("path_params", {})
        return None, {}

    def _authenticate(self, state: CloudState, scope: Scope, body: bytes) -> Project:
        """The calling project, from its token or AK/SK signature; a 401 when neither verifies."""
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        # ASGI says raw_path is the path alone; some ASGI clients have appended the query to it.
        raw_path = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
        lowered = {k.lower(): v for k, v in headers.items()}
        with state.locked():
            if "x-auth-token" in lowered:
                return auth.verify_token(state, lowered["x-auth-token"])
            if "authorization" in lowered:
                return auth.verify_aksk(
                    state,
                    method=scope["method"],
                    raw_path=raw_path.decode("latin-1"),
                    raw_query=scope.get("query_string", b"").decode("latin-1"),
                    headers=headers,
                    body=body,
                    real_now=datetime.fromtimestamp(self.wall_clock(), UTC),
                )
        raise GatewayError(
            401,
            auth.AUTH_FAILED,
            "Incorrect IAM authentication information: neither X-Auth-Token nor an AK/SK "
            "Authorization header was found",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    """The value of header `name` (lower case; the last one when repeated), or None."""
    found = None
    for key, value in scope["headers"]:
        if key.lower() == name:
            found = value.decode("latin-1")
    return found


async def _buffer_body(receive: Receive) -> tuple[bytes, Receive]:
    """Read the whole body (the signature covers it) and give the app a `receive` that replays it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    # Keep a handle on the server's own receive: `_drop` finds the connection through it.
    replay.__wrapped__ = receive  # type: ignore[attr-defined]
    return body, replay


async def _error_response(scope: Scope, receive: Receive, send: Send, exc: EmulatorError) -> None:
    request = Request(scope)
    rid = request.state.request_id
    response = JSONResponse(exc.body(rid), status_code=exc.status, headers=exc.headers())
    await response(scope, receive, send)


def _swallow(status: list[int]) -> Send:
    """A `send` that keeps the response from the caller (drop_after) but remembers its status."""

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            status[0] = message["status"]

    return send


async def _drop(receive: Receive) -> None:
    """Close the client connection without a response."""
    server_receive = getattr(receive, "__wrapped__", receive)
    # uvicorn's `receive` is a bound method of its request cycle, which holds the socket transport.
    transport = getattr(getattr(server_receive, "__self__", None), "transport", None)
    if transport is None:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    transport.close()
    # Let uvicorn see the connection as lost before we return, so it does not try to answer a 500.
    for _ in range(3):
        await asyncio.sleep(0)
