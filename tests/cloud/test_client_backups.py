"""The client's VBS backup, job, delete and quota operations (reference §2.1, §2.2, §2.4-§2.9, §2.16) against
the emulator over a real socket: each operation once successfully, the documented errors as the right
exception with the right `.code` and `.http_status`, a full job lifecycle, job faults, and pagination.
Restores are in test_client_restores.py, sharing in test_client_shares.py.

Outcomes are read back three ways: the client's return values, the emulator's live state, and the
emulator's request log (what really crossed the wire).
"""

from __future__ import annotations

import uuid

import pytest

from tests.clients import backup_now, wait
from vbs_backup.cloud import (
    BadRequestError,
    JobFailedError,
    JobTimeoutError,
    NotFoundError,
)
from vbs_backup.cloud.models import BackupStatus, JobStatus, JobType, NativeBackupRequest, Tag

# -- create -> job -> backup (§2.1, §2.7, §2.8) -------------------------------------------------------------


async def test_create_backup_job_lifecycle_ends_with_an_available_full_backup(client, emulator, fleet, wire):
    volume_id = fleet.volume["web-01-data"]
    job_id = await client.vbs.create_backup(
        volume_id, "web-01-data-nightly", description="nightly", tags={"owner": "vbs-backup"}
    )

    # Submitted: the backup row is `creating` and the disk `backing-up` before anyone polls.
    state = emulator.control("GET", "/state").json()["projects"][emulator.project_id]
    (row,) = [b for b in state["backups"] if b["name"] == "web-01-data-nightly"]
    assert row["status"] == "creating"
    assert {v["id"]: v["status"] for v in state["volumes"]}[volume_id] == "backing-up"

    job = await wait(client, job_id)

    assert job.status == JobStatus.SUCCESS
    assert job.job_type == JobType.CREATE_BACKUP
    assert job.entities.volume_id == volume_id
    assert job.backup_id == row["id"]
    assert job.end_time is not None
    backup = await client.vbs.get_backup(job.backup_id)
    assert backup.status == BackupStatus.AVAILABLE
    assert backup.name == "web-01-data-nightly"
    assert backup.volume_id == volume_id
    assert backup.description == "nightly"  # decoded from the wire's {"DESC": ..., "INC": ...} string
    assert backup.size == fleet.size["web-01-data"]
    assert backup.tenant_id == emulator.project_id
    assert backup.is_incremental is False  # the first backup of a disk is full
    assert backup.snapshot_id == job.entities.snapshot_id
    with emulator.state.locked():
        assert emulator.state.projects[emulator.project_id].volumes[volume_id].status == "in-use"
    # polls_to_finish=2 in poll mode: exactly two job queries, no other traffic
    assert wire.operations() == ["vbs.create_backup", "vbs.get_job", "vbs.get_job", "vbs.get_backup"]


async def test_second_backup_is_incremental_and_full_backup_forces_a_full_one(client, fleet):
    volume_id = fleet.volume["db-01-wal"]
    first = await client.vbs.get_backup(await backup_now(client, volume_id, "wal-1"))
    second = await client.vbs.get_backup(await backup_now(client, volume_id, "wal-2"))
    forced = await client.vbs.get_backup(await backup_now(client, volume_id, "wal-3", full_backup=True))

    assert first.service_metadata is not None and first.service_metadata.type == 0
    assert second.service_metadata is not None and second.service_metadata.type == 1
    assert second.is_incremental is True
    assert second.incremental_requested is True  # INC of the description string
    assert forced.service_metadata is not None and forced.service_metadata.type == 0
    assert forced.is_incremental is False


async def test_wait_for_job_in_time_mode_advances_the_emulator_clock(client, emulator, fleet, vtime):
    emulator.control("POST", "/settings", json={"job_mode": "time"}).raise_for_status()
    vtime.move_emulator = True
    job_id = await client.vbs.create_backup(fleet.volume["web-01-system"], "system-timed")

    job = await wait(client, job_id, vtime, interval=30)

    assert job.status == JobStatus.SUCCESS
    # 1 s to start + 60 s base + 1.5 s/GiB * 40 GiB = 121 s of virtual time, polled every 30 s
    assert sum(vtime.sleeps) == pytest.approx(150)
    assert (await client.vbs.get_backup(job.backup_id)).status == BackupStatus.AVAILABLE


