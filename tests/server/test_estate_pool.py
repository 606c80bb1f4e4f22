"""The estate over a Prefect work pool, with every part real and in its own process, as an operations team
would run it (README, "An estate over a work pool"):

* Prefect's server on a new PostgreSQL database, the ledger on another;
* the emulator serving three projects, two of which (alpha, beta) belong to one account, `acme`;
* `vbs-backup blocks register` for each project, `vbs-backup estate limits` (one global rate limit per
  account), `vbs-backup alerts setup` (failed runs to a webhook, and lost runs marked Crashed);
* a process work pool, `prefect deploy` of prefect.yaml's estate deployments, and two workers
  (`prefect worker start --limit 2`: the parent and three children need both).

Then `estate-nightly` runs, and: every child completes, children ran on both workers, and the account
shared by two targets never saw more requests than its limit allows (counted per account in the emulator's
request log, by arrival time). Then a worker is killed (with its flow run processes, as a machine dies)
while its children wait for their jobs: they end Crashed (no heartbeats), the parent Failed naming them,
the webhook is told, and a re-run of those targets adopts every backup the dead runs had started: one
backup per disk, no second create.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from bench.estate_fleet import busiest_window
from bench.prefect_server import (
    DEFAULT_ADMIN_URL,
    POOL_SETTINGS,
    _descendants,
    drop_database,
    ensure_database,
    prefect_server_sync,
)
from tests.pg import postgres_url_or_skip

from .browser import screenshot
from .conftest import REPO, Child, WebhookReceiver, clean_env, vbs_backup_command, wait_until

pytestmark = [pytest.mark.server, pytest.mark.postgres]

POOL = "vbs-backup"  # prefect.yaml's work pool
RATE, BURST = 3.0, 3  # the shared account's budget (requests per second, burst)
HEARTBEAT_SECONDS = 30  # Prefect's minimum
LOST_AFTER_MINUTES = 1  # a run silent this long is taken for dead (two missed heartbeats)
SPEED = 600  # emulator: a virtual minute takes 0.1 s
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _hex(seed: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, seed).hex


def _uuid(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, seed))


@dataclass(frozen=True)
class Project:
    target: str
    account: str
    id: str
    ak: str
    sk: str

    def volumes(self) -> list[str]:
        return [_uuid(f"{self.target}-{s}-{d}") for s in range(2) for d in range(2)]


PROJECTS = (
    Project("alpha", "acme", _hex("alpha"), "AKALPHA00000000000001", "sk-alpha"),
    Project("beta", "acme", _hex("beta"), "AKBETA000000000000001", "sk-beta"),
    Project("gamma", "solo", _hex("gamma"), "AKGAMMA00000000000001", "sk-gamma"),
)


def fleet() -> dict[str, Any]:
    """Three projects, two servers of two disks each, every server tagged for the nightly plan."""
    return {
        "region": "eu-west-0",
        "projects": [
            {
                "id": p.id,
                "name": p.target,
                "account": p.account,
                "access_keys": [{"ak": p.ak, "sk": p.sk}],
                "servers": [
                    {
                        "id": _uuid(f"{p.target}-server-{s}"),
                        "name": f"{p.target}-{s}",
                        "tags": {"backup": "nightly"},
                        "disks": [
                            {
                                "id": _uuid(f"{p.target}-{s}-{d}"),
                                "name": f"{p.target}-{s}-{d}",
                                "size_gb": 10,
                                "device": f"/dev/vd{'ab'[d]}",
                                **({"boot_index": 0} if d == 0 else {}),
                            }
                            for d in range(2)
                        ],
                    }
                    for s in range(2)
                ],
            }
            for p in PROJECTS
        ],
    }


def estate(plan: str) -> dict[str, Any]:
    return {
        "name": "acme-estate",
        "targets": [
            {
                "name": p.target,
                "cloud": "huaweicloud",
                "region": "eu-west-0",
                "project_id": p.id,
                "credentials": f"cred-{p.target}",
                "account": p.account,
                "plans": [
                    {
                        "name": plan,
                        "selection": {"tags": {"backup": "nightly"}},
                        "schedule_timezone": "UTC",
                        "poll_interval_seconds": 0.5,
                    }
                ],
            }
            for p in PROJECTS
        ],
    }


@dataclass
class Estate:
    api: httpx.Client  # Prefect's REST API
    emulator: httpx.Client  # the emulator (control API at /_emulator)
    workers: dict[str, Child]
    worker_env: dict[str, str]
    webhook: WebhookReceiver
    ui_url: str
    ledger_url: str
    files: Path
    logs: Path

    def control(self, method: str, path: str, json: Any = None) -> Any:
        response = self.emulator.request(method, f"/_emulator/{path}", json=json)
        response.raise_for_status()
        return response.json()

    def start_worker(self, name: str) -> Child:
        args = ["prefect", "worker", "start", "--pool", POOL, "--name", name, "--limit", "2"]
        args[0] = str(Path(vbs_backup_command()[0]).parent / "prefect")
        child = Child.start(name, args, env=self.worker_env, cwd=REPO, logs=self.logs)
        self.workers[name] = child
        return child

    def run_estate(self, plan: str, **parameters: Any) -> str:
        """Start estate-nightly over the estate whose targets all apply `plan` (its name)."""
        path = self.files / f"estate-{plan}.yaml"
        path.write_text(yaml.safe_dump(estate(plan), sort_keys=False))
        deployment = self.api.get("/deployments/name/estate-nightly/estate-nightly").json()
        parameters["estate"] = str(path)
        response = self.api.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters}
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self.api.get(f"/flow_runs/{flow_run_id}").json()

    def wait_final(self, flow_run_id: str, timeout: float) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            run = self.flow_run(flow_run_id)
            return run if run["state"]["type"] in FINAL else None

        return wait_until(f"flow run {flow_run_id} to end", final, timeout=timeout, every=1)

    def children(self, parent_id: str) -> dict[str, dict[str, Any]]:
        """The parent's estate-target runs (its subflows: run_deployment links them), by target."""
        runs = self.api.post(
            "/flow_runs/filter", json={"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}
        ).json()
        return {run["parameters"]["target"]["name"]: run for run in runs}

    def worker_of(self, flow_run_id: str) -> str | None:
        """The worker that runs the flow run: both may pick a run up, the server lets one of them have it
        (the other logs "Aborted submission")."""
        for name, child in self.workers.items():
            log = child.log.read_text(errors="replace")
            if (
                f"submitting flow run '{flow_run_id}'" in log
                and f"submission of flow run '{flow_run_id}'" not in log
            ):
                return name
        return None


def _run(args: list[str], env: dict[str, str], *, cwd: Path = REPO, timeout: float = 180) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Estate]:
    postgres_url_or_skip()
    files = tmp_path_factory.mktemp("estate")
    logs = files / "logs"
    logs.mkdir()
    prefect_db, ledger_db = (
        f"test_estate_prefect_{uuid.uuid4().hex[:8]}",
        f"test_estate_ledger_{uuid.uuid4().hex[:8]}",
    )
    prefect_url = ensure_database(DEFAULT_ADMIN_URL, name=prefect_db, fresh=True)
    ensure_database(DEFAULT_ADMIN_URL, name=ledger_db, fresh=True)
    ledger_url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{ledger_db}"
    (files / "fleet.yaml").write_text(yaml.safe_dump(fleet(), sort_keys=False))
    webhook = WebhookReceiver()
    emulator = Child.start(
        "emulator",
        [
            *vbs_backup_command(),
            "emulator",
            "--fleet",
            str(files / "fleet.yaml"),
            "--speed",
            str(SPEED),
            "--port",
            "0",
        ],
        env=clean_env(),
        cwd=files,
        logs=logs,
    )
    workers: dict[str, Child] = {}
    try:
        endpoint = wait_until(
            "the emulator's ready line",
            lambda: next(
                (
                    line.split("=", 1)[1]
                    for line in emulator.log.read_text().splitlines()
                    if line.startswith("VBS_BACKUP_ENDPOINT=")
                ),
                None,
            ),
            timeout=60,
            child=emulator,
        )
        # PostgreSQL's 100 connections: Prefect's 20 here, the runs' VBS_BACKUP_DATABASE_POOL_SIZE below.
        prefect_pool = {
            **POOL_SETTINGS,
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "10",
            "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "10",
        }
        with prefect_server_sync(
            pool=prefect_pool,
            database_url=prefect_url,
            home=files / "prefect-home",
            log_path=logs / "prefect.log",
            ui=True,  # an operator looks at the failed night (look_at_the_night)
        ) as server:
            env = clean_env(**server.client_env, PREFECT_HOME=str(files / "client-home"))
            cli = vbs_backup_command()
            prefect = str(Path(cli[0]).parent / "prefect")
            for p in PROJECTS:
                _run(
                    [
                        *cli,
                        "blocks",
                        "register",
                        f"cred-{p.target}",
                        "--cloud",
                        "huaweicloud",
                        "--region",
                        "eu-west-0",
                        "--project-id",
                        p.id,
                        "--ak",
                        p.ak,
                        "--endpoint",
                        endpoint,
                    ],
                    {**env, "VBS_BACKUP_SK": p.sk},
                )
            (files / "estate-limits.yaml").write_text(yaml.safe_dump(estate("night1"), sort_keys=False))
            _run(
                [
                    *cli,
                    "estate",
                    "limits",
                    "--file",
                    str(files / "estate-limits.yaml"),
                    "--rate",
                    str(RATE),
                    "--burst",
                    str(BURST),
                ],
                env,
            )
            _run(
                [
                    *cli,
                    "alerts",
                    "setup",
                    "--webhook",
                    webhook.url,
                    "--lost-after-minutes",
                    str(LOST_AFTER_MINUTES),
                ],
                env,
            )
            _run([prefect, "work-pool", "create", POOL, "--type", "process"], env)
            _run(
                [prefect, "--no-prompt", "deploy", "--name", "estate-nightly", "--name", "estate-target"], env
            )
            worker_env = {
                **env,
                "VBS_BACKUP_DATABASE_URL": ledger_url,
                "VBS_BACKUP_MAX_REQUESTS_PER_SECOND": "20",  # each process alone would exceed the account
                # 4 runs at once (2 workers x --limit 2) x 6 x 1.33, and Prefect's 20: under PostgreSQL's 100
                "VBS_BACKUP_DATABASE_POOL_SIZE": "6",
                "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
                "PREFECT_WORKER_QUERY_SECONDS": "1",
            }
            with (
                httpx.Client(base_url=server.api_url, timeout=30) as api,
                httpx.Client(base_url=endpoint, timeout=30) as cloud,
            ):
                ui_url = server.api_url.removesuffix("/api")
                here = Estate(api, cloud, workers, worker_env, webhook, ui_url, ledger_url, files, logs)
                for name in ("worker-a", "worker-b"):
                    here.start_worker(name)
                yield here
    finally:
        for child in [*workers.values(), emulator]:
            child.stop()
        webhook.close()
        drop_database(DEFAULT_ADMIN_URL, name=prefect_db)
        drop_database(DEFAULT_ADMIN_URL, name=ledger_db)


