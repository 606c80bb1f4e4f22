"""Backend rules of the emulated VBS, driven in Python on a CloudState with a ManualClock (no HTTP).

Each documented error code the backend implements is checked, as are the job engine in both modes, job
faults, disk and backup status transitions, deletes, restores, quotas, sharing, policies with their tasks,
scheduler and retention, and policy tags.
"""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from vbs_backup.emulator.clock import ManualClock
from vbs_backup.emulator.errors import CinderError, CloudApiError, EmulatorError
from vbs_backup.emulator.state import CloudState, JobFault, Project, Settings, Share, Volume, new_uuid
from vbs_backup.emulator.vbs import install
from vbs_backup.emulator.vbs import serialize as ser
from vbs_backup.emulator.vbs.backups import create_backup, create_native_backup, get_quotas
from vbs_backup.emulator.vbs.deletes import delete_backup, delete_cloud_backup
from vbs_backup.emulator.vbs.executions import execute_policy, next_slot
from vbs_backup.emulator.vbs.jobs import get_job
from vbs_backup.emulator.vbs.policies import (
    associate_resources,
    create_policy,
    delete_policy,
    disassociate_resources,
    list_policy_tasks,
    update_policy,
)
from vbs_backup.emulator.vbs.queries import get_backup, list_backups
from vbs_backup.emulator.vbs.restores import restore_backup, restore_native_backup
from vbs_backup.emulator.vbs.shares import cancel_share, count_shares, get_share, list_shares, share_backup
from vbs_backup.emulator.vbs.tags import (
    add_policy_tag,
    batch_policy_tags,
    delete_policy_tag,
    list_policy_tags,
    list_project_policy_tags,
    query_policies_by_tags,
)

PID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
START = datetime(2026, 1, 1, tzinfo=UTC)
# time mode defaults: start after 1 s, then 60 s + 1.5 s/GiB -> a 10 GiB disk takes 76 s in all
DONE_10GIB = 76


def make_state(**settings: Any) -> CloudState:
    state = CloudState(clock=ManualClock(START), settings=Settings(**settings), rng=random.Random(7))
    for pid in (PID, OTHER):
        state.projects[pid] = Project(id=pid, name=f"p-{pid[:4]}")
    install(state)
    return state


@pytest.fixture
def state() -> CloudState:
    return make_state()


def proj(state: CloudState, pid: str = PID) -> Project:
    return state.projects[pid]


def vol(state: CloudState, *, size: int = 10, status: str = "in-use", pid: str = PID) -> Volume:
    volume = Volume(
        id=new_uuid(state.rng), name=f"disk-{len(proj(state, pid).volumes)}", size=size, status=status
    )
    proj(state, pid).volumes[volume.id] = volume
    return volume


def advance(state: CloudState, seconds: float) -> None:
    state.clock.advance(seconds)
    state.tick()


def backup_body(volume: Volume, **fields: Any) -> dict[str, Any]:
    return {"backup": {"volume_id": volume.id, "name": "nightly", **fields}}


def backup_now(state: CloudState, volume: Volume, **fields: Any) -> Any:
    """A finished manual backup of the disk (time mode)."""
    job = create_backup(state, proj(state), backup_body(volume, **fields))
    advance(state, DONE_10GIB * volume.size)
    return proj(state).backups[job.entities["backup_id"]]


def code_of(call: Any, *args: Any, **kwargs: Any) -> tuple[str, int]:
    with pytest.raises(CloudApiError) as info:
        call(*args, **kwargs)
    return info.value.code, info.value.status


def cinder_of(call: Any, *args: Any) -> tuple[int, str]:
    with pytest.raises(CinderError) as info:
        call(*args)
    return info.value.status, next(iter(info.value.body("x")))


# --------------------------------------------------------------------------------------------------------
# create_backup validation


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (None, "VolumeBackup.0002"),
        ({}, "VolumeBackup.0002"),
        ({"backup": "x"}, "VolumeBackup.0002"),
        ({"backup": {"name": "", "volume_id": "V"}}, "VolumeBackup.0007"),
        ({"backup": {"volume_id": "V"}}, "VolumeBackup.0007"),
        ({"backup": {"name": "   ", "volume_id": "V"}}, "VolumeBackup.0026"),
        ({"backup": {"name": "a" * 65, "volume_id": "V"}}, "VolumeBackup.0003"),
        ({"backup": {"name": "bad name!", "volume_id": "V"}}, "VolumeBackup.0004"),
        ({"backup": {"name": "autobk_1", "volume_id": "V"}}, "VolumeBackup.0005"),
        ({"backup": {"name": "Auto-x", "volume_id": "V"}}, "VolumeBackup.0005"),
        ({"backup": {"name": "ok", "description": "d" * 65, "volume_id": "V"}}, "VolumeBackup.0006"),
        ({"backup": {"name": "ok", "description": "a<b", "volume_id": "V"}}, "VolumeBackup.0006"),
        ({"backup": {"name": "ok"}}, "VolumeBackup.0010"),
        ({"backup": {"name": "ok", "volume_id": ""}}, "VolumeBackup.0010"),
        ({"backup": {"name": "ok", "volume_id": "not-a-uuid"}}, "VolumeBackup.0011"),
        ({"backup": {"name": "ok", "volume_id": "V", "tags": "env=prod"}}, "VolumeBackup.0049"),
        (
            {"backup": {"name": "ok", "volume_id": "V", "tags": [{"key": "a=b", "value": ""}]}},
            "VolumeBackup.0049",
        ),
        (
            {"backup": {"name": "ok", "volume_id": "V", "tags": [{"key": "k", "value": "v" * 44}]}},
            "VolumeBackup.0049",
        ),
        (
            {
                "backup": {
                    "name": "ok",
                    "volume_id": "V",
                    "tags": [{"key": "k", "value": "1"}, {"key": "k", "value": "2"}],
                }
            },
            "VolumeBackup.0049",
        ),
        (
            {
                "backup": {
                    "name": "ok",
                    "volume_id": "V",
                    "tags": [{"key": f"k{i}", "value": ""} for i in range(11)],
                }
            },
            "VolumeBackup.0050",
        ),
    ],
)
def test_create_backup_rejects_bad_requests(state: CloudState, payload: Any, code: str) -> None:
    volume = vol(state)
    if isinstance(payload, dict) and isinstance(payload.get("backup"), dict):
        payload = json.loads(json.dumps(payload).replace('"V"', f'"{volume.id}"'))
    assert code_of(create_backup, state, proj(state), payload) == (code, 400)
    assert proj(state).backups == {} and volume.status == "in-use"


def test_create_backup_accepts_chinese_letters_and_ten_tags(state: CloudState) -> None:
    volume = vol(state)
    tags = [{"key": f"k{i}", "value": "v"} for i in range(10)]
    job = create_backup(state, proj(state), backup_body(volume, name="数据备份_1", tags=tags))
    assert job.status == "INIT"


def test_create_backup_unknown_disk_or_disk_of_another_project_is_0021_404(state: CloudState) -> None:
    foreign = vol(state, pid=OTHER)
    assert code_of(create_backup, state, proj(state), backup_body(foreign)) == ("VolumeBackup.0021", 404)
    missing = {"backup": {"volume_id": new_uuid(), "name": "x"}}
    assert code_of(create_backup, state, proj(state), missing) == ("VolumeBackup.0021", 404)


