"""Fixtures shared by every test: the emulator over a real socket, reset to the example fleet.

* `fleet_path`         - `examples/fleet.yaml`.
* `emulator_server`    - one `EmulatorServer` (uvicorn on 127.0.0.1, free port) for the whole session, over a
                         `CloudState` with a `ManualClock` (it starts at the real current time and only moves
                         when a test advances it).
* `emulator`           - per test: resets that server to the example fleet (no faults, job faults, rate limit
                         or logged requests; default settings but `job_mode="polls"`; the ManualClock back at
                         the real time) and returns an `EmulatorHandle`: `.url`, `.state` (the live
                         `CloudState`, same process), the example project's `.project_id`, `.ak`, `.sk`,
                         `.username`, `.password`, `.domain`; `.control(method, path, json=None)` calls the
                         control API (`path` relative to `/_emulator`); `.call(method, path, ...)` sends an
                         AK/SK-signed (or token) request to the cloud API; `.token()` gets an IAM token;
                         `.client` is the test's `httpx.Client` on the emulator.
* `signer`             - the `sign(request, ak, sk, *, sdk_date=None)` helper, for hand-built httpx requests.
* `other_project`      - adds a second project (its own AK/SK and user) to the emulator and returns a handle
                         for it; for sharing tests.
* `client`, `other_client` - an AK/SK `CloudClient` (tests/clients.py's `connect`) on the example project,
                         or on `other_project`'s; closed after the test.
* `ledger_url`         - a fresh SQLite ledger per test (not created: the product creates it).
* `cloud_env`          - the product's `VBS_BACKUP_` settings point at the emulator (AK/SK) and `ledger_url`;
                         jobs run on the emulator's clock ("time" mode). Returns the `emulator` handle.
* `prefect_server`     - Prefect's test harness (a temporary server and database) for the session; autouse
                         under tests/flows, asked for by the black-box command tests that need an API.

Mind the clock: AK/SK dates are checked against real time and the emulator clock (either within 15 min),
tokens expire on the emulator clock (24 h).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

# Before Prefect reads its settings: a private home, no telemetry, room for a slow first start.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="vbsb-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from tests.clients import connect
from tests.environment import use_emulator
from vbs_backup.cloud import CloudClient
from vbs_backup.emulator import auth
from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.clock import ManualClock
from vbs_backup.emulator.server import EmulatorServer
from vbs_backup.emulator.state import CloudState

EXAMPLE_FLEET = Path(__file__).resolve().parent.parent / "examples" / "fleet.yaml"

OTHER_PROJECT = {
    "id": "5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b",
    "name": "eu-west-0_other",
    "access_keys": [{"ak": "OTHERAK0000000000001", "sk": "other-secret-1"}],
    "users": [{"name": "other-ops", "password": "other-password", "domain": "other-domain"}],
    "servers": [],
    "volumes": [{"id": "3c9e5d1a-7b2f-4e8a-9c6d-0f1e2d3c4b5a", "name": "other-spare", "size_gb": 100}],
}


def sign(request: httpx.Request, ak: str, sk: str, *, sdk_date: str | None = None) -> httpx.Request:
    """Sign a built httpx request with SDK-HMAC-SHA256 (host, x-sdk-date and the content/project headers)."""
    request.headers["X-Sdk-Date"] = sdk_date or datetime.now(UTC).strftime(auth.DATE_FORMAT)
    signed = [
        name for name in ("content-type", "host", "x-project-id", "x-sdk-date") if name in request.headers
    ]
    canonical = auth.canonical_request(
        request.method,
        request.url.raw_path.split(b"?")[0].decode(),
        request.url.query.decode(),
        dict(request.headers),
        signed,
        request.content,
    )
    sig = auth.signature(sk, auth.string_to_sign(canonical, request.headers["X-Sdk-Date"]))
    request.headers["Authorization"] = auth.authorization_header(ak, signed, sig)
    return request


@dataclass
class EmulatorHandle:
    url: str
    state: CloudState
    project_id: str
    ak: str
    sk: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    domain: str
    # One connection pool per test: creating an httpx.Client costs more than a request to the emulator.
    client: httpx.Client = field(repr=False)

    def control(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return self.client.request(method, f"/_emulator/{path.lstrip('/')}", json=json)

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        ak: str | None = None,
        sk: str | None = None,
        sdk_date: str | None = None,
        signed: bool = True,
        timeout: float = 10,
    ) -> httpx.Response:
        """Send one request; AK/SK-signed (with `X-Project-Id`) unless `token` is given or `signed=False`."""
        request = self.client.build_request(
            method, path, json=json, params=params, headers=headers, timeout=timeout
        )
        if token is not None:
            request.headers["X-Auth-Token"] = token
        elif signed:
            request.headers.setdefault("X-Project-Id", self.project_id)
            sign(request, ak or self.ak, sk or self.sk, sdk_date=sdk_date)
        return self.client.send(request)

    def token(self) -> str:
        """A project-scoped IAM token for the handle's user."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self.username,
                            "password": self.password,
                            "domain": {"name": self.domain},
                        }
                    },
                },
                "scope": {"project": {"id": self.project_id}},
            }
        }
        response = self.call("POST", "/v3/auth/tokens", json=body, signed=False, params={"nocatalog": "true"})
        response.raise_for_status()
        return response.headers["X-Subject-Token"]


