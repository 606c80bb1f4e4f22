"""A dedicated Prefect server for benchmarks and tests, on PostgreSQL (or SQLite), as a child process.

    from bench.prefect_server import ensure_database, prefect_server

    url = ensure_database(name="bench_prefect", fresh=True)   # postgresql+asyncpg://postgres@127.0.0.1:5432/...
    async with prefect_server(database_url=url) as server:     # `prefect server start` on a free port
        os.environ["PREFECT_API_URL"] = server.api_url          # before this process imports Prefect
        ...
    print(server.start_seconds, server.peak_rss_bytes)

Why PostgreSQL: on SQLite, Prefect's server answers 503 "database is locked" under thousands of task runs
(README, "Prefect's server on PostgreSQL"). Nothing here imports Prefect: callers set the environment
first. The server runs in its own process group, with only the Prefect settings given here (the caller's
`PREFECT_*` variables are not inherited), on 127.0.0.1, and the API host and port go through
`PREFECT_SERVER_API_HOST/PORT` rather than `--port` (with `--port` alone the UI keeps calling 4200).
`prefect server start` migrates the database on start (`PREFECT_SERVER_DATABASE_MIGRATE_ON_START`,
default true), so a fresh database needs nothing else: healthy about 15 s after the start on a new
PostgreSQL database (2 cores; up to 40 s while other jobs loaded the machine), about 9 s on an existing one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
STARTUP_TIMEOUT = 120.0  # a fresh PostgreSQL database: about 20 s here, the migrations dominate
STOP_TIMEOUT = 30.0  # SIGTERM, then SIGKILL of the whole process group

# Prefect's database pool, through the environment of the server (prefect/settings/models/server/
# database.py; PostgreSQL only). The server has one engine, hence one pool, per event loop, and
# `prefect server start` runs the API and all its services (task-run recorder, event persister,
# triggers...) on one loop, so these numbers bound its connections. Prefect's defaults: 5 + 10
# connections, a 30 s wait for one, a 10 s statement timeout, a 5 s connect timeout.
POOL_SETTINGS: dict[str, str] = {
    # Measured: 10,000 task runs as fast as one client can start them (about 60 a second, ≈ 190 events a
    # second) held up to 14 connections at once, one short of Prefect's default limit of 15. So 20 kept
    # open, and 20 more in a burst: 40 at most, well under PostgreSQL's default max_connections (100),
    # which leaves room for the ledger's connections on the same PostgreSQL server.
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE": "20",
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_MAX_OVERFLOW": "20",
    # A request waiting for a connection gives up after this (Prefect: 30 s). A queue during a burst is
    # load, not a fault: wait longer rather than answer 500 and have the client retry into the same queue.
    "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_TIMEOUT": "60",
    # The statement timeout (asyncpg's command_timeout, counted on the server's busy event loop; Prefect:
    # 10 s): a flush of 500 task runs (below) took up to 14 s under that load on a busy 2-core machine.
    "PREFECT_SERVER_DATABASE_TIMEOUT": "60",
    # Connecting (Prefect: 5 s): overflow connections are opened exactly when the machine is busiest.
    "PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT": "15",
}

# How the server writes what clients report (both databases). Task runs reach Prefect's server as events
# (a websocket), and the task-run recorder turns them into rows. Its default is one transaction per
# event: on a 2,000-task run here it recorded about 6 task runs a second, so the history was still 30 %
# short 4 minutes after the flow had finished; with batches of 100 it had all of them 29 s after. At
# 10,000 tasks, batches of 500 (and 200 for the event persister) recorded 8,042 task runs, against 4,680
# with 100 (and Prefect's 20). Every
# subscriber of the server's in-memory event bus holds at most 10,000 events (hard-coded); beyond that
# the server logs "Subscription queue is full, dropping message" and those task runs never appear
# (neither database changes that: only faster writes, fewer events, or Prefect's Redis messaging).
SERVICE_SETTINGS: dict[str, str] = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "500",  # Prefect: 1
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",  # s; Prefect: 5 (the tail of a run)
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",  # Prefect: 20
}

_DB_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------
# The database


def mask_url(url: str) -> str:
    """`url` with its password, if any, replaced by `***` (for printing)."""
    return re.sub(r"(://[^/:@]+:)[^/@]*@", r"\1***@", url)


def _libpq_url(url: str) -> str:
    """A URL asyncpg's `connect` accepts: `postgresql://`, whatever SQLAlchemy driver `url` names."""
    return re.sub(r"^postgres(?:ql)?(?:\+\w+)?://", "postgresql://", url)


