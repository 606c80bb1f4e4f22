"""`vbs-backup demo`: the product end to end on a laptop, with nothing to configure.

Starts the emulator in-process on the packaged sample fleet (one disk made to fail), points the settings
at it and at a fresh SQLite ledger, runs the nightly flow for two nights (the emulator's clock jumps a day
in between, so retention has work the second night), shows progress while it waits, and ends with the
results table and the ledger's path.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from pathlib import Path

import platformdirs
import yaml
from rich.console import Console
from rich.table import Table
from sqlmodel import Session, select

from vbs_backup.clock import Clock
from vbs_backup.deployments.cli.running import final_state
from vbs_backup.emulator import SAMPLE_FLEET
from vbs_backup.emulator.app import create_app
from vbs_backup.emulator.clock import ScaledClock
from vbs_backup.emulator.server import EmulatorServer
from vbs_backup.emulator.state import CloudState, JobFault
from vbs_backup.ledger import DiskBackup, RetentionDecision, make_engine
from vbs_backup.plan import BackupPlan
from vbs_backup.reporting import protection_table, runs_table
from vbs_backup.tasks.runtime import use_clock

FAILING_DISK = "web-02-data"  # the sample fleet's disk whose backups the demo makes fail
DAY = 86400.0


def demo_plan() -> BackupPlan:
    return BackupPlan.model_validate(
        {
            "name": "demo",
            "selection": {"tags": {"backup": "nightly"}},
            "poll_interval_seconds": 0.5,
            "retention": {"keep_last": 1, "min_successful": 1},
        }
    )


def run_demo(*, speed: float) -> int:
    console = Console()
    fleet = yaml.safe_load(Path(SAMPLE_FLEET).read_text())
    project = fleet["projects"][0]
    state = CloudState(clock=ScaledClock(speed))
    ledger = Path(platformdirs.user_data_dir("vbs-backup")) / "demo-ledger.sqlite"
    ledger.parent.mkdir(parents=True, exist_ok=True)
    for stale in (ledger, ledger.with_suffix(".sqlite-wal"), ledger.with_suffix(".sqlite-shm")):
        stale.unlink(missing_ok=True)
    with EmulatorServer(create_app(state, fleet=fleet)) as server:
        failing = _volume_named(project, FAILING_DISK)
        state.job_faults.append(JobFault(mode="fail", volume_id=failing))
        os.environ.update(
            {
                "VBS_BACKUP_ENDPOINT": str(server.url),
                "VBS_BACKUP_PROJECT_ID": project["id"],
                "VBS_BACKUP_AK": project["access_keys"][0]["ak"],
                "VBS_BACKUP_SK": project["access_keys"][0]["sk"],
                "VBS_BACKUP_DATABASE_URL": f"sqlite:///{ledger}",
            }
        )
        console.print(f"[bold]Emulator[/] at {server.url} (speed x{speed:g}); disk {FAILING_DISK} will fail.")
        clock = state.clock
        source = Clock(now=clock.now, monotonic=lambda: clock.now().timestamp())
        with use_clock(source):
            for night in (1, 2):
                console.rule(f"Night {night} ({clock.now():%Y-%m-%d %H:%M} virtual UTC)")
                final = _run_with_progress(console, state, project["id"], night)
                colour = "green" if final.is_completed() else "red"
                console.print(f"[{colour}]{final.name}[/]: {final.message}")
                clock.advance(DAY)
    engine = make_engine(f"sqlite:///{ledger}")
    console.print(_last_run_table(engine))
    console.print(runs_table(engine))
    console.print(protection_table(engine))
    console.print(
        f"Ledger: [bold]{ledger}[/]\n"
        f"See it again with: VBS_BACKUP_DATABASE_URL=sqlite:///{ledger} vbs-backup report"
    )
    console.print(
        "Both nights end Failed on purpose: one disk fails, and a failed disk must never look green."
    )
    return 0


def _volume_named(project: dict, name: str) -> str:
    return next(d["id"] for s in project["servers"] for d in s["disks"] if d["name"] == name)


def _run_with_progress(console: Console, state: CloudState, project_id: str, night: int):
    done = threading.Event()

    def show() -> None:
        with console.status("starting Prefect and the flow...") as status:
            while not done.wait(0.5):
                with state.lock:
                    counts = Counter(b.status for b in state.projects[project_id].backups.values())
                status.update(
                    f"night {night}: {counts['creating']} backing up, {counts['available']} available, "
                    f"{counts['error']} failed, {counts['deleting']} being deleted"
                )

    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        return final_state("nightly-backup", plan=demo_plan())
    finally:
        done.set()
        thread.join()


def _last_run_table(engine) -> Table:
    table = Table(title="Night 2: disks and retention")
    for column in ("server", "device", "status", "backup", "error", "retention decisions"):
        table.add_column(column)
    with Session(engine) as session:
        last_run = max(r.run_id for r in session.exec(select(DiskBackup)).all())
        rows = session.exec(select(DiskBackup).where(DiskBackup.run_id == last_run)).all()
        decisions = session.exec(select(RetentionDecision).where(RetentionDecision.run_id == last_run)).all()
    for row in sorted(rows, key=lambda r: (r.server_name, r.device)):
        mine = [d for d in decisions if d.volume_id == row.volume_id]
        text = "; ".join(f"{d.action} {d.backup_name} ({d.reasons})" for d in mine)
        table.add_row(
            row.server_name, row.device, row.status.value, row.backup_name, row.error_code or "", text
        )
    return table