@pytest.mark.parametrize("status", ["error", "creating", "restoring-backup", "extending", "error_restoring"])
def test_create_backup_needs_available_or_in_use_disk(state: CloudState, status: str) -> None:
    volume = vol(state, status=status)
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0012", 400)


def test_second_backup_while_first_runs_is_0013(state: CloudState) -> None:
    volume = vol(state)
    create_backup(state, proj(state), backup_body(volume))
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0013", 400)


def test_per_disk_limit_is_0040_when_configured() -> None:
    state = make_state(per_disk_backup_limit=2)
    volume = vol(state)
    backup_now(state, volume)
    backup_now(state, volume)
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0040", 400)
    assert create_backup(state, proj(state), backup_body(vol(state)))  # other disks are unaffected


def test_quota_count_0080_and_capacity_0081(state: CloudState) -> None:
    volume = vol(state, size=10)
    proj(state).quotas = {"backups": 1, "backup_gigabytes": -1}
    backup_now(state, volume)
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0080", 400)
    proj(state).quotas = {"backups": -1, "backup_gigabytes": 15}
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0081", 400)
    proj(state).quotas = {"backups": -1, "backup_gigabytes": 20}
    assert create_backup(state, proj(state), backup_body(volume))


def test_get_quotas_counts_existing_backups_and_sizes(state: CloudState) -> None:
    backup_now(state, vol(state, size=10))
    backup_now(state, vol(state, size=5))
    resources = get_quotas(proj(state))["quotas"]["resources"]
    assert resources == [
        {"type": "backups", "used": 2, "reserved": 0, "quota": 1000},
        {"type": "backup_gigabytes", "used": 15, "reserved": 0, "quota": -1},
    ]


# --------------------------------------------------------------------------------------------------------
# job lifecycle


def test_create_job_lifecycle_in_time_mode(state: CloudState) -> None:
    volume = vol(state, size=10, status="in-use")
    job = create_backup(state, proj(state), backup_body(volume, description="nightly run"))
    (backup,) = proj(state).backups.values()
    assert re.fullmatch(r"[0-9a-f]{32}", job.id)
    assert (job.status, backup.status, volume.status) == ("INIT", "creating", "backing-up")
    assert json.loads(ser.description(backup)) == {"DESC": "nightly run", "INC": 0}
    advance(state, 1)
    assert job.status == "RUNNING" and backup.snapshot_id is not None
    assert ser.job(job)["end_time"] is None and ser.job(job)["entities"] == {}
    advance(state, 74)
    assert job.status == "RUNNING"
    advance(state, 1000)  # a jump past the end: the end is dated when it was due, not when seen
    assert (job.status, backup.status, volume.status) == ("SUCCESS", "available", "in-use")
    assert job.end_time == START + timedelta(seconds=DONE_10GIB)
    assert backup.updated_at == job.end_time and backup.size == 10
    assert job.entities == {
        "backup_id": backup.id,
        "volume_id": volume.id,
        "snapshot_id": backup.snapshot_id,
        "bks_create_volume_name": "autobk_volume_2026-01-01T00:00:00.000Z",
    }
    wire = ser.job(job)
    assert wire["begin_time"] == "2026-01-01T00:00:00.000Z" and wire["end_time"] == "2026-01-01T00:01:16.000Z"
    assert wire["sub_jobs"] == [] and wire["error_code"] is None


def test_first_backup_full_then_incremental_unless_full_backup_forced(state: CloudState) -> None:
    volume = vol(state, status="available")
    first, second = backup_now(state, volume), backup_now(state, volume)
    forced = backup_now(state, volume, extend_param={"FullBackup": "true"})
    types = [json.loads(ser.service_metadata(b))["Type"] for b in (first, second, forced)]
    assert types == [0, 1, 0]
    assert [json.loads(ser.description(b))["INC"] for b in (first, second, forced)] == [0, 1, 0]
    assert volume.status == "available"
    assert len({first.snapshot_id, second.snapshot_id, forced.snapshot_id}) == 3


def test_poll_mode_finishes_on_the_nth_get_job_only() -> None:
    state = make_state(job_mode="polls", polls_to_finish=3)
    volume = vol(state)
    job = create_backup(state, proj(state), backup_body(volume))
    advance(state, 10_000)  # time does not move poll-driven jobs
    backup_id = next(iter(proj(state).backups))
    get_backup(proj(state), backup_id)
    list_backups(proj(state), {})
    assert job.status == "INIT"
    assert get_job(state, proj(state), job.id).status == "RUNNING"
    assert get_job(state, proj(state), job.id).status == "RUNNING"
    assert proj(state).backups[backup_id].status == "creating"
    assert get_job(state, proj(state), job.id).status == "SUCCESS"
    assert proj(state).backups[backup_id].status == "available" and volume.status == "in-use"
    assert job.end_time == state.now()


def test_poll_mode_with_one_poll_ends_at_the_first_query() -> None:
    state = make_state(job_mode="polls", polls_to_finish=1)
    job = create_backup(state, proj(state), backup_body(vol(state)))
    assert get_job(state, proj(state), job.id).status == "SUCCESS"


def test_get_job_unknown_or_foreign_is_common_0011_404(state: CloudState) -> None:
    job = create_backup(state, proj(state), backup_body(vol(state)))
    assert code_of(get_job, state, proj(state), "f" * 32) == ("common.0011", 404)
    assert code_of(get_job, state, proj(state, OTHER), job.id) == ("common.0011", 404)


def test_job_fault_fail_marks_backup_error_and_job_fail(state: CloudState) -> None:
    volume = vol(state)
    state.job_faults.append(JobFault(mode="fail", count=1))
    job = create_backup(state, proj(state), backup_body(volume))
    advance(state, DONE_10GIB)
    (backup,) = proj(state).backups.values()
    assert (job.status, job.error_code, backup.status, volume.status) == (
        "FAIL",
        "VolumeBackup.0064",
        "error",
        "in-use",
    )
    assert job.fail_reason and backup.fail_reason == job.fail_reason
    assert job.entities["backup_id"] == ""
    assert state.job_faults == []  # consumed
    second = create_backup(state, proj(state), backup_body(volume))
    advance(state, DONE_10GIB)
    assert second.status == "SUCCESS"
    assert json.loads(ser.service_metadata(proj(state).backups[second.entities["backup_id"]]))["Type"] == 0


def test_job_fault_hang_keeps_job_running_and_disk_busy(state: CloudState) -> None:
    volume, other = vol(state), vol(state)
    state.job_faults.append(JobFault(mode="hang", volume_id=volume.id))
    hung = create_backup(state, proj(state), backup_body(volume))
    fine = create_backup(state, proj(state), backup_body(other))
    advance(state, 10 * 24 * 3600)
    assert (hung.status, hung.end_time, volume.status) == ("RUNNING", None, "backing-up")
    assert fine.status == "SUCCESS"
    assert code_of(create_backup, state, proj(state), backup_body(volume)) == ("VolumeBackup.0013", 400)


# --------------------------------------------------------------------------------------------------------
# native create, list, get