def database_url(admin_url: str, name: str) -> str:
    """Prefect's SQLAlchemy URL (`postgresql+asyncpg://`) for database `name` on `admin_url`'s server."""
    if not _DB_NAME.fullmatch(name):
        raise ValueError(f"not a plain PostgreSQL database name: {name!r}")
    base = _libpq_url(admin_url)
    match = re.fullmatch(r"postgresql://([^/?#]*)(?:/[^?#]*)?(\?[^#]*)?", base)
    if match is None:
        raise ValueError(f"not a PostgreSQL URL: {mask_url(admin_url)}")
    authority, query = match.group(1), match.group(2) or ""
    return f"postgresql+asyncpg://{authority}/{name}{query}"


async def _ensure_database(admin_url: str, name: str, fresh: bool) -> str:
    import asyncpg  # a dependency of Prefect's server

    url = database_url(admin_url, name)
    conn = await asyncpg.connect(_libpq_url(admin_url), timeout=10)
    try:
        if fresh:
            # WITH (FORCE): also when a server left behind by an interrupted run still holds connections.
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            with suppress(asyncpg.DuplicateDatabaseError):  # created meanwhile by someone else
                await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url


async def _drop_database(admin_url: str, name: str) -> None:
    import asyncpg

    database_url(admin_url, name)  # validates the name
    conn = await asyncpg.connect(_libpq_url(admin_url), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from sync code, also when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def ensure_database(admin_url: str = DEFAULT_ADMIN_URL, *, name: str, fresh: bool = False) -> str:
    """Create PostgreSQL database `name` if missing (`fresh=True`: drop it first, for a clean benchmark),
    connecting with `admin_url` (a role allowed to create databases); returns Prefect's URL for it,
    `postgresql+asyncpg://<same user, password, host, port>/<name>`."""
    return _run(_ensure_database(admin_url, name, fresh))


async def ensure_database_async(admin_url: str = DEFAULT_ADMIN_URL, *, name: str, fresh: bool = False) -> str:
    """`ensure_database` for async callers."""
    return await _ensure_database(admin_url, name, fresh)


def drop_database(admin_url: str = DEFAULT_ADMIN_URL, *, name: str) -> None:
    """Drop database `name` if it exists, closing its connections."""
    _run(_drop_database(admin_url, name))


async def drop_database_async(admin_url: str = DEFAULT_ADMIN_URL, *, name: str) -> None:
    await _drop_database(admin_url, name)


# ---------------------------------------------------------------------------------------------------------
# The server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """`pid` and all its live descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                todo.extend(int(child) for child in children.read_text().split())
    return found


def _vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of a live process (VmHWM), in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class PrefectServer:
    """A running `prefect server start` (the handle the context managers yield).

    Filled at start: `api_url` (`http://127.0.0.1:<port>/api`), `ui_url`, `port`, `home` (its PREFECT_HOME),
    `log_path` (its stdout and stderr), `database_url` (masked; None for SQLite in `home`), `env` (the
    Prefect settings given to it, passwords masked), `process`, `start_seconds` (process start ->
    /api/health answered 200, migrations included). Filled at stop: `peak_rss_bytes` (sum of the VmHWM of
    the server process and of every live descendant, read just before stopping it), `peak_rss_by_pid`,
    `returncode`. `peak_rss_mib`, `pid`, `client_env` ({"PREFECT_API_URL": ...}) and `tail(lines)` help."""

    api_url: str
    ui_url: str
    port: int
    home: Path
    log_path: Path
    database_url: str | None
    env: dict[str, str] = field(repr=False)
    process: subprocess.Popen = field(repr=False)
    start_seconds: float | None = None
    peak_rss_bytes: int | None = None
    peak_rss_by_pid: dict[int, int] = field(default_factory=dict)
    returncode: int | None = None

    @property
    def client_env(self) -> dict[str, str]:
        """What a flow's process needs to report to this server."""
        return {"PREFECT_API_URL": self.api_url}

    @property
    def peak_rss_mib(self) -> float | None:
        return None if self.peak_rss_bytes is None else self.peak_rss_bytes / 2**20

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def peak_rss_now(self) -> dict[int, int]:
        """VmHWM of the server and its live descendants now, by pid."""
        peaks = {}
        for pid in _descendants(self.process.pid):
            if (peak := _vm_hwm_bytes(pid)) is not None:
                peaks[pid] = peak
        return peaks

    def _health(self, response: httpx.Response) -> bool:
        return response.status_code == 200

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {self.process.returncode} before it was healthy "
                f"(log {self.log_path}):\n{self.tail()}"
            )

    def _timed_out(self, timeout: float) -> TimeoutError:
        return TimeoutError(
            f"prefect server not healthy at {self.api_url}/health within {timeout:g} s "
            f"(log {self.log_path}):\n{self.tail()}"
        )

    def wait_healthy(self, timeout: float = STARTUP_TIMEOUT, started: float | None = None) -> None:
        started = time.monotonic() if started is None else started
        with httpx.Client(timeout=2) as client:
            while True:
                self._check_alive()
                with suppress(httpx.HTTPError):
                    if self._health(client.get(f"{self.api_url}/health")):
                        break
                if time.monotonic() - started > timeout:
                    raise self._timed_out(timeout)
                time.sleep(0.25)
        self.start_seconds = time.monotonic() - started

    async def wait_healthy_async(
        self, timeout: float = STARTUP_TIMEOUT, started: float | None = None
    ) -> None:
        started = time.monotonic() if started is None else started
        async with httpx.AsyncClient(timeout=2) as client:
            while True:
                self._check_alive()
                with suppress(httpx.HTTPError):
                    if self._health(await client.get(f"{self.api_url}/health")):
                        break
                if time.monotonic() - started > timeout:
                    raise self._timed_out(timeout)
                await asyncio.sleep(0.25)
        self.start_seconds = time.monotonic() - started

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Record the peak RSS, then SIGTERM the process group; SIGKILL it after `timeout` s."""
        if self.process.poll() is None:
            self.peak_rss_by_pid = self.peak_rss_now()
            self.peak_rss_bytes = sum(self.peak_rss_by_pid.values()) or None
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        # Children that outlived the leader (none expected with one worker): the group goes too.
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.returncode = self.process.returncode


def server_env(
    *,
    port: int,
    home: Path,
    database_url: str | None,
    ui: bool,
    pool: Mapping[str, str] | None,
    services: Mapping[str, str] | None,
    extra_env: Mapping[str, str] | None,
) -> dict[str, str]:
    """The environment of `prefect server start`: ours without any PREFECT_ setting, plus its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_API_HOST": "127.0.0.1",
            "PREFECT_SERVER_API_PORT": str(port),
            "PREFECT_SERVER_UI_ENABLED": "true" if ui else "false",
            "PREFECT_UI_URL": f"http://127.0.0.1:{port}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    if database_url is not None:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url  # alias: PREFECT_API_DATABASE_...
        env.update(POOL_SETTINGS if pool is None else pool)
    env.update(SERVICE_SETTINGS if services is None else services)
    env.update(extra_env or {})
    return env


