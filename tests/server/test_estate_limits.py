"""An account's request budget shared by several workers (issue "Many projects, many workers"), on a real
Prefect server on PostgreSQL (on SQLite, Prefect's rate limits are slow and fail under load):

* `vbs-backup estate limits` (the installed command, in its own process) makes one global concurrency limit
  per account of the estate, read back over the REST API; a re-run writes nothing; new numbers update it.
* Two worker processes, each with its own client (its own limiter at 20 req/s) and an `AccountBudget` on
  one account limit (4 req/s, burst 2), hammer the emulator together: its request log shows that in every
  window of T seconds the account got at most burst + rate * T requests (+1, see `envelope_excess`).
  Without the budget, the same two processes exceed that many times over: the check can fail.

Everything talks over 127.0.0.1: the server (`bench.prefect_server`), the emulator (`vbs-backup emulator`
on a fleet of two projects of one account) and the workers are child processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.estate_fleet import busiest_window
from bench.prefect_server import (
    DEFAULT_ADMIN_URL,
    PrefectServer,
    drop_database,
    ensure_database,
    free_port,
    prefect_server_sync,
)
from tests.pg import postgres_url_or_skip

from .conftest import Child, clean_env, vbs_backup_command, wait_until

pytestmark = [pytest.mark.server, pytest.mark.postgres]

PROJECT_ID = "0123456789abcdef0123456789abcdef"  # the estate's first target
# The emulator's account: two projects, each worker calls one.
FLEET = {
    "region": "eu-west-0",
    "projects": [
        {
            "id": project,
            "name": f"acme-{index}",
            "account": "acme",
            "access_keys": [{"ak": f"ACMEAK{index:014d}", "sk": f"acme-secret-{index}"}],
            "servers": [],
            "volumes": [],
        }
        for index, project in enumerate(
            ["a0000000000000000000000000000001", "b0000000000000000000000000000002"]
        )
    ],
}
LIMIT, RATE, BURST = "vbs-backup-account-acme", 4.0, 2  # the account's budget in the hammer test
LOCAL_RATE = 20.0  # each worker's own limiter: five times the account's rate
WINDOWS = (0.5, 1.0, 2.0, 3.0)  # seconds

# Every service of the server off: these tests only use the REST API and the concurrency endpoints.
QUIET_SERVER = {
    f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
    for service in (
        "CANCELLATION_CLEANUP",
        "CLEANUP_RECONCILER",
        "DB_VACUUM",
        "EVENT_LOGGER",
        "EVENT_PERSISTER",
        "FOREMAN",
        "LATE_RUNS",
        "PAUSE_EXPIRATIONS",
        "REPOSSESSOR",
        "SCHEDULER",
        "TASK_RUN_RECORDER",
        "TRIGGERS",
    )
}


@dataclass
class Stack:
    """The server, the emulator's URL, and the two worker processes (started while the server migrates)."""

    server: PrefectServer
    emulator: str
    workers: list[subprocess.Popen[str]]
    ready: set[int] = field(default_factory=set)

    def send(self, index: int, line: str) -> None:
        """Give worker `index` a command line (once it is READY)."""
        worker = self.workers[index]
        assert worker.stdin is not None and worker.stdout is not None
        if index not in self.ready:
            assert worker.stdout.readline().strip() == "READY", self.stderr(index)
            self.ready.add(index)
        worker.stdin.write(line + "\n")
        worker.stdin.flush()

    def answer(self, index: int) -> dict[str, Any]:
        """Worker `index`'s answer to its last command."""
        worker = self.workers[index]
        assert worker.stdout is not None
        line = worker.stdout.readline()
        assert line, f"worker {index} died: {self.stderr(index)}"
        return json.loads(line)

    def stderr(self, index: int) -> str:
        worker = self.workers[index]
        if worker.poll() is None or worker.stderr is None:
            return "(still running)"
        return worker.stderr.read()[-3000:]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`prefect server start` on a new PostgreSQL database (dropped afterwards), the emulator on a fleet of
    two projects of the account `acme`, and one worker process per project. The server's port is chosen
    first, so that the emulator and the workers start (and import) while the server migrates."""
    postgres_url_or_skip()
    where = tmp_path_factory.mktemp("estate-limits")
    port = free_port()
    children: list[subprocess.Popen[str]] = []
    emulator = start_emulator(where)
    name = f"test_limits_{uuid.uuid4().hex[:12]}"
    try:
        api_url = f"http://127.0.0.1:{port}/api"
        children += [start_worker(where, index, api_url) for index in range(len(FLEET["projects"]))]
        url = ensure_database(DEFAULT_ADMIN_URL, name=name, fresh=True)
        home = where / "home"
        with prefect_server_sync(database_url=url, port=port, home=home, extra_env=QUIET_SERVER) as srv:
            assert srv.api_url == api_url
            endpoint = wait_until("the emulator's ready line", lambda: emulator_url(emulator), timeout=60)
            try:
                yield Stack(srv, endpoint, children)
            finally:  # before the server stops: their open connections would hold up its shutdown
                stop_workers(children)
    finally:
        stop_workers(children)
        emulator.stop()
        drop_database(DEFAULT_ADMIN_URL, name=name)


@pytest.fixture(scope="module")
def server(stack: Stack) -> PrefectServer:
    return stack.server


@pytest.fixture(scope="module")
def api(server: PrefectServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.api_url, timeout=30) as client:
        yield client


def client_env(server: PrefectServer, home: Path, **extra: str) -> dict[str, str]:
    return clean_env(**server.client_env, PREFECT_HOME=str(home), **extra)


def account_limits(api: httpx.Client) -> dict[str, dict[str, Any]]:
    response = api.post("/v2/concurrency_limits/filter", json={})
    response.raise_for_status()
    return {row["name"]: row for row in response.json() if row["name"].startswith("vbs-backup-account-")}


# ------------------------------------------------------------------------------------- estate limits


ESTATE = textwrap.dedent(
    f"""
    name: acme
    targets:
      - {{cloud: otc, region: eu-de, project_id: {PROJECT_ID}, credentials: otc-prod,
         account: acme-otc, plans: [{{name: nightly, selection: {{name_patterns: ["*"]}}}}]}}
      - {{cloud: otc, region: eu-de, project_id: {"1" + PROJECT_ID[1:]}, credentials: otc-test,
         account: acme-otc, plans: [{{name: nightly, selection: {{name_patterns: ["*"]}}}}]}}
      - {{cloud: huaweicloud, region: eu-west-101, project_id: {"2" + PROJECT_ID[1:]},
         credentials: hwc-prod, plans: [{{name: nightly, selection: {{name_patterns: ["*"]}}}}]}}
    """
)
OTC_TARGETS = "otc-eu-de-01234567, otc-eu-de-11234567"
HWC_TARGET = "huaweicloud-eu-west-101-21234567"


def estate_limits(server: PrefectServer, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    """`vbs-backup estate limits --file <ESTATE> ARGS`, started (`finish` waits for it)."""
    estate = tmp_path / "estate.yaml"
    if not estate.exists():
        estate.write_text(ESTATE)
    return subprocess.Popen(
        [*vbs_backup_command(), "estate", "limits", "--file", str(estate), *args],
        env=client_env(server, tmp_path / "cli-home", COLUMNS="200"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(command: subprocess.Popen[str]) -> list[str]:
    """The lines a command printed, once it has succeeded."""
    out, err = command.communicate(timeout=120)
    assert command.returncode == 0, err
    return out.splitlines()


def test_estate_limits_creates_one_limit_per_account_idempotently(server, api, tmp_path):
    created = finish(estate_limits(server, tmp_path, "--rate", "10"))
    assert created == [
        f"vbs-backup-account-acme-otc: 10 req/s, burst 10, created; target(s): {OTC_TARGETS}",
        f"vbs-backup-account-hwc-prod: 10 req/s, burst 10, created; target(s): {HWC_TARGET}",
    ]
    limits = account_limits(api)
    # One per distinct account (a target without `account` is its credentials' account); burst = 1 s worth.
    assert sorted(limits) == ["vbs-backup-account-acme-otc", "vbs-backup-account-hwc-prod"]
    for row in limits.values():
        assert (row["limit"], row["slot_decay_per_second"], row["active"]) == (10, 10.0, True)

    # Neither a re-run with the same numbers nor a dry run with others writes anything (run side by side).
    again = estate_limits(server, tmp_path, "--rate", "10")
    planned = estate_limits(server, tmp_path, "--rate", "4", "--burst", "2", "--dry-run")
    assert [line.split(" target(s)")[0] for line in finish(again)] == [
        "vbs-backup-account-acme-otc: 10 req/s, burst 10, unchanged;",
        "vbs-backup-account-hwc-prod: 10 req/s, burst 10, unchanged;",
    ]
    assert finish(planned)[0] == (
        "vbs-backup-account-acme-otc: 4 req/s, burst 2, would update (was 10 req/s, burst 10); "
        f"target(s): {OTC_TARGETS}"
    )
    assert account_limits(api) == limits  # not even their `updated` times moved

    changed = finish(estate_limits(server, tmp_path, "--rate", "4", "--burst", "2"))
    assert [line.split(" target(s)")[0] for line in changed] == [
        "vbs-backup-account-acme-otc: 4 req/s, burst 2, updated (was 10 req/s, burst 10);",
        "vbs-backup-account-hwc-prod: 4 req/s, burst 2, updated (was 10 req/s, burst 10);",
    ]
    rows = account_limits(api)
    assert {(r["limit"], r["slot_decay_per_second"], r["active"]) for r in rows.values()} == {(2, 4.0, True)}
    assert {r["id"] for r in rows.values()} == {r["id"] for r in limits.values()}  # updated, not replaced


# ------------------------------------------------------------------------------------- two workers


WORKER = textwrap.dedent(
    """
    # One worker process: a client of its own (its own limiter) for one project of the account, with or
    # without the account's budget. Reads "<budget|none> <seconds> <endpoint>" lines on stdin and answers
    # each with a JSON line once that phase is over; prints READY when set up (imports done), so that the
    # phases of both workers start together. "probe" answers what a run finds before its first request.
    import asyncio, json, sys

    from vbs_backup.cloud import CloudClient, RetryPolicy
    from vbs_backup.tasks.budget import (
        AccountBudget, AccountBudgetError, account_limit_name, read_account_limit, shared_budget,
    )

    project_id, ak, sk, limit_name, local_rate = sys.argv[1:6]
    CONCURRENT = 4

    async def phase(budget, seconds, endpoint):
        client = CloudClient.connect(
            region="eu-west-0", project_id=project_id, ak=ak, sk=sk, endpoint=endpoint,
            retry=RetryPolicy(), max_requests_per_second=float(local_rate), shared_budget=budget,
        )
        answered = 0

        async def worker():
            nonlocal answered
            while True:
                await client.vbs.get_quotas()
                answered += 1

        async with client:
            workers = [asyncio.create_task(worker()) for _ in range(CONCURRENT)]
            done, _ = await asyncio.wait(workers, timeout=seconds)
            for task in workers:
                task.cancel()  # a request waiting for its slot is dropped, not sent late
            await asyncio.gather(*workers, return_exceptions=True)
            for task in done:
                task.result()  # a worker that failed fails the phase
        return {"answered": answered, "acquired": budget.acquired if budget else None}

    async def probe():
        found, missing = await shared_budget("acme"), await shared_budget("nobody")
        limit = await read_account_limit("acme")
        try:
            await AccountBudget(account_limit_name("nobody")).acquire()
            refused = None
        except AccountBudgetError as exc:
            refused = str(exc)
        return {
            "found": repr(found), "missing": repr(missing), "refused": refused,
            "limit": [limit.limit, limit.slot_decay_per_second],
            "nobody": repr(await read_account_limit("nobody")),
        }

    async def main():
        print("READY", flush=True)
        for line in sys.stdin:
            if line.strip() == "probe":
                print(json.dumps(await probe()), flush=True)
                continue
            mode, seconds, endpoint = line.split()
            budget = AccountBudget(limit_name) if mode == "budget" else None
            print(json.dumps(await phase(budget, float(seconds), endpoint)), flush=True)

    asyncio.run(main())
    """
)


def start_emulator(where: Path) -> Child:
    """`vbs-backup emulator` on a fleet of two projects of the account `acme`."""
    fleet = where / "fleet.yaml"
    fleet.write_text(yaml.safe_dump(FLEET))
    args = [*vbs_backup_command(), "emulator", "--fleet", str(fleet), "--port", "0"]
    return Child.start("emulator", args, env=clean_env(), cwd=where, logs=where)


def emulator_url(emulator: Child) -> str | None:
    emulator.check_alive()
    lines = emulator.log.read_text().splitlines()
    return next((line.split("=", 1)[1] for line in lines if line.startswith("VBS_BACKUP_ENDPOINT=")), None)


def stop_workers(workers: list[subprocess.Popen[str]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def start_worker(where: Path, index: int, api_url: str) -> subprocess.Popen[str]:
    """A `WORKER` for project `index` of the fleet, talking to the Prefect server at `api_url`."""
    script = where / "worker.py"
    if not script.exists():
        script.write_text(WORKER)
    project = FLEET["projects"][index]
    key = project["access_keys"][0]
    args = [sys.executable, str(script), project["id"], key["ak"], key["sk"], LIMIT, str(LOCAL_RATE)]
    env = clean_env(PREFECT_API_URL=api_url, PREFECT_HOME=str(where / f"worker-{index}-home"))
    return subprocess.Popen(
        args, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def envelope_excess(times: list[float]) -> dict[float, int]:
    """For each window length T: how many requests beyond the token bucket's envelope, burst + rate * T,
    plus one (0 when within it). The one: the server grants slots in its database's time, the emulator logs
    arrivals a little later (the answer's way back, the worker's event loop, the socket), and not all equally
    late; as long as those delays differ by less than one slot's time (1 / rate = 250 ms) a window of
    arrivals holds the grants of at most T + 1 / rate seconds."""
    return {t: max(0, busiest_window(times, t) - int(BURST + RATE * t + 1)) for t in WINDOWS}


@pytest.fixture(scope="module")
def account_limit(api: httpx.Client) -> str:
    """The account `acme`'s limit (made over the REST API: the command is tested above)."""
    body = {"name": LIMIT, "limit": BURST, "slot_decay_per_second": RATE}
    api.post("/v2/concurrency_limits/", json=body).raise_for_status()
    return LIMIT