def test_native_create_follows_cinder_rules_and_runs_on_the_clock_in_poll_mode() -> None:
    state = make_state(job_mode="polls")
    attached = vol(state, status="in-use")
    assert cinder_of(create_native_backup, state, proj(state), {"backup": {"volume_id": attached.id}}) == (
        400,
        "badRequest",
    )
    assert cinder_of(create_native_backup, state, proj(state), {"backup": {"volume_id": new_uuid()}}) == (
        404,
        "itemNotFound",
    )
    assert cinder_of(create_native_backup, state, proj(state), {"nope": 1}) == (400, "badRequest")
    backup = create_native_backup(state, proj(state), {"backup": {"volume_id": attached.id, "force": True}})
    assert backup.status == "creating" and backup.name == ""
    advance(state, DONE_10GIB)
    assert backup.status == "available" and attached.status == "in-use"


def test_native_create_quota_is_413(state: CloudState) -> None:
    proj(state).quotas["backups"] = 0
    body = {"backup": {"volume_id": vol(state, status="available").id, "name": "b"}}
    assert cinder_of(create_native_backup, state, proj(state), body) == (413, "overLimit")


def test_list_filters_sorts_and_pages(state: CloudState) -> None:
    a, b = vol(state), vol(state)
    made = []
    for i, volume in enumerate([a, b, a, b, a]):
        made.append(backup_now(state, volume, name=f"n{i}"))
    page = list_backups(proj(state), {})
    assert [x.id for x in page.backups] == [x.id for x in reversed(made)] and page.next_marker is None
    assert [x.name for x in list_backups(proj(state), {"volume_id": b.id}).backups] == ["n3", "n1"]
    assert [x.name for x in list_backups(proj(state), {"name": "n2"}).backups] == ["n2"]
    assert list_backups(proj(state), {"status": "error"}).backups == []
    by_name = list_backups(proj(state), {"sort_key": "name", "sort_dir": "asc", "limit": "2"})
    assert [x.name for x in by_name.backups] == ["n0", "n1"] and by_name.next_marker == made[1].id
    after = list_backups(
        proj(state), {"sort_key": "name", "sort_dir": "asc", "limit": "2", "marker": made[1].id}
    )
    assert [x.name for x in after.backups] == ["n2", "n3"] and after.next_marker == made[3].id
    last = list_backups(
        proj(state), {"sort_key": "name", "sort_dir": "asc", "limit": "2", "marker": made[3].id}
    )
    assert [x.name for x in last.backups] == ["n4"] and last.next_marker is None
    exact = list_backups(proj(state), {"sort_key": "name", "sort_dir": "asc", "limit": "5"})
    assert exact.next_marker is None  # a full last page does not announce an empty next one
    assert [x.name for x in list_backups(proj(state), {"sort_dir": "asc", "offset": "3"}).backups] == [
        "n3",
        "n4",
    ]


@pytest.mark.parametrize(
    "params",
    [{"sort_key": "colour"}, {"sort_dir": "up"}, {"limit": "x"}, {"offset": "-1"}, {"marker": "nope"}],
)
def test_list_rejects_bad_parameters_with_cinder_400(state: CloudState, params: dict[str, str]) -> None:
    assert cinder_of(list_backups, proj(state), params) == (400, "badRequest")


def test_list_reflects_progress_and_hides_backups_shared_to_the_project(state: CloudState) -> None:
    create_backup(state, proj(state), backup_body(vol(state)))
    assert [b.status for b in list_backups(proj(state), {}).backups] == ["creating"]
    advance(state, DONE_10GIB)
    assert [b.status for b in list_backups(proj(state), {}).backups] == ["available"]
    theirs = backup_now_in(state, OTHER)
    share_backup(state, proj(state, OTHER), {"shared": {"backup_id": theirs.id, "to_project_ids": [PID]}})
    assert theirs.id not in [b.id for b in list_backups(proj(state), {}).backups]
    assert cinder_of(get_backup, proj(state), theirs.id) == (404, "itemNotFound")


def backup_now_in(state: CloudState, pid: str) -> Any:
    volume = vol(state, pid=pid)
    job = create_backup(state, proj(state, pid), backup_body(volume))
    advance(state, DONE_10GIB)
    return proj(state, pid).backups[job.entities["backup_id"]]


# --------------------------------------------------------------------------------------------------------
# delete


def test_native_delete_lifecycle(state: CloudState) -> None:
    backup = backup_now(state, vol(state))
    share_backup(state, proj(state), {"shared": {"backup_id": backup.id, "to_project_ids": [OTHER]}})
    delete_backup(state, proj(state), backup.id)
    assert backup.status == "deleting" and state.shares == {}
    assert cinder_of(delete_backup, state, proj(state), backup.id) == (400, "badRequest")
    advance(state, 4.9)
    assert backup.id in proj(state).backups
    advance(state, 0.1)
    assert backup.id not in proj(state).backups
    assert cinder_of(delete_backup, state, proj(state), backup.id) == (404, "itemNotFound")


def test_delete_refuses_creating_backup_and_allows_error_backup(state: CloudState) -> None:
    state.job_faults.append(JobFault(mode="fail", count=1))
    volume = vol(state)
    create_backup(state, proj(state), backup_body(volume))
    (failed,) = proj(state).backups.values()
    assert cinder_of(delete_backup, state, proj(state), failed.id) == (400, "badRequest")
    advance(state, DONE_10GIB)
    delete_backup(state, proj(state), failed.id)
    assert failed.status == "deleting"


def test_deprecated_cloud_delete_returns_a_delete_job(state: CloudState) -> None:
    backup = backup_now(state, vol(state))
    assert code_of(delete_cloud_backup, state, proj(state), new_uuid()) == ("VolumeBackup.0110", 404)
    job = delete_cloud_backup(state, proj(state), backup.id)
    assert job.job_type == "bksDeleteBackup" and backup.status == "deleting"
    assert code_of(delete_cloud_backup, state, proj(state), backup.id) == ("VolumeBackup.0102", 400)
    advance(state, 1 + 5)
    assert job.status == "SUCCESS" and backup.id not in proj(state).backups
    assert job.entities == {"backup_id": backup.id}


def test_deprecated_cloud_delete_fault_restores_the_backup() -> None:
    state = make_state(job_mode="polls", polls_to_finish=1)
    volume = vol(state)
    made = create_backup(state, proj(state), backup_body(volume))
    get_job(state, proj(state), made.id)
    backup_id = made.entities["backup_id"]
    state.job_faults.append(JobFault(mode="fail", job_type="bksDeleteBackup", error_code="VolumeBackup.0102"))
    job = delete_cloud_backup(state, proj(state), backup_id)
    assert get_job(state, proj(state), job.id).status == "FAIL"
    assert job.error_code == "VolumeBackup.0102" and proj(state).backups[backup_id].status == "available"


# --------------------------------------------------------------------------------------------------------
# restore


def restore_body(volume: Volume) -> dict[str, Any]:
    return {"restore": {"volume_id": volume.id}}


def test_restore_lifecycle_on_a_detached_disk(state: CloudState) -> None:
    source = vol(state, status="available")
    backup = backup_now(state, source)
    job = restore_backup(state, proj(state), backup.id, restore_body(source))
    assert (job.job_type, backup.status, source.status) == (
        "bksRestoreBackup",
        "restoring",
        "restoring-backup",
    )
    assert code_of(create_backup, state, proj(state), backup_body(source))[0] == "VolumeBackup.0012"
    advance(state, DONE_10GIB)
    assert (job.status, backup.status, source.status) == ("SUCCESS", "available", "available")
    assert job.entities == {"backup_id": backup.id, "volume_id": source.id}


