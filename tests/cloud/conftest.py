"""Fixtures for driving the real client (`vbs_backup.cloud`) against the emulator over a real socket.

Built on `tests/conftest.py`'s `emulator` (a live uvicorn emulator reset to `examples/fleet.yaml`, jobs in
"polls" mode), `client` (AK/SK, `RetryPolicy(wait=False)`) and `other_client`:

* `token_client`  - the example project through an IAM token (username / password / domain).
* `fleet`         - ids of the example fleet by name: `fleet.server["web-01"]`, `fleet.volume["scratch-01"]`.
* `wire`          - the emulator's request log (`GET/DELETE /_emulator/requests`): what really crossed the
                    socket, so retry tests count requests the server saw, not calls the client made.
* `vtime`         - virtual time for `wait_for_job` (tests/clocks.py's `VirtualTime`): its `sleep` never
                    waits, it advances a fake monotonic clock (and, when asked, the emulator's clock through
                    the control API).

The helpers the test modules import (`connect`, `wait`, `backup_now`) are in tests/clients.py.

Nothing here mocks the client or the emulator; the only stand-ins are clocks.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.clients import REGION
from tests.clocks import VirtualTime
from vbs_backup.cloud import CloudClient, RetryPolicy


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


@pytest.fixture
def vtime(emulator) -> VirtualTime:
    return VirtualTime(emulator)