def test_an_estate_night_spreads_over_both_workers_within_each_account_budget(pool: Estate):
    pool.control("POST", "settings", {"job_base_seconds": 60})  # a minute (virtual): 0.1 s
    pool.control("DELETE", "requests")
    parent_id = pool.run_estate("night1")
    parent = pool.wait_final(parent_id, timeout=300)
    children = pool.children(parent_id)
    assert parent["state"]["type"] == "COMPLETED", (
        parent["state"],
        {t: c["state"] for t, c in children.items()},
    )
    assert sorted(children) == ["alpha", "beta", "gamma"]
    assert all(c["state"]["type"] == "COMPLETED" for c in children.values())
    # Children ran on both workers (each takes two runs at most: the parent and three children need both).
    assert len({pool.worker_of(c["id"]) for c in children.values()}) == 2

    # Every disk backed up once, in its own project.
    state = pool.control("GET", "state")["projects"]
    for p in PROJECTS:
        backups = [b for b in state[p.id]["backups"] if "plan=night1 " in (b["description"] or "")]
        assert sorted(b["volume_id"] for b in backups) == sorted(p.volumes()), p.target

    # The account shared by alpha and beta stayed within its budget, all workers together: in any span of
    # T seconds at most BURST + RATE * T requests (the token bucket's envelope; +1 for the arrival jitter
    # between the limit server granting a slot and the request reaching the emulator).
    log = pool.control("GET", "requests")
    per_account: dict[str, list[float]] = defaultdict(list)
    for entry in log:
        if entry["account"] is not None:
            per_account[entry["account"]].append(entry["at"])
    assert len(per_account["acme"]) > 4 * BURST  # enough traffic for the check to mean something
    for span in (1.0, 2.0, 5.0):
        assert busiest_window(per_account["acme"], span) <= BURST + RATE * span + 1, span
    # ...and it was busy: the shared budget, not idleness, kept it there.
    seconds = max(per_account["acme"]) - min(per_account["acme"])
    assert len(per_account["acme"]) / seconds > RATE / 3

    # The estate-wide summary: one artifact on the parent, every target in it.
    artifacts = pool.api.post(
        "/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [parent_id]}}}
    ).json()
    summary = next(a for a in artifacts if a["key"] == "estate-summary")["data"]
    assert "3 of 3 targets ok" in summary
    assert all(f"| {p.target} | Completed | 4 of 4 " in summary for p in PROJECTS), summary