def test_restore_fault_leaves_disk_error_restoring(state: CloudState) -> None:
    target = vol(state, status="available", size=20)
    backup = backup_now(state, vol(state))
    state.job_faults.append(
        JobFault(mode="fail", job_type="bksRestoreBackup", error_code="VolumeBackup.0200")
    )
    job = restore_backup(state, proj(state), backup.id, restore_body(target))
    advance(state, DONE_10GIB)
    assert (job.status, job.error_code, target.status, backup.status) == (
        "FAIL",
        "VolumeBackup.0200",
        "error_restoring",
        "available",
    )
    assert target.size == 20


def test_restore_validation_codes(state: CloudState) -> None:
    project = proj(state)
    small = vol(state, size=5, status="available")
    good = vol(state, size=10, status="available")
    backup = backup_now(state, vol(state, size=10))

    def code(backup_id: str, payload: Any) -> tuple[str, int]:
        return code_of(restore_backup, state, project, backup_id, payload)

    assert code(backup.id, {"restore": "x"}) == ("VolumeBackup.0210", 400)
    assert code("", restore_body(good)) == ("VolumeBackup.0203", 400)
    assert code("not-a-uuid", restore_body(good)) == ("VolumeBackup.0204", 400)
    assert code(backup.id, {"restore": {"volume_id": "bad"}}) == ("VolumeBackup.0208", 400)
    assert code(new_uuid(), restore_body(good)) == ("VolumeBackup.0111", 404)
    assert code(backup.id, {"restore": {"volume_id": new_uuid()}}) == ("VolumeBackup.0207", 404)
    assert code(backup.id, restore_body(small)) == ("VolumeBackup.0209", 400)
    assert code(backup.id, restore_body(vol(state, status="error"))) == ("VolumeBackup.0202", 400)
    assert code(backup.id, restore_body(vol(state, status="in-use"))) == ("VolumeBackup.0205", 400)
    assert code(backup.id, restore_body(vol(state, status="extending"))) == ("VolumeBackup.0205", 400)
    busy = vol(state, status="available")
    create_backup(state, project, backup_body(busy))
    assert code(backup.id, restore_body(busy)) == ("VolumeBackup.0206", 400)
    restore_backup(state, project, backup.id, restore_body(good))
    assert code(backup.id, restore_body(good)) == ("VolumeBackup.0089", 400)


def test_restore_in_use_allowed_by_setting_returns_disk_in_use() -> None:
    state = make_state(restore_in_use="allow")
    disk = vol(state, status="in-use")
    backup = backup_now(state, disk)
    restore_backup(state, proj(state), backup.id, restore_body(disk))
    advance(state, DONE_10GIB)
    assert disk.status == "in-use"


def test_backup_shared_to_the_caller_cannot_restore_its_disks(state: CloudState) -> None:
    theirs = backup_now_in(state, OTHER)
    share_backup(state, proj(state, OTHER), {"shared": {"backup_id": theirs.id, "to_project_ids": [PID]}})
    mine = vol(state, status="available")
    assert code_of(restore_backup, state, proj(state), theirs.id, restore_body(mine)) == (
        "VolumeBackup.0111",
        404,
    )


def test_native_restore_uses_cinder_errors_and_the_clock(state: CloudState) -> None:
    disk = vol(state, status="available")
    backup = backup_now(state, disk)
    assert cinder_of(restore_native_backup, state, proj(state), new_uuid(), restore_body(disk)) == (
        404,
        "itemNotFound",
    )
    attached = vol(state, status="in-use")
    assert cinder_of(restore_native_backup, state, proj(state), backup.id, restore_body(attached)) == (
        400,
        "badRequest",
    )
    got_backup, got_volume = restore_native_backup(state, proj(state), backup.id, restore_body(disk))
    assert (got_backup, got_volume) == (backup, disk) and disk.status == "restoring-backup"
    advance(state, DONE_10GIB)
    assert disk.status == "available" and backup.status == "available"


# --------------------------------------------------------------------------------------------------------
# sharing


def shared(backup_id: str, *targets: str) -> dict[str, Any]:
    return {"shared": {"backup_id": backup_id, "to_project_ids": list(targets)}}


def test_share_rules(state: CloudState) -> None:
    project = proj(state)
    backup = backup_now(state, vol(state))
    third = "ab" * 16
    first = share_backup(state, project, shared(backup.id, OTHER, third))
    assert [s.to_project_id for s in first] == [OTHER, third]
    again = share_backup(state, project, shared(backup.id, OTHER))
    assert again[0].id == first[0].id and len(state.shares) == 2  # re-sharing returns the record
    assert code_of(share_backup, state, project, shared(backup.id, "XYZ")) == ("VolumeBackup.0002", 400)
    assert code_of(share_backup, state, project, shared(backup.id, PID)) == ("VolumeBackup.0002", 400)
    assert code_of(share_backup, state, project, shared(backup.id)) == ("VolumeBackup.0002", 400)
    assert code_of(share_backup, state, project, {"x": 1}) == ("VolumeBackup.0002", 400)
    assert code_of(share_backup, state, project, shared(new_uuid(), OTHER)) == ("VolumeBackup.0043", 404)
    create_backup(state, project, backup_body(vol(state)))
    creating = next(b for b in project.backups.values() if b.status == "creating")
    assert code_of(share_backup, state, project, shared(creating.id, OTHER)) == ("VolumeBackup.0089", 400)
    # a recipient may not share what it received
    assert code_of(share_backup, state, proj(state, OTHER), shared(backup.id, third)) == (
        "VolumeBackup.0043",
        404,
    )


def test_share_listing_count_get_and_cancel(state: CloudState) -> None:
    project, other = proj(state), proj(state, OTHER)
    data = backup_now(state, vol(state), name="data-disk")
    root = backup_now(state, vol(state), name="root-disk")
    (s1,) = share_backup(state, project, shared(data.id, OTHER))
    (s2,) = share_backup(state, project, shared(root.id, OTHER))
    assert [s.id for s, _ in list_shares(state, project, {})] == [s2.id, s1.id]  # created_at desc
    assert list_shares(state, project, {"share_to_me": "true"}) == []
    assert [s.id for s, _ in list_shares(state, other, {"share_to_me": "true", "sort_dir": "asc"})] == [
        s1.id,
        s2.id,
    ]
    assert [s.id for s, _ in list_shares(state, project, {"name": "DATA"})] == [s1.id]
    assert [s.id for s, _ in list_shares(state, project, {"volume_id": root.volume_id})] == [s2.id]
    assert [s.id for s, _ in list_shares(state, project, {"avalilability_zone": "nowhere"})] == []
    assert len(list_shares(state, project, {"availability_zone": data.availability_zone})) == 2
    assert [
        s.id for s, _ in list_shares(state, project, {"sort_key": "name", "sort_dir": "asc", "limit": "1"})
    ] == [s1.id]
    assert [s.id for s, _ in list_shares(state, project, {"offset": "1"})] == [s1.id]
    assert count_shares(state, project, {}) == 2 and count_shares(state, other, {"share_to_me": "true"}) == 2
    assert count_shares(state, project, {"backup_id": data.id}) == 1
    assert get_share(state, other, s1.id) == (s1, data)
    assert code_of(get_share, state, Project(id="c" * 32, name="stranger"), s1.id) == (
        "VolumeBackup.0043",
        404,
    )
    assert code_of(cancel_share, state, other, s1.id, is_backup_id=False)[1] == 404  # only the owner cancels
    cancel_share(state, project, s1.id, is_backup_id=False)
    cancel_share(state, project, root.id, is_backup_id=True)
    assert state.shares == {}
    assert code_of(cancel_share, state, project, s1.id, is_backup_id=False) == ("VolumeBackup.0043", 404)


