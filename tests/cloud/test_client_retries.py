"""What the client retries, counted on the emulator's side of the socket (reference §5f, retry.py's table).

Faults come from the emulator's control API (`POST /_emulator/faults`, `/rate_limit`); the number of requests
is read from its request log, so every assertion is about what the server really saw: idempotent calls ride
out 5xx and dropped connections, a create POST is sent exactly once whatever happens (the backup is then
adopted by name), 429s are waited out for every method, and a connection that never opens is retried.

The throttling tests use their own emulator whose rate limiter reads a fake monotonic clock that the
client's injected `sleep` moves: the client waits what the gateway asks, without a real second passing.
"""

from __future__ import annotations

import logging
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml

from tests.clients import backup_now, connect
from vbs_backup.cloud import (
    BadRequestError,
    NotFoundError,
    RetryPolicy,
    ServerError,
    ThrottledError,
    TransportError,
)
from vbs_backup.cloud.models import TagQuery, TagValues
from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.clock import ManualClock
from vbs_backup.emulator.server import EmulatorServer
from vbs_backup.emulator.state import CloudState


def add_fault(emulator, **rule) -> None:
    emulator.control("POST", "/faults", json=rule).raise_for_status()


def backups_in(emulator) -> list[str]:
    with emulator.state.locked():
        return [b.name for b in emulator.state.projects[emulator.project_id].backups.values()]


# -- 5xx ----------------------------------------------------------------------------------------------------


async def test_a_get_survives_two_503s(client, emulator, wire, caplog):
    add_fault(emulator, operation="vbs.get_quotas", kind="error", status=503, count=2)
    caplog.set_level(logging.INFO, logger="vbs_backup.cloud")

    quotas = await client.vbs.get_quotas()

    assert quotas.backups is not None
    assert wire.statuses("vbs.get_quotas") == [503, 503, 200]
    assert client.session.stats["vbs.get_quotas"] == 3
    retries = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(retries) == 2 and all(m.startswith("retrying vbs.get_quotas: attempt") for m in retries)


async def test_a_get_gives_up_after_max_attempts(client, emulator, wire):
    add_fault(emulator, operation="evs.list_volumes", kind="error", status=503)

    with pytest.raises(ServerError) as caught:
        await client.evs.list_volumes()

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0900", 503)
    assert wire.statuses("evs.list_volumes") == [503] * client.session.retry.max_attempts


async def test_a_read_sent_as_post_is_retried(client, emulator, wire):
    add_fault(emulator, operation="vbs.query_policies_by_tags", kind="error", status=502, count=1)

    result = await client.vbs.query_policies_by_tags(TagQuery(tags=[TagValues(key="env", values=[])]))

    assert result.total_count == 0
    assert wire.statuses("vbs.query_policies_by_tags") == [502, 200]


async def test_a_token_request_that_meets_503s_is_retried(token_client, emulator, fleet, wire):
    add_fault(emulator, operation="iam.create_token", kind="error", status=503, count=2)

    server = await token_client.ecs.get_server(fleet.server["web-01"])

    assert server.name == "web-01"
    assert [(r["operation"], r["status"]) for r in wire.entries()] == [
        ("iam.create_token", 503),
        ("iam.create_token", 503),
        ("iam.create_token", 201),
        ("ecs.get_server", 200),
    ]


async def test_create_backup_is_not_retried_after_a_500(client, emulator, fleet, wire):
    add_fault(emulator, operation="vbs.create_backup", kind="error", status=500, count=5)

    with pytest.raises(ServerError) as caught:
        await client.vbs.create_backup(fleet.volume["web-01-data"], "five-hundred")

    assert caught.value.http_status == 500
    assert wire.statuses("vbs.create_backup") == [500]  # exactly one request: a create may have run
    assert backups_in(emulator) == []


# -- dropped connections ------------------------------------------------------------------------------------


