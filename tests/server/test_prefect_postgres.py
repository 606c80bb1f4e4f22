"""Prefect's server on PostgreSQL (large fleets): `bench.prefect_server` starts `prefect server start` on a
new database, a small flow reports to it from its own process, and its runs land in PostgreSQL's tables.
Also the users' script, `scripts/prefect-server-postgres.sh`, without starting anything (cheap)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from bench.prefect_server import DEFAULT_ADMIN_URL, drop_database, ensure_database, prefect_server_sync
from tests.pg import postgres_url_or_skip

from .conftest import REPO, clean_env

SCRIPT = REPO / "scripts" / "prefect-server-postgres.sh"
TASKS = 3

FLOW = textwrap.dedent(
    f"""
    from prefect import flow, task

    @task
    def double(i: int) -> int:
        return 2 * i

    @flow(name="pg-smoke")
    def smoke(n: int = {TASKS}) -> int:
        return sum(double(i) for i in range(n))

    if __name__ == "__main__":
        state = smoke(return_state=True)
        print("FLOW_RUN", state.state_details.flow_run_id, state.type.value, state.result(), flush=True)
    """
)


@pytest.fixture
def prefect_database() -> Iterator[tuple[str, str]]:
    """A new, empty PostgreSQL database for Prefect's server: (its name, Prefect's URL); dropped after."""
    postgres_url_or_skip()
    name = f"test_prefect_{uuid.uuid4().hex[:12]}"
    url = ensure_database(DEFAULT_ADMIN_URL, name=name, fresh=True)
    try:
        yield name, url
    finally:
        drop_database(DEFAULT_ADMIN_URL, name=name)


def libpq_url(name: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{name}"


@pytest.mark.server
@pytest.mark.postgres
def test_a_flow_s_runs_land_in_postgresql(prefect_database, tmp_path: Path):
    name, url = prefect_database
    assert url == f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    assert ensure_database(DEFAULT_ADMIN_URL, name=name) == url  # already there: kept, same URL
    script = tmp_path / "smoke.py"
    script.write_text(FLOW)

    with prefect_server_sync(database_url=url, home=tmp_path / "home") as server:
        assert server.api_url == f"http://127.0.0.1:{server.port}/api"
        assert server.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] == url
        assert server.start_seconds is not None and server.start_seconds > 0
        # The flow in its own process, as on an operator's machine: only PREFECT_API_URL points it here.
        env = clean_env(**server.client_env, PREFECT_HOME=str(tmp_path / "client-home"))
        done = subprocess.run(
            [sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
        )
        assert done.returncode == 0, done.stdout + done.stderr
        line = next(line for line in done.stdout.splitlines() if line.startswith("FLOW_RUN "))
        _, flow_run_id, state, result = line.split()
        assert (state, result) == ("COMPLETED", str(sum(2 * i for i in range(TASKS))))

        with httpx.Client(base_url=server.api_url, timeout=30) as api:
            flow_run = api.get(f"/flow_runs/{flow_run_id}").json()
            assert flow_run["state"]["type"] == "COMPLETED"
            # Task runs reach the server as events; its recorder writes them shortly after.
            deadline = time.monotonic() + 60
            while True:
                response = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}})
                response.raise_for_status()
                task_runs = response.json()
                if sum(t["state"]["type"] == "COMPLETED" for t in task_runs) == TASKS:
                    break
                assert time.monotonic() < deadline, f"task runs recorded: {task_runs}\n{server.tail()}"
                time.sleep(0.5)
        assert len(task_runs) == TASKS and all(t["name"].startswith("double-") for t in task_runs)

        # ... and they are PostgreSQL's rows, not an SQLite file's.
        assert not list((tmp_path / "home").glob("*.db"))
        with psycopg.connect(libpq_url(name)) as conn:
            tables = {
                row[0]
                for row in conn.execute(
                    "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                )
            }
            assert {"alembic_version", "flow", "flow_run", "task_run", "log", "events"} <= tables
            rows = conn.execute(
                "SELECT count(*) FROM task_run WHERE flow_run_id = %s AND state_type = 'COMPLETED'",
                (flow_run_id,),
            ).fetchone()
            assert rows == (TASKS,)

    # Stopped, with its peak memory read just before.
    assert server.returncode is not None
    assert server.process.poll() is not None
    assert server.peak_rss_bytes is not None and server.peak_rss_bytes > 50 * 2**20
    assert server.pid in server.peak_rss_by_pid


@pytest.mark.postgres
def test_ensure_database_creates_then_drops(tmp_path: Path):
    postgres_url_or_skip()
    name = f"test_prefect_{uuid.uuid4().hex[:12]}"

    def exists() -> bool:
        with psycopg.connect(libpq_url("postgres")) as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None
            )

    try:
        ensure_database(name=name)
        assert exists()
        with psycopg.connect(libpq_url(name), autocommit=True) as conn:
            conn.execute("CREATE TABLE leftover (id int)")
        ensure_database(name=name, fresh=True)  # a clean slate for a benchmark
        with psycopg.connect(libpq_url(name)) as conn:
            assert conn.execute("SELECT to_regclass('leftover')").fetchone() == (None,)
    finally:
        drop_database(name=name)
    assert not exists()
    with pytest.raises(ValueError, match="plain PostgreSQL database name"):
        ensure_database(name='x"; DROP DATABASE test; --')


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], env=clean_env(**env), capture_output=True, text=True, timeout=30
    )


def test_the_users_script_parses_and_explains_itself():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    helped = run_script("--help")
    assert helped.returncode == 0
    assert "PREFECT_PG_DATABASE" in helped.stdout and "PREFECT_SERVER_API_PORT" in helped.stdout
    refused = run_script("--bogus")
    assert refused.returncode == 2 and "unknown argument" in refused.stderr
    bad_name = run_script("--dry-run", PREFECT_PG_DATABASE="x;DROP DATABASE test")
    assert bad_name.returncode == 2 and "plain database name" in bad_name.stderr


def test_the_users_script_never_prints_the_password():
    password = "pw-S3cr3t/with:chars"
    planned = run_script(
        "--dry-run",
        PGPASSWORD=password,
        PGHOST="db.internal",
        PREFECT_PG_DATABASE="prefect_fleet",
        PREFECT_SERVER_API_PORT="4300",
        PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE="7",  # an operator's own value wins
    )
    assert planned.returncode == 0, planned.stderr
    out = planned.stdout + planned.stderr
    assert password not in out and "S3cr3t" not in out
    assert "postgresql+asyncpg://postgres:***@db.internal:5432/prefect_fleet" in out
    assert "PREFECT_SERVER_API_HOST=127.0.0.1" in out and "PREFECT_SERVER_API_PORT=4300" in out
    assert "PREFECT_SERVER_DATABASE_SQLALCHEMY_POOL_SIZE=7" in out
    assert "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE=500" in out
    assert "prefect config set PREFECT_API_URL=http://127.0.0.1:4300/api" in out