def _launch(
    database_url: str | None,
    port: int | None,
    home: Path | str | None,
    log_path: Path | str | None,
    ui: bool,
    pool: Mapping[str, str] | None,
    services: Mapping[str, str] | None,
    extra_env: Mapping[str, str] | None,
) -> tuple[PrefectServer, Path | None]:
    own_home = None
    if home is None:
        home = own_home = Path(tempfile.mkdtemp(prefix="prefect-server-"))
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = Path(log_path) if log_path is not None else home / "server.log"
    env = server_env(
        port=port,
        home=home,
        database_url=database_url,
        ui=ui,
        pool=pool,
        services=services,
        extra_env=extra_env,
    )
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start"],
            env=env,
            cwd=home,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    server = PrefectServer(
        api_url=f"http://127.0.0.1:{port}/api",
        ui_url=f"http://127.0.0.1:{port}",
        port=port,
        home=home,
        log_path=log,
        database_url=None if database_url is None else mask_url(database_url),
        env={k: mask_url(v) for k, v in env.items() if k.startswith("PREFECT_")},  # printable
        process=process,
    )
    return server, own_home


def _remove_home(server: PrefectServer, own_home: Path | None) -> None:
    """Remove a temporary PREFECT_HOME, but not after a failed start: its log says why."""
    if own_home is not None and server.start_seconds is not None:
        shutil.rmtree(own_home, ignore_errors=True)