# --------------------------------------------------------------------------------------------------------
# policies: validation and CRUD


def policy_body(**overrides: Any) -> dict[str, Any]:
    sp = {"start_time": "02:00", "frequency": 1, "rentention_num": 2, "remain_first_backup_of_curMonth": "N"}
    sp["status"] = "ON"
    sp.update(overrides.pop("sp", {}))
    return {
        "backup_policy_name": "plan01",
        "scheduled_policy": {k: v for k, v in sp.items() if v is not None},
        **overrides,
    }


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "AutoBackup.0001"),
        ([], "AutoBackup.0001"),
        (policy_body(backup_policy_name="a<b"), "AutoBackup.0221"),
        (policy_body(backup_policy_name=""), "AutoBackup.0101"),
        (policy_body(backup_policy_name="p" * 65), "AutoBackup.0101"),
        (policy_body(backup_policy_name="plan 01"), "AutoBackup.0102"),
        (policy_body(backup_policy_name="default_plan"), "AutoBackup.0102"),
        ({"backup_policy_name": "plan01"}, "AutoBackup.0001"),
        (policy_body(sp={"start_time": "12:30"}), "AutoBackup.0103"),
        (policy_body(sp={"start_time": "24:00"}), "AutoBackup.0103"),
        (policy_body(sp={"start_time": "04:00,02:00"}), "AutoBackup.0103"),
        (policy_body(sp={"start_time": "22:00,00:00"}), "AutoBackup.0103"),
        (policy_body(sp={"start_time": None}), "AutoBackup.0103"),
        (policy_body(sp={"status": "on"}), "AutoBackup.0104"),
        (policy_body(sp={"remain_first_backup_of_curMonth": "yes"}), "AutoBackup.0105"),
        (policy_body(sp={"frequency": 0}), "AutoBackup.0106"),
        (policy_body(sp={"frequency": 31}), "AutoBackup.0106"),
        (policy_body(sp={"frequency": "1"}), "AutoBackup.0106"),
        (policy_body(sp={"frequency": None, "week_frequency": ["MON", "XYZ"]}), "AutoBackup.0106"),
        (policy_body(sp={"frequency": None, "week_frequency": []}), "AutoBackup.0106"),
        (policy_body(sp={"frequency": None}), "AutoBackup.0106"),
        (policy_body(sp={"rentention_num": 1}), "AutoBackup.0107"),
        (policy_body(sp={"rentention_num": 100}), "AutoBackup.0107"),
        (policy_body(sp={"rentention_num": None, "rentention_day": 1}), "AutoBackup.0107"),
        (policy_body(sp={"rentention_num": None}), "AutoBackup.0107"),
        (policy_body(time_zone="UTC+2"), "AutoBackup.0226"),
        (policy_body(time_zone="UTC+15:00"), "AutoBackup.0226"),
        (policy_body(tags=[{"key": "env", "value": "a b"}]), "AutoBackup.0214"),
        (policy_body(tags=[{"key": "env", "value": "a"}, {"key": "env", "value": "b"}]), "AutoBackup.0214"),
        (policy_body(tags=[{"key": f"k{i}", "value": ""} for i in range(11)]), "AutoBackup.0215"),
    ],
)
def test_create_policy_validation(state: CloudState, body: Any, code: str) -> None:
    assert code_of(create_policy, state, proj(state), body) == (code, 400)
    assert proj(state).policies == {}


def test_create_policy_resolves_both_given_fields_and_local_start_order(state: CloudState) -> None:
    both = policy_body(sp={"week_frequency": ["MON"], "rentention_day": 7.9})
    policy = create_policy(state, proj(state), both)
    assert (policy.frequency, policy.week_frequency, policy.retention_num, policy.retention_day) == (
        1,
        None,
        2,
        None,
    )
    days = policy_body(
        backup_policy_name="weekly",
        sp={
            "frequency": None,
            "week_frequency": ["SUN", "WED"],
            "rentention_num": None,
            "rentention_day": 7.9,
        },
        time_zone="UTC+02:00",
    )
    days["scheduled_policy"]["start_time"] = "22:00,00:00,02:00"  # ascending in local time at UTC+2
    weekly = create_policy(state, proj(state), days)
    assert ser.policy(weekly) == {
        "backup_policy_id": weekly.id,
        "backup_policy_name": "weekly",
        "scheduled_policy": {
            "start_time": "22:00,00:00,02:00",
            "week_frequency": ["SUN", "WED"],
            "rentention_day": 7,
            "remain_first_backup_of_curMonth": "N",
            "status": "ON",
        },
        "policy_resource_count": 0,
        "time_zone": "UTC+02:00",
    }


def test_policy_count_limit_is_0203() -> None:
    state = make_state(max_policies=2)
    create_policy(state, proj(state), policy_body())
    create_policy(state, proj(state), policy_body())
    assert code_of(create_policy, state, proj(state), policy_body()) == ("AutoBackup.0203", 400)


def test_update_merges_and_checks(state: CloudState) -> None:
    policy = create_policy(state, proj(state), policy_body(sp={"status": "OFF"}))
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"status": "ON"}})
    assert (policy.status, policy.name, policy.start_time, policy.frequency) == ("ON", "plan01", "02:00", 1)
    update_policy(
        state, proj(state), policy.id, {"scheduled_policy": {"week_frequency": ["FRI"], "rentention_day": 30}}
    )
    assert (policy.frequency, policy.week_frequency, policy.retention_num, policy.retention_day) == (
        None,
        ["FRI"],
        None,
        30,
    )
    update_policy(state, proj(state), policy.id, {"backup_policy_name": "renamed", "time_zone": "UTC-05:00"})
    assert (policy.name, policy.time_zone, policy.week_frequency) == ("renamed", "UTC-05:00", ["FRI"])
    assert code_of(
        update_policy, state, proj(state), policy.id, {"scheduled_policy": {"rentention_num": 3}}
    ) == (
        "AutoBackup.0106",
        400,
    )
    assert code_of(update_policy, state, proj(state), new_uuid(), {"backup_policy_name": "x"}) == (
        "AutoBackup.0205",
        404,
    )
    bad_freq = {"scheduled_policy": {"frequency": 99}}
    assert code_of(update_policy, state, proj(state), policy.id, bad_freq) == ("AutoBackup.0106", 400)
    assert policy.week_frequency == ["FRI"]  # a refused update changes nothing


def test_delete_policy_drops_associations_keeps_backups(state: CloudState) -> None:
    disk = vol(state)
    policy = create_policy(state, proj(state), policy_body())
    associate_resources(state, proj(state), {"backup_policy_id": policy.id, "resources": [resource(disk)]})
    execute_policy(state, proj(state), policy.id)
    advance(state, DONE_10GIB)
    delete_policy(state, proj(state), policy.id)
    assert proj(state).policies == {} and "policy" not in disk.metadata and proj(state).tasks == []
    assert [b.status for b in proj(state).backups.values()] == ["available"]
    assert code_of(delete_policy, state, proj(state), policy.id) == ("AutoBackup.0205", 404)


# --------------------------------------------------------------------------------------------------------
# association


def resource(volume: Volume) -> dict[str, str]:
    return {"resource_id": volume.id, "resource_type": "volume"}


