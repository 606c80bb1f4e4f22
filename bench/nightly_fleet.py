"""Fleet benchmark of the nightly flow: N servers x D disks, the emulator over a real socket, a gateway
rate limit, and backup jobs that take (scaled) time.

    .venv/bin/python -m bench.nightly_fleet [--servers 250] [--disks 4] [--rate 10] [--speed 100] [--poll 30]

Owned here: the generated fleet, the set-up of one run (emulator on 127.0.0.1 with a `ScaledClock`, the
gateway's token bucket, `VBS_BACKUP_*` settings, Prefect in ephemeral mode), the lower bound that the rate
limit and the job durations put on the makespan, and the printed report. It is a benchmark, not a test:
nothing about time is asserted, and it exits non-zero only when the flow crashed.

Time: the emulator's jobs last `job_start_seconds + job_base_seconds + job_seconds_per_gib * size` virtual
seconds; at `--speed 100` a 1,561-virtual-second job takes 15.6 real seconds. The flow itself waits in real
time, so its poll interval is `--poll` virtual seconds divided by the speed. Its per-disk deadline
(`disk_deadline_minutes`, real minutes) is left at the plan's default and is not exercised here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import random
import re
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from vbs_backup.emulator import CloudState, EmulatorServer, LoggedRequest, ScaledClock, create_app
from vbs_backup.plan import BackupPlan

PROJECT_ID = "b0b5e1c7f00d4a5e9c3b2a1d0e9f8c7b"
AK = "BENCHAK0000000000001"
SK = "bench-only-secret-key"  # a local emulator key; still never printed
MAX_PAGE = 1000  # largest page of the ECS server list (§5a), the EVS disk list (§5a) and backup lists (§2.5)
SYSTEM_DISK_GIB = 40
MAX_DISKS = 24  # /dev/vda .. /dev/vdx
MIN_POLL_SECONDS = 0.1  # the plan's lower limit for poll_interval_seconds
MAX_SERVERS = 10_000
# The plan's own caps (BackupPlan): servers and jobs in flight at once; not caps on the fleet's size.
PLAN_MAX_SERVERS = 1000
PLAN_MAX_JOBS = 5000


# ---------------------------------------------------------------------------------------------------------
# The fleet


def make_fleet(servers: int, disks: int, seed: int) -> dict[str, Any]:
    """One project of `servers` servers tagged backup=nightly, each with a 40 GiB system disk and
    `disks - 1` data disks of 20-1000 GiB (multiples of 10); the same seed gives the same fleet."""
    rng = random.Random(seed)

    def new_id() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    fleet_servers = []
    for n in range(1, servers + 1):
        name = f"bench-{n:04d}"
        server_disks = []
        for d in range(disks):
            disk: dict[str, Any] = {
                "id": new_id(),
                "name": f"{name}-{'sys' if d == 0 else f'data{d}'}",
                "size_gb": SYSTEM_DISK_GIB if d == 0 else rng.randrange(20, 1001, 10),
                "device": f"/dev/vd{chr(ord('a') + d)}",
            }
            if d == 0:
                disk["boot_index"] = 0
            server_disks.append(disk)
        fleet_servers.append(
            {"id": new_id(), "name": name, "tags": {"backup": "nightly"}, "disks": server_disks}
        )
    project = {
        "id": PROJECT_ID,
        "name": "eu-west-0",
        "access_keys": [{"ak": AK, "sk": SK}],
        # 1,000 disks would exactly fill the default backup quota: the quota is not what is measured here
        "quotas": {"backups": -1, "backup_gigabytes": -1},
        "servers": fleet_servers,
    }
    return {"region": "eu-west-0", "settings": {"job_mode": "time"}, "projects": [project]}


def disk_sizes(fleet: dict[str, Any]) -> list[int]:
    return [d["size_gb"] for p in fleet["projects"] for s in p["servers"] for d in s["disks"]]


# ---------------------------------------------------------------------------------------------------------
# The lower bound


@dataclass(frozen=True)
class LowerBound:
    """What no client could beat, in real seconds from the first request.

    Requests are one resource served by the gateway's token bucket: request number k (1-based) cannot be
    sent before max(0, k - burst) / rate. An ideal client first reads the fleet in the largest pages (ECS
    servers, EVS disks), then creates the backups longest job first, so job i (0-based) cannot be created
    before request pages + i + 1, and cannot end before that plus its duration (critical path). It then
    needs one backups-list page per 1,000 of the run's backups, read after the last job ended, to learn
    that every job ended and how (the list shows `available` or `error`; retention reuses it): discovery
    pages + creates + those list pages is the fewest requests a run can make (request floor). The bound is
    the larger of the two.

    The model before fleet scale (`old_min_requests`) charged one `get_job` per job on top: kept beside
    the new one for comparison.
    """

    discovery_pages: int
    critical_path: float
    critical_job: int  # its index in longest-first order
    critical_job_seconds: float
    min_requests: int
    request_floor: float
    old_min_requests: int
    old_request_floor: float

    @property
    def seconds(self) -> float:
        return max(self.critical_path, self.request_floor)


def earliest(k: int, rate: float, burst: float) -> float:
    """The earliest time request number k (1-based) can pass a token bucket that starts full."""
    return max(0.0, k - burst) / rate


def lower_bound(durations: list[float], *, servers: int, rate: float, burst: float) -> LowerBound:
    """`durations`: each job's real duration in seconds."""
    jobs = len(durations)
    pages = math.ceil(servers / MAX_PAGE) + math.ceil(jobs / MAX_PAGE)
    ordered = sorted(durations, reverse=True)
    ends = [earliest(pages + i + 1, rate, burst) + d for i, d in enumerate(ordered)]
    worst = max(range(jobs), key=ends.__getitem__)
    list_pages = math.ceil(jobs / MAX_PAGE)
    min_requests = pages + jobs + list_pages
    old = pages + 2 * jobs + list_pages
    return LowerBound(
        discovery_pages=pages,
        critical_path=ends[worst],
        critical_job=worst,
        critical_job_seconds=ordered[worst],
        min_requests=min_requests,
        request_floor=earliest(min_requests, rate, burst),
        old_min_requests=old,
        old_request_floor=earliest(old, rate, burst),
    )