async def drain_prefect_client(timeout: float = 30) -> None:
    """Flush this process's Prefect log and event workers (if Prefect is in use here) into the server.
    Stop a server only after this: a client left with queued logs or events retries for about 80 s."""
    if "prefect.events.worker" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    async def drain() -> None:
        for worker in (APILogWorker, EventsWorker):
            result = worker.drain_all(timeout=timeout)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                await result

    with suppress(Exception):
        await asyncio.wait_for(drain(), timeout + 5)


@asynccontextmanager
async def prefect_server(
    database_url: str | None = None,
    port: int | None = None,
    *,
    home: Path | str | None = None,
    log_path: Path | str | None = None,
    ui: bool = False,
    startup_timeout: float = STARTUP_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    pool: Mapping[str, str] | None = None,
    services: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    drain: bool = True,
) -> AsyncIterator[PrefectServer]:
    """`prefect server start` on 127.0.0.1:`port` (None: a free one), healthy on entry, stopped on exit.

    `database_url`: `postgresql+asyncpg://...` (see `ensure_database`), or None for Prefect's default SQLite
    file in `home`. `home`: its PREFECT_HOME (None: a temporary directory, removed afterwards). `pool`: the
    database pool settings (None: `POOL_SETTINGS`; PostgreSQL only; `{}`: Prefect's defaults). `services`:
    the recorders' batching (None: `SERVICE_SETTINGS`; `{}`: Prefect's defaults). `extra_env`: more
    settings for the server, applied last (e.g. `PREFECT_SERVER_SERVICES_EVENT_PERSISTER_ENABLED=false`).
    `drain`: on exit, first flush this process's Prefect log and event workers into the server.
    Raises TimeoutError / RuntimeError, with the tail of the server's log, when it is not healthy within
    `startup_timeout` s or exits first. Its log: `log_path`, else server.log in `home` (a temporary home
    is removed on exit, unless the server failed to start).
    """
    started = time.monotonic()
    server, own_home = _launch(database_url, port, home, log_path, ui, pool, services, extra_env)
    try:
        await server.wait_healthy_async(startup_timeout, started)
        try:
            yield server
        finally:
            if drain:
                await drain_prefect_client()
    finally:
        await asyncio.to_thread(server.stop, stop_timeout)
        _remove_home(server, own_home)


@contextmanager
def prefect_server_sync(
    database_url: str | None = None,
    port: int | None = None,
    *,
    home: Path | str | None = None,
    log_path: Path | str | None = None,
    ui: bool = False,
    startup_timeout: float = STARTUP_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    pool: Mapping[str, str] | None = None,
    services: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[PrefectServer]:
    """`prefect_server` for sync callers (no draining: run flows in child processes, or drain yourself)."""
    started = time.monotonic()
    server, own_home = _launch(database_url, port, home, log_path, ui, pool, services, extra_env)
    try:
        server.wait_healthy(startup_timeout, started)
        yield server
    finally:
        server.stop(stop_timeout)
        _remove_home(server, own_home)