def look_at_the_night(page: Any, pool: Estate, parent_id: str, lost: list[str]) -> None:
    """The operator at 3 a.m.: the estate's run is red, its summary page names the dead targets first."""
    try:
        page.goto(f"{pool.ui_url}/runs/flow-run/{parent_id}")
        page.locator(".page-heading-flow-run__meta .state-badge").filter(has_text="Failed").wait_for()
        assert "estate 20" in page.locator(".page-heading").first.inner_text()
        screenshot(page, "ui-estate-run.png")
        page.get_by_text("Artifacts", exact=True).first.click()
        page.get_by_text("estate-summary", exact=True).click()
        page.wait_for_url("**/artifacts/artifact/**")
        page.get_by_text("Show raw data").wait_for()
        text = page.locator("body").inner_text()
        assert f"Estate acme-estate: {3 - len(lost)} of 3 targets ok" in text
        # The dead targets first, with why, above the table.
        assert all(
            text.index(f"{t} Crashed: no heartbeat") < text.index("oldest good backup") for t in lost
        ), text
        screenshot(page, "ui-estate-summary.png", readme=True)
    except Exception:
        screenshot(page, "ui-estate-failed.png")
        raise


def test_a_killed_worker_crashes_its_runs_fails_the_parent_alerts_and_a_rerun_adopts(pool: Estate, page):
    # Jobs that take three virtual days: the runs wait for them when the worker dies.
    pool.control("POST", "settings", {"job_base_seconds": 3 * 86400})
    pool.control("DELETE", "requests")
    parent_id = pool.run_estate("night2")

    def all_submitted() -> dict[str, dict[str, Any]] | None:
        children = pool.children(parent_id)
        creates = [e for e in pool.control("GET", "requests") if e["operation"] == "vbs.create_backup"]
        if (
            len(children) == 3
            and len(creates) >= 12
            and all(pool.worker_of(c["id"]) for c in children.values())
        ):
            return children
        return None

    children = wait_until("every disk's create", all_submitted, timeout=240, every=1)
    parent_worker = pool.worker_of(parent_id)
    victim = next(name for name in pool.workers if name != parent_worker)
    lost = sorted(t for t, c in children.items() if pool.worker_of(c["id"]) == victim)
    assert lost, {t: pool.worker_of(c["id"]) for t, c in children.items()}

    # The machine dies: the worker and every process it started, at once.
    worker = pool.workers[victim]
    for pid in [worker.process.pid, *_descendants(worker.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.process.wait(10)
    # The jobs finish (in the cloud, nobody waits for the dead runs').
    pool.control("POST", "clock/advance", {"seconds": 4 * 86400})

    parent = pool.wait_final(parent_id, timeout=60 * LOST_AFTER_MINUTES + 180)
    assert parent["state"]["type"] == "FAILED", parent["state"]
    after = pool.children(parent_id)
    for target in lost:
        assert after[target]["state"]["type"] == "CRASHED", after[target]["state"]
        assert f"{target} Crashed" in parent["state"]["message"]
    for target in set(after) - set(lost):
        assert after[target]["state"]["type"] == "COMPLETED"
    look_at_the_night(page, pool, parent_id, lost)
    # The alerts: each crashed child's, and the parent's failure naming the crashed targets.
    for target in lost:
        pool.webhook.wait_for(lambda d, run=after[target]["id"]: run in str(d.body), timeout=60)
    delivery = pool.webhook.wait_for(lambda d: parent_id in str(d.body), timeout=60)
    assert all(target in str(delivery.body) for target in lost)

    # A clean re-run of those targets, on a new machine: it adopts what the dead runs created.
    pool.start_worker(f"{victim}-again")
    creates_before = Counter(
        e["path"] for e in pool.control("GET", "requests") if e["operation"] == "vbs.create_backup"
    )
    rerun_id = pool.run_estate("night2", targets=lost)
    rerun = pool.wait_final(rerun_id, timeout=300)
    assert rerun["state"]["type"] == "COMPLETED", (rerun["state"], pool.children(rerun_id))
    creates_after = Counter(
        e["path"] for e in pool.control("GET", "requests") if e["operation"] == "vbs.create_backup"
    )
    assert creates_after == creates_before  # no second create
    state = pool.control("GET", "state")["projects"]
    for p in PROJECTS:
        night2 = [b for b in state[p.id]["backups"] if "plan=night2 " in (b.get("description") or "")]
        assert Counter(b["volume_id"] for b in night2) == Counter(p.volumes()), p.target  # one each

    # The ledger: the re-run settled the dead runs' attempts from the cloud (the backups they asked for
    # are theirs: succeeded, one attempt per disk), under each target's name.
    with psycopg.connect(pool.ledger_url.replace("postgresql+psycopg", "postgresql")) as db:
        rerun_children = ", ".join(repr(c["id"]) for c in pool.children(rerun_id).values())
        rows = db.execute(
            "SELECT r.target, d.volume_id, d.status, d.attempt, d.created_by_us FROM disk_backups d "
            "JOIN runs r ON r.id = d.run_id "
            f"WHERE d.plan_name = 'night2' AND r.flow_run_id IN ({rerun_children})"
        ).fetchall()
    assert sorted({row[0] for row in rows}) == lost
    assert sorted(row[1] for row in rows) == sorted(
        v for p in PROJECTS if p.target in lost for v in p.volumes()
    )
    assert {row[2:] for row in rows} == {("succeeded", 1, True)}


def test_a_target_that_does_not_finish_in_time_is_cancelled_and_fails_the_parent(pool: Estate):
    pool.control("POST", "settings", {"job_base_seconds": 30 * 86400})  # jobs of a virtual month
    parent_id = pool.run_estate("night3", targets=["gamma"], timeout_minutes=0.5)

    parent = pool.wait_final(parent_id, timeout=240)

    assert parent["state"]["type"] == "FAILED", parent["state"]
    message = parent["state"]["message"]
    assert (
        "0 of 1 targets ok" in message and "gamma TimedOut: not finished after 0.5 min: cancelled" in message
    )
    child = pool.children(parent_id)["gamma"]
    child = pool.wait_final(child["id"], timeout=120)  # its worker stops it
    assert child["state"]["type"] == "CANCELLED", child["state"]