# ---------------------------------------------------------------------------------------------------------
# Measuring


class RequestTimes:
    """ASGI wrapper around the emulator: when the first and the last cloud request (not the control API)
    arrived, on the process's monotonic clock, so the flow body is timed apart from Prefect's start; and
    when each volume's create arrived (its body names the volume), for the per-server create skew."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.first: float | None = None
        self.last: float | None = None
        self.creates: dict[str, float] = {}  # volume id -> arrival of its first create

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cloud = scope["type"] == "http" and not scope["path"].startswith("/_emulator")
        if cloud and self.first is None:
            self.first = time.monotonic()
        if cloud and scope["method"] == "POST" and scope["path"].endswith("/cloudbackups"):
            receive = self._noting_create(receive, time.monotonic())
        await self.app(scope, receive, send)
        if cloud:
            self.last = time.monotonic()

    def _noting_create(self, receive: Receive, arrived: float) -> Receive:
        body = bytearray()

        async def noting() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    try:
                        volume = json.loads(body)["backup"]["volume_id"]
                    except (ValueError, KeyError, TypeError):
                        return message
                    self.creates.setdefault(volume, arrived)
            return message

        return noting


def create_skew(fleet: dict[str, Any], creates: dict[str, float]) -> list[float]:
    """Per server with at least two disks created: last create - first create of its disks, seconds."""
    skews = []
    for server in (s for p in fleet["projects"] for s in p["servers"]):
        times = [creates[d["id"]] for d in server["disks"] if d["id"] in creates]
        if len(times) >= 2:
            skews.append(max(times) - min(times))
    return skews


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


@dataclass
class LoopLag:
    """How late a 100 ms sleep wakes up on the flow's event loop: a starved loop shows here. A stall
    between the client's rate limiter and the socket makes requests leave in a clump, which the gateway
    answers with 429s."""

    interval: float = 0.1
    samples: list[tuple[float, float]] = field(default_factory=list)  # (woke at, seconds late)

    async def run(self) -> None:
        while True:
            start = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.samples.append((now, now - start - self.interval))

    def describe(self, origin: float | None) -> str:
        if not self.samples:
            return "no samples"
        lags = sorted(lag for _, lag in self.samples)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        stalled = sum(lag for lag in lags if lag > 0.5)
        text = (
            f"mean {sum(lags) / len(lags) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {lags[-1] * 1000:.0f} ms; {stalled:.1f} s in stalls > 0.5 s"
        )
        worst = sorted(self.samples, key=lambda s: -s[1])[:3]
        if origin is not None and worst and worst[0][1] > 0.5:
            text += "; worst ending at " + ", ".join(
                f"{at - origin:+.1f} s ({lag:.1f} s)" for at, lag in sorted(worst) if lag > 0.5
            )
            text += " from the first request"
        return text


@dataclass
class Timings:
    prefect_start: float = 0.0
    flow_call: float = 0.0  # flow called -> flow returned
    before_first_request: float = 0.0
    makespan: float = 0.0  # first -> last cloud request
    after_last_request: float = 0.0
    first_request_at: float | None = None  # monotonic


@dataclass
class Result:
    """Everything one run measured, for the report."""

    fleet: dict[str, Any]
    plan: BackupPlan
    settings: dict[str, Any] = field(default_factory=dict)  # the emulator's
    timings: Timings = field(default_factory=Timings)
    lag: LoopLag = field(default_factory=LoopLag)
    log: list[LoggedRequest] = field(default_factory=list)
    backups: Counter[str] = field(default_factory=Counter)
    jobs: Counter[str] = field(default_factory=Counter)
    ledger: dict[str, Any] = field(default_factory=dict)
    flow_state: Any = None
    crashed_with: BaseException | None = None
    history: tuple[int, int, float] | None = None  # Prefect: recorded, expected, seconds after the flow
    creates: dict[str, float] = field(default_factory=dict)  # volume -> first create's arrival
    prefect_rss_mib: float | None = None  # a dedicated server's peak RSS (None: ephemeral, a child)

    @property
    def crashed(self) -> bool:
        if self.crashed_with is not None or self.flow_state is None or self.flow_state.is_crashed():
            return True
        return self.ledger.get("run") in (None, "crashed")


# ---------------------------------------------------------------------------------------------------------
# One run


def prepare_prefect(home: Path) -> None:
    """Ephemeral Prefect in a private home, quiet and without telemetry; before Prefect is imported."""
    os.environ.pop("PREFECT_API_URL", None)  # ephemeral mode, whatever the caller's environment says
    os.environ.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )


def point_flow_at(url: str, ledger_url: str, rate: float) -> None:
    for key in ("VBS_BACKUP_USERNAME", "VBS_BACKUP_PASSWORD", "VBS_BACKUP_DOMAIN"):
        os.environ.pop(key, None)
    os.environ.update(
        {
            "VBS_BACKUP_ENDPOINT": url,
            "VBS_BACKUP_REGION": "eu-west-0",
            "VBS_BACKUP_PROJECT_ID": PROJECT_ID,
            "VBS_BACKUP_AK": AK,
            "VBS_BACKUP_SK": SK,
            "VBS_BACKUP_DATABASE_URL": ledger_url,
            # our client throttles itself to the gateway's rate
            "VBS_BACKUP_MAX_REQUESTS_PER_SECOND": str(rate),
        }
    )


def make_plan(args: argparse.Namespace) -> BackupPlan:
    poll = max(MIN_POLL_SECONDS, args.poll / args.speed)
    return BackupPlan.model_validate(
        {
            "name": "bench",
            "selection": {"tags": {"backup": "nightly"}},  # every server of the fleet
            "max_concurrent_servers": min(args.servers, PLAN_MAX_SERVERS),
            "max_concurrent_jobs": min(args.servers * args.disks, PLAN_MAX_JOBS),
            "poll_interval_seconds": poll,
            "retention": {"keep_last": 7},
        }
    )


PG_PREFECT_DB = "vbsb_bench_prefect"
PG_LEDGER_DB = "vbsb_bench_ledger"


async def run_once(args: argparse.Namespace, workdir: Path) -> Result:
    """One run: Prefect's ephemeral server (SQLite), or with `--postgres` a dedicated `prefect server
    start` on a fresh PostgreSQL database and the ledger on another one (bench/prefect_server.py)."""
    if not args.postgres:
        return await _run_once(args, workdir, None, f"sqlite:///{workdir / 'ledger.sqlite'}")
    from bench.prefect_server import ensure_database_async, prefect_server

    prefect_db = await ensure_database_async(name=PG_PREFECT_DB, fresh=True)
    ledger_db = await ensure_database_async(name=PG_LEDGER_DB, fresh=True)
    ledger_url = ledger_db.replace("postgresql+asyncpg://", "postgresql://")  # the ledger's driver: psycopg
    async with prefect_server(database_url=prefect_db, home=workdir / "prefect-server") as server:
        os.environ["PREFECT_API_URL"] = server.api_url  # before this process imports Prefect
        result = await _run_once(args, workdir, server, ledger_url)
    result.timings.prefect_start = server.start_seconds or 0.0
    result.prefect_rss_mib = server.peak_rss_mib
    return result


async def _run_once(args: argparse.Namespace, workdir: Path, dedicated: Any, ledger_url: str) -> Result:
    from prefect.client.orchestration import get_client
    from prefect.server.api.server import SubprocessASGIServer

    from vbs_backup.flows.nightly import nightly_backup

    result = Result(fleet=make_fleet(args.servers, args.disks, args.seed), plan=make_plan(args))
    timings = result.timings
    start = time.monotonic()
    async with get_client() as client:  # starts the ephemeral server, so the flow is timed without it
        await client.hello()
    timings.prefect_start = time.monotonic() - start
    # the ephemeral server just started (a per-process singleton), or the dedicated one
    api_url = dedicated.api_url if dedicated is not None else SubprocessASGIServer().api_url

    state = CloudState(clock=ScaledClock(args.speed))
    times = RequestTimes(create_app(state, fleet=result.fleet))
    server = EmulatorServer(times).start()
    try:
        assert server.url is not None
        with httpx.Client(base_url=server.url + "/_emulator", timeout=30) as control:
            gateway = {"rate": args.gateway_rate, "burst": max(1, int(args.gateway_rate))}
            control.post("/rate_limit", json=gateway).raise_for_status()
            result.settings = control.get("/settings").json()
        point_flow_at(server.url, ledger_url, args.rate)

        lag_task = asyncio.create_task(result.lag.run())
        start = time.monotonic()
        try:
            result.flow_state = await nightly_backup(result.plan, return_state=True)
        except Exception as exc:  # reported; the only non-zero exit
            result.crashed_with = exc
        end = time.monotonic()
        lag_task.cancel()

        timings.flow_call = end - start
        if times.first is not None and times.last is not None:
            timings.first_request_at = times.first
            timings.before_first_request = times.first - start
            timings.makespan = times.last - times.first
            timings.after_last_request = end - times.last
        result.creates = dict(times.creates)
        state.tick()  # a scaled clock moves without requests: count jobs as they are now
        with state.locked():
            result.log = list(state.request_log)
            project = state.projects[PROJECT_ID]
            result.backups = Counter(b.status for b in project.backups.values())
            result.jobs = Counter(j.status for j in project.jobs.values() if j.job_type == "bksCreateBackup")
    finally:
        server.stop()

    flow_run_id = result.flow_state.state_details.flow_run_id if result.flow_state is not None else None
    if flow_run_id is not None:
        # a task per disk and a retention task per server, plus discover-servers, check-quota,
        # list-backups (twice), reconcile, confirm and publish-summary
        expected = len(disk_sizes(result.fleet)) + args.servers + 7
        result.history = await prefect_history(api_url, flow_run_id, expected)
    if dedicated is None:
        SubprocessASGIServer().stop()  # now, not at exit: its peak RSS then shows in RUSAGE_CHILDREN
    result.ledger = read_ledger(ledger_url)
    return result


async def prefect_history(
    api_url: str, flow_run_id: Any, expected: int, timeout: float = 120.0
) -> tuple[int, int, float]:
    """How many of the flow run's task runs Prefect's server has recorded as completed, asked until all
    `expected` are there or `timeout` passes. Task-run states reach the server as events, recorded in
    batches, so the history lags the flow; stopping the server before it caught up loses the rest."""
    body = {
        "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
    }
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        while True:
            response = await http.post("/task_runs/count", json=body)
            recorded = int(response.json()) if response.status_code == 200 else -1
            waited = time.monotonic() - start
            if recorded >= expected or recorded < 0 or waited > timeout:
                return recorded, expected, waited
            await asyncio.sleep(0.5)


def read_ledger(url: str) -> dict[str, Any]:
    from sqlmodel import Session, select

    from vbs_backup.ledger import DiskBackup, Run, make_engine

    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(Run)).all()
            rows = session.exec(select(DiskBackup)).all()
    except Exception as exc:  # no tables: the run never opened its ledger
        return {"run": None, "error": type(exc).__name__}
    finally:
        engine.dispose()
    return {
        "run": runs[-1].status.value if runs else None,
        "disks": Counter(r.status.value for r in rows),
        "errors": Counter(r.error_code for r in rows if r.error_code),
        # ids and URLs blanked, so that one cause counts once
        "reasons": Counter(
            re.sub(r"\S*://\S*|[0-9a-f-]{32,36}", "...", r.error_reason)[:140] for r in rows if r.error_reason
        ),
    }


# ---------------------------------------------------------------------------------------------------------
# The report


def row(label: str, seconds: float, note: str = "") -> str:
    return f"  {label:<44}{seconds:9.1f}  {note}".rstrip()


def report(args: argparse.Namespace, result: Result) -> None:
    fleet, settings, plan, timings = result.fleet, result.settings, result.plan, result.timings
    log, ledger, flow_state, lag = result.log, result.ledger, result.flow_state, result.lag
    sizes = disk_sizes(fleet)
    n_disks = len(sizes)
    fixed = settings["job_start_seconds"] + settings["job_base_seconds"]
    virtual = [fixed + settings["job_seconds_per_gib"] * size for size in sizes]
    # the bound is at the rate the gateway really allows (the client cannot beat it), with its burst
    real_rate, real_burst = min(args.rate, args.gateway_rate), max(1, int(args.gateway_rate))
    bound = lower_bound(
        [v / args.speed for v in virtual], servers=args.servers, rate=real_rate, burst=real_burst
    )
    by_op = Counter(e.operation or "(no route)" for e in log)
    throttled = Counter(e.operation or "(no route)" for e in log if e.status == 429)
    other_errors = sum(1 for e in log if (e.status >= 400 and e.status != 429) or e.status == 0)

    def virtual_min(real: float) -> str:
        return f"= {real * args.speed / 60:,.1f} virtual min"

    print(f"\n== nightly_backup: {args.servers} servers x {args.disks} disks = {n_disks} disks ==")
    print(
        f"fleet: {sum(sizes):,} GiB, data disks 20-1000 GiB (seed {args.seed}); jobs {min(virtual):.0f}-"
        f"{max(virtual):.0f} virtual s ({fixed:g} + {settings['job_seconds_per_gib']:g} s/GiB)"
    )
    print(
        f"speed {args.speed:g}x; gateway {args.gateway_rate:g} req/s (burst {real_burst}), client configured "
        f"for {args.rate:g} req/s; poll {args.poll:g} virtual s = {plan.poll_interval_seconds:g} real s; "
        f"servers/jobs in parallel {plan.max_concurrent_servers}/{plan.max_concurrent_jobs}"
    )

    print("\ntime, real seconds")
    print(row(f"Prefect {prefect_kind(args)} start", timings.prefect_start, "(before the flow is called)"))
    print(row("flow called -> first cloud request", timings.before_first_request, "(flow run, ledger)"))
    print(row("MAKESPAN: first -> last cloud request", timings.makespan, virtual_min(timings.makespan)))
    print(row("last cloud request -> flow returned", timings.after_last_request, "(summary, ledger)"))
    print(row("flow call in all", timings.flow_call))

    print("\nlower bound, real seconds from the first request")
    print(
        f"  model: one token bucket ({real_rate:g} req/s, burst {real_burst}) serves every request; an ideal "
        f"client reads the\n  fleet in {bound.discovery_pages} page(s) of {MAX_PAGE} (servers, disks), "
        "creates the longest job first, and learns\n  how every job ended from one backups-list page per "
        f"{MAX_PAGE} backups, read after the last job ended."
    )
    request = bound.discovery_pages + bound.critical_job + 1
    print(
        row(
            "critical path (create + job duration)",
            bound.critical_path,
            f"job #{bound.critical_job} ({bound.critical_job_seconds:.1f} s) created as request {request}",
        )
    )
    print(row(f"request floor ({bound.min_requests} requests)", bound.request_floor))
    print(row("LOWER BOUND (the larger)", bound.seconds, virtual_min(bound.seconds)))
    ratio = timings.makespan / bound.seconds if bound.seconds else float("nan")
    print(f"  {'MAKESPAN / LOWER BOUND':<44}{ratio:9.2f}")
    old_bound = max(bound.critical_path, bound.old_request_floor)
    print(
        row(
            f"old model's bound ({bound.old_min_requests} requests)",
            old_bound,
            f"(+1 get_job per job); makespan / it = {timings.makespan / old_bound:.2f}",
        )
    )
    sent = earliest(len(log), real_rate, real_burst)
    print(row(f"rate floor of the {len(log)} requests actually sent", sent))

    print("\nAPI requests (emulator request log)")
    print(f"  {'operation':<30}{'requests':>9}{'per disk':>10}")
    for op, n in sorted(by_op.items(), key=lambda item: -item[1]):
        print(f"  {op:<30}{n:>9}{n / n_disks:>10.3f}")
    print(f"  {'total':<30}{len(log):>9}{len(log) / n_disks:>10.3f}")
    achieved = len(log) / timings.makespan if timings.makespan else 0.0
    print(
        f"  429 throttled: {sum(throttled.values())} {dict(throttled) if throttled else ''}; "
        f"other errors/drops: {other_errors}"
    )
    print(f"  achieved rate: {achieved:.2f} req/s over the makespan (client configured for {args.rate:g})")

    skews = create_skew(fleet, result.creates)
    if skews:
        print(
            f"\nper-server create skew (last - first create of a server's disks, {len(skews)} servers): "
            f"median {percentile(skews, 0.5):.2f} s, p99 {percentile(skews, 0.99):.2f} s, "
            f"max {max(skews):.2f} s"
        )

    print("\nmemory and event loop")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"  peak RSS of this process: {own:,.0f} MiB (flow, client, ledger AND the emulator's thread)")
    if result.prefect_rss_mib is not None:
        print(
            "  peak RSS of the Prefect server on PostgreSQL (its processes): "
            f"{result.prefect_rss_mib:,.0f} MiB"
        )
    else:
        print(f"  peak RSS of the Prefect ephemeral server (a child process): {child:,.0f} MiB")
    print(f"  per disk: {own * 1024 / n_disks:,.0f} KiB of this process's peak RSS")
    if tracemalloc.is_tracing():
        print(f"  tracemalloc peak: {tracemalloc.get_traced_memory()[1] / 2**20:,.0f} MiB (Python heap)")
    print(f"  flow's event-loop lag (100 ms sleeps): {lag.describe(timings.first_request_at)}")

    print("\noutcome")
    if result.crashed_with is not None:
        print(f"  flow CRASHED: {type(result.crashed_with).__name__}: {result.crashed_with}")
    elif flow_state is not None:
        message = flow_state.message or ""
        shown = message if len(message) <= 300 else message[:300] + f"... ({len(message)} characters)"
        print(f"  flow state: {flow_state.type.value}: {shown}")
    errors = f", errors {dict(ledger['errors'])}" if ledger.get("errors") else ""
    print(f"  ledger: run {ledger.get('run')}, disks {dict(ledger.get('disks', {}))}{errors}")
    for reason, n in ledger.get("reasons", Counter()).most_common(3):
        print(f"    {n} x {reason}")
    print(f"  emulator: backups {dict(result.backups)}, create jobs {dict(result.jobs)}")
    if result.history is not None:
        recorded, expected, seconds = result.history
        print(
            f"  Prefect history: {recorded} of {expected} task runs recorded as completed, "
            f"{seconds:.1f} s after the flow returned"
        )


def prefect_kind(args: argparse.Namespace) -> str:
    return "server on PostgreSQL" if args.postgres else "ephemeral server (SQLite)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.nightly_fleet", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--servers", type=int, default=250, help=f"servers in the fleet (1-{MAX_SERVERS})")
    parser.add_argument(
        "--disks", type=int, default=4, help=f"disks per server, system disk included (1-{MAX_DISKS})"
    )
    parser.add_argument("--rate", type=float, default=10.0, help="the client's configured rate, requests/s")
    parser.add_argument(
        "--gateway-rate",
        type=float,
        default=None,
        help="the gateway's real rate, requests/s (default: --rate)",
    )
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="Prefect's server and the ledger on PostgreSQL at 127.0.0.1:5432 (fresh databases)",
    )
    parser.add_argument("--speed", type=float, default=100.0, help="virtual seconds per real second")
    parser.add_argument("--poll", type=float, default=30.0, help="poll interval in virtual seconds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the fleet's ids and disk sizes")
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also trace Python allocations (slows the run down)"
    )
    parser.add_argument("--verbose", action="store_true", help="show the flow's and the client's warnings")
    args = parser.parse_args(argv)
    if not 1 <= args.servers <= MAX_SERVERS:
        parser.error(f"--servers must be between 1 and {MAX_SERVERS}")
    if not 1 <= args.disks <= MAX_DISKS:
        parser.error(f"--disks must be between 1 and {MAX_DISKS}")
    if args.gateway_rate is None:
        args.gateway_rate = args.rate
    if min(args.rate, args.gateway_rate, args.speed, args.poll) <= 0:
        parser.error("--rate, --gateway-rate, --speed and --poll must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.verbose:  # one retry warning per 429 would bury the report; the 429s are counted in it
        logging.getLogger("vbs_backup").setLevel(logging.ERROR)
    if args.tracemalloc:
        tracemalloc.start()
    with tempfile.TemporaryDirectory(prefix="vbsb-bench-") as tmp:
        workdir = Path(tmp)
        prepare_prefect(workdir / "prefect")
        result = asyncio.run(run_once(args, workdir))
    report(args, result)
    return 1 if result.crashed else 0


if __name__ == "__main__":
    sys.exit(main())