def test_two_workers_with_the_account_budget_stay_within_its_rate_together(stack, account_limit, timings):
    workers = range(len(stack.workers))

    with httpx.Client(base_url=f"{stack.emulator}/_emulator", timeout=10) as control:

        def run_phase(mode: str, seconds: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            control.delete("/requests").raise_for_status()
            for index in workers:
                stack.send(index, f"{mode} {seconds} {stack.emulator}")
            results = [stack.answer(index) for index in workers]
            log = control.get("/requests").json()
            return results, [r for r in log if r["operation"] == "vbs.get_quotas" and r["status"] == 200]

        started = time.monotonic()
        alone, unbudgeted = run_phase("none", 2)
        shared, budgeted = run_phase("budget", 4)
        elapsed = time.monotonic() - started

    # Without the budget each worker keeps its own rate, and together they blow through the account's.
    assert all(r["answered"] > 10 for r in alone)
    assert envelope_excess([r["at"] for r in unbudgeted])[1.0] > 10, len(unbudgeted)

    # With it, both got requests through, and every request took a slot first ...
    by_project = {p["id"]: sum(r["project_id"] == p["id"] for r in budgeted) for p in FLEET["projects"]}
    assert all(count > 0 for count in by_project.values()), by_project
    assert {r["account"] for r in budgeted} == {"acme"}
    for result, sent in zip(shared, by_project.values(), strict=True):
        # A request cancelled at the end of the phase may have taken its slot and not been sent.
        assert result["acquired"] - 4 <= sent <= result["acquired"], (result, sent)
    # ... and in no window did the account get more than the bucket allows.
    times = [r["at"] for r in budgeted]
    assert envelope_excess(times) == dict.fromkeys(WINDOWS, 0), {t: busiest_window(times, t) for t in WINDOWS}
    # Not starved either: Prefect hands out 60-80 % of the rate (tasks/budget.py); at least 40 % here.
    span = max(times) - min(times)
    assert len(times) >= 0.4 * RATE * span, (len(times), span)
    timings["account_budget_requests_per_second"] = round(len(times) / span, 2)  # of RATE
    timings["account_budget_two_phases_seconds"] = round(elapsed, 1)


def test_a_run_finds_its_account_budget_before_its_first_request(stack, account_limit):
    stack.send(0, "probe")
    found = stack.answer(0)

    assert found["found"] == f"AccountBudget('{LIMIT}')" and found["limit"] == [BURST, RATE]
    # No limit for the account: the run goes on with its own limiter only (and says so in its log) ...
    assert found["missing"] == "None" and found["nobody"] == "None"
    # ... while a budget on a limit that does not exist refuses the request, saying how to make it.
    assert found["refused"].startswith("Concurrency limits ['vbs-backup-account-nobody'] must be created")
    assert found["refused"].endswith("(the account limits are made by `vbs-backup estate limits ...`)")