def emulator_handle(
    url: str, state: CloudState, project: dict[str, Any], client: httpx.Client
) -> EmulatorHandle:
    """A handle on one project of a running emulator (its first access key and IAM user)."""
    key, user = project["access_keys"][0], project["users"][0]
    return EmulatorHandle(
        client=client,
        url=url,
        state=state,
        project_id=project["id"],
        ak=key["ak"],
        sk=key["sk"],
        username=user["name"],
        password=user["password"],
        domain=user["domain"],
    )


@pytest.fixture(scope="session")
def fleet_path() -> Path:
    return EXAMPLE_FLEET


@pytest.fixture(scope="session")
def signer():
    return sign


@pytest.fixture(scope="session")
def emulator_server(fleet_path: Path):
    state = CloudState(clock=ManualClock())
    with EmulatorServer(create_app(state, fleet=fleet_path)) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer, fleet_path: Path) -> Iterator[EmulatorHandle]:
    assert emulator_server.url is not None
    fleet = yaml.safe_load(fleet_path.read_text())
    fleet["settings"] = {"job_mode": "polls"}
    with httpx.Client(base_url=emulator_server.url, timeout=10) as client:
        client.post("/_emulator/reset", json=fleet).raise_for_status()
        yield emulator_handle(
            emulator_server.url, emulator_server.app.state.cloud, fleet["projects"][0], client
        )


@pytest.fixture
def other_project(emulator: EmulatorHandle) -> EmulatorHandle:
    response = emulator.control("POST", "/fleet", json={"region": "eu-west-0", "projects": [OTHER_PROJECT]})
    response.raise_for_status()
    return emulator_handle(emulator.url, emulator.state, OTHER_PROJECT, emulator.client)


@pytest.fixture
async def client(emulator: EmulatorHandle) -> AsyncIterator[CloudClient]:
    async with connect(emulator) as cloud:
        yield cloud


@pytest.fixture
async def other_client(other_project: EmulatorHandle) -> AsyncIterator[CloudClient]:
    async with connect(other_project) as cloud:
        yield cloud


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.sqlite'}"


@pytest.fixture
def cloud_env(emulator: EmulatorHandle, ledger_url: str, monkeypatch: pytest.MonkeyPatch) -> EmulatorHandle:
    """The flows' settings point at the emulator (AK/SK) and a fresh ledger; jobs run on the clock."""
    use_emulator(monkeypatch, emulator, DATABASE_URL=ledger_url, MAX_REQUESTS_PER_SECOND="1000")
    emulator.control("POST", "/settings", json={"job_mode": "time"}).raise_for_status()
    return emulator


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield
