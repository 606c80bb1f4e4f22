"""Estate benchmark: P projects x N disks in ONE account whose gateway allows R requests/s, backed up (pool)
by `estate-nightly` over a Prefect process work pool with W workers sharing the account's Prefect global
rate limit, and (one) by one Python process calling the P `estate-target` flows one after the other with
only its own rate limiter. Figures: makespan ratio pool / one, requests per disk, 429s, the account's
achieved and busiest rates, peak RSS per worker and of the one process.

    .venv/bin/python -m bench.estate_fleet [--projects 3] [--disks-per-project 1000] [--rate 10]
                                           [--workers 2] [--mode pool|one|both] [--speed 100]
                                           [--poll 30] [--seed 7] [--probe 30] [--keep DIR]

Every part is real and in its own process, as in tests/server/test_estate_pool.py: Prefect's server on a
fresh PostgreSQL database (bench/prefect_server.py), the ledger on another (one fresh database per mode),
`vbs-backup emulator` serving the fleet (the projects of bench/nightly_fleet.py's `make_fleet`, one seed
each, all with `account: acme`), its gateway limiting the account to `--rate` req/s with a burst of one
second's worth (POST /_emulator/rate_limit {"account": "acme", ...}: overshoot comes back as 429s), and
`vbs-backup blocks register` per project. Each mode starts from a reset emulator (same fleet, empty
request log, the account's bucket full) and an empty ledger.

* one: a child process (`python -m bench.estate_fleet --one-process-child ESTATE RESULT`) runs
  `estate_target(target)` for every target in turn, with VBS_BACKUP_MAX_REQUESTS_PER_SECOND = rate and no
  Prefect limit for the account (deleted if it exists): the process's own limiter alone paces it.
* pool: `vbs-backup estate limits --file estate.yaml --rate R` (one global rate limit for the account),
  `prefect work-pool create vbs-backup --type process`, `prefect --no-prompt deploy --name estate-nightly
  --name estate-target` from the repository, W `prefect worker start --pool vbs-backup --limit 4` (each
  with PREFECT_API_URL, VBS_BACKUP_DATABASE_URL, VBS_BACKUP_MAX_REQUESTS_PER_SECOND = rate and
  PREFECT_WORKER_QUERY_SECONDS = 1, so that picking a run up costs a second, not Prefect's default 10),
  then one `estate-nightly` run (parameters {"estate": <path>}) through the REST API. Before the workers
  start, `--probe` seconds of a probe: one process per target takes slots of a separate Prefect limit with
  the account's numbers as fast as it gets them (`AccountBudget`), which gives the rate Prefect's limit
  itself hands out on this server and machine, nothing else running: the ceiling of the pool's rate.

Measured: the makespan three ways (Prefect's states: the parent's start -> end, or the one process's first
run start -> last run end; wall clock: submitted -> seen final, or the process's start -> exit; the cloud's
view: first -> last request), requests per disk and 429s from the emulator's request log, the account's
achieved rate and its busiest 1 s and 5 s windows against burst + rate x T, every disk backed up exactly
once (the emulator's state) and the ledger's rows, and the peak RSS (VmHWM, sampled every 0.5 s) of each
worker, of every flow-run process it starts (found by PREFECT__FLOW_RUN_ID), and of the one process; and
PostgreSQL's connections by database at their peak (the server is shared: every flow-run process keeps a
ledger pool of its own). `--keep DIR` keeps every log and the emulator's request logs (requests-*.json).

Time: jobs last 61 + 1.5 s/GiB virtual seconds (at most 15.6 real seconds at `--speed 100`) while 3,000
disks at 10 req/s take over 300 s of requests: the makespan measures the account's API budget, not the
jobs (bench/nightly_fleet.py, "Speed"). A benchmark, not a test: it asserts nothing about time, and exits
non-zero only when a mode could not run to the end.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.nightly_fleet import make_fleet, make_plan
from bench.prefect_server import (
    DEFAULT_ADMIN_URL,
    _descendants,
    drop_database,
    ensure_database,
    mask_url,
    prefect_server_sync,
)

REPO = Path(__file__).resolve().parents[1]
ACCOUNT = "acme"  # the fleet's account and the estate's: one gateway bucket, one Prefect limit
POOL = "vbs-backup"  # prefect.yaml's work pool
WORKER_LIMIT = 4  # `prefect worker start --limit`: the parent and three children fit on one worker
WORKER_QUERY_SECONDS = 1  # how often a worker asks for runs (Prefect's default: 10 s)
SAMPLE_SECONDS = 0.5  # RSS sampling period
PG_PREFECT_DB = "vbsb_bench_estate_prefect"
PG_LEDGER_DB = {"pool": "vbsb_bench_estate_ledger_pool", "one": "vbsb_bench_estate_ledger_one"}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
MODES = ("one", "pool")  # the order of `--mode both`: the one process first, before any worker runs


# ---------------------------------------------------------------------------------------------------------
# The fleet and the estate


@dataclass(frozen=True)
class Project:
    target: str
    id: str
    ak: str
    sk: str

    @property
    def credentials(self) -> str:
        return f"cred-{self.target}"


def projects(n: int) -> list[Project]:
    return [
        Project(
            target=f"bench-{i}",
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"vbsb-estate-bench-{i}").hex,
            ak=f"BENCHAK{i:013d}",
            sk=f"bench-only-secret-{i}",  # a local emulator key; never printed
        )
        for i in range(1, n + 1)
    ]


def estate_fleet(args: argparse.Namespace, chosen: list[Project]) -> dict[str, Any]:
    """`make_fleet`'s project once per target (seed, seed + 1, ...: different disk ids and sizes), each
    with its own id and keys, all in account `acme`."""
    fleet: dict[str, Any] | None = None
    for index, p in enumerate(chosen):
        one = make_fleet(args.servers, args.disks_per_server, args.seed + index)
        project = one["projects"][0]
        project.update(id=p.id, name=p.target, account=ACCOUNT, access_keys=[{"ak": p.ak, "sk": p.sk}])
        if fleet is None:
            fleet = one
        else:
            fleet["projects"].append(project)
    assert fleet is not None
    return fleet


def estate_doc(args: argparse.Namespace, chosen: list[Project]) -> dict[str, Any]:
    """One target per project, all in account `acme`, each with nightly_fleet's plan (every server, all
    servers and jobs in flight at once, poll = --poll virtual seconds, keep_last 7)."""
    plan_args = argparse.Namespace(
        servers=args.servers, disks=args.disks_per_server, speed=args.speed, poll=args.poll
    )
    plan = make_plan(plan_args).model_dump(mode="json", exclude_defaults=True)
    return {
        "name": "bench-estate",
        "targets": [
            {
                "name": p.target,
                "cloud": "huaweicloud",
                "region": "eu-west-0",
                "project_id": p.id,
                "credentials": p.credentials,
                "account": ACCOUNT,
                "plans": [plan],
            }
            for p in chosen
        ],
    }


def volumes_of(fleet: dict[str, Any]) -> dict[str, set[str]]:
    return {p["id"]: {d["id"] for s in p["servers"] for d in s["disks"]} for p in fleet["projects"]}


# ---------------------------------------------------------------------------------------------------------
# Processes


def clean_env(**extra: str) -> dict[str, str]:
    """Ours without any Prefect or vbs-backup setting, quiet and unbuffered, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "VBS_BACKUP_"))}
    env.update({"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def bin_path(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@dataclass
class Child:
    """A child process in its own process group, its output in a log file."""

    name: str
    process: subprocess.Popen
    log: Path
    started: float  # time.time()

    @classmethod
    def start(cls, name: str, args: list[str], *, env: dict[str, str], cwd: Path, logs: Path) -> Child:
        log = logs / f"{name}.log"
        started = time.time()
        with log.open("wb") as out:
            process = subprocess.Popen(
                args,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return cls(name, process, log, started)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM its group, SIGKILL after `timeout`; then SIGKILL any descendant that left the group."""
        left = [pid for pid in _descendants(self.process.pid) if pid != self.process.pid]
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        for pid in left:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def run_command(args: list[str], env: dict[str, str], *, cwd: Path = REPO, timeout: float = 300) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:4])} ... exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def wait_for(what: str, check: Callable[[], Any], *, timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


# ---------------------------------------------------------------------------------------------------------
# Peak RSS of a process tree


def _status_kib(pid: int) -> dict[str, int]:
    values = {}
    with suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, number = line.split()[:2]
                values[key.rstrip(":")] = int(number)
    return values


def _flow_run_of(pid: int) -> str | None:
    """The flow run a process executes: PREFECT__FLOW_RUN_ID in its environment (the process worker's
    `python -m prefect.engine`), or a UUID argument."""
    with suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                return item.split(b"=", 1)[1].decode()
    with suppress(OSError):
        for arg in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            with suppress(ValueError):
                return str(uuid.UUID(arg.decode()))
    return None


@dataclass
class ProcPeak:
    pid: int
    root: str  # the watched process it descends from (a worker, the one process)
    flow_run_id: str | None
    command: str
    rss_kib: int = 0  # the largest VmRSS sampled
    hwm_kib: int = 0  # the last VmHWM read (the kernel's peak, also between samples)

    @property
    def peak_mib(self) -> float:
        return max(self.rss_kib, self.hwm_kib) / 1024


class RssSampler:
    """Every `interval` s: VmRSS and VmHWM of each watched process and of all its live descendants."""

    def __init__(self, interval: float = SAMPLE_SECONDS) -> None:
        self.interval = interval
        self.roots: dict[str, int] = {}
        self.procs: dict[int, ProcPeak] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()  # the last word

    def watch(self, name: str, pid: int) -> None:
        with self._lock:
            self.roots[name] = pid
        self.sample()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            roots = dict(self.roots)
            for root, root_pid in roots.items():
                for pid in _descendants(root_pid):
                    status = _status_kib(pid)
                    if not status:
                        continue
                    peak = self.procs.get(pid)
                    if peak is None:
                        with suppress(OSError):
                            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                        peak = self.procs[pid] = ProcPeak(
                            pid, root, _flow_run_of(pid), command.decode(errors="replace")[:200]
                        )
                    peak.rss_kib = max(peak.rss_kib, status.get("VmRSS", 0))
                    peak.hwm_kib = max(peak.hwm_kib, status.get("VmHWM", 0))

    def of(self, root: str) -> list[ProcPeak]:
        with self._lock:
            return [p for p in self.procs.values() if p.root == root]


class PgConnections:
    """Every second, PostgreSQL's connections by database (pg_stat_activity), kept at their peak: ours
    (Prefect's database, the ledger) against everyone's and `max_connections` (the server is shared)."""

    def __init__(self, url: str = DEFAULT_ADMIN_URL, interval: float = 1.0) -> None:
        self.url, self.interval = url, interval
        self.peak: Counter[str] = Counter()  # database -> most connections seen at once
        self.peak_total = 0
        self.peak_at: dict[str, int] = {}  # the database counts when the total peaked
        self.max_connections: int | None = None
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pg-connections", daemon=True)

    def __enter__(self) -> PgConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, autocommit=True, connect_timeout=10) as db:
                row = db.execute("SHOW max_connections").fetchone()
                self.max_connections = int(row[0]) if row else None
                while not self._stop.wait(self.interval):
                    counts: dict[str, int] = dict(
                        db.execute(
                            "SELECT coalesce(datname, '(none)'), count(*) FROM pg_stat_activity "
                            "WHERE backend_type = 'client backend' GROUP BY 1"
                        ).fetchall()
                    )
                    for name, n in counts.items():
                        self.peak[name] = max(self.peak[name], n)
                    if sum(counts.values()) > self.peak_total:
                        self.peak_total, self.peak_at = sum(counts.values()), counts
        except Exception as exc:  # a figure lost, not the run
            self.error = f"{type(exc).__name__}: {exc}"

    def describe(self, ours: dict[str, str]) -> str:
        """`ours`: database -> what it is."""
        if self.error:
            return f"not measured ({self.error})"
        mine = ", ".join(f"{what} {self.peak.get(db, 0)}" for db, what in ours.items())
        others = {db: n for db, n in self.peak_at.items() if db not in ours}
        return (
            f"peak by database: {mine}; all clients at once at most {self.peak_total} of max_connections "
            f"{self.max_connections} (then: ours {sum(n for db, n in self.peak_at.items() if db in ours)}, "
            f"others {sum(others.values())} {others if others else ''})"
        )


# ---------------------------------------------------------------------------------------------------------
# The emulator's request log


def busiest_window(times: list[float], span: float) -> int:
    """The most requests that arrived within any `span` seconds."""
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] > span:
            start += 1
        most = max(most, end - start + 1)
    return most


@dataclass
class CloudView:
    """What the emulator saw of one mode."""

    log: list[dict[str, Any]]
    state: dict[str, Any]
    volumes: dict[str, set[str]]  # project id -> its disks

    @property
    def times(self) -> list[float]:
        return sorted(e["at"] for e in self.log)

    @property
    def account_times(self) -> list[float]:
        return sorted(e["at"] for e in self.log if e.get("account") == ACCOUNT)

    @property
    def span(self) -> float:
        times = self.times
        return times[-1] - times[0] if len(times) > 1 else 0.0

    @property
    def throttled(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["status"] == 429]

    def by_operation(self) -> Counter[str]:
        return Counter(e.get("operation") or "(no route)" for e in self.log)

    def per_second(self) -> dict[int, tuple[int, int]]:
        """Second since the first request -> (requests of the account, of them 429)."""
        times = self.account_times
        if not times:
            return {}
        origin = times[0]
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for e in self.log:
            if e.get("account") == ACCOUNT:
                second = int(e["at"] - origin)
                counts[second][0] += 1
                counts[second][1] += e["status"] == 429
        return {s: (n, t) for s, (n, t) in sorted(counts.items())}

    def backups(self) -> tuple[int, int, int, Counter[str]]:
        """(disks, disks with exactly one backup, disks with more than one, backups by status)."""
        once = more = 0
        statuses: Counter[str] = Counter()
        for project_id, volumes in self.volumes.items():
            project = self.state["projects"].get(project_id, {})
            per_volume = Counter(b["volume_id"] for b in project.get("backups", []))
            statuses.update(b["status"] for b in project.get("backups", []))
            once += sum(1 for v in volumes if per_volume[v] == 1)
            more += sum(1 for v in volumes if per_volume[v] > 1)
        return sum(len(v) for v in self.volumes.values()), once, more, statuses


# ---------------------------------------------------------------------------------------------------------
# One mode's result


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class ModeResult:
    mode: str
    ok: bool = False
    error: str | None = None
    runs: list[dict[str, Any]] = field(default_factory=list)  # Prefect's flow runs (the parent first)
    prefect_makespan: float | None = None
    wall: float | None = None
    cloud: CloudView | None = None
    ledger: dict[str, Any] = field(default_factory=dict)
    rss: dict[str, list[ProcPeak]] = field(default_factory=dict)  # root -> its processes
    root_pids: dict[str, int] = field(default_factory=dict)  # root -> its own pid
    client_lines: list[str] = field(default_factory=list)  # the runs' "cloud API: ..." log lines
    pg: str | None = None  # PostgreSQL's connections during the mode
    notes: list[str] = field(default_factory=list)


def read_ledger(url: str) -> dict[str, Any]:
    from sqlmodel import Session, select

    from vbs_backup.ledger import DiskBackup, Run, make_engine

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(Run)).all()
            rows = session.exec(select(DiskBackup)).all()
    except Exception as exc:  # no tables: no run opened its ledger
        return {"error": type(exc).__name__}
    finally:
        engine.dispose()
    return {
        "runs": Counter(r.status.value for r in runs),
        "disks": Counter(r.status.value for r in rows),
        "errors": Counter(r.error_code for r in rows if r.error_code),
    }


CLIENT_LINE = re.compile(
    r"(Flow run '[^']*').*?(cloud API: .*|shared API budget: .*|account \S+: .*|account \S+ has no shared.*)$"
)


def client_lines(text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        match = CLIENT_LINE.search(line)
        if match:
            found.append(f"{match.group(1)}: {match.group(2)[:200]}")
    return found


# ---------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    logs: Path
    projects: list[Project]
    fleet: dict[str, Any]
    estate_path: Path
    endpoint: str
    api: httpx.Client  # Prefect's REST API
    emulator: httpx.Client
    api_url: str
    cli_env: dict[str, str]  # the operator's shell: PREFECT_API_URL, PREFECT_HOME
    children: list[Child] = field(default_factory=list)
    hiccups: list[str] = field(default_factory=list)  # Prefect's 5xx answers to the benchmark

    def control(self, method: str, path: str, json_body: Any = None) -> Any:
        response = self.emulator.request(method, f"/_emulator/{path}", json=json_body, timeout=120)
        response.raise_for_status()
        return response.json()

    def fresh_cloud(self) -> None:
        """The fleet again, nothing else: no backups, empty request log, the account's bucket full."""
        self.control("POST", "reset", self.fleet)
        burst = max(1, int(self.args.rate))
        self.control("POST", "rate_limit", {"account": ACCOUNT, "rate": self.args.rate, "burst": burst})

    def cloud_view(self, mode: str) -> CloudView:
        """The emulator's request log and state now; the log also saved as requests-<mode>.json."""
        log = self.control("GET", "requests")
        (self.work / f"requests-{mode}.json").write_text(json.dumps(log))
        return CloudView(log, self.control("GET", "state"), volumes_of(self.fleet))

    def run_env(self, ledger_url: str) -> dict[str, str]:
        """A flow-running process's environment: Prefect's server, the ledger, the client's rate."""
        return {
            **self.cli_env,
            "VBS_BACKUP_DATABASE_URL": ledger_url,
            "VBS_BACKUP_MAX_REQUESTS_PER_SECOND": f"{self.args.rate:g}",
            # The runs at once (parent + children) x 8 x 1.33 and Prefect's 40 stay under PostgreSQL's 100
            # (README, "An estate over a work pool"); the default 24 per run exhausted it.
            "VBS_BACKUP_DATABASE_POOL_SIZE": "8",
        }

    def prefect(self, method: str, path: str, json_body: Any = None, *, ok: tuple[int, ...] = ()) -> Any:
        """A call to Prefect's REST API, retried for up to a minute on 5xx and connection errors (a busy
        server answers 503, e.g. when PostgreSQL has no connection left): the benchmark watches, it must
        not die of a hiccup the flows survive. Statuses in `ok` are returned as they are."""
        deadline = time.monotonic() + 60
        while True:
            try:
                response = self.api.request(method, path, json=json_body)
                if response.status_code < 500 or response.status_code in ok:
                    break
                problem = f"{response.status_code} {response.text[:200]}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(f"Prefect's server: {method} {path}: {problem}")
            self.hiccups.append(f"{time.strftime('%H:%M:%S')} {method} {path}: {problem[:120]}")
            time.sleep(1)
        if response.status_code not in ok:
            response.raise_for_status()
        return response.json() if response.content else None

    def flow_run(self, flow_run_id: str) -> dict[str, Any]:
        return self.prefect("GET", f"/flow_runs/{flow_run_id}")

    def delete_account_limit(self) -> bool:
        path = f"/v2/concurrency_limits/vbs-backup-account-{ACCOUNT}"
        self.prefect("DELETE", path, ok=(200, 204, 404))
        return self.api.get(path).status_code == 404

    def fresh_ledger(self, mode: str) -> str:
        ensure_database(DEFAULT_ADMIN_URL, name=PG_LEDGER_DB[mode], fresh=True)
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_LEDGER_DB[mode]}"


def run_one(bench: Bench) -> ModeResult:
    """The old way: one process, the targets one after the other, its own limiter alone."""
    result = ModeResult("one")
    ledger_url = bench.fresh_ledger("one")
    if not bench.delete_account_limit():
        raise RuntimeError(f"the Prefect limit vbs-backup-account-{ACCOUNT} could not be deleted")
    bench.fresh_cloud()
    out = bench.work / "one-process.json"
    with PgConnections() as pg, RssSampler() as sampler:
        child = Child.start(
            "one-process",
            [
                sys.executable,
                "-m",
                "bench.estate_fleet",
                "--one-process-child",
                str(bench.estate_path),
                str(out),
            ],
            env=bench.run_env(ledger_url),
            cwd=REPO,
            logs=bench.logs,
        )
        bench.children.append(child)
        sampler.watch("one-process", child.process.pid)
        try:
            child.process.wait(bench.args.timeout)
        except subprocess.TimeoutExpired:
            result.error = f"the one process did not finish within {bench.args.timeout:g} s"
        ended = time.time()
    result.pg = pg.describe({PG_PREFECT_DB: "Prefect", PG_LEDGER_DB["one"]: "ledger"})
    result.rss["one-process"] = sampler.of("one-process")
    result.root_pids["one-process"] = child.process.pid
    result.wall = ended - child.started
    if result.error is None and child.process.returncode != 0:
        result.error = f"the one process exited {child.process.returncode}:\n{child.tail()}"
    if out.exists():
        done = json.loads(out.read_text())
        result.runs = [bench.flow_run(r["flow_run_id"]) for r in done["runs"] if r.get("flow_run_id")]
        result.notes.append(
            "flow calls: "
            + ", ".join(f"{r['target']} {r['end'] - r['start']:.1f} s {r['state']}" for r in done["runs"])
        )
    starts = [parse_time(r.get("start_time")) for r in result.runs]
    ends = [parse_time(r.get("end_time")) for r in result.runs]
    if result.runs and all(starts) and all(ends):
        result.prefect_makespan = max(e for e in ends if e) - min(s for s in starts if s)
    result.cloud = bench.cloud_view("one")
    result.ledger = read_ledger(ledger_url)
    result.client_lines = client_lines(child.text())
    result.ok = result.error is None and all(r["state"]["type"] == "COMPLETED" for r in result.runs)
    return result


PROBE_LIMIT = "vbsb-bench-probe"


def probe_limit(bench: Bench) -> str:
    """How many slots a second a Prefect rate limit like the account's (same rate and burst) hands out on
    this server and machine, to as many processes as there are targets, each taking slots one after the
    other as fast as it is given them (`AccountBudget`, as a target's run does), with nothing else
    running: the ceiling of the pool's request rate. The first 5 s (the full bucket) are left out."""
    args = bench.args
    body = {"name": PROBE_LIMIT, "limit": max(1, int(args.rate)), "slot_decay_per_second": args.rate}
    bench.prefect("DELETE", f"/v2/concurrency_limits/{PROBE_LIMIT}", ok=(404,))
    bench.prefect("POST", "/v2/concurrency_limits/", {**body, "active": True})
    outs = [bench.work / f"probe-{i}.json" for i in range(args.projects)]
    probes = [
        Child.start(
            f"probe-{i}",
            [
                sys.executable,
                "-m",
                "bench.estate_fleet",
                "--probe-child",
                PROBE_LIMIT,
                f"{args.probe:g}",
                str(out),
            ],
            env=bench.cli_env,
            cwd=REPO,
            logs=bench.logs,
        )
        for i, out in enumerate(outs)
    ]
    bench.children += probes
    for probe in probes:
        probe.process.wait(args.probe + 120)
    bench.prefect("DELETE", f"/v2/concurrency_limits/{PROBE_LIMIT}", ok=(404,))
    grants = sorted(t for out in outs if out.exists() for t in json.loads(out.read_text()))
    if len(grants) < 2 or grants[-1] - grants[0] < 10:
        return f"not measured ({len(grants)} slots)"
    low, high = grants[0] + 5, grants[-1]
    steady = sum(1 for t in grants if t > low) / (high - low)
    return (
        f"{steady:.2f} slots/s ({steady / args.rate:.0%} of {args.rate:g}) to {len(probes)} processes over "
        f"{high - low:.0f} s, {len(grants)} slots in all"
    )


def probe_child(name: str, seconds: float, out: str) -> int:
    import asyncio

    from vbs_backup.tasks.budget import AccountBudget

    async def main() -> list[float]:
        budget, grants = AccountBudget(name), []
        end = time.time() + seconds
        while time.time() < end:
            await budget.acquire()
            grants.append(time.time())
        return grants

    Path(out).write_text(json.dumps(asyncio.run(main())))
    return 0


def run_pool(bench: Bench) -> ModeResult:
    """The estate over a work pool: one account limit on Prefect's server, W workers, one parent run."""
    args, env = bench.args, bench.cli_env
    result = ModeResult("pool")
    ledger_url = bench.fresh_ledger("pool")
    cli, prefect = bin_path("vbs-backup"), bin_path("prefect")
    limits = run_command(
        [cli, "estate", "limits", "--file", str(bench.estate_path), "--rate", f"{args.rate:g}"], env
    )
    result.notes.append("estate limits: " + " / ".join(line.strip() for line in limits.splitlines() if line))
    if "id" not in (bench.prefect("GET", f"/work_pools/{POOL}", ok=(404,)) or {}):
        run_command([prefect, "work-pool", "create", POOL, "--type", "process"], env)
    run_command(
        [prefect, "--no-prompt", "deploy", "--name", "estate-nightly", "--name", "estate-target"], env
    )
    if args.probe > 0:
        result.notes.append(f"Prefect rate limit alone: {probe_limit(bench)}")
    bench.fresh_cloud()

    worker_env = {**bench.run_env(ledger_url), "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS)}
    names = [f"w{i}" for i in range(1, args.workers + 1)]
    workers: dict[str, Child] = {}
    with PgConnections() as pg, RssSampler() as sampler:
        for name in names:
            command = [
                prefect,
                "worker",
                "start",
                "--pool",
                POOL,
                "--name",
                name,
                "--limit",
                str(WORKER_LIMIT),
            ]
            workers[name] = child = Child.start(name, command, env=worker_env, cwd=REPO, logs=bench.logs)
            bench.children.append(child)
            sampler.watch(name, child.process.pid)

        def online() -> bool:
            workers_found = bench.prefect("POST", f"/work_pools/{POOL}/workers/filter", {})
            found = {w["name"] for w in workers_found if w.get("status") == "ONLINE"}
            return set(names) <= found

        wait_for("the workers to be online", online, timeout=180)
        deployment = bench.prefect("GET", "/deployments/name/estate-nightly/estate-nightly")
        submitted = time.time()
        response = bench.api.post(  # once: a retried POST could start two runs
            f"/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"estate": str(bench.estate_path)}},
        )
        response.raise_for_status()
        parent_id = response.json()["id"]

        def final() -> dict[str, Any] | None:
            run = bench.flow_run(parent_id)
            return run if run["state"]["type"] in FINAL else None

        try:
            parent = wait_for("the estate-nightly run to end", final, timeout=args.timeout, every=0.5)
            result.wall = time.time() - submitted
        except TimeoutError as exc:
            result.error = str(exc)
            parent = bench.flow_run(parent_id)
        children = bench.prefect(
            "POST", "/flow_runs/filter", {"flow_runs": {"parent_flow_run_id": {"any_": [parent_id]}}}
        )
        children.sort(key=lambda r: r["parameters"].get("target", {}).get("name", ""))
        result.runs = [parent, *children]
        time.sleep(2 * SAMPLE_SECONDS)  # the flow-run processes' last samples
    result.pg = pg.describe({PG_PREFECT_DB: "Prefect", PG_LEDGER_DB["pool"]: "ledger"})
    for name in names:
        result.rss[name] = sampler.of(name)
        result.root_pids[name] = workers[name].process.pid
    for name in names:
        workers[name].stop()
    start, end = parse_time(parent.get("start_time")), parse_time(parent.get("end_time"))
    if start and end:
        result.prefect_makespan = end - start
    result.cloud = bench.cloud_view("pool")
    result.ledger = read_ledger(ledger_url)
    for name in names:
        result.client_lines += [f"{name}: {line}" for line in client_lines(workers[name].text())]
    result.ok = result.error is None and all(r["state"]["type"] == "COMPLETED" for r in result.runs)
    if parent["state"]["type"] != "COMPLETED":
        result.notes.append(f"parent {parent['state']['type']}: {parent['state'].get('message')}")
    return result


def run_bench(args: argparse.Namespace, work: Path) -> tuple[dict[str, ModeResult], dict[str, Any]]:
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    chosen = projects(args.projects)
    fleet = estate_fleet(args, chosen)
    (work / "fleet.yaml").write_text(yaml.safe_dump(fleet, sort_keys=False))
    estate_path = work / "estate.yaml"
    estate_path.write_text(yaml.safe_dump(estate_doc(args, chosen), sort_keys=False))
    info: dict[str, Any] = {"load_before": os.getloadavg(), "started": time.time()}
    results: dict[str, ModeResult] = {}
    prefect_url = ensure_database(DEFAULT_ADMIN_URL, name=PG_PREFECT_DB, fresh=True)
    emulator = Child.start(
        "emulator",
        [
            bin_path("vbs-backup"),
            "emulator",
            "--fleet",
            str(work / "fleet.yaml"),
            "--speed",
            f"{args.speed:g}",
            "--port",
            "0",
        ],
        env=clean_env(),
        cwd=work,
        logs=logs,
    )
    children: list[Child] = [emulator]
    try:

        def ready() -> str | None:
            if emulator.process.poll() is not None:
                raise RuntimeError(f"the emulator exited {emulator.process.returncode}:\n{emulator.tail()}")
            return next(
                (
                    line.split("=", 1)[1]
                    for line in emulator.text().splitlines()
                    if line.startswith("VBS_BACKUP_ENDPOINT=")
                ),
                None,
            )

        endpoint = wait_for("the emulator's ready line", ready, timeout=120)
        with (
            prefect_server_sync(
                database_url=prefect_url, home=work / "prefect-server", log_path=logs / "prefect-server.log"
            ) as server,
            httpx.Client(base_url=server.api_url, timeout=60) as api,
            httpx.Client(base_url=endpoint, timeout=60) as emulator_http,
        ):
            info["prefect_start"] = server.start_seconds
            cli_env = clean_env(PREFECT_API_URL=server.api_url, PREFECT_HOME=str(work / "client-home"))
            bench = Bench(
                args,
                work,
                logs,
                chosen,
                fleet,
                estate_path,
                endpoint,
                api,
                emulator_http,
                server.api_url,
                cli_env,
            )
            bench.children = children
            info["settings"] = bench.control("GET", "settings")
            for p in chosen:
                run_command(
                    [
                        bin_path("vbs-backup"),
                        "blocks",
                        "register",
                        p.credentials,
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
                    {**cli_env, "VBS_BACKUP_SK": p.sk},
                )
            for mode in MODES:
                if args.mode not in (mode, "both"):
                    continue
                print(f"[{time.strftime('%H:%M:%S')}] mode {mode}: running", file=sys.stderr, flush=True)
                started = time.monotonic()
                runner = run_one if mode == "one" else run_pool
                try:
                    results[mode] = runner(bench)
                except Exception as exc:  # reported; the other mode still runs
                    results[mode] = ModeResult(mode, error=f"{type(exc).__name__}: {exc}")
                print(
                    f"[{time.strftime('%H:%M:%S')}] mode {mode}: done in {time.monotonic() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
            info["hiccups"] = bench.hiccups
        info["prefect_rss_mib"] = server.peak_rss_mib
    finally:
        for child in reversed(children):
            child.stop()
        for name in (PG_PREFECT_DB, *PG_LEDGER_DB.values()):
            with suppress(Exception):
                drop_database(DEFAULT_ADMIN_URL, name=name)
    info["load_after"] = os.getloadavg()
    info["elapsed"] = time.time() - info["started"]
    info["prefect_url"] = mask_url(prefect_url)
    return results, info


# ---------------------------------------------------------------------------------------------------------
# The one process (mode "one"), in a child of the benchmark


def one_process_child(estate_path: str, out: str) -> int:
    """Run every target's `estate_target` flow in turn, in this process; write what happened to `out`."""
    import asyncio

    async def main() -> list[dict[str, Any]]:
        from bench.prefect_server import drain_prefect_client
        from vbs_backup.estate import load_estate
        from vbs_backup.flows.estate import estate_target

        estate = load_estate(estate_path)
        runs = []
        for target in estate.targets:
            start = time.time()
            state = await estate_target(target, estate=estate.name, return_state=True)
            runs.append(
                {
                    "target": target.name,
                    "flow_run_id": str(state.state_details.flow_run_id or "") or None,
                    "state": state.type.value,
                    "message": state.message,
                    "start": start,
                    "end": time.time(),
                }
            )
        await drain_prefect_client()
        return runs

    runs = asyncio.run(main())
    Path(out).write_text(json.dumps({"runs": runs}))
    return 0 if all(r["state"] == "COMPLETED" for r in runs) else 1


# ---------------------------------------------------------------------------------------------------------
# The report


def mib(peaks: list[ProcPeak]) -> str:
    return f"{max(p.peak_mib for p in peaks):,.0f} MiB" if peaks else "-"


def role_of(result: ModeResult) -> dict[str, str]:
    """flow run id -> "parent" or the target's name."""
    roles = {}
    for run in result.runs:
        target = run.get("parameters", {}).get("target")
        roles[run["id"]] = target["name"] if isinstance(target, dict) else "parent"
    return roles


def report(args: argparse.Namespace, results: dict[str, ModeResult], info: dict[str, Any]) -> None:
    disks = args.projects * args.disks_per_project
    settings = info.get("settings", {})
    burst = max(1, int(args.rate))
    print(
        f"\n== estate: {args.projects} projects x {args.disks_per_project} disks "
        f"({args.servers} servers x {args.disks_per_server}) = {disks:,} disks, one account =="
    )
    if settings:
        fixed = settings["job_start_seconds"] + settings["job_base_seconds"]
        print(
            f"gateway: account {ACCOUNT} {args.rate:g} req/s (burst {burst}); client limiter "
            f"{args.rate:g} req/s per process; speed {args.speed:g}x: jobs {fixed:g} + "
            f"{settings['job_seconds_per_gib']:g} s/GiB virtual = at most "
            f"{(fixed + settings['job_seconds_per_gib'] * 1000) / args.speed:.1f} real s; "
            f"poll {args.poll:g} virtual s"
        )
    print(
        f"pool: {args.workers} workers (--limit {WORKER_LIMIT}, query every {WORKER_QUERY_SECONDS} s), "
        f"Prefect global rate limit vbs-backup-account-{ACCOUNT} ({args.rate:g}/s, limit {burst}); "
        f"Prefect on PostgreSQL (healthy in {info.get('prefect_start') or 0:.0f} s), ledger on PostgreSQL"
    )
    load_before, load_after = info.get("load_before"), info.get("load_after")
    if load_before and load_after:
        print(
            f"machine: {os.cpu_count()} CPUs; load average before {load_before[0]:.2f}/{load_before[1]:.2f}/"
            f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}; "
            f"whole benchmark {info.get('elapsed', 0):.0f} s"
        )

    for mode in MODES:
        result = results.get(mode)
        if result is None:
            continue
        print(f"\n-- mode {mode}: {'a work pool' if mode == 'pool' else 'one process, targets in turn'} --")
        if result.error:
            print(f"  ERROR: {result.error}")
        for note in result.notes:
            print(f"  {note}")
        for run in result.runs:
            state = run["state"]
            start, end = parse_time(run.get("start_time")), parse_time(run.get("end_time"))
            created = parse_time(run.get("created"))
            took = f"{end - start:7.1f} s" if start and end else "      -"
            waited = f", started {start - created:.1f} s after created" if start and created else ""
            name = role_of(result).get(run["id"], "?")
            message = (state.get("message") or "")[:110]
            print(f"  {name:<10} {state['type']:<10} {took}{waited}; {message}")
        cloud = result.cloud
        if cloud is None:
            continue
        span = cloud.span
        print(
            f"  makespan: Prefect {fmt(result.prefect_makespan)}, wall {fmt(result.wall)}, "
            f"cloud first -> last request {span:.1f} s"
        )
        print(f"  timeline: {timeline(result)}")
        ops = ", ".join(f"{op} {n / disks:.3f}" for op, n in cloud.by_operation().most_common())
        print(f"  requests: {len(cloud.log):,} = {len(cloud.log) / disks:.3f} per disk ({ops})")
        throttled = Counter(e.get("operation") for e in cloud.throttled)
        print(f"  429: {len(cloud.throttled)} {dict(throttled) if throttled else ''}")
        acme = cloud.account_times
        if len(acme) > 1:
            achieved = len(acme) / (acme[-1] - acme[0])
            print(
                f"  account {ACCOUNT}: {len(acme):,} requests, {achieved:.2f} req/s achieved "
                f"({achieved / args.rate:.0%} of {args.rate:g}); rate floor {len(acme) / args.rate:.1f} s"
            )
            buckets = Counter(int((t - acme[0]) // 30) for t in acme)
            profile = " ".join(f"{buckets.get(b, 0) / 30:.1f}" for b in range(max(buckets) + 1))
            print(f"  account's req/s per 30 s from its first request: {profile}")
            windows = ", ".join(
                f"{t:g} s: {busiest_window(acme, t)} (<= {burst + args.rate * t:g})" for t in (1.0, 2.0, 5.0)
            )
            print(f"  busiest windows: {windows}")
        if cloud.throttled:
            seconds = cloud.per_second()
            bad = sorted({s for s, (_, t) in seconds.items() if t})
            shown = sorted({x for s in bad for x in range(s - 2, s + 3) if x in seconds})[:40]
            print(
                "  per second around the 429s (second: requests/429s): "
                + ", ".join(f"{s}: {seconds[s][0]}/{seconds[s][1]}" for s in shown)
            )
        total, once, more, statuses = cloud.backups()
        print(
            f"  emulator: {once:,} of {total:,} disks with exactly one backup, {more} with more; backups "
            f"{dict(statuses)}"
        )
        ledger = result.ledger
        print(
            f"  ledger: runs {dict(ledger.get('runs', {}))}, disks {dict(ledger.get('disks', {}))}"
            + (f", errors {dict(ledger['errors'])}" if ledger.get("errors") else "")
            + (f" ({ledger['error']})" if ledger.get("error") else "")
        )
        roles = role_of(result)
        for root, peaks in result.rss.items():
            root_peak = next((p for p in peaks if p.pid == result.root_pids.get(root)), None)
            flows = [p for p in peaks if p.flow_run_id in roles and p is not root_peak]
            parts = [f"itself {root_peak.peak_mib:,.0f} MiB" if root_peak else "itself -"]
            for p in sorted(flows, key=lambda p: roles[p.flow_run_id or ""]):
                parts.append(f"{roles[p.flow_run_id or '']} {p.peak_mib:,.0f} MiB")
            others = [p for p in peaks if p is not root_peak and p not in flows]
            if others:
                parts.append(f"{len(others)} other process(es) up to {mib(others)}")
            print(f"  peak RSS {root}: " + ", ".join(parts))
        if result.pg:
            print(f"  PostgreSQL connections: {result.pg}")
        for line in result.client_lines:
            print(f"  client: {line}")

    if info.get("prefect_rss_mib"):
        print(
            f"\nPrefect's server: peak RSS {info['prefect_rss_mib']:,.0f} MiB (its processes' VmHWM summed)"
        )
    hiccups = info.get("hiccups") or []
    if hiccups:
        print(f"Prefect's server answered the benchmark {len(hiccups)} time(s) with an error, retried:")
        for line in hiccups[:10]:
            print(f"  {line}")
    one, pool = results.get("one"), results.get("pool")
    if one and pool and one.cloud and pool.cloud:
        print("\n== pool / one ==")
        for label, a, b in (
            ("makespan (Prefect's states)", pool.prefect_makespan, one.prefect_makespan),
            ("makespan (wall clock)", pool.wall, one.wall),
            ("makespan (first -> last request)", pool.cloud.span, one.cloud.span),
        ):
            ratio = a / b if a and b else float("nan")
            print(f"  {label:<36} {fmt(a)} / {fmt(b)} = {ratio:.2f}")
        for label, result in (("pool", pool), ("one", one)):
            assert result.cloud is not None
            n = len(result.cloud.log)
            print(
                f"  {label}: {n / disks:.3f} req/disk, {len(result.cloud.throttled)} 429s, "
                f"{n / result.cloud.span if result.cloud.span else 0:.2f} req/s, floor {n / args.rate:.1f} s "
                f"({n:,} requests / {args.rate:g} req/s)"
            )


def timeline(result: ModeResult) -> str:
    """Seconds from the first run's start: each run's start and end, the first and last cloud request."""
    events: list[tuple[float, str]] = []
    roles = role_of(result)
    for run in result.runs:
        for key, what in (("start_time", "start"), ("end_time", "end")):
            at = parse_time(run.get(key))
            if at is not None:
                events.append((at, f"{roles.get(run['id'], '?')} {what}"))
    if result.cloud is not None and result.cloud.log:
        times = result.cloud.times
        events += [(times[0], "first request"), (times[-1], "last request")]
    if not events:
        return "-"
    events.sort()
    origin = events[0][0]
    return ", ".join(f"{what} +{at - origin:.1f}" for at, what in events)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


# ---------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.estate_fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--projects", type=int, default=3, help="projects (targets), all in one account")
    parser.add_argument("--disks-per-project", type=int, default=1000, help="disks in each project")
    parser.add_argument(
        "--disks-per-server", type=int, default=4, help="disks per server, system disk included"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="the account's gateway rate, requests/s")
    parser.add_argument("--workers", type=int, default=2, help="workers of the pool (mode pool)")
    parser.add_argument("--mode", choices=("pool", "one", "both"), default="both")
    parser.add_argument("--speed", type=float, default=100.0, help="virtual seconds per real second")
    parser.add_argument("--poll", type=float, default=30.0, help="poll interval in virtual seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the first project (then +1 each)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds one mode may take")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work directory (logs) here")
    parser.add_argument(
        "--probe",
        type=float,
        default=30.0,
        help="first measure the Prefect rate limit's own rate for this many seconds (0: not)",
    )
    parser.add_argument("--one-process-child", nargs=2, metavar=("ESTATE", "RESULT"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--probe-child", nargs=3, metavar=("LIMIT", "SECONDS", "RESULT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.one_process_child or args.probe_child:
        return args
    if args.projects < 1 or args.workers < 1:
        parser.error("--projects and --workers must be at least 1")
    if not 1 <= args.disks_per_server <= 24 or args.disks_per_project % args.disks_per_server:
        parser.error("--disks-per-project must be a multiple of --disks-per-server (1-24)")
    args.servers = args.disks_per_project // args.disks_per_server
    if min(args.rate, args.speed, args.poll) <= 0:
        parser.error("--rate, --speed and --poll must be positive")
    return args


def _interrupted(signum: int, frame: object) -> None:
    """The first SIGTERM stops the benchmark like Ctrl-C; later ones are ignored, so the clean-up runs."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one_process_child:
        return one_process_child(*args.one_process_child)
    if args.probe_child:
        name, seconds, out = args.probe_child
        return probe_child(name, float(seconds), out)
    signal.signal(signal.SIGTERM, _interrupted)  # as Ctrl-C: the clean-up runs either way
    work = Path(tempfile.mkdtemp(prefix="vbsb-estate-bench-"))
    results: dict[str, ModeResult] = {}
    try:
        results, info = run_bench(args, work)
        report(args, results, info)
    finally:
        if args.keep is not None:
            shutil.copytree(work, args.keep, dirs_exist_ok=True)
            print(f"\nwork directory kept in {args.keep}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    wanted = [m for m in MODES if args.mode in (m, "both")]
    return 0 if all(m in results and results[m].error is None for m in wanted) else 1


if __name__ == "__main__":
    sys.exit(main())