# -- create validations (§2.1, §5e) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("volume", "name", "extra", "error", "code", "status"),
    [
        ("web-01-data", "autobk_mine", {}, BadRequestError, "VolumeBackup.0005", 400),
        ("web-01-data", "has space", {}, BadRequestError, "VolumeBackup.0004", 400),
        ("web-01-data", "x" * 65, {}, BadRequestError, "VolumeBackup.0003", 400),
        ("web-01-data", "ok-name", {"description": "<b>"}, BadRequestError, "VolumeBackup.0006", 400),
        ("not-a-uuid", "ok-name", {}, BadRequestError, "VolumeBackup.0011", 400),
        (None, "ok-name", {}, NotFoundError, "VolumeBackup.0021", 404),
        (
            "web-01-data",
            "ok-name",
            {"tags": [Tag(key=f"k{i}", value="v") for i in range(11)]},
            BadRequestError,
            "VolumeBackup.0050",
            400,
        ),
        (
            "web-01-data",
            "ok-name",
            {"tags": {"bad=key": "v"}},
            BadRequestError,
            "VolumeBackup.0049",
            400,
        ),
    ],
    ids=[
        "auto-prefix",
        "bad-chars",
        "too-long",
        "bad-description",
        "bad-volume-id",
        "disk-missing",
        "too-many-tags",
        "bad-tag",
    ],
)
async def test_create_backup_validation_errors(
    client, emulator, fleet, wire, volume, name, extra, error, code, status
):
    volume_id = fleet.volume.get(volume, volume) if volume else str(uuid.uuid4())

    with pytest.raises(error) as caught:
        await client.vbs.create_backup(volume_id, name, **extra)

    assert caught.value.code == code
    assert caught.value.http_status == status
    assert caught.value.operation == "vbs.create_backup"
    assert wire.statuses("vbs.create_backup") == [status]  # a 4xx is never retried
    with emulator.state.locked():
        assert emulator.state.projects[emulator.project_id].backups == {}


async def test_create_backup_while_the_disk_is_being_backed_up_is_refused(client, emulator, fleet):
    volume_id = fleet.volume["db-01-data"]
    first_job = await client.vbs.create_backup(volume_id, "db-data-1")

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.create_backup(volume_id, "db-data-2")

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0013", 400)
    await wait(client, first_job)
    assert [b.name for b in await client.vbs.find_backups_by_name("db-data-2")] == []
    await backup_now(client, volume_id, "db-data-2")  # once the first one ended, the disk is free again


# -- jobs: failures, hangs, unknown ids (§2.8) -------------------------------------------------------------


async def test_a_failed_job_raises_job_failed_error_with_the_error_code(client, emulator, fleet):
    volume_id = fleet.volume["web-01-data"]
    emulator.control(
        "POST",
        "/job_faults",
        json={
            "mode": "fail",
            "volume_id": volume_id,
            "error_code": "VolumeBackup.0062",
            "fail_reason": "CreateSnapshot Task-fail: injected",
            "count": 1,
        },
    ).raise_for_status()
    job_id = await client.vbs.create_backup(volume_id, "doomed")

    with pytest.raises(JobFailedError) as caught:
        await wait(client, job_id)

    assert caught.value.job_id == job_id
    assert caught.value.error_code == "VolumeBackup.0062"
    assert caught.value.fail_reason == "CreateSnapshot Task-fail: injected"
    job = await client.vbs.get_job(job_id)
    assert job.status == JobStatus.FAIL and job.backup_id is None  # `"backup_id": ""` on the wire
    (failed,) = await client.vbs.find_backups_by_name("doomed")
    assert failed.status == BackupStatus.ERROR
    assert failed.fail_reason == "CreateSnapshot Task-fail: injected"
    # the fault was used up: the next backup of the disk succeeds
    await backup_now(client, volume_id, "after-the-fault")