async def test_create_backup_whose_answer_is_lost_is_found_by_name(client, emulator, fleet, wire):
    add_fault(emulator, operation="vbs.create_backup", kind="drop_after", count=1)
    volume_id = fleet.volume["db-01-data"]

    with pytest.raises(TransportError) as caught:
        await client.vbs.create_backup(volume_id, "db-01-data-lost-answer")

    assert caught.value.may_have_reached_server is True
    assert caught.value.operation == "vbs.create_backup"
    assert len(wire.entries("vbs.create_backup")) == 1  # not re-sent
    assert client.session.stats["vbs.create_backup"] == 1
    # It ran: the caller adopts the backup instead of creating a second one.
    (adopted,) = await client.vbs.find_backups_by_name("db-01-data-lost-answer", volume_id=volume_id)
    assert adopted.volume_id == volume_id and adopted.status == "creating"
    assert backups_in(emulator) == ["db-01-data-lost-answer"]


async def test_create_backup_dropped_before_it_ran_is_not_resent_either(client, emulator, fleet, wire):
    # The client cannot tell drop_before from drop_after (both are a closed connection after the request
    # was sent), so it does not re-send a create in either case.
    add_fault(emulator, operation="vbs.create_backup", kind="drop_before", count=1)

    with pytest.raises(TransportError):
        await client.vbs.create_backup(fleet.volume["db-01-data"], "never-ran")

    assert wire.statuses("vbs.create_backup") == [0]  # logged as dropped before running
    assert backups_in(emulator) == []


async def test_a_get_dropped_before_it_ran_is_retried(client, emulator, fleet, wire):
    add_fault(emulator, operation="evs.get_volume", kind="drop_before", count=1)

    volume = await client.evs.get_volume(fleet.volume["scratch-01"])

    assert volume.name == "scratch-01"
    assert wire.statuses("evs.get_volume") == [0, 200]


async def test_a_delete_whose_answer_was_lost_is_resent_and_meets_a_deleting_backup(
    client, emulator, fleet, wire
):
    # DELETE is idempotent, so the session re-sends it; the backup is already `deleting` by then and the
    # service refuses a second deletion (400, Cinder shape). The deletion itself went through once: a
    # caller that gets this error reads the backup's status instead of assuming nothing happened.
    backup_id = await backup_now(client, fleet.volume["web-01-system"], "delete-twice")
    add_fault(emulator, operation="vbs.delete_backup", kind="drop_after", count=1)

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.delete_backup(backup_id)

    assert (caught.value.code, caught.value.http_status) == ("badRequest", 400)
    assert wire.statuses("vbs.delete_backup") == [202, 400]
    assert (await client.vbs.get_backup(backup_id)).status == "deleting"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_a_connection_that_never_opens_is_retried_even_for_a_create(emulator, fleet):
    unreachable = SimpleNamespace(
        url=f"http://127.0.0.1:{_closed_port()}", project_id=emulator.project_id, ak="AK", sk="SK"
    )
    async with connect(unreachable, retry=RetryPolicy(wait=False, max_attempts=3)) as cloud:
        with pytest.raises(TransportError) as caught:
            await cloud.vbs.create_backup(fleet.volume["web-01-data"], "nowhere")

    assert caught.value.may_have_reached_server is False
    assert cloud.session.stats["vbs.create_backup"] == 3  # nothing was sent, so re-sending is safe


async def test_an_unknown_path_is_not_retried(client, wire):
    with pytest.raises(NotFoundError) as caught:
        await client.session.request("vbs", "GET", f"/v2/{client.project_id}/no-such-api")

    assert (caught.value.code, caught.value.http_status) == ("APIGW.0101", 404)
    assert len(wire.entries()) == 1


# -- throttling (429) ---------------------------------------------------------------------------------------


@dataclass
class Throttled:
    """An emulator of its own whose rate limiter reads `monotonic[0]`."""

    url: str
    control: httpx.Client
    project: SimpleNamespace
    state: CloudState
    monotonic: list[float] = field(default_factory=lambda: [1000.0])

    def log(self, operation: str) -> list[int]:
        rows = self.control.get("/_emulator/requests").json()
        return [r["status"] for r in rows if r["operation"] == operation]


