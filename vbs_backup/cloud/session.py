"""The one request path of the client: every call to IAM, ECS, EVS and VBS goes through `CloudSession`.

Per attempt: wait for the rate limiter (then for the budget shared with other processes, when there is
one: `RequestBudget`, ratelimit.py), send through one `httpx.AsyncClient` (whose `auth` signs or adds
the token), log one INFO line on `vbs_backup.cloud` (`operation method path status elapsed_ms request_id`,
never headers or bodies), count the attempt in `stats`, and tell the rate limiter how the gateway answered
(`throttled(retry_after)` for a 429, `succeeded()` for any other answer: it adapts its rate, ratelimit.py).
Then either return the response (status in `ok`), retry (see retry.py for exactly what: a 429 until the
caller's throttle deadline, other failures at most `max_attempts` times), or raise the matching
`CloudError` (errors.py).

The interface (names and signatures) was fixed by the lead; the facades in vbs.py/ecs.py/evs.py/iam.py
call `request`, `json` and `paginate`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx

from .endpoints import Endpoints, Service
from .errors import (
    ApiError,
    CloudError,
    ConfigurationError,
    InvalidResponseError,
    TransportError,
    parse_error_body,
    parse_retry_after,
    raise_from_response,
    safe_url,
)
from .models.common import is_project_id
from .ratelimit import RateLimiter, RateReport, RequestBudget
from .retry import CallRetries, RetryPolicy, describe

__all__ = ["CloudSession", "Service"]

log = logging.getLogger("vbs_backup.cloud")

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_STYLES = ("marker", "offset", "page")
USER_AGENT = "vbs-backup/0.1"


def _clean_params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop None values (so facades can pass every optional filter) and spell booleans as the APIs do."""
    if not params:
        return None
    cleaned: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        cleaned[key] = value
    return cleaned or None


def _check_path(path: str) -> None:
    """Refuse a path that would not reach the resource it names. httpx (like any RFC 3986 normaliser)
    removes dot segments, so `.../tags/..` would be sent as a request to the parent resource (a tag key
    `..` deleting the whole policy), and a gateway may decode `%2E%2E` and do the same. Every call passes
    here, so no facade can build such a path by mistake. (A `?` ends the path: what follows is a query.)"""
    for segment in re.split(r"[?#]", path, maxsplit=1)[0].split("/"):
        if unquote(segment) in (".", ".."):
            raise ValueError(f"path segment {segment!r} is a dot segment, which would change the path")


def _next_href(links: Any) -> str | None:
    if not isinstance(links, list):
        return None
    for link in links:
        if isinstance(link, dict) and link.get("rel") == "next" and link.get("href"):
            return str(link["href"])
    return None


def _query_value(href: str, name: str) -> str | None:
    values = parse_qs(urlsplit(href).query).get(name)
    return values[-1] if values else None


MAX_IN_FLIGHT = 50  # concurrent HTTP requests per session (and connections in its pool)

# httpx's timeouts bound each phase (connect, each write, each read), not an attempt: a server that drips
# its answer a byte at a time holds a call for ever. An attempt as a whole gets this many times the longest
# phase timeout by default (queueing for a slot and for the rate limiter not included).
DEADLINE_FACTOR = 2.0

# Marker paging over a collection that loses rows meanwhile (see `CloudSession.paginate`): earlier ids
# tried before restarting from the first page, and refused markers recovered from per listing.
MARKER_WALK_BACK = 2
MARKER_LOSSES = 10


def _marker_vanished(error: ApiError, marker: str) -> bool:
    """The page request failed because its marker no longer exists: 400 or 404 (Cinder answers 400
    badRequest "Marker <id> could not be found.", EVS 400 EVS.1024 "invalid marker! volume <id> is not in
    the list") whose message names this marker and says "marker" (in the message or the code). A 404 for
    the path or the project, or a 400 about another parameter, does not match."""
    if error.http_status not in (400, 404) or not error.message or marker not in error.message:
        return False
    return "marker" in f"{error.code or ''} {error.message}".lower()


