"""Fixtures for the tests on a real Prefect server (marked `server`). Everything runs as it would on an
operator's machine, each part in its own process, talking over 127.0.0.1:

* `prefect_server` - `prefect server start` on a free port with its own PREFECT_HOME (SQLite), healthy
                     within a bound, stopped at the end. `.api` is an httpx client on its REST API (the
                     calls the UI makes), `.ui_url`, `.api_url`, `.env` (what a Prefect client needs).
* `cloud`          - `vbs-backup emulator --speed 600` (a 10-minute backup job takes one second); `.url`,
                     `.env` (its VBS_BACKUP_ settings), `.control(method, path, json)` for its control API.
* `ledger_url`     - the SQLite ledger the served flows write to.
* `served`         - `vbs-backup serve --plan ...` with those settings, once the catalog's deployments are
                     registered; runs start within about a second (PREFECT_RUNNER_POLL_FREQUENCY=1).
* `webhook`        - a tiny HTTP receiver that records every POST (the alert target).
* `timings`        - figures measured along the way, written to test-artifacts/server-timings.json.

These tests never use `prefect_test_harness` (the flows' harness is autouse only under tests/flows), and
the test process itself never talks Prefect: it uses plain HTTP and the product's commands, so nothing has
to be drained here before the server stops.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from vbs_backup.deployments.catalog import CATALOG, DEFAULT_PLAN

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
FLEET = REPO / "examples" / "fleet.yaml"
SERVER_START_TIMEOUT = 150  # fresh database: about 20 s here, migrations dominate
FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

# Example fleet ids (examples/fleet.yaml).
WEB_01 = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"
DB_01_DATA = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb

# The plan served in these tests: the default one, with fast polling (jobs take about a second).
SERVED_PLAN = {**DEFAULT_PLAN, "poll_interval_seconds": 0.5}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def vbs_backup_command() -> list[str]:
    script = Path(sys.executable).parent / "vbs-backup"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from vbs_backup.deployments.cli import app; app()"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: ours without any Prefect or vbs-backup setting (tests/conftest.py
    sets some), quiet and unbuffered, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VBS_BACKUP_"))}
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


@dataclass
class Child:
    """A child process in its own process group, its output in a log file."""

    name: str
    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, name: str, args: list[str], *, env: dict[str, str], cwd: Path, logs: Path) -> Child:
        log = logs / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(name, process, log)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.tail()}")

    def stop(self, timeout: float = 30) -> None:
        if self.process.poll() is not None:
            return
        # SIGTERM: Prefect's runner pauses its schedules and exits; the server shuts uvicorn down.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


def wait_until(what: str, check: Callable[[], Any], *, timeout: float, every: float = 0.25, child=None):
    """Poll `check` until it returns something truthy (returned), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if child is not None:
            child.check_alive()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(
                f"timed out after {timeout:g} s waiting for {what}" + (f"\n{child.tail()}" if child else "")
            )
        time.sleep(every)


# ---------------------------------------------------------------------------------------------- Prefect


