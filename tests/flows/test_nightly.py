"""The nightly flow against the emulator over HTTP, under a Prefect test server."""

from __future__ import annotations

from sqlmodel import Session, select

from flows.nightly import nightly_backup
from vbs_backup.config import BackupPlan
from vbs_backup.ledger import DiskBackup, Run

WEB = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB = "990f449e-b54d-4554-b65d-0d8dedb27e13"


def plan(**overrides) -> BackupPlan:
    data = {"selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 30}
    data.update(overrides)
    return BackupPlan.model_validate(data)


async def test_every_disk_of_every_selected_server_is_backed_up(cloud_env, virtual_time, ledger):
    state = await nightly_backup(plan(), return_state=True)
    assert state.is_completed(), state.message

    project = cloud_env.state.projects[cloud_env.project_id]
    attached = {v for s in project.servers.values() for v in s.volume_ids}
    backups = {b.volume_id: b for b in project.backups.values()}
    assert set(backups) == attached  # every disk of both servers, once
    assert {b.status for b in backups.values()} == {"available"}
    with Session(ledger) as session:
        rows = session.exec(select(DiskBackup)).all()
        run = session.exec(select(Run)).one()
    assert {r.volume_id: r.backup_id for r in rows} == {v: b.id for v, b in backups.items()}
    assert {r.status.value for r in rows} == {"succeeded"}
    assert (run.status.value, run.disks_total, run.disks_succeeded, run.disks_failed) == (
        "completed",
        5,
        5,
        0,
    )