def test_associate_partial_success_and_moving(state: CloudState) -> None:
    project = proj(state)
    first = create_policy(state, project, policy_body())
    second = create_policy(state, project, policy_body(backup_policy_name="plan02"))
    good, broken = vol(state), vol(state, status="error_restoring")
    items = [
        resource(good),
        resource(broken),
        {"resource_id": new_uuid(), "resource_type": "volume"},
        {"resource_id": "", "resource_type": "volume"},
        {"resource_id": good.id, "resource_type": "server"},
    ]
    ok, failed = associate_resources(state, project, {"backup_policy_id": first.id, "resources": items})
    assert [r.resource_id for r in ok] == [good.id]
    assert [r.code for r in failed] == [
        "AutoBackup.0206",
        "AutoBackup.1400",
        "AutoBackup.0209",
        "AutoBackup.0211",
    ]
    assert first.resource_ids == [good.id] and good.metadata["policy"] == first.id
    associate_resources(state, project, {"backup_policy_id": second.id, "resources": [resource(good)]})
    assert (first.resource_ids, second.resource_ids, good.metadata["policy"]) == ([], [good.id], second.id)
    assert ser.policy(second)["policy_resource_count"] == 1


def test_associate_whole_request_errors(state: CloudState) -> None:
    policy = create_policy(state, proj(state), policy_body())
    assert code_of(associate_resources, state, proj(state), {"resources": [1]}) == ("AutoBackup.0006", 400)
    body = {"backup_policy_id": new_uuid(), "resources": [resource(vol(state))]}
    assert code_of(associate_resources, state, proj(state), body) == ("AutoBackup.0205", 404)
    assert code_of(
        associate_resources, state, proj(state), {"backup_policy_id": policy.id, "resources": []}
    ) == (
        "AutoBackup.0207",
        400,
    )


def test_disassociate_and_metadata_removal(state: CloudState) -> None:
    project = proj(state)
    policy = create_policy(state, project, policy_body())
    a, b, c = vol(state), vol(state), vol(state)
    associate_resources(
        state, project, {"backup_policy_id": policy.id, "resources": [resource(a), resource(b)]}
    )
    ok, failed = disassociate_resources(
        state, project, policy.id, {"resources": [{"resource_id": a.id}, {"resource_id": c.id}, {}]}
    )
    assert [r.resource_id for r in ok] == [a.id] and "policy" not in a.metadata
    assert [r.code for r in failed] == ["AutoBackup.1400", "AutoBackup.0209"]
    assert code_of(disassociate_resources, state, project, policy.id, {"resources": []}) == (
        "AutoBackup.0207",
        400,
    )
    del b.metadata["policy"]  # §4.8: dropping the metadata key through EVS disassociates the disk
    state.tick()
    assert policy.resource_ids == []


# --------------------------------------------------------------------------------------------------------
# execution and tasks


def associated_policy(state: CloudState, *disks: Volume, **overrides: Any) -> Any:
    """A policy with the disks; OFF unless `sp` says otherwise, so only explicit executions run it."""
    overrides["sp"] = {"status": "OFF", **overrides.get("sp", {})}
    policy = create_policy(state, proj(state), policy_body(**overrides))
    associate_resources(
        state, proj(state), {"backup_policy_id": policy.id, "resources": [resource(d) for d in disks]}
    )
    return policy


def test_execute_makes_tasks_and_automatic_backups(state: CloudState) -> None:
    project = proj(state)
    good, broken, busy = vol(state), vol(state, status="available"), vol(state)
    policy = associated_policy(state, good, broken, busy)
    broken.status = "extending"
    create_backup(state, project, backup_body(busy))
    execute_policy(state, project, policy.id)
    assert code_of(execute_policy, state, project, policy.id) == ("AutoBackup.0225", 409)
    tasks = {t.resource_id: t for t in project.tasks}
    assert (tasks[good.id].status, tasks[broken.id].status, tasks[busy.id].status) == (
        "WAITING",
        "SKIP",
        "EXECUTE_FAIL",
    )
    assert tasks[broken.id].finished_at == START and tasks[good.id].finished_at is None
    auto = project.backups[project.jobs[tasks[good.id].vbs_job_id].context["backup_id"]]
    assert re.fullmatch(r"autobk_[0-9a-f]{4}", auto.name) and auto.name == tasks[good.id].backup_name
    assert (auto.kind, auto.policy_id, auto.retention_rule) == ("auto", policy.id, ("num", 2))
    advance(state, 1)
    assert tasks[good.id].status == "RUNNING" and policy.executing
    advance(state, DONE_10GIB)
    assert tasks[good.id].status == "EXECUTE_SUCCESS" and tasks[good.id].finished_at == START + timedelta(
        seconds=76
    )
    assert not policy.executing and auto.status == "available"


def test_job_faults_apply_to_policy_backups(state: CloudState) -> None:
    failing, hanging = vol(state), vol(state)
    policy = associated_policy(state, failing, hanging)
    state.job_faults += [
        JobFault(mode="fail", volume_id=failing.id),
        JobFault(mode="hang", volume_id=hanging.id),
    ]
    execute_policy(state, proj(state), policy.id)
    advance(state, 3600)
    statuses = {t.resource_id: t.status for t in proj(state).tasks}
    assert statuses == {failing.id: "EXECUTE_FAIL", hanging.id: "RUNNING"}
    assert policy.executing  # the hung task keeps the execution open
    assert code_of(execute_policy, state, proj(state), policy.id)[0] == "AutoBackup.0225"


def test_list_policy_tasks_filters_pages_and_counts(state: CloudState) -> None:
    project = proj(state)
    disks = [vol(state) for _ in range(3)]
    policy = associated_policy(state, *disks)
    execute_policy(state, project, policy.id)
    advance(state, DONE_10GIB)
    advance(state, 3600)
    execute_policy(state, project, policy.id)
    rows, count = list_policy_tasks(state, project, policy.id, {})
    assert count == 6 and len(rows) == 6
    assert [t.status for t in rows[:3]] == ["WAITING"] * 3 and [t.status for t in rows[3:]] == [
        "EXECUTE_SUCCESS"
    ] * 3
    wire = [ser.task(t) for t in rows]
    assert "finished_at" not in wire[0] and wire[5]["finished_at"] == "2026-01-01T00:01:16.000"
    assert wire[0]["vbs_job_id"] in project.jobs
    rows, count = list_policy_tasks(state, project, policy.id, {"status": "EXECUTE_SUCCESS", "limit": "2"})
    assert count == 3 and len(rows) == 2
    asc, _ = list_policy_tasks(state, project, policy.id, {"sort_dir": "asc"})
    assert asc[0].created_at == START
    after, _ = list_policy_tasks(
        state, project, policy.id, {"sort_dir": "asc", "marker": asc[1].job_id, "offset": "1"}
    )
    assert [t.job_id for t in after] == [t.job_id for t in asc[3:]]
    (one,), count = list_policy_tasks(state, project, policy.id, {"job_id": asc[4].job_id})
    assert one is asc[4] and count == 1
    for params in ({"sort_key": "name"}, {"limit": "0"}, {"status": "DONE"}, {"marker": "nope"}):
        assert code_of(list_policy_tasks, state, project, policy.id, params) == ("AutoBackup.0001", 400)
    assert code_of(list_policy_tasks, state, project, new_uuid(), {}) == ("AutoBackup.0205", 404)


