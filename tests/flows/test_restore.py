"""The restore-disk flow against the emulator over HTTP, under a Prefect test server: restore by id and by
"newest before T", every documented precondition refused with a clear message before any restore call,
a dry run that changes nothing, and a failing restore job that ends Failed and is recorded.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from tests.conftest import OTHER_PROJECT
from tests.emulator_state import calls, project
from tests.factories import plan
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.restore import restore_disk
from vbs_backup.ledger import DiskBackup
from vbs_backup.ledger.restores import Restore, RestoreStatus

WEB_SERVER = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"  # 100 GiB, attached to web-01
DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"  # 200 GiB, attached to db-01
SCRATCH = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # 200 GiB, detached
DAY = 86400


def restores(ledger) -> list[Restore]:
    with Session(ledger) as session:
        return list(session.exec(select(Restore).order_by(Restore.id)).all())


def backup_of(ledger, volume_id: str) -> list[str]:
    """Our backups of a disk, oldest first (from the ledger, so by night)."""
    with Session(ledger) as session:
        rows = session.exec(
            select(DiskBackup).where(DiskBackup.volume_id == volume_id).order_by(DiskBackup.requested_at)
        ).all()
    return [r.backup_id for r in rows]


async def night(cloud_env) -> None:
    state = await nightly_backup(plan(), return_state=True)
    assert state.is_completed(), state.message


async def test_restore_by_backup_id_into_a_detached_disk(cloud_env, virtual_time, ledger):
    await night(cloud_env)
    (backup_id,) = backup_of(ledger, WEB_DATA)

    state = await restore_disk(WEB_DATA, backup_id=backup_id, target_volume_id=SCRATCH, return_state=True)

    assert state.is_completed(), state.message
    assert "restored disk scratch-01" in state.message
    assert calls(cloud_env, "vbs.restore_backup") == 1
    assert project(cloud_env).volumes[SCRATCH].status == "available"
    assert project(cloud_env).backups[backup_id].status == "available"
    (row,) = restores(ledger)
    assert (row.status, row.backup_id, row.target_volume_id, row.dry_run) == (
        RestoreStatus.succeeded,
        backup_id,
        SCRATCH,
        False,
    )
    job = project(cloud_env).jobs[row.job_id]
    assert (job.job_type, job.status) == ("bksRestoreBackup", "SUCCESS")
    assert row.finished_at > row.requested_at  # virtual time: the job took its time on the clock


async def test_restore_the_newest_backup_before_a_time_after_two_nights(cloud_env, virtual_time, ledger):
    await night(cloud_env)
    between = virtual_time.now() + timedelta(hours=12)
    cloud_env.state.clock.advance(DAY)
    await night(cloud_env)
    first, second = backup_of(ledger, WEB_DATA)

    state = await restore_disk(WEB_DATA, before=between, target_volume_id=SCRATCH, return_state=True)
    latest = await restore_disk(WEB_DATA, target_volume_id=SCRATCH, return_state=True)

    assert state.is_completed(), state.message
    assert latest.is_completed(), latest.message
    assert [r.backup_id for r in restores(ledger)] == [first, second]
    assert [r.status for r in restores(ledger)] == [RestoreStatus.succeeded] * 2


async def make_small_disk(emulator, size: int = 20) -> str:
    body = {
        "volume": {"name": "small", "size": size, "volume_type": "SAS", "availability_zone": "eu-west-0a"}
    }
    response = emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes", json=body)
    response.raise_for_status()
    return response.json()["volume_ids"][0]


async def failed_backup(cloud_env, ledger) -> str:
    """The next night's run, whose db-01 data disk backup fails: the backup exists, in `error`."""
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_DATA}).raise_for_status()
    cloud_env.state.clock.advance(DAY)
    state = await nightly_backup(plan(), return_state=True)
    assert state.is_failed()
    backup_id = backup_of(ledger, DB_DATA)[-1]
    assert project(cloud_env).backups[backup_id].status == "error"
    return backup_id


async def shared_in_backup(cloud_env, other) -> str:
    spare = OTHER_PROJECT["volumes"][0]["id"]
    pid = other.project_id
    job = other.call(
        "POST", f"/v2/{pid}/cloudbackups", json={"backup": {"volume_id": spare, "name": "theirs"}}
    )
    job.raise_for_status()
    cloud_env.state.clock.advance(3600)
    backup_id = other.call("GET", f"/v1/{pid}/jobs/{job.json()['job_id']}").json()["entities"]["backup_id"]
    body = {"shared": {"backup_id": backup_id, "to_project_ids": [cloud_env.project_id]}}
    other.call("POST", f"/v2/{pid}/os-vendor-backup-sharing", json=body).raise_for_status()
    return backup_id