@dataclass
class PrefectServer:
    api_url: str
    ui_url: str
    api: httpx.Client
    env: dict[str, str]

    def deployment(self, name: str) -> dict[str, Any]:
        # Every catalog deployment is named after its flow.
        response = self.api.get(f"/deployments/name/{name}/{name}")
        response.raise_for_status()
        return response.json()

    def run(self, deployment: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
        """Start a run the way the UI's Run button does: POST /deployments/{id}/create_flow_run."""
        body: dict[str, Any] = {"state": {"type": "SCHEDULED", "message": "Run from the Prefect UI"}}
        if parameters is not None:
            body["parameters"] = parameters
        response = self.create_flow_run(self.deployment(deployment)["id"], body)
        response.raise_for_status()
        return response.json()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST `body` to the API, again while the server answers 503: SQLite on a busy server says
        "database is locked", and Prefect's own client (and the UI) retry."""
        for _ in range(40):
            response = self.api.post(path, json=body)
            if response.status_code != 503:
                break
            time.sleep(0.5)
        return response

    def create_flow_run(self, deployment_id: str, body: dict[str, Any]) -> httpx.Response:
        """POST /deployments/{id}/create_flow_run, as the UI does, and the server's answer to it."""
        return self.post(f"/deployments/{deployment_id}/create_flow_run", body)

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        response = self.api.get(f"/flow_runs/{flow_run_id}")
        response.raise_for_status()
        return response.json()

    def wait_final(self, flow_run_id: str, *, timeout: float = 120) -> dict[str, Any]:
        return wait_until(
            f"flow run {flow_run_id} to finish",
            lambda: (run := self.flow_run(flow_run_id))["state"]["type"] in FINAL_STATES and run,
            timeout=timeout,
        )

    def states(self, flow_run_id: str) -> list[dict[str, Any]]:
        """The run's state history, oldest first, as recorded by the server."""
        response = self.api.get("/flow_run_states/", params={"flow_run_id": flow_run_id})
        response.raise_for_status()
        return sorted(response.json(), key=lambda s: s["timestamp"])


def state_time(state: dict[str, Any]) -> float:
    return datetime.fromisoformat(state["timestamp"].replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="session")
def server_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prefect-server")


@pytest.fixture(scope="session")
def prefect_server(server_dir: Path) -> Iterator[PrefectServer]:
    port = free_port()
    api_url, ui_url = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
    # API host and port through the environment (not --port), so that the UI calls this port; the UI URL
    # so that alert messages link to this server's UI.
    env = clean_env(
        PREFECT_HOME=str(server_dir / "home"),
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_UI_URL=ui_url,
        # A nightly run waiting for the one concurrency slot retries every 30 s by default; 2 s here.
        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
    )
    child = Child.start(
        "prefect-server",
        [sys.executable, "-m", "prefect", "server", "start"],
        env=env,
        cwd=server_dir,
        logs=server_dir,
    )
    try:
        with httpx.Client(base_url=api_url, timeout=30) as api:

            def healthy() -> bool:
                try:
                    return api.get("/health", timeout=2).status_code == 200
                except httpx.TransportError:
                    return False

            wait_until("the Prefect server to be healthy", healthy, timeout=SERVER_START_TIMEOUT, child=child)
            client_env = {"PREFECT_API_URL": api_url, "PREFECT_HOME": str(server_dir / "client-home")}
            yield PrefectServer(api_url=api_url, ui_url=ui_url, api=api, env=client_env)
    finally:
        child.stop()


# ---------------------------------------------------------------------------------------------- the cloud


@dataclass
class Cloud:
    url: str
    env: dict[str, str] = field(repr=False)  # AK/SK settings; holds the emulator's (made-up) SK
    user: dict[str, str] = field(repr=False)  # the IAM user's VBS_BACKUP_USERNAME, _PASSWORD, _DOMAIN
    client: httpx.Client = field(repr=False)

    def control(self, method: str, path: str, json: Any = None) -> httpx.Response:
        response = self.client.request(method, f"/_emulator/{path.lstrip('/')}", json=json)
        response.raise_for_status()
        return response

    def backups(self) -> list[dict[str, Any]]:
        projects = self.control("GET", "/state").json()["projects"]
        return [b for project in projects.values() for b in project["backups"]]


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cloud]:
    where = tmp_path_factory.mktemp("emulator")
    args = [*vbs_backup_command(), "emulator", "--fleet", str(FLEET), "--speed", "600", "--port", "0"]
    child = Child.start("emulator", args, env=clean_env(), cwd=where, logs=where)

    def settings() -> dict[str, str] | None:
        lines = child.log.read_text().splitlines()
        found = dict(line.split("=", 1) for line in lines if line.startswith("VBS_BACKUP_"))
        return found if "VBS_BACKUP_SK" in found else None

    try:
        found = wait_until("the emulator's ready line", settings, timeout=60, child=child)
        # The served flows get AK/SK only, so that a run that signs in as the IAM user can only have
        # taken its credentials from a block.
        user_keys = ("VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD", "VBS_BACKUP_DOMAIN")
        env = {k: v for k, v in found.items() if k not in user_keys}
        user = {k: found[k] for k in user_keys}
        with httpx.Client(base_url=found["VBS_BACKUP_ENDPOINT"], timeout=10) as client:
            yield Cloud(url=found["VBS_BACKUP_ENDPOINT"], env=env, user=user, client=client)
    finally:
        child.stop()