async def test_a_hung_job_times_out_on_the_injected_clock(client, emulator, fleet, vtime, wire):
    emulator.control("POST", "/job_faults", json={"mode": "hang"}).raise_for_status()
    job_id = await client.vbs.create_backup(fleet.volume["web-01-data"], "stuck")

    with pytest.raises(JobTimeoutError) as caught:
        await wait(client, job_id, vtime, timeout=60, interval=10)

    assert caught.value.job_id == job_id
    assert caught.value.last_status == JobStatus.RUNNING
    assert vtime.now == pytest.approx(60)
    assert len(wire.entries("vbs.get_job")) == 7  # at t = 0, 10, ..., 60
    with emulator.state.locked():
        assert emulator.state.projects[emulator.project_id].jobs[job_id].status == "RUNNING"


async def test_unknown_job_is_not_found_common_0011(client, wire):
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.get_job("0123456789abcdef0123456789abcdef")

    assert (caught.value.code, caught.value.http_status) == ("common.0011", 404)
    assert wire.statuses("vbs.get_job") == [404]


# -- native reads, deletes, quotas (§2.4-§2.7, §2.9, §2.16) ------------------------------------------------


async def test_a_malformed_id_is_refused_before_anything_is_sent(client, wire):
    with pytest.raises(ValueError, match="backup_id must be a UUID"):
        await client.vbs.get_backup("../backups/detail")
    with pytest.raises(ValueError, match="job_id"):
        await client.vbs.get_job("a/b")

    assert wire.entries() == []


async def test_get_backup_of_a_missing_backup_is_cinder_item_not_found(client):
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.get_backup(str(uuid.uuid4()))

    assert (caught.value.code, caught.value.http_status) == ("itemNotFound", 404)
    assert "could not be found" in caught.value.message


async def test_create_native_backup_runs_on_the_clock_without_a_job(client, emulator, fleet):
    scratch = fleet.volume["scratch-01"]
    request = NativeBackupRequest(volume_id=scratch, snapshot_id=str(uuid.uuid4()), name="native-1")

    summary = await client.vbs.create_native_backup(request)

    assert summary.name == "native-1"
    assert any(link.rel == "self" and summary.id in link.href for link in summary.links)
    assert (await client.vbs.get_backup(summary.id)).status == BackupStatus.CREATING
    emulator.control("POST", "/clock/advance", json={"seconds": 3600}).raise_for_status()
    assert (await client.vbs.get_backup(summary.id)).status == BackupStatus.AVAILABLE


async def test_create_native_backup_of_an_attached_disk_needs_force(client, fleet):
    request = NativeBackupRequest(volume_id=fleet.volume["web-01-data"], snapshot_id=str(uuid.uuid4()))

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.create_native_backup(request)

    assert (caught.value.code, caught.value.http_status) == ("badRequest", 400)


