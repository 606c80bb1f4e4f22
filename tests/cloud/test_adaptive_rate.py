"""The client adapts to the gateway ("Fleet scale", item 2): the rate limiter lowers its rate on 429s and
climbs back (AIMD, ratelimit.py), reports the rate it achieved, and a throttled call is retried until the
caller's deadline instead of `max_attempts` times (retry.py's `retry_throttled_until`).

The limiter's own rules are checked with a fake clock; the session's use of them with `httpx.MockTransport`;
the whole against the emulator over a real socket, whose gateway is slower than the client is configured
for. Those real-time tests stay short: the rates are scaled so that each takes a few seconds (the ratio,
client 5x the gateway, is what matters; the same test with the gateway at 2 req/s and the client at 10
passes too, in ~25 s). No assertion is about wall-clock durations.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from tests.clients import connect
from tests.clocks import FakeTime
from vbs_backup.cloud import CloudSession, Endpoints, RetryPolicy, Service, ThrottledError
from vbs_backup.cloud.auth import AkSkAuth
from vbs_backup.cloud.ratelimit import RateLimiter, RateReport
from vbs_backup.cloud.retry import retry_throttled_until, throttle_deadline

# -- the limiter with a fake clock --------------------------------------------------------------------------


def limiter(rate: float | None = 10.0, burst: int | None = 4, **kwargs) -> tuple[RateLimiter, FakeTime]:
    fake = FakeTime()
    return RateLimiter(rate, burst, clock=fake.clock, sleep=fake.sleep, **kwargs), fake


def test_a_burst_of_429s_halves_the_rate_once_per_window():
    bucket, fake = limiter(10.0, burst=4)
    for _ in range(10):  # ten requests that were on their way together all come back throttled
        bucket.throttled(None)
    assert bucket.rate == 5.0
    assert bucket.burst == 2  # the burst shrinks with the rate
    fake.now += 0.9  # still the same window (1 s)
    bucket.throttled(None)
    assert bucket.rate == 5.0
    fake.now += 0.2  # a 429 after the window: the lower rate is still too high
    bucket.throttled(None)
    assert bucket.rate == 2.5 and bucket.burst == 1
    report = bucket.report()
    assert (report.throttled, report.decreases, report.lowest_rate, report.rate_max) == (12, 2, 2.5, 10.0)


def test_the_rate_never_goes_below_the_floor():
    bucket, fake = limiter(10.0, min_rate=0.1)
    for _ in range(30):
        bucket.throttled(None)
        fake.now += 1.5
    assert bucket.rate == 0.1 and bucket.lowest_rate == 0.1 and bucket.burst == 1
    assert bucket.report().decreases == 7  # 10 -> 5 -> ... -> 0.156 -> 0.1, then no further decrease
    tiny, _ = limiter(0.05)
    assert tiny.min_rate == 0.05  # a ceiling below the floor is its own floor


async def test_no_token_is_granted_before_retry_after_and_callers_keep_their_order():
    bucket, fake = limiter(10.0, burst=4)
    bucket.throttled(3.0)
    order: list[int] = []

    async def call(n: int) -> float:
        await bucket.acquire()
        order.append(n)
        return fake.now

    granted_at = await asyncio.gather(*(call(n) for n in range(4)))
    assert order == [0, 1, 2, 3]  # FIFO
    assert min(granted_at) >= 3.0  # everybody paused, not only the throttled caller
    # the first goes when the pause ends; the bucket was emptied, so the (halved) rate spaces the others
    assert granted_at == pytest.approx([3.0, 3.2, 3.4, 3.6])
    assert bucket.report().waited == pytest.approx(bucket.waited)


async def test_a_waiter_that_sleeps_through_a_429_waits_again_for_the_new_terms():
    bucket, fake = limiter(1.0, burst=1)
    await bucket.acquire()  # the only token
    fake.during_sleep.append(lambda: bucket.throttled(5.0))  # a 429 comes back while the next caller waits
    waited = await bucket.acquire()
    # it woke at 1 s into a pause that lasts until 5 s, so it slept again
    assert fake.now == pytest.approx(5.0) and waited == pytest.approx(5.0)
    assert fake.sleeps == [1.0, 4.0]


def test_retry_after_is_capped():
    bucket, _ = limiter(10.0, max_pause=30.0)
    bucket.throttled(3600.0)
    assert bucket.pause_remaining() == 30.0


def test_the_rate_climbs_back_additively_to_the_maximum():
    bucket, fake = limiter(10.0, burst=4)  # default increase: 10/20 = 0.5 req/s per second of answers
    assert bucket.increase_per_second == 0.5
    bucket.throttled(None)
    assert bucket.rate == 5.0
    for _ in range(9):  # answers within the decrease window were sent at the old rate: no increase
        fake.now += 0.1
        bucket.succeeded()
    assert bucket.rate == 5.0
    fake.now = 1.0  # the window ends
    for _ in range(20):  # two seconds of answers, one every 0.1 s
        fake.now += 0.1
        bucket.succeeded()
    assert bucket.rate == pytest.approx(6.0)
    assert bucket.burst == 2  # 4 * 6 / 10
    fake.now += 100  # an idle spell counts as one second at most
    bucket.succeeded()
    assert bucket.rate == pytest.approx(6.5)
    for _ in range(200):
        fake.now += 0.1
        bucket.succeeded()
    assert bucket.rate == 10.0 and bucket.burst == 4  # never above the configured maximum
    assert bucket.lowest_rate == 5.0


async def test_a_limiter_without_429s_behaves_like_the_fixed_bucket():
    bucket, _ = limiter(2.0, burst=3)
    for _ in range(10):
        bucket.succeeded()
    waits = [await bucket.acquire() for _ in range(6)]
    assert waits == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5]
    assert bucket.rate == 2.0


async def test_the_report_counts_grants_answers_and_rates():
    bucket, fake = limiter(10.0, burst=1)
    assert bucket.report() == RateReport(
        granted=0,
        succeeded=0,
        throttled=0,
        decreases=0,
        first_grant=None,
        last_grant=None,
        last_success=None,
        rate=10.0,
        rate_max=10.0,
        lowest_rate=10.0,
        waited=0.0,
    )
    assert bucket.achieved_rate() is None
    fake.now = 100.0
    for n in range(5):  # grants at 100.0, 100.1, 100.2, then (halved) 100.4, 100.6
        await bucket.acquire()
        if n == 2:
            bucket.throttled(None)  # the third one was throttled: rate 5, the next grants 0.2 s apart
        else:
            bucket.succeeded()
    report = bucket.report()
    assert (report.granted, report.succeeded, report.throttled, report.decreases) == (5, 4, 1, 1)
    assert report.first_grant == 100.0
    assert report.last_grant == pytest.approx(100.6)
    assert report.last_success == pytest.approx(100.6)
    assert (report.rate, report.lowest_rate) == (5.0, 5.0)
    assert report.achieved_rate == pytest.approx(4 / 0.6)  # answered requests per second
    assert report.sent_rate == pytest.approx(4 / 0.6)  # 5 grants, 4 intervals
    assert bucket.achieved_rate() == report.achieved_rate
    assert report.describe() == (
        "5 requests, 6.67 req/s achieved; 1 throttled (429); rate 5 req/s (configured 10, lowest 5)"
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.granted = 0  # type: ignore[misc]


async def test_an_unlimited_limiter_counts_and_honours_retry_after_but_has_no_rate():
    bucket, _ = limiter(None, burst=None)
    assert await bucket.acquire() == 0.0
    bucket.throttled(2.0)
    assert await bucket.acquire() == pytest.approx(2.0)
    bucket.succeeded()
    report = bucket.report()
    assert (report.granted, report.throttled, report.succeeded, report.rate, report.lowest_rate) == (
        2,
        1,
        1,
        None,
        None,
    )
    assert "rate unlimited req/s" in report.describe()


# -- the throttle deadline ----------------------------------------------------------------------------------


async def test_the_deadline_is_a_context_variable_each_task_has_its_own():
    assert throttle_deadline() is None
    with retry_throttled_until(100.0):
        assert throttle_deadline() == 100.0
        with retry_throttled_until(None):
            assert throttle_deadline() is None
        assert throttle_deadline() == 100.0

    async def disk(deadline: float) -> float | None:
        with retry_throttled_until(deadline):
            await asyncio.sleep(0)  # let the other task set its own
            return throttle_deadline()

    assert await asyncio.gather(disk(1.0), disk(2.0)) == [1.0, 2.0]
    assert throttle_deadline() is None


def test_a_call_without_a_deadline_gets_the_policy_patience():
    now = [50.0]
    policy = RetryPolicy(throttle_patience=900, clock=lambda: now[0])
    assert policy.start().deadline == 950.0
    with retry_throttled_until(60.0):
        assert policy.start().deadline == 60.0


# -- the session tells the limiter, and counts 429s apart (MockTransport) -----------------------------------

PID = "17fbda95add24720a4038ba4b1c705ed"
ENDPOINTS = Endpoints.for_cloud("otc", "eu-de")


def gateway_429(retry_after: str | None = None) -> httpx.Response:
    body = {"error_code": "APIGW.0308", "error_msg": "The throttling threshold has been reached"}
    return httpx.Response(429, json=body, headers={"Retry-After": retry_after} if retry_after else None)


def answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def session_for(outcomes: list[httpx.Response], sent: list[httpx.Request], **kwargs) -> CloudSession:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return outcomes.pop(0) if len(outcomes) > 1 else outcomes[0]

    return CloudSession(
        endpoints=ENDPOINTS,
        project_id=PID,
        auth=AkSkAuth("QTWAOYTTINDUT2QVKYUC", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", PID),
        transport=httpx.MockTransport(handler),
        **kwargs,
    )


async def test_the_session_reports_429s_and_answers_to_the_limiter():
    bucket, fake = limiter(10.0, burst=4)
    sent: list[httpx.Request] = []
    outcomes = [gateway_429("1"), gateway_429("1"), answer(404, {"error": {"code": "x", "message": "m"}})]
    outcomes.append(answer(200, {}))
    async with session_for(outcomes, sent, retry=RetryPolicy(wait=False), rate_limiter=bucket) as session:
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups", ok=(200, 404))
        await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
        report = session.rate_report()
    assert len(sent) == 4
    assert report is not None and (report.granted, report.throttled, report.succeeded) == (4, 2, 2)
    # the second 429 answered a request sent after the first one's pause, at the halved rate: halved again
    assert report.decreases == 2 and report.lowest_rate == 2.5
    # each Retry-After (1 s) paused the next grant; then one token at 2.5 req/s
    assert fake.sleeps == pytest.approx([1.0, 1.0, 0.4])


async def test_429s_do_not_count_against_max_attempts_but_other_failures_still_do():
    sent: list[httpx.Request] = []
    server_error = answer(503, {"error": {"code": "VolumeBackup.0900", "message": "m"}})
    outcomes = [server_error, gateway_429(), gateway_429(), gateway_429(), server_error]
    async with session_for(outcomes, sent, retry=RetryPolicy(max_attempts=2, wait=False)) as session:
        with pytest.raises(Exception) as caught:
            await session.request(Service.VBS, "GET", f"/v2/{PID}/backups")
    assert getattr(caught.value, "http_status", None) == 503
    assert len(sent) == 5  # two counted failures (503s), three throttled attempts in between


async def test_a_throttled_create_is_still_not_resent_after_a_5xx():
    sent: list[httpx.Request] = []
    server_error = answer(500, {"error": {"code": "VolumeBackup.0014", "message": "m"}})
    outcomes = [gateway_429(), gateway_429(), server_error, answer(200, {"job_id": "j"})]
    async with session_for(outcomes, sent, retry=RetryPolicy(wait=False)) as session:
        with pytest.raises(Exception) as caught:
            await session.request(Service.VBS, "POST", f"/v2/{PID}/cloudbackups", json={"backup": {}})
    assert getattr(caught.value, "http_status", None) == 500
    assert len(sent) == 3  # the 429s were re-sent (the create never ran), the 500 was not (it may have run)


# -- against the emulator over a real socket ----------------------------------------------------------------

GATEWAY_RATE = 10.0  # req/s the emulator's gateway lets through (burst 2)
CLIENT_RATE = 5 * GATEWAY_RATE  # what the client is configured for: far too high
READS = 30
CREATES = 10


def with_spare_volumes(fleet_path: Path, count: int) -> tuple[dict, list[str]]:
    """The example fleet plus `count` detached disks (one backup per disk may run at a time, §4.7)."""
    fleet = yaml.safe_load(fleet_path.read_text())
    fleet["settings"] = {"job_mode": "polls"}
    ids = [str(uuid.UUID(int=0xADA7_0000 + n, version=4)) for n in range(count)]
    project = fleet["projects"][0]
    spare = [{"id": volume, "name": f"spare-{n:02d}", "size_gb": 10} for n, volume in enumerate(ids)]
    project["volumes"] = [*project.get("volumes", []), *spare]
    return fleet, ids


async def test_a_slow_gateway_is_met_at_its_own_pace_and_every_call_gets_through(
    emulator, fleet, fleet_path, wire, caplog
):
    fleet_dict, spare = with_spare_volumes(fleet_path, CREATES)
    emulator.control("POST", "/reset", json=fleet_dict).raise_for_status()
    emulator.control("POST", "/rate_limit", json={"rate": GATEWAY_RATE, "burst": 2}).raise_for_status()
    caplog.set_level(logging.INFO, logger="vbs_backup.cloud")
    disks = list(fleet.volume.values())

    async with connect(emulator, retry=RetryPolicy(), max_requests_per_second=CLIENT_RATE) as cloud:
        reads = [cloud.evs.get_volume(disks[n % len(disks)]) for n in range(READS)]
        creates = [cloud.vbs.create_backup(volume, f"adaptive-{n:02d}") for n, volume in enumerate(spare)]
        results = await asyncio.gather(*reads, *creates)
        report = cloud.session.rate_report()

    assert len(results) == READS + CREATES and all(results)
    with emulator.state.locked():
        names = Counter(b.name for b in emulator.state.projects[emulator.project_id].backups.values())
    assert names == Counter(f"adaptive-{n:02d}" for n in range(CREATES))  # one backup per create, no copy
    creates_seen = Counter(wire.statuses("vbs.create_backup"))
    assert creates_seen[200] == CREATES and set(creates_seen) <= {200, 429}
    throttled = creates_seen[429] + wire.statuses("evs.get_volume").count(429)
    assert throttled > 0  # the gateway did throttle us ...
    assert any("was throttled (429 APIGW.0308)" in r.getMessage() for r in caplog.records)
    assert report is not None and report.throttled == throttled  # ... the limiter heard every 429 ...
    assert report.lowest_rate is not None and report.lowest_rate < CLIENT_RATE  # ... and slowed down
    assert report.succeeded == READS + CREATES
    assert report.achieved_rate is not None and report.achieved_rate <= 1.25 * GATEWAY_RATE


async def test_a_throttled_call_past_its_deadline_raises_instead_of_waiting(emulator, fleet, wire):
    emulator.control("POST", "/rate_limit", json={"rate": 0.01, "burst": 1}).raise_for_status()

    # (one client each: the first 429 pauses its limiter for Retry-After, capped at 30 s)
    async with connect(emulator, retry=RetryPolicy(), max_requests_per_second=CLIENT_RATE) as cloud:
        await cloud.vbs.get_quotas()  # the gateway's only token for the next 100 s
        with retry_throttled_until(time.monotonic() - 1), pytest.raises(ThrottledError):
            await cloud.vbs.create_backup(fleet.volume["scratch-01"], "too-late")
    # a near deadline: the wait Retry-After asks for (100 s, capped at 30) would end after it: no retry
    async with connect(emulator, retry=RetryPolicy(), max_requests_per_second=CLIENT_RATE) as cloud:
        with retry_throttled_until(time.monotonic() + 5), pytest.raises(ThrottledError) as caught:
            await cloud.evs.get_volume(fleet.volume["scratch-01"])

    assert (caught.value.code, caught.value.retry_after) == ("APIGW.0308", 100.0)
    assert wire.statuses("vbs.create_backup") == [429]
    assert wire.statuses("evs.get_volume") == [429]
    with emulator.state.locked():
        assert not emulator.state.projects[emulator.project_id].backups


async def test_each_disk_task_keeps_its_own_deadline(emulator, fleet, wire):
    emulator.control("POST", "/rate_limit", json={"rate": 1, "burst": 1}).raise_for_status()

    async with connect(emulator, retry=RetryPolicy()) as cloud:
        await cloud.vbs.get_quotas()  # empties the gateway's bucket: both calls below are throttled

        async def disk(volume: str, seconds: float):
            with retry_throttled_until(time.monotonic() + seconds):
                return await cloud.evs.get_volume(fleet.volume[volume])

        impatient, patient = await asyncio.gather(
            disk("web-01-data", -1), disk("db-01-data", 60), return_exceptions=True
        )

    assert isinstance(impatient, ThrottledError)
    assert not isinstance(patient, BaseException) and patient.id == fleet.volume["db-01-data"]
    assert wire.statuses("evs.get_volume").count(429) >= 2 and wire.statuses("evs.get_volume")[-1] == 200
