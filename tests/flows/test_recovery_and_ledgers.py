"""A run killed halfway is completed by the next run without duplicates; PostgreSQL works as the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from sqlmodel import Session, select

from tests.pg import fresh_schema_url
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.ledger import DiskBackup, Run, make_engine
from vbs_backup.plan import BackupPlan

ROOT = Path(__file__).resolve().parents[2]
PLAN = {"selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 0.2}
RUN_FLOW = (
    "import asyncio, json, sys\n"
    "from vbs_backup.flows.nightly import nightly_backup\n"
    "from vbs_backup.plan import BackupPlan\n"
    "asyncio.run(nightly_backup(BackupPlan.model_validate(json.loads(sys.argv[1]))))\n"
)


def creating(emulator) -> int:
    with emulator.state.lock:
        return sum(
            1 for b in emulator.state.projects[emulator.project_id].backups.values() if b.status == "creating"
        )


def wait_until(condition, what: str, timeout: float = 120.0) -> None:
    """Wait for another process to reach a point (not for time to pass), within a bound."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


async def test_a_run_killed_halfway_and_run_again_creates_no_duplicates(cloud_env, virtual_time, ledger):
    # The emulator's clock stands still, so the first run's jobs stay running until it is killed.
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen([sys.executable, "-c", RUN_FLOW, json.dumps(PLAN)], env=env, cwd=ROOT)
    try:
        wait_until(
            lambda: creating(cloud_env) == 5 or first.poll() is not None, "the first run to submit 5 jobs"
        )
    finally:
        first.kill()
        first.wait()
    assert creating(cloud_env) == 5
    with Session(ledger) as session:
        killed_at = [r.status.value for r in session.exec(select(DiskBackup)).all()]
    # The kill may land between a create and the write of its job id: such a disk has only its intent,
    # and the next run must find its backup by name instead of creating a second one.
    assert len(killed_at) == 5 and set(killed_at) <= {"intent", "submitted"}

    state = await nightly_backup(BackupPlan.model_validate(PLAN), return_state=True)

    assert state.is_completed(), state.message
    backups = list(cloud_env.state.projects[cloud_env.project_id].backups.values())
    assert len(backups) == 5 and {b.status for b in backups} == {"available"}
    assert sum(1 for entry in cloud_env.state.request_log if entry[0] == "vbs.create_backup") == 5
    with Session(ledger) as session:
        rows = session.exec(select(DiskBackup)).all()
        runs = session.exec(select(Run).order_by(Run.id)).all()
    expected = ["adopted"] * killed_at.count("intent") + ["succeeded"] * killed_at.count("submitted")
    assert sorted(r.status.value for r in rows) == sorted(expected) and {r.attempts for r in rows} == {2}
    assert {r.backup_id for r in rows} == {b.id for b in backups}
    assert [r.status.value for r in runs][-1] == "completed"


async def test_postgresql_as_the_ledger(cloud_env, virtual_time, monkeypatch):
    with fresh_schema_url("test_flow") as url:
        monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", url)

        state = await nightly_backup(BackupPlan.model_validate(PLAN), return_state=True)

        assert state.is_completed(), state.message
        engine = make_engine(url)
        with Session(engine) as session:
            rows = session.exec(select(DiskBackup)).all()
            run = session.exec(select(Run)).one()
        engine.dispose()
    backups = cloud_env.state.projects[cloud_env.project_id].backups.values()
    assert {r.backup_id for r in rows} == {b.id for b in backups} and len(rows) == 5
    assert (run.status.value, run.disks_succeeded) == ("completed", 5)
