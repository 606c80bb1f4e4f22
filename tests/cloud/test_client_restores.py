"""The client's restore operations (reference §2.3, §2.10, §4.10) against the emulator over a real socket:
a restore job onto a detached disk, the native restore without a job, and the documented preconditions as
the right exception with the right `.code` and `.http_status` (attached disk `.0205`, smaller disk `.0209`,
backup not available `.0089`, backup running on the disk `.0206`, unknown backup `.0111`).
"""

from __future__ import annotations

import uuid

import pytest

from tests.clients import backup_now, wait
from vbs_backup.cloud import BadRequestError, NotFoundError
from vbs_backup.cloud.models import BackupStatus, JobType

# -- restore (§2.3, §2.10) ---------------------------------------------------------------------------------


async def test_restore_backup_onto_a_detached_disk(client, emulator, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "restore-me")
    scratch = fleet.volume["scratch-01"]

    job_id = await client.vbs.restore_backup(backup_id, scratch)

    with emulator.state.locked():
        project = emulator.state.projects[emulator.project_id]
        assert project.volumes[scratch].status == "restoring-backup"
        assert project.backups[backup_id].status == "restoring"
    job = await wait(client, job_id)
    assert job.job_type == JobType.RESTORE_BACKUP
    assert job.entities.backup_id == backup_id and job.entities.volume_id == scratch
    assert (await client.evs.get_volume(scratch)).status == "available"
    assert (await client.vbs.get_backup(backup_id)).status == BackupStatus.AVAILABLE


async def test_restore_native_backup_answers_202_without_a_job(client, emulator, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "restore-native")
    scratch = fleet.volume["scratch-01"]

    restore = await client.vbs.restore_native_backup(backup_id, scratch)

    assert (restore.backup_id, restore.volume_id, restore.volume_name) == (backup_id, scratch, "scratch-01")
    assert (await client.evs.get_volume(scratch)).status == "restoring-backup"
    emulator.control("POST", "/clock/advance", json={"seconds": 3600}).raise_for_status()
    assert (await client.evs.get_volume(scratch)).status == "available"


async def test_restore_onto_an_attached_disk_is_refused_0205(client, fleet):
    # API-level enforcement is unconfirmed (§2.3, §8.11); the emulator rejects by default (configurable).
    volume_id = fleet.volume["web-01-data"]
    backup_id = await backup_now(client, volume_id, "restore-in-use")

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.restore_backup(backup_id, volume_id)

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0205", 400)


async def test_restore_onto_a_smaller_disk_is_refused_0209(client, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "too-big")  # 100 GiB
    small = await client.evs.create_volume(
        name="small", size=20, volume_type="SAS", availability_zone="eu-west-0a"
    )

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.restore_backup(backup_id, small.volume_ids[0])

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0209", 400)


async def test_restore_from_a_backup_still_being_created_is_refused_0089(client, fleet):
    job_id = await client.vbs.create_backup(fleet.volume["web-01-data"], "not-yet")
    (creating,) = await client.vbs.find_backups_by_name("not-yet")

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.restore_backup(creating.id, fleet.volume["scratch-01"])

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0089", 400)
    await wait(client, job_id)


async def test_restore_onto_a_disk_with_a_running_backup_is_refused_0206(client, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "source")
    scratch = fleet.volume["scratch-01"]
    await client.vbs.create_backup(scratch, "scratch-running")

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.restore_backup(backup_id, scratch)

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0206", 400)


async def test_restore_from_an_unknown_backup_is_not_found_0111(client, fleet):
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.restore_backup(str(uuid.uuid4()), fleet.volume["scratch-01"])

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0111", 404)