async def test_delete_backup_marks_deleting_then_the_backup_is_gone(client, emulator, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-system"], "to-delete")

    await client.vbs.delete_backup(backup_id)

    assert (await client.vbs.get_backup(backup_id)).status == BackupStatus.DELETING
    emulator.control("POST", "/clock/advance", json={"seconds": 60}).raise_for_status()
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.get_backup(backup_id)
    assert caught.value.code == "itemNotFound"
    with pytest.raises(NotFoundError):
        await client.vbs.delete_backup(backup_id)


async def test_deprecated_delete_cloud_backup_answers_a_delete_job(client, emulator, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-system"], "old-style-delete")

    job = await wait(client, await client.vbs.delete_cloud_backup(backup_id))

    assert job.status == JobStatus.SUCCESS
    assert job.job_type == JobType.DELETE_BACKUP
    with pytest.raises(NotFoundError):
        await client.vbs.get_backup(backup_id)
    with emulator.state.locked():
        assert backup_id not in emulator.state.projects[emulator.project_id].backups


async def test_get_quotas_counts_existing_backups(client, fleet):
    before = await client.vbs.get_quotas()
    await backup_now(client, fleet.volume["db-01-data"], "quota-1")

    after = await client.vbs.get_quotas()

    assert before.backups is not None and before.backups.used == 0
    assert after.backups is not None and after.backups.used == 1
    assert after.backups.quota == 1000 and after.backups.remaining == 999
    assert after.backup_gigabytes is not None
    assert after.backup_gigabytes.used == fleet.size["db-01-data"]
    assert after.backup_gigabytes.quota == 100000


# -- listing and pagination (§2.5, §2.6) -------------------------------------------------------------------


async def _seven_backups(client, emulator, fleet) -> dict[str, str]:
    """Seven available backups on six disks, one virtual second apart (so creation order is defined):
    name -> id."""
    made = {}
    disks = ["web-01-system", "web-01-data", "db-01-system", "db-01-data", "db-01-wal", "scratch-01"]
    for n, disk in enumerate([*disks, "web-01-data"]):
        name = f"page-{n}"
        made[name] = await backup_now(client, fleet.volume[disk], name)
        emulator.control("POST", "/clock/advance", json={"seconds": 1}).raise_for_status()
    return made


async def test_iter_backup_details_visits_every_backup_once_across_pages(client, emulator, fleet, wire):
    made = await _seven_backups(client, emulator, fleet)
    wire.clear()

    seen = [b async for b in client.vbs.iter_backup_details(page_size=2)]

    assert sorted(b.id for b in seen) == sorted(made.values())
    assert len({b.id for b in seen}) == len(seen) == 7
    assert [b.name for b in seen] == [f"page-{n}" for n in range(6, -1, -1)]  # newest first (§2.6)
    # 2 + 2 + 2 + 1: the last page carries no next link, so there is no fifth request
    assert len(wire.entries("vbs.list_backup_details")) == 4


async def test_list_backups_brief_page_links_to_the_next_page(client, emulator, fleet):
    made = await _seven_backups(client, emulator, fleet)

    first = await client.vbs.list_backups(limit=2)
    second = await client.vbs.list_backups(limit=2, marker=first.next_marker)
    everything = await client.vbs.list_backups()

    assert len(first.backups) == 2 and first.next_marker == first.backups[-1].id
    assert len(second.backups) == 2 and second.next_marker == second.backups[-1].id
    assert not {b.id for b in first.backups} & {b.id for b in second.backups}
    assert everything.next_marker is None and len(everything.backups) == 7
    assert {b.name for b in everything.backups} == set(made)
    by_name = await client.vbs.list_backups(name="page-3")
    assert [b.id for b in by_name.backups] == [made["page-3"]]


async def test_the_name_filter_travels_encoded_and_signed(client, fleet, wire):
    # letters of any script are allowed in names (§2.1); the query is percent-encoded UTF-8 and signed
    name = "sauvegarde-été_日本"
    backup_id = await backup_now(client, fleet.volume["web-01-data"], name)
    await backup_now(client, fleet.volume["db-01-wal"], "sauvegarde-ete")

    page = await client.vbs.list_backups(name=name)

    assert [b.id for b in page.backups] == [backup_id]
    assert [b.id for b in await client.vbs.find_backups_by_name(name)] == [backup_id]
    assert set(wire.statuses("vbs.list_backups")) == {200}


async def test_list_backup_details_filters_by_volume_and_finds_by_name(client, emulator, fleet):
    made = await _seven_backups(client, emulator, fleet)
    web_data = fleet.volume["web-01-data"]

    page = await client.vbs.list_backup_details(volume_id=web_data, sort_key="created_at", sort_dir="asc")
    found = await client.vbs.find_backups_by_name("page-6", volume_id=web_data)

    assert [b.name for b in page.backups] == ["page-1", "page-6"]
    assert all(b.volume_id == web_data for b in page.backups)
    assert page.next_marker is None
    assert [b.id for b in found] == [made["page-6"]]
    assert await client.vbs.find_backups_by_name("page-6", volume_id=fleet.volume["scratch-01"]) == []