def test_list_policy_tasks_default_limit_is_20(state: CloudState) -> None:
    policy = associated_policy(state, *[vol(state) for _ in range(25)])
    execute_policy(state, proj(state), policy.id)
    rows, count = list_policy_tasks(state, proj(state), policy.id, {})
    assert (len(rows), count) == (20, 25)


def test_poll_mode_tasks_advance_through_task_listing() -> None:
    state = make_state(job_mode="polls", polls_to_finish=2)
    policy = associated_policy(state, vol(state))
    execute_policy(state, proj(state), policy.id)
    assert [t.status for t in list_policy_tasks(state, proj(state), policy.id, {})[0]] == ["RUNNING"]
    assert [t.status for t in list_policy_tasks(state, proj(state), policy.id, {})[0]] == ["EXECUTE_SUCCESS"]
    assert not policy.executing


# --------------------------------------------------------------------------------------------------------
# retention (§4.5)


def run_once(state: CloudState, policy: Any, hours: float = 1) -> None:
    execute_policy(state, proj(state), policy.id)
    advance(state, hours * 3600)


def live_autos(state: CloudState) -> list[Any]:
    return sorted((b for b in proj(state).backups.values() if b.kind == "auto"), key=lambda b: b.created_at)


def test_count_retention_keeps_newest_and_never_touches_manual_or_foreign_backups(state: CloudState) -> None:
    disk, elsewhere = vol(state), vol(state)
    manual = backup_now(state, disk)
    policy = associated_policy(state, disk)
    other = associated_policy(state, elsewhere, backup_policy_name="other")
    run_once(state, other)
    for _ in range(4):
        run_once(state, policy)
    autos = [b for b in live_autos(state) if b.policy_id == policy.id]
    assert len(autos) == 2 and manual.id in proj(state).backups
    assert len([b for b in live_autos(state) if b.policy_id == other.id]) == 1


def test_count_to_count_change_applies_to_old_backups(state: CloudState) -> None:
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"rentention_num": 3})
    for _ in range(3):
        run_once(state, policy)
    assert len(live_autos(state)) == 3
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"frequency": 1, "rentention_num": 2}})
    assert len(live_autos(state)) == 3  # nothing happens before the next execution
    run_once(state, policy)
    assert len(live_autos(state)) == 2


def test_count_to_days_keeps_old_backups_forever(state: CloudState) -> None:
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"rentention_num": 2})
    for _ in range(2):
        run_once(state, policy)
    old = {b.id for b in live_autos(state)}
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"frequency": 1, "rentention_day": 2}})
    for _ in range(4):
        run_once(state, policy, hours=24)
    ids = {b.id for b in live_autos(state)}
    assert old <= ids  # made under the count rule: no longer deleted automatically
    assert len(ids - old) == 2  # new backups expire after 2 days


def test_days_to_count_keeps_old_expiry_and_counts_new_ones(state: CloudState) -> None:
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"rentention_num": None, "rentention_day": 3})
    run_once(state, policy, hours=24)
    (old,) = live_autos(state)
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"frequency": 1, "rentention_num": 2}})
    run_once(state, policy, hours=24)
    run_once(state, policy, hours=24)
    run_once(state, policy, hours=24)
    autos = live_autos(state)
    assert old.id not in [b.id for b in autos]  # expired by its own 3-day rule (run on day 3)
    assert len(autos) == 2 and all(b.retention_rule == ("num", 2) for b in autos)


def test_days_to_days_keeps_each_backups_own_expiry(state: CloudState) -> None:
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"rentention_num": None, "rentention_day": 10})
    run_once(state, policy, hours=24)
    (old,) = live_autos(state)
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"frequency": 1, "rentention_day": 2}})
    for _ in range(3):
        run_once(state, policy, hours=24)
    ids = [b.id for b in live_autos(state)]
    assert old.id in ids and len(ids) == 3  # the old one lives 10 days; of the new ones the 2-day-old went
    for _ in range(7):
        run_once(state, policy, hours=24)
    assert old.id not in [b.id for b in live_autos(state)]


def test_first_backup_of_the_month_is_kept_during_that_month_only(state: CloudState) -> None:
    state.clock.set(datetime(2026, 1, 30, 1, tzinfo=UTC))
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"remain_first_backup_of_curMonth": "Y"})
    for _ in range(3):  # Jan 30, Jan 31, Feb 1
        run_once(state, policy, hours=24)
    first_of_feb = live_autos(state)[-1]
    for _ in range(3):  # Feb 2, 3, 4
        run_once(state, policy, hours=24)
    autos = live_autos(state)
    assert first_of_feb in autos and len(autos) == 3  # 2 newest + the first of February
    state.clock.set(datetime(2026, 3, 1, 1, tzinfo=UTC))
    run_once(state, policy)
    run_once(state, policy)
    autos = live_autos(state)
    assert first_of_feb not in autos and len(autos) == 2  # the newest is March's first, counted among 2


# --------------------------------------------------------------------------------------------------------
# scheduler (§4.4)


def test_scheduler_runs_on_policy_start_times_once_per_slot(state: CloudState) -> None:
    disk = vol(state)
    policy = associated_policy(state, disk, sp={"start_time": "02:00,14:00", "status": "ON"})
    advance(state, 3 * 24 * 3600)  # one jump: the slots fire in order, each at its own time
    starts = sorted({t.created_at for t in proj(state).tasks})
    assert starts == [START + timedelta(days=d, hours=h) for d in range(3) for h in (2, 14)]
    assert all(t.status == "EXECUTE_SUCCESS" for t in proj(state).tasks)
    assert len(live_autos(state)) == 2  # retention ran after each slot
    state.tick()
    assert len(proj(state).tasks) == 6 and not policy.executing
    assert policy.last_run_slot == START + timedelta(days=2, hours=14)


def test_scheduler_skips_off_policies_and_frequency_is_anchored_to_the_month(state: CloudState) -> None:
    state.clock.set(datetime(2026, 3, 2, 12, tzinfo=UTC))
    disk = vol(state)
    every3 = associated_policy(state, disk, sp={"frequency": 3, "status": "ON"})
    off = associated_policy(state, vol(state), backup_policy_name="off", sp={"status": "OFF"})
    assert next_slot(every3, state.now()) == datetime(2026, 3, 4, 2, tzinfo=UTC)  # days 1, 4, 7, ...
    advance(state, 6 * 24 * 3600)
    assert sorted(t.created_at.day for t in proj(state).tasks if t.policy_id == every3.id) == [4, 7]
    assert not any(t.policy_id == off.id for t in proj(state).tasks)


def test_week_frequency_days_are_local_days(state: CloudState) -> None:
    # 2026-01-04 is a Sunday: 23:00 UTC on Sunday is 01:00 on Monday at UTC+02:00
    policy = associated_policy(
        state,
        vol(state),
        sp={"frequency": None, "week_frequency": ["MON"], "start_time": "23:00"},
        time_zone="UTC+02:00",
    )
    assert next_slot(policy, START) == datetime(2026, 1, 4, 23, tzinfo=UTC)
    policy.time_zone = None
    assert next_slot(policy, START) == datetime(2026, 1, 5, 23, tzinfo=UTC)


def test_scheduler_skips_slots_while_the_previous_run_hangs(state: CloudState) -> None:
    disk = vol(state)
    state.job_faults.append(JobFault(mode="hang", count=1))
    associated_policy(state, disk, sp={"status": "ON"})
    advance(state, 3 * 24 * 3600)
    assert len(proj(state).tasks) == 1  # later slots found the policy still executing


