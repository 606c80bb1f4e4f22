"""Unit checks of the client core's own logic, with `httpx.MockTransport` standing in for the network:
retry decisions and waits, pagination, logging, token handling, rate limiting, `CloudClient.connect`.

The scripted handlers here play the cloud only as far as each check needs; the behaviour against the real
emulator over a socket is covered by the integration tests.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.clocks import FakeTime
from vbs_backup.cloud import (
    AkSkAuth,
    AuthenticationError,
    BadRequestError,
    CloudClient,
    CloudError,
    CloudSession,
    ConfigurationError,
    Endpoints,
    InvalidResponseError,
    RateLimiter,
    RetryPolicy,
    ServerError,
    Service,
    ThrottledError,
    TokenAuth,
    TransportError,
)
from vbs_backup.cloud.retry import describe, is_retryable

PID = "17fbda95add24720a4038ba4b1c705ed"
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
PASSWORD = "correct-horse-battery"
ENDPOINTS = Endpoints.for_cloud("otc", "eu-de")
VBS = ENDPOINTS.vbs

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """Wraps a handler and keeps every request it served."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.handler(request)


def scripted(*outcomes: httpx.Response | Exception) -> Recorder:
    """Answer the n-th request with the n-th outcome (the last one repeats); exceptions are raised."""
    items = list(outcomes)

    def handler(request: httpx.Request) -> httpx.Response:
        outcome = items.pop(0) if len(items) > 1 else items[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return Recorder(handler)


def ok(body: object = None, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def vbs_error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": "m"}}, headers=headers)


def throttled(retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    body = {
        "error_code": "APIGW.0308",
        "error_msg": "The throttling threshold has been reached",
        "request_id": "r",
    }
    return httpx.Response(429, json=body, headers=headers)


class Sleeps:
    """An injectable sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_session(
    recorder: Recorder,
    *,
    retry: RetryPolicy | None = None,
    auth: httpx.Auth | None = None,
    rate_limiter: RateLimiter | None = None,
) -> CloudSession:
    return CloudSession(
        endpoints=ENDPOINTS,
        project_id=PID,
        auth=auth or AkSkAuth(AK, SK, PID),
        retry=retry or RetryPolicy(wait=False),
        rate_limiter=rate_limiter,
        transport=httpx.MockTransport(recorder),
    )


# -- retries -----------------------------------------------------------------------------------------------


async def test_get_is_retried_on_503_until_it_succeeds():
    cloud = scripted(
        vbs_error(503, "VolumeBackup.0900"), vbs_error(503, "VolumeBackup.0900"), ok({"backup": {}})
    )
    async with make_session(cloud) as session:
        body = await session.json(Service.VBS, "GET", f"/v2/{PID}/backups/b1", operation="vbs.get_backup")
    assert body == {"backup": {}}
    assert len(cloud.requests) == 3
    assert session.stats["vbs.get_backup"] == 3


async def test_503_forever_gives_up_after_max_attempts_with_a_server_error():
    cloud = scripted(vbs_error(503, "VolumeBackup.0900"))
    async with make_session(cloud, retry=RetryPolicy(max_attempts=4, wait=False)) as session:
        with pytest.raises(ServerError) as info:
            await session.request(Service.VBS, "GET", f"/v1/{PID}/jobs/j1", operation="vbs.get_job")
    assert len(cloud.requests) == 4
    assert info.value.code == "VolumeBackup.0900"


async def test_post_is_retried_on_429_and_waits_retry_after():
    sleeps = Sleeps()
    cloud = scripted(throttled("3"), throttled("7"), ok({"job_id": "j1"}))
    retry = RetryPolicy(sleep=sleeps, rng=random.Random(1))
    async with make_session(cloud, retry=retry) as session:
        body = await session.json(
            Service.VBS, "POST", f"/v2/{PID}/cloudbackups", json={"backup": {}}, operation="vbs.create_backup"
        )
    assert body == {"job_id": "j1"}
    assert len(cloud.requests) == 3
    assert sleeps.calls == [3.0, 7.0]


async def test_429_retry_after_is_capped_and_the_gateway_code_waits_at_least_two_seconds():
    sleeps = Sleeps()
    cloud = scripted(throttled("600"), throttled(None), throttled("0"), ok({}))
    retry = RetryPolicy(cap=30, base=0.001, sleep=sleeps, rng=random.Random(1))
    async with make_session(cloud, retry=retry) as session:
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    assert sleeps.calls[0] == 30.0
    # back-off would be ~1 ms and Retry-After says 0, but APIGW.0308 asks for 2-5 s: a jittered 2-3 s floor
    assert 2.0 <= sleeps.calls[1] <= 3.0
    assert 2.0 <= sleeps.calls[2] <= 3.0
    assert sleeps.calls[1] != sleeps.calls[2]


async def test_429_that_never_ends_raises_throttled_with_retry_after_at_the_deadline():
    # 429s do not count against max_attempts (2): a throttled call is retried until its throttle deadline
    # (`throttle_patience` after its first attempt), then the last 429 is raised.
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    cloud = scripted(throttled("4"))
    retry = RetryPolicy(max_attempts=2, throttle_patience=10, sleep=sleep, clock=lambda: now[0])
    async with make_session(cloud, retry=retry) as session:
        with pytest.raises(ThrottledError) as info:
            await session.request(Service.VBS, "POST", f"/v2/{PID}/cloudbackups", json={})
    assert info.value.retry_after == 4.0
    assert len(cloud.requests) == 3  # at 0, 4 and 8 s; one at 12 s would be past the deadline
    assert now[0] == 8.0


async def test_post_is_not_retried_on_500():
    cloud = scripted(vbs_error(500, "VolumeBackup.0014"), ok({"job_id": "j"}))
    async with make_session(cloud) as session:
        with pytest.raises(ServerError):
            await session.request(Service.VBS, "POST", f"/v2/{PID}/cloudbackups", json={"backup": {}})
    assert len(cloud.requests) == 1


async def test_post_is_not_resent_after_a_read_timeout():
    cloud = scripted(httpx.ReadTimeout("timed out"), ok({"job_id": "j"}))
    async with make_session(cloud) as session:
        with pytest.raises(TransportError) as info:
            await session.request(
                Service.VBS,
                "POST",
                f"/v2/{PID}/cloudbackups",
                json={"backup": {}},
                operation="vbs.create_backup",
            )
    assert len(cloud.requests) == 1
    assert info.value.may_have_reached_server is True
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert info.value.operation == "vbs.create_backup"


async def test_post_is_resent_after_a_connect_error_because_it_never_ran():
    cloud = scripted(httpx.ConnectError("refused"), ok({"job_id": "j"}))
    async with make_session(cloud) as session:
        body = await session.json(Service.VBS, "POST", f"/v2/{PID}/cloudbackups", json={"backup": {}})
    assert body == {"job_id": "j"}
    assert len(cloud.requests) == 2


async def test_get_is_retried_after_a_dropped_connection():
    cloud = scripted(httpx.RemoteProtocolError("peer closed connection"), ok({"backups": []}))
    async with make_session(cloud) as session:
        assert await session.json(Service.VBS, "GET", f"/v2/{PID}/backups") == {"backups": []}
    assert len(cloud.requests) == 2


async def test_explicitly_idempotent_post_is_retried_on_503():
    cloud = scripted(vbs_error(503, "x"), ok(status=204))
    async with make_session(cloud) as session:
        resp = await session.request(
            Service.VBS, "POST", f"/v2/{PID}/backuppolicy/p/tags", json={}, ok=(204,), idempotent=True
        )
    assert resp.status_code == 204
    assert len(cloud.requests) == 2


async def test_client_errors_are_never_retried():
    cloud = scripted(vbs_error(400, "VolumeBackup.0012"))
    async with make_session(cloud) as session:
        with pytest.raises(BadRequestError):
            await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    assert len(cloud.requests) == 1


async def test_each_retry_is_logged_at_warning_without_secrets(caplog):
    caplog.set_level(logging.INFO, logger="vbs_backup.cloud")
    cloud = scripted(vbs_error(503, "VolumeBackup.0900"), ok({}))
    async with make_session(cloud) as session:
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups", operation="vbs.list_backups")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "vbs.list_backups" in text and "attempt 1 of 5" in text and "503 VolumeBackup.0900" in text
    assert "0.00s" in text


@pytest.mark.parametrize(
    ("outcome", "idempotent", "expected"),
    [
        (httpx.ConnectError("x"), False, True),
        (httpx.ConnectTimeout("x"), False, True),
        (httpx.PoolTimeout("x"), False, True),
        (httpx.ReadTimeout("x"), False, False),
        (httpx.ReadTimeout("x"), True, True),
        (httpx.RemoteProtocolError("x"), False, False),
        (httpx.WriteError("x"), True, True),
        (httpx.Response(429), False, True),
        (httpx.Response(500), False, False),
        (httpx.Response(500), True, True),
        (httpx.Response(502), True, True),
        (httpx.Response(503), True, True),
        (httpx.Response(504), True, True),
        (httpx.Response(501), True, False),
        (httpx.Response(400), True, False),
        (httpx.Response(401), True, False),
        (httpx.Response(404), True, False),
        (httpx.Response(409), True, False),
        (ValueError("not a cloud error"), True, False),
    ],
)
def test_retry_predicate(outcome, idempotent, expected):
    assert is_retryable(outcome, idempotent) is expected


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    policy = RetryPolicy(base=0.5, cap=30, rng=random.Random(7))
    for attempt in range(1, 12):
        ceiling = min(30, 0.5 * 2 ** (attempt - 1))
        samples = [policy.backoff(attempt) for _ in range(200)]
        assert all(0 <= s <= ceiling for s in samples)
        assert max(samples) > ceiling * 0.8  # the whole range is used, not a fixed value
    assert RetryPolicy(wait=False).delay(3, httpx.Response(503)) == 0.0
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_describe_names_status_code_or_exception():
    assert (
        describe(httpx.Response(429, json={"error_code": "APIGW.0308", "error_msg": "x"})) == "429 APIGW.0308"
    )
    assert describe(httpx.Response(502, text="bad gateway")) == "502"
    assert describe(httpx.ReadTimeout("x")) == "ReadTimeout"


# -- pagination --------------------------------------------------------------------------------------------

BACKUPS = [{"id": f"b{i}", "name": f"n{i}"} for i in range(5)]


def marker_server(*, links: bool, link_marker: bool = True) -> Recorder:
    """A backups list that pages by marker; with `links`, a truncated page carries a next link whose URL
    lacks the /v2 segment (as in the documented example)."""

    def handler(request: httpx.Request) -> httpx.Response:
        limit = int(request.url.params.get("limit", 1000))
        marker = request.url.params.get("marker")
        start = next(i + 1 for i, b in enumerate(BACKUPS) if b["id"] == marker) if marker else 0
        page = BACKUPS[start : start + limit]
        body: dict = {"backups": page}
        if links and start + limit < len(BACKUPS):
            href = f"{VBS}/{PID}/backups?limit={limit}" + (f"&marker={page[-1]['id']}" if link_marker else "")
            body["backups_links"] = [{"href": href, "rel": "next"}]
        return httpx.Response(200, json=body)

    return Recorder(handler)


async def collect(session: CloudSession, **kwargs) -> list:
    return [
        item
        async for item in session.paginate(Service.VBS, f"/v2/{PID}/backups", items_key="backups", **kwargs)
    ]


async def test_paginate_by_marker_until_a_short_page():
    cloud = marker_server(links=False)
    async with make_session(cloud) as session:
        items = await collect(session, page_size=2, params={"status": "available", "name": None})
    assert items == BACKUPS
    sent = [dict(r.url.params) for r in cloud.requests]
    assert sent == [
        {"status": "available", "limit": "2"},
        {"status": "available", "limit": "2", "marker": "b1"},
        {"status": "available", "limit": "2", "marker": "b3"},
    ]


async def test_paginate_follows_the_next_links_marker_not_its_url():
    cloud = marker_server(links=True)
    async with make_session(cloud) as session:
        items = await collect(session, page_size=2, links_key="backups_links")
    assert items == BACKUPS
    assert all(r.url.path == f"/v2/{PID}/backups" for r in cloud.requests)
    assert [r.url.params.get("marker") for r in cloud.requests] == [None, "b1", "b3"]


async def test_paginate_uses_the_last_id_when_the_next_link_has_no_marker():
    cloud = marker_server(links=True, link_marker=False)
    async with make_session(cloud) as session:
        assert await collect(session, page_size=2, links_key="backups_links") == BACKUPS


async def test_paginate_stops_without_a_next_link_even_on_a_full_page():
    cloud = marker_server(links=True)
    async with make_session(cloud) as session:
        items = await collect(session, page_size=5, links_key="backups_links")
    assert items == BACKUPS
    assert len(cloud.requests) == 1


async def test_paginate_refuses_a_marker_that_does_not_advance():
    page = {"backups": BACKUPS[:2], "backups_links": [{"href": f"{VBS}/x?marker=b1", "rel": "next"}]}
    cloud = scripted(ok(page))
    async with make_session(cloud) as session:
        with pytest.raises(InvalidResponseError, match="does not advance"):
            await collect(session, page_size=2, links_key="backups_links")
    assert len(cloud.requests) == 2


async def test_paginate_by_item_offset_and_by_page_number():
    def handler(request: httpx.Request) -> httpx.Response:
        limit, offset = int(request.url.params["limit"]), int(request.url.params["offset"])
        if request.url.path.endswith("/cloudservers/detail"):  # ECS: offset is a 1-based page number
            start = (offset - 1) * limit
            return httpx.Response(200, json={"servers": BACKUPS[start : start + limit], "count": 5})
        return httpx.Response(200, json={"tasks": BACKUPS[offset : offset + limit], "count": 5})

    cloud = Recorder(handler)
    async with make_session(cloud) as session:
        tasks = [
            t
            async for t in session.paginate(
                Service.VBS,
                f"/v2/{PID}/backuppolicy/p/backuptasks",
                items_key="tasks",
                page_size=2,
                style="offset",
            )
        ]
        servers = [
            s
            async for s in session.paginate(
                Service.ECS, f"/v1/{PID}/cloudservers/detail", items_key="servers", page_size=2, style="page"
            )
        ]
    assert tasks == BACKUPS and servers == BACKUPS
    assert [r.url.params["offset"] for r in cloud.requests] == ["0", "2", "4", "1", "2", "3"]
    with pytest.raises(ValueError, match="page_size"):
        await collect(make_session(cloud), style="offset")


# -- request details, json, logging ------------------------------------------------------------------------


async def test_request_goes_to_the_service_host_with_cleaned_params():
    cloud = scripted(ok({"volumes": []}))
    async with make_session(cloud) as session:
        await session.json(
            Service.EVS,
            "GET",
            f"/v2/{PID}/cloudvolumes/detail",
            params={"server_id": "s1", "name": None, "x": True},
        )
    request = cloud.requests[0]
    assert (
        str(request.url)
        == f"https://evs.eu-de.otc.t-systems.com/v2/{PID}/cloudvolumes/detail?server_id=s1&x=true"
    )
    assert request.headers["X-Project-Id"] == PID
    assert request.headers["Authorization"].startswith(f"SDK-HMAC-SHA256 Access={AK}, ")


async def test_json_returns_none_for_an_empty_body_and_rejects_non_json():
    cloud = scripted(ok(status=204), httpx.Response(200, text="<html>proxy</html>"))
    async with make_session(cloud) as session:
        assert await session.json(Service.VBS, "DELETE", f"/v2/{PID}/backuppolicy/p", ok=(204,)) is None
        with pytest.raises(InvalidResponseError, match="not JSON"):
            await session.json(Service.VBS, "GET", f"/v2/{PID}/backuppolicy")


async def test_one_info_line_per_request_and_no_secret_anywhere_in_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    cloud = scripted(ok({"job_id": "j1"}, headers={"X-Request-Id": "req-42"}))
    async with make_session(cloud) as session:
        await session.json(
            Service.VBS,
            "POST",
            f"/v2/{PID}/cloudbackups",
            json={"backup": {"name": "n"}},
            operation="vbs.create_backup",
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "vbs_backup.cloud"]
    assert len(lines) == 1
    op, method, path, status, elapsed, request_id = lines[0].split(" ")
    assert (op, method, path, status, request_id) == (
        "vbs.create_backup",
        "POST",
        f"/v2/{PID}/cloudbackups",
        "200",
        "req-42",
    )
    assert elapsed.endswith("ms")
    signature = cloud.requests[0].headers["Authorization"].rsplit("=", 1)[1]
    everything = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert SK not in everything and signature not in everything and "Authorization" not in everything


@pytest.mark.parametrize("project_id", ["my-project", "0123456789ABCDEF0123456789ABCDEF", "0" * 31])
async def test_project_id_is_checked_before_any_request(project_id):
    # The one project-id rule (cloud.models.common.is_project_id), as IAM shows ids: 32 lowercase hex.
    with pytest.raises(ConfigurationError, match="32 lowercase hexadecimal"):
        CloudSession(endpoints=ENDPOINTS, project_id=project_id, auth=AkSkAuth(AK, SK))


async def test_a_closed_session_refuses_requests():
    session = make_session(scripted(ok({})))
    await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    await session.aclose()
    with pytest.raises(CloudError, match="closed"):
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")


# -- rate limiter ------------------------------------------------------------------------------------------


async def test_rate_limiter_allows_a_burst_then_spaces_requests():
    fake = FakeTime()
    limiter = RateLimiter(2.0, burst=3, clock=fake.clock, sleep=fake.sleep)
    waits = [await limiter.acquire() for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == [0.5, 0.5, 0.5]
    fake.now += 10  # idle: the bucket refills, but only up to the burst
    assert [await limiter.acquire() for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]


async def test_rate_limiter_serves_concurrent_callers_one_by_one():
    fake = FakeTime()
    limiter = RateLimiter(10.0, burst=1, clock=fake.clock, sleep=fake.sleep)
    await asyncio.gather(*(limiter.acquire() for _ in range(11)))
    assert fake.now == pytest.approx(1.0)  # 11 tokens at 10/s with a burst of 1 take exactly one second


async def test_unlimited_rate_limiter_never_waits():
    limiter = RateLimiter(None)
    assert [await limiter.acquire() for _ in range(100)] == [0.0] * 100
    with pytest.raises(ValueError):
        RateLimiter(0)


async def test_session_takes_a_token_before_every_attempt_retries_included():
    fake = FakeTime()
    limiter = RateLimiter(1.0, burst=1, clock=fake.clock, sleep=fake.sleep)
    cloud = scripted(vbs_error(503, "x"), ok({}))
    async with make_session(cloud, rate_limiter=limiter) as session:
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    assert len(cloud.requests) == 3
    assert fake.sleeps == [1.0, 1.0]


# -- IAM token auth ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


class FakeIam:
    """Issues numbered tokens valid 24 h from `clock`; the API accepts only the tokens in `valid`."""

    def __init__(self, clock: Clock, *, password: str = PASSWORD) -> None:
        self.clock = clock
        self.password = password
        self.issued: list[str] = []
        self.valid: set[str] = set()
        self.token_bodies: list[dict] = []
        self.api_calls = 0
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/v3/auth/tokens":
            body = json.loads(request.content)
            self.token_bodies.append(body)
            assert request.url.params["nocatalog"] == "true"
            if body["auth"]["identity"]["password"]["user"]["password"] != self.password:
                return httpx.Response(
                    401, json={"error": {"code": 401, "message": "Unauthorized.", "title": "x"}}
                )
            await asyncio.sleep(0)  # let concurrent callers pile up behind the fetch
            token = f"tok-{len(self.issued) + 1}-" + "s" * 20
            self.issued.append(token)
            self.valid.add(token)
            expires = (self.clock.now + timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            return httpx.Response(
                201, json={"token": {"expires_at": expires}}, headers={"X-Subject-Token": token}
            )
        self.api_calls += 1
        if request.headers.get("X-Auth-Token") not in self.valid:
            return httpx.Response(
                401, json={"error_code": "APIGW.0301", "error_msg": "token invalid", "request_id": "r"}
            )
        return httpx.Response(200, json={"servers": [], "token_seen": request.headers["X-Auth-Token"]})


def token_session(iam: FakeIam, clock: Clock, *, password: str = PASSWORD) -> tuple[CloudSession, TokenAuth]:
    auth = TokenAuth(
        iam_url=ENDPOINTS.iam, username="ops", password=password, domain="OTC000", project_id=PID, clock=clock
    )
    transport = httpx.MockTransport(iam)
    session = CloudSession(
        endpoints=ENDPOINTS, project_id=PID, auth=auth, retry=RetryPolicy(wait=False), transport=transport
    )
    return session, auth


async def get_servers(session: CloudSession) -> dict:
    return await session.json(
        Service.ECS, "GET", f"/v1/{PID}/cloudservers/detail", operation="ecs.list_servers"
    )


async def test_token_is_fetched_once_scoped_to_the_project_and_reused():
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    async with session:
        for _ in range(3):
            assert (await get_servers(session))["token_seen"] == iam.issued[0]
    assert auth.fetches == 1 and iam.api_calls == 3
    assert iam.token_bodies[0] == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "ops", "password": PASSWORD, "domain": {"name": "OTC000"}}},
            },
            "scope": {"project": {"id": PID}},
        }
    }


async def test_token_is_renewed_five_minutes_before_it_expires():
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    async with session:
        await get_servers(session)
        clock.now += timedelta(hours=23, minutes=54)
        assert (await get_servers(session))["token_seen"] == iam.issued[0]
        clock.now += timedelta(minutes=1, seconds=1)  # inside the 5-minute margin
        assert (await get_servers(session))["token_seen"] == iam.issued[1]
    assert auth.fetches == 2


async def test_a_revoked_token_is_renewed_once_and_the_call_sent_again():
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    async with session:
        await get_servers(session)
        iam.valid.clear()  # e.g. the password was changed elsewhere
        assert (await get_servers(session))["token_seen"] == iam.issued[1]
    assert auth.fetches == 2 and iam.api_calls == 3


async def test_a_401_that_survives_a_renewal_is_an_authentication_error():
    clock = Clock()
    iam = FakeIam(clock)
    iam.valid = type("Nothing", (set,), {"__contains__": lambda self, item: False})()
    session, auth = token_session(iam, clock)
    async with session:
        with pytest.raises(AuthenticationError) as info:
            await get_servers(session)
    assert info.value.code == "APIGW.0301"
    assert auth.fetches == 2 and iam.api_calls == 2  # one renewal, one re-send, no more


async def test_concurrent_calls_share_one_token_fetch():
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    async with session:
        results = await asyncio.gather(*(get_servers(session) for _ in range(20)))
    assert auth.fetches == 1
    assert {r["token_seen"] for r in results} == {iam.issued[0]}


async def test_wrong_password_is_an_authentication_error_naming_iam(caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    iam = FakeIam(clock)
    session, _ = token_session(iam, clock, password="wrong-password")
    async with session:
        with pytest.raises(AuthenticationError) as info:
            await get_servers(session)
    assert str(info.value).startswith("IAM create_token failed: 401 401 Unauthorized.")
    assert "wrong-password" not in str(info.value) and "wrong-password" not in caplog.text
    assert iam.api_calls == 0


async def test_requests_to_the_token_url_pass_through_untouched():
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    body = json.loads(auth.token_request().content)
    async with session:
        resp = await session.request(
            Service.IAM,
            "POST",
            "/v3/auth/tokens?nocatalog=true",
            json=body,
            ok=(201,),
            operation="iam.create_token",
        )
    assert resp.status_code == 201
    assert "X-Auth-Token" not in iam.requests[0].headers
    assert len(iam.requests) == 1 and auth.fetches == 0  # no token of its own was fetched for this call


async def test_tokens_and_passwords_stay_out_of_logs_and_reprs(caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    iam = FakeIam(clock)
    session, auth = token_session(iam, clock)
    async with session:
        await get_servers(session)
    token = iam.issued[0]
    for text in (caplog.text, repr(auth), repr(session), str(vars(auth))):
        assert token not in text and PASSWORD not in text
    assert any("iam.create_token POST /v3/auth/tokens 201" in r.getMessage() for r in caplog.records)


# -- CloudClient.connect -----------------------------------------------------------------------------------


def test_connect_picks_aksk_when_ak_and_sk_are_given():
    client = CloudClient.connect(cloud="otc", region="eu-de", project_id=PID, ak=AK, sk=SK, username="u")
    assert isinstance(client.session.auth, AkSkAuth)
    assert client.endpoints.vbs == "https://vbs.eu-de.otc.t-systems.com"
    assert client.project_id == PID
    assert SK not in repr(client)


def test_connect_picks_a_token_for_user_password_domain_against_the_override():
    client = CloudClient.connect(
        region="eu-west-0",
        project_id=PID,
        username="ops",
        password=PASSWORD,
        domain="acme",
        endpoint="http://127.0.0.1:8765",
        max_requests_per_second=5,
    )
    auth = client.session.auth
    assert isinstance(auth, TokenAuth)
    assert auth.iam_url == "http://127.0.0.1:8765"
    assert client.session.rate_limiter is not None and client.session.rate_limiter.rate == 5
    assert PASSWORD not in repr(client)


@pytest.mark.parametrize(
    ("creds", "missing"),
    [
        ({}, "missing: ak, sk), or username, password and domain (missing: username, password, domain)"),
        ({"ak": AK}, "(missing: sk)"),
        ({"username": "u", "password": "p"}, "(missing: domain)"),
        ({"ak": AK, "sk": "  "}, "(missing: sk)"),
    ],
)
def test_connect_without_complete_credentials_names_what_is_missing(creds, missing):
    with pytest.raises(ConfigurationError) as info:
        CloudClient.connect(region="eu-de", cloud="otc", project_id=PID, **creds)
    assert missing in str(info.value)


def test_connect_rejects_a_bad_project_id_and_a_bad_endpoint():
    with pytest.raises(ConfigurationError, match="project_id"):
        CloudClient.connect(region="eu-de", project_id="eu-de", ak=AK, sk=SK)
    with pytest.raises(ConfigurationError, match="http"):
        CloudClient.connect(region="eu-de", project_id=PID, ak=AK, sk=SK, endpoint="localhost:8765")


async def test_client_context_manager_closes_the_session():
    cloud = scripted(ok({}))
    async with CloudClient.connect(
        region="eu-de", cloud="otc", project_id=PID, ak=AK, sk=SK, transport=httpx.MockTransport(cloud)
    ) as client:
        await client.session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    with pytest.raises(CloudError, match="closed"):
        await client.session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