@pytest.fixture(scope="module")
def throttled_server(fleet_path: Path) -> Iterator[Throttled]:
    fake = [1000.0]
    state = CloudState(clock=ManualClock())
    app = create_app(state, fleet=fleet_path, monotonic=lambda: fake[0])
    project = yaml.safe_load(fleet_path.read_text())["projects"][0]
    key = project["access_keys"][0]
    with EmulatorServer(app) as server, httpx.Client(base_url=server.url, timeout=10) as control:
        assert server.url is not None
        handle = SimpleNamespace(url=server.url, project_id=project["id"], ak=key["ak"], sk=key["sk"])
        yield Throttled(server.url, control, handle, state, fake)


@pytest.fixture
def throttled(throttled_server: Throttled) -> Throttled:
    throttled_server.control.post("/_emulator/reset").raise_for_status()
    return throttled_server


def fake_sleeper(server: Throttled, slept: list[float]):
    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        server.monotonic[0] += seconds

    return sleep


async def test_429_from_the_rate_limiter_is_waited_out_then_retried(throttled):
    throttled.control.post("/_emulator/rate_limit", json={"rate": 1, "burst": 1}).raise_for_status()
    slept: list[float] = []
    retry = RetryPolicy(sleep=fake_sleeper(throttled, slept), rng=random.Random(7))

    async with connect(throttled.project, retry=retry) as cloud:
        await cloud.vbs.get_quotas()  # takes the only token
        quotas = await cloud.vbs.get_quotas()

    assert quotas.backups is not None
    assert throttled.log("vbs.get_quotas") == [200, 429, 200]
    # Retry-After said 1 s; for APIGW.0308 the client waits at least 2 s plus jitter (Huawei: 2-5 s)
    assert len(slept) == 1 and 2.0 <= slept[0] <= 3.0


async def test_a_throttled_create_is_retried_because_it_never_ran(throttled):
    throttled.control.post("/_emulator/rate_limit", json={"rate": 1, "burst": 1}).raise_for_status()
    slept: list[float] = []
    retry = RetryPolicy(sleep=fake_sleeper(throttled, slept), rng=random.Random(7))
    state = throttled.control.get("/_emulator/state").json()["projects"][throttled.project.project_id]
    volume_id = next(v["id"] for v in state["volumes"] if v["name"] == "scratch-01")

    async with connect(throttled.project, retry=retry) as cloud:
        await cloud.vbs.get_quotas()
        job_id = await cloud.vbs.create_backup(volume_id, "throttled-once")

    assert job_id
    assert throttled.log("vbs.create_backup") == [429, 200]
    with throttled.state.locked():
        names = [b.name for p in throttled.state.projects.values() for b in p.backups.values()]
    assert names == ["throttled-once"]  # one backup, not two


async def test_persistent_throttling_ends_in_throttled_error_at_the_deadline(throttled):
    # Throttled attempts do not count against max_attempts (3): they are retried until the call's throttle
    # deadline, here `throttle_patience` (100 s on the gateway's fake clock) after its first attempt.
    throttled.control.post("/_emulator/rate_limit", json={"rate": 0.001, "burst": 1}).raise_for_status()
    slept: list[float] = []
    retry = RetryPolicy(
        max_attempts=3,
        cap=30,
        throttle_patience=100,
        sleep=fake_sleeper(throttled, slept),
        clock=lambda: throttled.monotonic[0],
    )

    async with connect(throttled.project, retry=retry) as cloud:
        await cloud.ecs.list_servers()
        with pytest.raises(ThrottledError) as caught:
            await cloud.ecs.list_servers()

    assert (caught.value.code, caught.value.http_status) == ("APIGW.0308", 429)
    assert caught.value.retry_after is not None and caught.value.retry_after >= 900
    assert slept == [30, 30, 30]  # Retry-After, capped; a fourth wait would end past the deadline
    assert throttled.log("ecs.list_servers") == [200, 429, 429, 429, 429]