def test_turning_a_policy_on_does_not_owe_missed_slots(state: CloudState) -> None:
    policy = associated_policy(state, vol(state), sp={"status": "OFF"})
    advance(state, 2 * 24 * 3600)
    update_policy(state, proj(state), policy.id, {"scheduled_policy": {"status": "ON"}})
    advance(state, 60)
    assert proj(state).tasks == []


# --------------------------------------------------------------------------------------------------------
# tags


def test_policy_tag_operations(state: CloudState) -> None:
    project = proj(state)
    policy = create_policy(state, project, policy_body(tags=[{"key": "env", "value": "prod"}]))
    other = create_policy(state, project, policy_body(tags=[{"key": "env", "value": "test"}]))
    add_policy_tag(project, policy.id, {"tag": {"key": "owner", "value": "ops"}})
    add_policy_tag(project, policy.id, {"tag": {"key": "owner", "value": "dba"}})  # upsert
    assert list_policy_tags(project, policy.id) == {"env": "prod", "owner": "dba"}
    assert list_project_policy_tags(project) == {"env": ["prod", "test"], "owner": ["dba"]}
    for bad in ({"tag": {"key": "", "value": "x"}}, {"tag": {"key": "a b", "value": ""}}, {"tag": "x"}):
        assert code_of(add_policy_tag, project, policy.id, bad) == ("AutoBackup.0214", 400)
    for i in range(9):
        add_policy_tag(project, other.id, {"tag": {"key": f"k{i}", "value": ""}})
    add_policy_tag(project, other.id, {"tag": {"key": "k0", "value": "new"}})  # an update does not add
    assert code_of(add_policy_tag, project, other.id, {"tag": {"key": "k9", "value": ""}}) == (
        "AutoBackup.0215",
        400,
    )
    delete_policy_tag(project, policy.id, "owner")
    assert code_of(delete_policy_tag, project, policy.id, "owner") == ("AutoBackup.0216", 404)
    assert code_of(list_policy_tags, project, new_uuid()) == ("AutoBackup.0205", 404)


def test_batch_policy_tags(state: CloudState) -> None:
    project = proj(state)
    policy = create_policy(state, project, policy_body(tags=[{"key": "env", "value": "prod"}]))
    batch_policy_tags(project, policy.id, {"action": "create", "tags": [{"key": "a", "value": "1"}]})
    batch_policy_tags(project, policy.id, {"action": "update", "tags": [{"key": "a", "value": "2"}]})
    assert policy.tags == {"env": "prod", "a": "2"}
    delete = [{"key": "env", "value": "other"}, {"key": "a"}, {"key": "missing"}]
    batch_policy_tags(project, policy.id, {"action": "delete", "tags": delete})
    assert policy.tags == {"env": "prod"}  # a different value spares the tag
    batch_policy_tags(project, policy.id, {"action": "delete", "tags": [{"key": "env", "value": "prod"}]})
    assert policy.tags == {}
    assert code_of(batch_policy_tags, project, policy.id, {"action": "Create", "tags": []}) == (
        "AutoBackup.0222",
        400,
    )
    eleven = [{"key": f"k{i}", "value": "v"} for i in range(11)]
    assert code_of(batch_policy_tags, project, policy.id, {"action": "create", "tags": eleven}) == (
        "AutoBackup.0215",
        400,
    )
    half_bad = [{"key": "ok", "value": "v"}, {"key": "k|", "value": "v"}]
    assert (
        code_of(batch_policy_tags, project, policy.id, {"action": "create", "tags": half_bad})[0]
        == "AutoBackup.0214"
    )
    assert policy.tags == {}  # atomic


def test_query_policies_by_tags(state: CloudState) -> None:
    project = proj(state)

    def make(name: str, **tags: str) -> Any:
        return create_policy(
            state,
            project,
            policy_body(backup_policy_name=name, tags=[{"key": k, "value": v} for k, v in tags.items()]),
        )

    prod = make("plan_prod", env="prod", team="db")
    test = make("plan_test", env="test")
    bare = make("nightly")

    def names(**body: Any) -> list[str]:
        total, found = query_policies_by_tags(project, {"action": "filter", **body})
        assert found is not None and total >= len(found)
        return [p.name for p in found]

    assert names() == ["plan_prod", "plan_test", "nightly"]
    assert names(tags=[{"key": "env", "values": ["prod", "test"]}]) == ["plan_prod", "plan_test"]
    assert names(tags=[{"key": "env", "values": []}, {"key": "team", "values": ["db"]}]) == ["plan_prod"]
    assert names(tags_any=[{"key": "team", "values": []}, {"key": "env", "values": ["test"]}]) == [
        "plan_prod",
        "plan_test",
    ]
    assert names(not_tags=[{"key": "env", "values": ["prod"]}]) == ["plan_test", "nightly"]
    assert names(not_tags_any=[{"key": "env", "values": []}]) == ["nightly"]
    assert names(matches=[{"key": "resource_name", "value": "PLAN"}]) == ["plan_prod", "plan_test"]
    assert names(limit="1", offset="1") == ["plan_test"]
    assert query_policies_by_tags(project, {"action": "filter", "limit": "1"})[0] == 3
    assert query_policies_by_tags(project, {"action": "count", "tags": [{"key": "env", "values": []}]}) == (
        2,
        None,
    )
    for bad, code in (
        ({"action": "list"}, "AutoBackup.0222"),
        ({"action": "filter", "limit": 10}, "AutoBackup.0001"),
        ({"action": "filter", "limit": "0"}, "AutoBackup.0001"),
        ({"action": "filter", "limit": "1001"}, "AutoBackup.0001"),
        ({"action": "filter", "offset": "-1"}, "AutoBackup.0001"),
        ({"action": "filter", "tags_any": []}, "AutoBackup.0214"),
        (
            {"action": "filter", "tags": [{"key": "a", "values": []}, {"key": "a", "values": []}]},
            "AutoBackup.0214",
        ),
        ({"action": "filter", "matches": [{"key": "id", "value": "x"}]}, "AutoBackup.0214"),
    ):
        assert code_of(query_policies_by_tags, project, bad) == (code, 400)
    assert bare.tags == {} and prod.id != test.id


# --------------------------------------------------------------------------------------------------------
# odds and ends


def test_errors_never_leak_into_state_on_refused_share_of_deleted_backup(state: CloudState) -> None:
    backup = backup_now(state, vol(state))
    delete_backup(state, proj(state), backup.id)
    assert code_of(share_backup, state, proj(state), shared(backup.id, OTHER)) == ("VolumeBackup.0089", 400)
    state.shares["x"] = Share(
        id="x", backup_id=backup.id, from_project_id=PID, to_project_id=OTHER, created_at=START
    )
    advance(state, 10)
    assert get_share(state, proj(state), "x")[1] is None  # a record whose backup vanished still reads


def test_project_summary_lists_vbs_objects(state: CloudState) -> None:
    backup = backup_now(state, vol(state))
    summary = ser.project_summary(proj(state))
    assert summary["backups"][backup.id]["status"] == "available" and len(summary["jobs"]) == 1


def test_emulator_errors_are_typed(state: CloudState) -> None:
    with pytest.raises(EmulatorError):
        get_job(state, proj(state), "nope")
