"""Fixtures for driving the real client (`vbs_backup.cloud`) against the emulator over a real socket.

Built on `tests/conftest.py`'s `emulator` (a live uvicorn emulator reset to `examples/fleet.yaml`, jobs in
"polls" mode) and `other_project`:

* `client`        - `CloudClient.connect(...)` with the example project's AK/SK, `RetryPolicy(wait=False)`;
                    closed after the test.
* `token_client`  - the same project through an IAM token (username / password / domain).
* `other_client`  - AK/SK client of the second project that `other_project` adds (sharing tests).
* `fleet`         - ids of the example fleet by name: `fleet.server["web-01"]`, `fleet.volume["scratch-01"]`.
* `wire`          - the emulator's request log (`GET/DELETE /_emulator/requests`): what really crossed the
                    socket, so retry tests count requests the server saw, not calls the client made.
* `vtime`         - virtual time for `wait_for_job`: its `sleep` never waits, it advances a fake monotonic
                    clock (and, when asked, the emulator's clock through the control API).

Helpers the test modules import: `connect(handle, ...)` (an AK/SK client for any project handle),
`wait(client, job_id, vtime=None, ...)` (`wait_for_job` without real waiting) and `backup_now(...)`
(create a backup and wait for it).

Nothing here mocks the client or the emulator; the only stand-ins are clocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from vbs_backup.cloud import CloudClient, RetryPolicy

REGION = "eu-west-0"


def connect(handle: Any, *, retry: RetryPolicy | None = None, **overrides: Any) -> CloudClient:
    """An AK/SK client for the project of an `EmulatorHandle` (no waiting between retries by default)."""
    kwargs: dict[str, Any] = dict(
        region=REGION,
        project_id=handle.project_id,
        ak=handle.ak,
        sk=handle.sk,
        endpoint=handle.url,
        retry=retry or RetryPolicy(wait=False),
    )
    kwargs.update(overrides)
    return CloudClient.connect(**kwargs)


@pytest.fixture
async def client(emulator) -> AsyncIterator[CloudClient]:
    async with connect(emulator) as cloud:
        yield cloud


@pytest.fixture
async def token_client(emulator) -> AsyncIterator[CloudClient]:
    cloud = CloudClient.connect(
        region=REGION,
        project_id=emulator.project_id,
        username=emulator.username,
        password=emulator.password,
        domain=emulator.domain,
        endpoint=emulator.url,
        retry=RetryPolicy(wait=False),
    )
    async with cloud:
        yield cloud


@pytest.fixture
async def other_client(other_project) -> AsyncIterator[CloudClient]:
    async with connect(other_project) as cloud:
        yield cloud


@dataclass(frozen=True)
class Fleet:
    """Ids of `examples/fleet.yaml` by name, so tests say which disk they use."""

    server: dict[str, str]
    volume: dict[str, str]
    size: dict[str, int]  # GiB, by volume name


@pytest.fixture(scope="session")
def fleet(fleet_path: Path) -> Fleet:
    data = yaml.safe_load(fleet_path.read_text())
    project = data["projects"][0]
    disks = [d for s in project["servers"] for d in s["disks"]] + project.get("volumes", [])
    return Fleet(
        server={s["name"]: s["id"] for s in project["servers"]},
        volume={d["name"]: d["id"] for d in disks},
        size={d["name"]: d["size_gb"] for d in disks},
    )


@dataclass
class Wire:
    """The emulator's request log, read over the control API."""

    emulator: Any

    def clear(self) -> None:
        self.emulator.control("DELETE", "/requests").raise_for_status()

    def entries(self, operation: str | None = None) -> list[dict[str, Any]]:
        response = self.emulator.control("GET", "/requests")
        response.raise_for_status()
        rows = response.json()
        return [r for r in rows if operation is None or r["operation"] == operation]

    def statuses(self, operation: str) -> list[int]:
        return [r["status"] for r in self.entries(operation)]

    def operations(self) -> list[str]:
        return [r["operation"] for r in self.entries()]


@pytest.fixture
def wire(emulator) -> Wire:
    return Wire(emulator)


@dataclass
class VirtualTime:
    """`sleep`/`clock` for `wait_for_job(sleep=..., clock=...)`: sleeping only moves the fake monotonic
    clock forward; with `move_emulator=True` it also advances the emulator's clock by the same amount
    (for jobs in "time" mode)."""

    emulator: Any
    move_emulator: bool = False
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.move_emulator:
            self.emulator.control("POST", "/clock/advance", json={"seconds": seconds}).raise_for_status()


@pytest.fixture
def vtime(emulator) -> VirtualTime:
    return VirtualTime(emulator)


async def wait(client: CloudClient, job_id: str, vtime: VirtualTime | None = None, **kwargs: Any) -> Any:
    """`wait_for_job` without real waiting (poll mode moves the job on each `get_job`)."""

    async def no_sleep(_: float) -> None:
        return None

    if vtime is not None:
        return await client.vbs.wait_for_job(job_id, sleep=vtime.sleep, clock=vtime.clock, **kwargs)
    return await client.vbs.wait_for_job(job_id, sleep=no_sleep, **kwargs)


async def backup_now(client: CloudClient, volume_id: str, name: str, **kwargs: Any) -> str:
    """Create a backup and wait for its job; returns the backup id."""
    job = await wait(client, await client.vbs.create_backup(volume_id, name, **kwargs))
    assert job.backup_id, job
    return job.backup_id