@pytest.mark.parametrize(
    "case",
    ["attached disk", "smaller disk", "backup not available", "unknown backup", "shared in"],
)
async def test_an_unmet_precondition_fails_before_any_restore_call(
    case, cloud_env, virtual_time, ledger, other_project
):
    await night(cloud_env)
    (web_backup,) = backup_of(ledger, WEB_DATA)
    if case == "attached disk":
        args, expected = (WEB_DATA, web_backup, None), f"is attached to server {WEB_SERVER}"
    elif case == "smaller disk":
        small = await make_small_disk(cloud_env)
        args, expected = (WEB_DATA, web_backup, small), "has 20 GiB, less than the backup's 100 GiB"
    elif case == "backup not available":
        args, expected = (
            (DB_DATA, await failed_backup(cloud_env, ledger), SCRATCH),
            "only an available backup",
        )
    elif case == "unknown backup":
        args, expected = (WEB_DATA, str(uuid.uuid4()), SCRATCH), "does not exist in this project"
    else:
        spare = OTHER_PROJECT["volumes"][0]["id"]
        args, expected = (spare, await shared_in_backup(cloud_env, other_project), SCRATCH), "only shared"
    volume_id, backup_id, target = args
    volumes_before = {v.id: v.status for v in project(cloud_env).volumes.values()}

    state = await restore_disk(volume_id, backup_id=backup_id, target_volume_id=target, return_state=True)

    assert state.is_failed()
    assert expected in state.message and "refused, nothing was changed" in state.message
    assert calls(cloud_env, "vbs.restore_backup") == 0
    assert {v.id: v.status for v in project(cloud_env).volumes.values()} == volumes_before
    row = restores(ledger)[-1]
    assert row.status is RestoreStatus.refused and expected in row.error and row.job_id is None


async def test_an_attached_disk_is_named_with_the_advice_to_detach_it(cloud_env, virtual_time, ledger):
    await night(cloud_env)

    state = await restore_disk(WEB_DATA, return_state=True)  # in place, newest backup

    assert state.is_failed()
    assert "stop the server and detach the disk first" in state.message
    assert calls(cloud_env, "vbs.restore_backup") == 0


async def test_a_dry_run_says_what_would_happen_and_changes_nothing(cloud_env, virtual_time, ledger):
    await night(cloud_env)
    (backup_id,) = backup_of(ledger, WEB_DATA)
    summary = cloud_env.control("GET", "/state").json()["projects"][cloud_env.project_id]

    state = await restore_disk(WEB_DATA, target_volume_id=SCRATCH, dry_run=True, return_state=True)

    assert state.is_completed(), state.message
    assert state.message.startswith("dry run, nothing changed: would restore backup vbsb-web-01-vdb-")
    assert backup_id in state.message and "into disk scratch-01" in state.message
    assert calls(cloud_env, "vbs.restore_backup") == 0
    after = cloud_env.control("GET", "/state").json()["projects"][cloud_env.project_id]
    assert (after["volumes"], after["backups"], after["jobs"]) == (
        summary["volumes"],
        summary["backups"],
        summary["jobs"],
    )
    (row,) = restores(ledger)
    assert (row.status, row.dry_run, row.backup_id) == (RestoreStatus.dry_run, True, backup_id)


async def test_a_failing_restore_job_ends_failed_and_is_recorded(cloud_env, virtual_time, ledger):
    await night(cloud_env)
    (backup_id,) = backup_of(ledger, WEB_DATA)
    fault = {"mode": "fail", "job_type": "bksRestoreBackup", "error_code": "VolumeBackup.0200"}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()

    state = await restore_disk(WEB_DATA, backup_id=backup_id, target_volume_id=SCRATCH, return_state=True)

    assert state.is_failed()
    assert "VolumeBackup.0200" in state.message and "error_restoring" in state.message
    (row,) = restores(ledger)
    assert (row.status, row.error_code) == (RestoreStatus.failed, "VolumeBackup.0200")
    assert project(cloud_env).jobs[row.job_id].status == "FAIL"
    assert project(cloud_env).volumes[SCRATCH].status == "error_restoring"
    assert project(cloud_env).backups[backup_id].status == "available"  # the backup itself is unharmed


def test_the_restore_command_needs_exactly_one_way_to_choose_the_backup(cloud_env):
    from typer.testing import CliRunner

    from vbs_backup.deployments.cli import app

    neither = CliRunner().invoke(app, ["restore", "--volume", WEB_DATA])
    both = CliRunner().invoke(app, ["restore", "--volume", WEB_DATA, "--backup", SCRATCH, "--before", "2024"])
    bad_time = CliRunner().invoke(app, ["restore", "--volume", WEB_DATA, "--before", "yesterday"])

    assert (neither.exit_code, both.exit_code, bad_time.exit_code) == (2, 2, 2)
    assert "exactly one of --backup ID or --before ISO-TIME" in neither.output
    assert "not an ISO time" in bad_time.output
    assert calls(cloud_env, "vbs.list_backup_details") == 0


def test_the_restore_command_runs_the_flow_and_exits_1_when_it_is_refused(cloud_env, virtual_time, ledger):
    from typer.testing import CliRunner

    from vbs_backup.deployments.cli import app

    result = CliRunner().invoke(
        app, ["restore", "--volume", WEB_DATA, "--before", "2030-01-01T00:00:00", "--target-volume", SCRATCH]
    )

    assert result.exit_code == 1, result.output
    assert (
        "Failed:" in result.output
        and "has no available backup created before 2030-01-01T00:00:00" in result.output
    )
    (row,) = restores(ledger)
    assert row.status is RestoreStatus.refused