@pytest.fixture(scope="session")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('ledger') / 'ledger.sqlite'}"


@pytest.fixture(scope="session")
def served(prefect_server: PrefectServer, cloud: Cloud, ledger_url: str, server_dir: Path) -> Iterator[Child]:
    """`vbs-backup serve`, started from a directory without the code (entry points are module paths)."""
    where = server_dir / "serve"
    where.mkdir()
    plan = where / "plan.yaml"
    plan.write_text(yaml.safe_dump(SERVED_PLAN))
    env = clean_env(
        **prefect_server.env,
        **cloud.env,
        VBS_BACKUP_DATABASE_URL=ledger_url,
        PREFECT_RUNNER_POLL_FREQUENCY="1",
    )
    child = Child.start(
        "serve", [*vbs_backup_command(), "serve", "--plan", str(plan)], env=env, cwd=where, logs=server_dir
    )
    names = [spec.name for spec in CATALOG]

    def registered() -> bool:
        response = prefect_server.api.post(
            "/deployments/filter", json={"deployments": {"name": {"any_": names}}}
        )
        return response.status_code == 200 and len(response.json()) == len(names)

    try:
        wait_until("the served deployments", registered, timeout=90, child=child)
        yield child
    finally:
        child.stop()


# ---------------------------------------------------------------------------------------------- webhook


@dataclass
class Delivery:
    received_at: float  # time.time(), to compare with the server's state timestamps
    path: str
    body: dict[str, Any]


class WebhookReceiver:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._changed:
                    receiver.deliveries.append(Delivery(time.time(), self.path, json.loads(raw or b"{}")))
                    receiver._changed.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait_for(self, predicate: Callable[[Delivery], bool], *, timeout: float) -> Delivery:
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((d for d in self.deliveries if predicate(d)), None), timeout=timeout
            )
        if found is None:
            pytest.fail(f"no matching webhook delivery within {timeout:g} s; got {self.deliveries}")
        return found

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="session")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="session")
def timings() -> Iterator[dict[str, float]]:
    figures: dict[str, float] = {}
    yield figures
    if figures:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "server-timings.json").write_text(json.dumps(figures, indent=2) + "\n")


@pytest.fixture
def page() -> Iterator[Any]:
    """A headless chromium page at 1400 px (tests/server/browser.py)."""
    from .browser import chromium_page

    with chromium_page() as page:
        yield page


def register_block(
    prefect_server: PrefectServer, cloud: Cloud, name: str, *, iam_user: bool
) -> dict[str, Any]:
    """`vbs-backup blocks register NAME` as an operator runs it: the emulator's IAM user (`iam_user`: the
    served flows only have AK/SK, so a run that asks IAM for a token took it from the block) or its AK/SK.
    Returns the saved block document (without secrets) as the server lists it."""
    if iam_user:
        env = clean_env(
            **prefect_server.env,
            VBS_BACKUP_ENDPOINT=cloud.env["VBS_BACKUP_ENDPOINT"],
            VBS_BACKUP_PROJECT_ID=cloud.env["VBS_BACKUP_PROJECT_ID"],
            **cloud.user,
        )
        method = ["--username", cloud.user["VBS_BACKUP_USERNAME"]]
    else:
        env = clean_env(**prefect_server.env, **cloud.env)
        method = ["--ak", cloud.env["VBS_BACKUP_AK"]]
    args = [*vbs_backup_command(), "blocks", "register", name, *method]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    response = prefect_server.api.get(f"/block_types/slug/vbs-credentials/block_documents/name/{name}")
    response.raise_for_status()
    return response.json()