def _default_deadline(timeout: float | httpx.Timeout) -> float | None:
    timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
    phases = [t for t in (timeout.connect, timeout.read, timeout.write) if t is not None]
    return DEADLINE_FACTOR * max(phases) if phases else None


class _DeadlineExceeded(Exception):
    """An attempt ran past the session's `deadline` (internal: becomes a `TransportError`)."""


class CloudSession:
    """Policy (endpoints, auth, retries, timeouts, rate limit, logging) over one `httpx.AsyncClient`.

    `project_id` is the project every project-scoped path uses (32 hex, checked here so that a typo is a
    ConfigurationError, not a 404 from the gateway). `transport` is the test seam (`httpx.ASGITransport(app)`
    or `httpx.MockTransport`); by default a real socket is used. The httpx client is created on first use,
    inside the running event loop, and closed by `aclose()` (or `async with`).

    `timeout` bounds each phase of an attempt (httpx: connect, each write, each read); `deadline` bounds
    an attempt as a whole, from sending to the last byte of the answer (default `DEADLINE_FACTOR` times
    the longest phase timeout; none when every phase is unbounded). An attempt past its deadline is a
    `TransportError` that may have reached the server (the answer was on its way), so it is retried like
    a read timeout: idempotent calls only, and a create is adopted rather than re-sent.

    `shared_budget` is the account's request budget shared with other processes (`RequestBudget`): taken
    once per attempt after the rate limiter's token, retries included; its wait does not count against
    `deadline`.
    """

    project_id: str

    def __init__(
        self,
        *,
        endpoints: Endpoints,
        project_id: str,
        auth: httpx.Auth,
        retry: RetryPolicy | None = None,
        timeout: float | httpx.Timeout = 30,
        rate_limiter: RateLimiter | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        deadline: float | None = None,
        shared_budget: RequestBudget | None = None,
    ) -> None:
        if not is_project_id(project_id):
            raise ConfigurationError(
                "project_id must be 32 lowercase hexadecimal characters (see the IAM console)"
            )
        if deadline is None:
            deadline = _default_deadline(timeout)
        elif not deadline > 0:
            raise ConfigurationError("deadline must be a positive number of seconds")
        self.endpoints = endpoints
        self.project_id = project_id
        self.auth = auth
        self.retry = retry or RetryPolicy()
        self.timeout = timeout
        self.deadline: float | None = deadline
        self.rate_limiter = rate_limiter
        self.shared_budget = shared_budget
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        # Requests in flight at once, taken before the rate-limit token: at fleet scale thousands of callers
        # queue here (cheap) instead of in httpx's connection pool, whose waiters time out and slow down
        # sharply as the queue grows (measured by bench/nightly_fleet.py at 100 requests/s).
        self._in_flight: asyncio.Semaphore | None = None
        self._closed = False
        self.stats: Counter[str] = Counter()  # HTTP attempts per operation, retries included

    def __repr__(self) -> str:
        return f"CloudSession(vbs={self.endpoints.vbs!r}, project_id={self.project_id!r}, auth={self.auth!r})"

    def rate_report(self) -> RateReport | None:
        """The rate limiter's report (requests, 429s, achieved and lowest rate), None without a limiter."""
        return self.rate_limiter.report() if self.rate_limiter is not None else None

    def _http(self) -> httpx.AsyncClient:
        if self._closed:
            raise CloudError("this CloudSession is closed")
        if self._client is None:
            self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
            timeout = self.timeout if isinstance(self.timeout, httpx.Timeout) else httpx.Timeout(self.timeout)
            self._client = httpx.AsyncClient(
                auth=self.auth,
                # Nobody waits for a pooled connection longer than for a slot of `_in_flight` (bounded by
                # the pool size), so a pool timeout would only turn a fleet-sized queue into failures.
                timeout=httpx.Timeout(timeout.connect, read=timeout.read, write=timeout.write, pool=None),
                limits=httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT),
                transport=self._transport,
                # SDKs send Content-Type on every call (reference §0.2); it is then also signed.
                headers={
                    "Accept": "application/json",
                    "Content-Type": "application/json",
                    "User-Agent": USER_AGENT,
                },
                follow_redirects=False,
            )
        return self._client

    async def request(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation: str | None = None,
    ) -> httpx.Response:
        """Send one API call to `service`'s base URL + `path` (a path that starts with `/`, e.g.
        `/v2/{project_id}/cloudbackups` already formatted). Returns the response when its status is in
        `ok`, else raises the matching `CloudError` subclass (see errors.py). `idempotent` defaults to
        True for GET/HEAD/PUT/DELETE/OPTIONS and False for POST; only idempotent calls are retried after
        a transport error or a 5xx; 429 (throttled before the operation ran) is retried for every method,
        without counting against `max_attempts`, until the throttle deadline (`retry_throttled_until`
        around the caller, else the policy's `throttle_patience` from now; retry.py).
        `operation` names the API operation for logs (e.g. "vbs.create_backup"). A path that would not
        reach what it names (a `.`/`..` segment, encoded or not) is a ValueError, raised before anything
        is sent (`_check_path`)."""
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        _check_path(path)
        method = method.upper()
        service = Service(service)
        if idempotent is None:
            idempotent = method in _IDEMPOTENT
        op = operation or f"{service.value}.{method.lower()}"
        url = self.endpoints.url(service) + path
        query = _clean_params(params)
        client = self._http()
        retries = self.retry.start()  # reads the caller's throttle deadline
        attempt = 0
        assert self._in_flight is not None
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                async with self._in_flight:
                    if self.rate_limiter is not None:
                        await self.rate_limiter.acquire()
                    # Every attempt reaches the gateway, whichever process sends it: one unit each.
                    if self.shared_budget is not None:
                        await self.shared_budget.acquire()
                    self.stats[op] += 1
                    started = time.perf_counter()
                    response = await self._send(client, method, url, query, json)
            except _DeadlineExceeded as exc:
                shown = safe_url(httpx.URL(url, params=query))
                error = TransportError(
                    f"{op} failed: no complete answer within the {self.deadline:g}s deadline "
                    f"{method} {shown}",
                    may_have_reached_server=True,  # the request went out: the operation may have run
                    method=method,
                    url=shown,
                    operation=op,
                )
                self._log(op, method, path, "DeadlineExceeded", started, None)
                if await self._backoff(retries, attempt, error, idempotent, op):
                    continue
                raise error from exc
            except httpx.TransportError as exc:
                error = TransportError.from_httpx(
                    exc, method=method, url=httpx.URL(url, params=query), operation=op
                )
                self._log(op, method, path, type(exc).__name__, started, None)
                if await self._backoff(retries, attempt, error, idempotent, op):
                    continue
                raise error from exc
            except ApiError as exc:
                # Raised by the auth flow (the token request failed): the call itself was not executed,
                # so the retry decision is the token request's, which is safe to repeat.
                if exc.http_status == 429 and self.rate_limiter is not None:
                    self.rate_limiter.throttled(getattr(exc, "retry_after", None))
                if await self._backoff(retries, attempt, exc, True, op):
                    continue
                raise
            status = response.status_code
            if self.rate_limiter is not None:
                if status == 429:
                    self.rate_limiter.throttled(parse_retry_after(response.headers.get("Retry-After")))
                else:
                    self.rate_limiter.succeeded()
            if status in ok:
                self._log(
                    op, method, response.url.path, status, started, response.headers.get("X-Request-Id")
                )
                return response
            self._log(op, method, response.url.path, status, started, parse_error_body(response)[2])
            if await self._backoff(retries, attempt, response, idempotent, op):
                continue
            raise_from_response(response, operation=op)

    async def _send(
        self, client: httpx.AsyncClient, method: str, url: str, query: dict[str, Any] | None, json: Any
    ) -> httpx.Response:
        """One attempt, bounded by `deadline` as a whole (httpx closes the connection when cancelled)."""
        if self.deadline is None:
            return await client.request(method, url, params=query, json=json)
        scope = asyncio.timeout(self.deadline)
        try:
            async with scope:
                return await client.request(method, url, params=query, json=json)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise _DeadlineExceeded() from exc

    async def _backoff(
        self, retries: CallRetries, attempt: int, outcome: Any, idempotent: bool, op: str
    ) -> bool:
        """Wait and return True when attempt number `attempt`, which ended in `outcome`, is to be retried."""
        pause = self.rate_limiter.pause_remaining() if self.rate_limiter is not None else 0.0
        throttled_before = retries.throttled
        delay = retries.next_delay(outcome, idempotent, not_before=pause)
        if delay is None:
            return False
        if retries.throttled > throttled_before:
            log.warning(
                "retrying %s: attempt %d was throttled (%s); next attempt in %.2fs (deadline in %.0fs)",
                op,
                attempt,
                describe(outcome),
                delay,
                retries.remaining(),
                extra={"operation": op, "attempt": attempt, "wait": delay, "throttled": True},
            )
        else:
            log.warning(
                "retrying %s: attempt %d of %d failed with %s; next attempt in %.2fs",
                op,
                retries.failures,
                self.retry.max_attempts,
                describe(outcome),
                delay,
                extra={"operation": op, "attempt": attempt, "wait": delay},
            )
        await self.retry.pause(delay)
        return True

    @staticmethod
    def _log(
        op: str, method: str, path: str, status: int | str, started: float, request_id: str | None
    ) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s %s %s %s %.0fms %s",
            op,
            method,
            path,
            status,
            elapsed_ms,
            request_id or "-",
            extra={"operation": op, "status": status, "elapsed_ms": round(elapsed_ms, 1)},
        )

    async def json(
        self,
        service: Service,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        ok: tuple[int, ...] = (200,),
        idempotent: bool | None = None,
        operation: str | None = None,
    ) -> Any:
        """`request(...)` then the decoded JSON body (None for an empty body)."""
        response = await self.request(
            service, method, path, params=params, json=json, ok=ok, idempotent=idempotent, operation=operation
        )
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise InvalidResponseError(
                f"{operation or service} answered {response.status_code} with a body that is not JSON "
                f"({method.upper()} {safe_url(response.url)})"
            ) from exc

    async def paginate(
        self,
        service: Service,
        path: str,
        *,
        items_key: str,
        links_key: str | None = None,
        params: Mapping[str, Any] | None = None,
        page_size: int | None = None,
        style: str = "marker",
        operation: str | None = None,
        id_key: str = "id",
    ) -> AsyncIterator[Any]:
        """Yield every item of a listed collection (raw dicts) across pages.

        style="marker": send `limit`=page_size and `marker`=id of the last item (`id_key`, e.g. "job_id"
        for policy tasks). With `links_key`, the next link decides: no next link means done (a server that
        caps the page below `limit` still links to the next page). Without `links_key`, a page shorter than
        the limit means done. When the next link carries a `marker` query value, that value is used (the
        URL itself is not trusted: the documented example lacks the /v2 segment).
        style="offset": `limit`/`offset` with offset counted in items (0-based).
        style="page": `limit`/`offset` with offset a 1-based page number (ECS cloudservers/detail, §5a).
        Both offset styles need `page_size`; they stop at a short or empty page (or a missing next link
        when `links_key` is given). An empty page always ends the listing.

        A marker that vanishes between two page requests (marker style only): the item whose id is the
        next page's marker may be deleted meanwhile (a retention run, a `status` filter that a `deleting`
        backup no longer matches), and the server then refuses the marker (Cinder: 400 "Marker <id> could
        not be found."; EVS: EVS.1024 naming the volume). Only that answer is recovered from (see
        `_marker_vanished`: 400/404 whose message names the marker and says "marker"); every other error
        propagates as before. Recovery resumes from an earlier marker of the same walk: the ids just
        before the lost one (up to `MARKER_WALK_BACK` of them, most recent first, one request each); the
        rows after an earlier marker are what followed the lost one plus the rows in between, which were
        already yielded. When those are gone too, the walk restarts from the first page. Either way no id
        is yielded twice (marker style never yields an id it already yielded), so nothing that still
        exists is lost or repeated. Walking back is chosen over always restarting because a restart
        re-reads the whole listing (tens of pages for a large project) while a step back re-reads at most
        a few rows. It relies on the order not moving under the walk, which holds for the default
        `created_at` order (a deletion changes `status`/`updated_at`, never `created_at` or `id`) and is
        what marker paging assumes anyway. At most `MARKER_LOSSES` refused markers per listing are
        recovered from; the next one is raised as it came (a server that refuses every marker must not
        make a listing loop).
        """
        if style not in _STYLES:
            raise ValueError(f"style must be one of {', '.join(_STYLES)}")
        if style != "marker" and not page_size:
            raise ValueError(f"style={style!r} needs a page_size")
        base = dict(_clean_params(params) or {})
        if page_size:
            base["limit"] = page_size
        marker: str | None = None
        position = 0 if style == "offset" else 1
        seen: set[str] = set()  # markers sent since the walk (re)started: a repeat means no progress
        yielded: set[str] = set()  # ids already handed out (marker style)
        trail: deque[str] = deque(maxlen=MARKER_WALK_BACK + 1)  # last ids of this walk, in server order
        losses = 0  # refused markers in this listing
        failed_in_row = 0  # refused markers since the last page that arrived
        while True:
            query = dict(base)
            if style == "marker" and marker is not None:
                query["marker"] = marker
            elif style != "marker":
                query["offset"] = position
            try:
                body = await self.json(service, "GET", path, params=query, operation=operation)
            except ApiError as exc:
                if style != "marker" or marker is None or not _marker_vanished(exc, marker):
                    raise
                losses += 1
                failed_in_row += 1
                if losses > MARKER_LOSSES:
                    raise
                if trail and trail[-1] == marker:
                    trail.pop()
                lost, marker = marker, None
                if trail and failed_in_row <= MARKER_WALK_BACK:
                    marker = trail[-1]
                else:
                    trail.clear()
                seen = set() if marker is None else {marker}
                log.warning(
                    "%s: marker %s no longer exists; resuming %s",
                    operation or path,
                    lost,
                    f"after {marker}" if marker else "from the first page",
                    extra={"operation": operation, "marker": lost},
                )
                continue
            failed_in_row = 0
            items = body.get(items_key) if isinstance(body, dict) else None
            if items is None:
                items = []
            if not isinstance(items, list):
                raise InvalidResponseError(f"{operation or path}: {items_key!r} is not a list")
            for item in items:
                item_id = item.get(id_key) if style == "marker" and isinstance(item, dict) else None
                if isinstance(item_id, str) and item_id:
                    trail.append(item_id)
                    if item_id in yielded:
                        continue
                    yielded.add(item_id)
                yield item
            if not items:
                return
            next_href = _next_href(body.get(links_key)) if links_key else None
            if links_key is not None and next_href is None:
                return
            if style != "marker":
                if page_size is not None and len(items) < page_size:
                    return
                position += len(items) if style == "offset" else 1
                continue
            if links_key is None and (page_size is None or len(items) < page_size):
                return
            last = items[-1].get(id_key) if isinstance(items[-1], dict) else None
            marker = (_query_value(next_href, "marker") if next_href else None) or last
            if not marker or marker in seen:
                raise InvalidResponseError(
                    f"{operation or path}: pagination does not advance (marker {marker!r})"
                )
            seen.add(marker)

    async def aclose(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> CloudSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
