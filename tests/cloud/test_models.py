"""The client's wire models against the documented examples of `reference/vbs-api.md`.

Pure tests, no HTTP: every documented response body decodes into its model with the quirks resolved
(JSON-in-a-string fields, string booleans and ints, zone-less times), and every request model encodes to
the documented body (aliases, the `rentention` spelling, "Y"/"N", string limit/offset, tag-key encoding).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr, ValidationError

from vbs_backup.cloud.errors import InvalidResponseError
from vbs_backup.cloud.models import (
    AssociateRequest,
    AssociateResult,
    Backup,
    BackupList,
    BackupStatus,
    BackupSummary,
    BackupSummaryList,
    BatchTag,
    BatchTagsRequest,
    BlockDeviceList,
    CreateBackupRequest,
    CreatePolicyRequest,
    CreateTokenRequest,
    CreateVolumeRequest,
    DisassociateRequest,
    Job,
    JobRef,
    JobStatus,
    NativeBackupRequest,
    NativeRestore,
    Policy,
    PolicyResource,
    PolicyStatus,
    PolicyTaskList,
    Quotas,
    ResourceRef,
    RestoreRequest,
    ScheduledPolicy,
    Server,
    ServerList,
    Share,
    ShareBackupRequest,
    Tag,
    TagAction,
    TagMatch,
    TagQuery,
    TagQueryAction,
    TagQueryResult,
    TagValues,
    TaskStatus,
    Token,
    UpdatePolicyRequest,
    Volume,
    VolumeAttachment,
    VolumeList,
    VolumeStatus,
    Weekday,
    next_marker,
    parse_utc,
    require_opaque_id,
    require_uuid,
)
from vbs_backup.cloud.models.common import decode
from vbs_backup.cloud.vbs import tag_key_segment

# The service_metadata example of §1, leading and trailing spaces included.
SERVICE_METADATA = (
    ' {"bootable": false, "backupurl": "58d9a2c8-5cb4-4bd6-9b0a-0b7d2b1d7a21", "BackupSize": 0,'
    ' "progress": "0", "snap_id": "665e7c1a-4d1f-4b8c-9c55-8d3a4f4e0c11", "Type": 0} '
)

HOST = "vbs.eu-de.otc.t-systems.com"
PID = "17fbda95add24720a4038ba4b1c705ed"

# A full backup as §1 describes it (field values from the documented examples).
BACKUP_DETAIL = {
    "id": "87566ed6-72cb-4053-aa6e-6f6216b3d507",
    "name": "web01-data-20240101",
    "status": "available",
    "description": '{"DESC": "Backup_Demo", "INC": 1}',
    "links": [
        {"href": f"https://{HOST}/v2/{PID}/backups/87566ed6-72cb-4053-aa6e-6f6216b3d507", "rel": "self"},
        {"href": f"https://{HOST}/{PID}/backups/87566ed6-72cb-4053-aa6e-6f6216b3d507", "rel": "bookmark"},
    ],
    "availability_zone": "eu-de-01",
    "volume_id": "5024a06e-6990-4f12-9dcc-8fe26b01a710",
    "snapshot_id": "665e7c1a-4d1f-4b8c-9c55-8d3a4f4e0c11",
    "fail_reason": None,
    "size": 10,
    "object_count": 0,
    "container": "volumebackups",
    "created_at": "2013-06-27T08:48:03.000000",
    "updated_at": "2019-03-27T12:36:17.596602",
    "data_timestamp": "2013-06-27T08:48:03",
    "os-bak-tenant-attr:tenant_id": "17fbda95add24720a4038ba4b1c705ed",
    "service_metadata": SERVICE_METADATA,
    "has_dependent_backups": None,
    "is_incremental": None,
}


# ---------------------------------------------------------------------------------------------------------
# common: times, links, ids


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2013-06-27T08:48:03.000000", datetime(2013, 6, 27, 8, 48, 3, tzinfo=UTC)),  # backups (§0.3)
        ("2019-03-27T12:36:17.596602", datetime(2019, 3, 27, 12, 36, 17, 596602, tzinfo=UTC)),
        ("2019-03-27T12:36:17", datetime(2019, 3, 27, 12, 36, 17, tzinfo=UTC)),  # 0 fractional digits
        ("2019-03-27T12:36:17.5", datetime(2019, 3, 27, 12, 36, 17, 500000, tzinfo=UTC)),
        ("2016-01-28T16:14:09.466Z", datetime(2016, 1, 28, 16, 14, 9, 466000, tzinfo=UTC)),  # jobs
        ("2016-12-02T09:06:46.706", datetime(2016, 12, 2, 9, 6, 46, 706000, tzinfo=UTC)),  # tasks
        ("2015-11-09T01:42:57.527363Z", datetime(2015, 11, 9, 1, 42, 57, 527363, tzinfo=UTC)),  # IAM
        ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, 0, 0, 0, tzinfo=UTC)),
    ],
)
def test_times_decode_to_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_utc(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() is not None


@pytest.mark.parametrize("value", [None, ""])
def test_empty_times_decode_to_none(value: object) -> None:
    assert parse_utc(value) is None


@pytest.mark.parametrize("text", ["yesterday", "2019-03-27", "27.03.2019 12:00:00"])
def test_malformed_times_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_utc(text)


def test_next_marker_is_read_from_the_next_link_even_without_the_version_segment() -> None:
    body = {
        "backups": [],
        "backups_links": [
            {
                "href": "https://vbs.example/17fbda95add24720a4038ba4b1c705ed/backups?limit=1&offset=1&marker=b3cf7a16-3f4b-4b9c-8f2e-0d8c4b7a1e55",
                "rel": "next",
            }
        ],
    }
    assert BackupSummaryList.model_validate(body).next_marker == "b3cf7a16-3f4b-4b9c-8f2e-0d8c4b7a1e55"
    assert next_marker([]) is None


def test_uuid_path_ids_are_checked_and_name_the_argument() -> None:
    assert require_uuid("backup_id", "87566ed6-72cb-4053-aa6e-6f6216b3d507")
    for bad in ["", "87566ed6", "../backups", "87566ed6-72cb-4053-aa6e-6f6216b3d507/restore", None]:
        with pytest.raises(ValueError, match="backup_id"):
            require_uuid("backup_id", bad)


def test_job_ids_are_opaque_but_url_safe() -> None:
    for good in ["ff8080826576401e01657b99fc444986", "70a599e0-31e7-49b7-b260-868f441e862b"]:
        assert require_opaque_id("job_id", good) == good
    for bad in ["", "a/b", "a?b", "a b", "..", "a#b"]:
        with pytest.raises(ValueError, match="job_id"):
            require_opaque_id("job_id", bad)


def test_tag_keys_are_percent_encoded_as_one_path_segment() -> None:
    assert tag_key_segment("env") == "env"
    assert tag_key_segment("a#b") == "a%23b"  # the documented example (§3.11)
    assert tag_key_segment("a/b c") == "a%2Fb%20c"
    with pytest.raises(ValueError, match="key"):
        tag_key_segment("")


def test_a_wrong_body_shape_is_an_invalid_response_naming_the_operation() -> None:
    with pytest.raises(InvalidResponseError, match=r"vbs\.get_job.*status"):
        decode(Job, {"job_id": "x"}, operation="vbs.get_job")


# ---------------------------------------------------------------------------------------------------------
# backups (§1, §2.1-§2.10)


def test_create_backup_request_encodes_the_documented_body() -> None:
    request = CreateBackupRequest(
        volume_id="5024a06e-6990-4f12-9dcc-8fe26b01a710",
        name="web01-data-20240101",
        description="nightly",
        tags=[Tag(key="env", value="prod")],
        extend_param={"FullBackup": "true"},
    )
    assert request.to_body() == {
        "backup": {
            "volume_id": "5024a06e-6990-4f12-9dcc-8fe26b01a710",
            "name": "web01-data-20240101",
            "description": "nightly",
            "tags": [{"key": "env", "value": "prod"}],
            "extend_param": {"FullBackup": "true"},
        }
    }


def test_create_backup_request_omits_unset_optionals() -> None:
    request = CreateBackupRequest(volume_id="5024a06e-6990-4f12-9dcc-8fe26b01a710", name="b1")
    assert request.to_body() == {
        "backup": {"volume_id": "5024a06e-6990-4f12-9dcc-8fe26b01a710", "name": "b1"}
    }


def test_job_ref_decodes_the_create_answer() -> None:
    assert JobRef.model_validate({"job_id": "ff8080826576401e01657b99fc444986"}).job_id == (
        "ff8080826576401e01657b99fc444986"
    )


def test_full_backup_decodes_json_in_string_fields_and_times() -> None:
    backup = Backup.model_validate(BACKUP_DETAIL)
    assert backup.status is BackupStatus.AVAILABLE
    assert backup.description == "Backup_Demo"
    assert backup.incremental_requested is True
    assert backup.created_at == datetime(2013, 6, 27, 8, 48, 3, tzinfo=UTC)
    assert backup.updated_at == datetime(2019, 3, 27, 12, 36, 17, 596602, tzinfo=UTC)
    assert backup.tenant_id == "17fbda95add24720a4038ba4b1c705ed"
    assert backup.size == 10
    assert [link.rel for link in backup.links] == ["self", "bookmark"]
    meta = backup.service_metadata
    assert meta is not None
    assert meta.type == 0 and meta.is_incremental is False and backup.is_incremental is False
    assert meta.progress == 0  # the example sends the string "0"
    assert meta.bootable is False
    assert meta.model_extra == {
        "backupurl": "58d9a2c8-5cb4-4bd6-9b0a-0b7d2b1d7a21",
        "BackupSize": 0,
        "snap_id": "665e7c1a-4d1f-4b8c-9c55-8d3a4f4e0c11",
    }
    assert not backup.is_policy_backup


def test_backup_description_that_is_not_json_is_kept_raw() -> None:
    backup = Backup.model_validate({**BACKUP_DETAIL, "description": "plain text <no json>"})
    assert backup.description == "plain text <no json>"
    assert backup.incremental_requested is None


def test_backup_description_inc_zero_means_full_requested() -> None:
    backup = Backup.model_validate({**BACKUP_DETAIL, "description": '{"DESC": "nightly", "INC": 0}'})
    assert (backup.description, backup.incremental_requested) == ("nightly", False)


def test_incremental_service_metadata_and_undecodable_metadata() -> None:
    incremental = Backup.model_validate({**BACKUP_DETAIL, "service_metadata": '{"Type": 1, "ST": 1}'})
    assert incremental.is_incremental is True
    assert incremental.service_metadata is not None and incremental.service_metadata.from_csbs
    garbled = Backup.model_validate({**BACKUP_DETAIL, "service_metadata": "not json"})
    assert garbled.service_metadata is not None and garbled.service_metadata.raw == "not json"
    assert garbled.is_incremental is None  # falls back to the ignored wire flag, null here
    blank = Backup.model_validate({**BACKUP_DETAIL, "service_metadata": "  "})
    assert blank.service_metadata is None


def test_unknown_fields_and_statuses_survive() -> None:
    backup = Backup.model_validate(
        {**BACKUP_DETAIL, "status": "error_something_new", "brand_new_field": {"x": 1}, "name": "autobk_a61d"}
    )
    assert backup.status == "error_something_new"
    assert backup.model_extra == {"brand_new_field": {"x": 1}}
    assert backup.is_policy_backup


def test_backup_lists_decode_brief_and_detail_forms() -> None:
    brief = BackupSummaryList.model_validate(
        {
            "backups": [
                {
                    "id": "1d1139d8-8989-49d3-8aa1-83eb691e6db2",
                    "name": "b1",
                    "links": [
                        {"href": f"https://{HOST}/v2/{PID}/backups/1d1139d8-8989", "rel": "self"},
                        {"href": f"https://{HOST}/{PID}/backups/1d1139d8-8989", "rel": "bookmark"},
                    ],
                }
            ]
        }
    )
    assert [b.name for b in brief.backups] == ["b1"] and brief.next_marker is None
    detail = BackupList.model_validate({"backups": [BACKUP_DETAIL]})
    assert detail.backups[0].volume_id == "5024a06e-6990-4f12-9dcc-8fe26b01a710"


def test_native_create_request_and_answer() -> None:
    request = NativeBackupRequest(
        volume_id="c68ae7fb-0aa5-4a97-ab01-ed02c5b7e768",
        snapshot_id="2bb856e1-b3d8-4432-a858-09e4ce939389",
        name="backup1",
        description="demo",
    )
    assert request.to_body() == {
        "backup": {
            "volume_id": "c68ae7fb-0aa5-4a97-ab01-ed02c5b7e768",
            "snapshot_id": "2bb856e1-b3d8-4432-a858-09e4ce939389",
            "name": "backup1",
            "description": "demo",
        }
    }
    answer = {
        "backup": {
            "id": "54ba0e69-48a0-4a77-9cdf-a7979a7e2648",
            "name": "backup1",
            "links": [
                {"href": "https://host/v2/pid/backups/54ba0e69-48a0-4a77-9cdf-a7979a7e2648", "rel": "self"},
                {"href": "https://host/pid/backups/54ba0e69-48a0-4a77-9cdf-a7979a7e2648", "rel": "bookmark"},
            ],
        }
    }
    summary = BackupSummary.model_validate(answer["backup"])
    assert summary.id == "54ba0e69-48a0-4a77-9cdf-a7979a7e2648"


def test_restore_requests_and_native_restore_answer() -> None:
    assert RestoreRequest(volume_id="c96e4a94-927a-425c-8795-63f9964cfebd").to_body() == {
        "restore": {"volume_id": "c96e4a94-927a-425c-8795-63f9964cfebd"}
    }
    restored = NativeRestore.model_validate(
        {
            "backup_id": "1d1139d8-8989-49d3-8aa1-83eb691e6db2",
            "volume_id": "2748f2f2-4394-4e6e-af8d-8dd34496c024",
            "volume_name": "test_volume",
        }
    )
    assert restored.volume_name == "test_volume"


def test_quotas_decode_and_normalise_the_misspelled_type() -> None:
    quotas = Quotas.model_validate(
        {
            "resources": [
                {"type": "backups", "used": 114, "reserved": 0, "quota": 5014},
                {"type": "backup_ gigabytes", "used": 4838, "reserved": 0, "quota": -1},
            ]
        }
    )
    assert quotas.backups is not None and quotas.backups.remaining == 4900
    assert quotas.backup_gigabytes is not None and quotas.backup_gigabytes.unlimited
    assert quotas.backup_gigabytes.remaining is None


# ---------------------------------------------------------------------------------------------------------
# jobs (§2.8)

JOB_SUCCESS = {
    "status": "SUCCESS",
    "entities": {
        "bks_create_volume_name": "autobk_volume_2017-02-05T11:23:36.346Z",
        "backup_id": "c6be4287-6707-4f5b-84ef-07013851b60d",
        "volume_id": "a5109cba-1b1f-4d40-b3a9-753bc808b66a",
        "snapshot_id": "34f14aeb-cede-4e1b-8d9f-14a2c43bae9f",
    },
    "job_id": "2c9eb2c559b8a2c2015a0e039f095821",
    "job_type": "bksCreateBackup",
    "begin_time": "2017-02-05T11:23:22.760Z",
    "end_time": "2017-02-05T11:27:19.557Z",
    "error_code": None,
    "fail_reason": None,
}


def test_successful_job_decodes() -> None:
    job = Job.model_validate(JOB_SUCCESS)
    assert job.status is JobStatus.SUCCESS and job.is_finished and job.succeeded
    assert job.backup_id == "c6be4287-6707-4f5b-84ef-07013851b60d"
    assert job.entities.bks_create_volume_name == "autobk_volume_2017-02-05T11:23:36.346Z"
    assert job.begin_time == datetime(2017, 2, 5, 11, 23, 22, 760000, tzinfo=UTC)
    assert job.end_time == datetime(2017, 2, 5, 11, 27, 19, 557000, tzinfo=UTC)
    assert job.sub_jobs == []


def test_failed_job_has_no_backup_id() -> None:
    job = Job.model_validate(
        {
            **JOB_SUCCESS,
            "status": "FAIL",
            "error_code": "VolumeBackup.0064",
            "fail_reason": "CreateBackup Task-fail: fsp cinder return backup status is error.",
            "entities": {"backup_id": ""},
        }
    )
    assert job.is_finished and not job.succeeded
    assert job.backup_id is None
    assert job.error_code == "VolumeBackup.0064"


def test_running_job_without_end_time_and_unknown_status() -> None:
    running = Job.model_validate({"job_id": "j1", "status": "RUNNING", "entities": None, "sub_jobs": None})
    assert not running.is_finished and running.end_time is None and running.backup_id is None
    odd = Job.model_validate({"job_id": "j1", "status": "QUEUED"})
    assert odd.status == "QUEUED" and not odd.is_finished


# ---------------------------------------------------------------------------------------------------------
# sharing (§2.11-§2.15)


def test_share_request_and_create_answer() -> None:
    request = ShareBackupRequest(
        backup_id="066b1e37-9305-4057-97e5-2e99b21fc71d",
        to_project_ids=["722513ed0a324dadaabe5b2d0fe848c9", "722513ed0a324dadaabe5b2d0fe84919"],
    )
    assert request.to_body() == {
        "shared": {
            "backup_id": "066b1e37-9305-4057-97e5-2e99b21fc71d",
            "to_project_ids": ["722513ed0a324dadaabe5b2d0fe848c9", "722513ed0a324dadaabe5b2d0fe84919"],
        }
    }
    with pytest.raises(ValidationError):
        ShareBackupRequest(backup_id="066b1e37-9305-4057-97e5-2e99b21fc71d", to_project_ids=[])
    created = Share.model_validate(
        {
            "id": "8332443e-9866-41d8-8a58-a898cf5db030",
            "backup_id": "066b1e37-9305-4057-97e5-2e99b21fc71d",
            "from_project_id": "c13f5220dc1949b0b741ea81a7cd5554",
            "to_project_id": "722513ed0a324dadaabe5b2d0fe848c9",
            "created_at": None,
            "updated_at": None,
            "deleted": None,
            "deleted_at": None,
        }
    )
    assert created.created_at is None and created.backup is None


def test_share_detail_embeds_the_backup() -> None:
    share = Share.model_validate(
        {
            "id": "e842bf23-1e05-4c2c-b0f9-25222f4686da",
            "backup_id": "066b1e37-9305-4057-97e5-2e99b21fc71d",
            "from_project_id": "c13f5220dc1949b0b741ea81a7cd5554",
            "to_project_id": "722513ed0a324dadaabe5b2d0fe848b9",
            "created_at": "2017-08-10T12:25:40.480424",
            "updated_at": "2017-08-14T06:41:49.381069",
            "backup": {
                "id": "066b1e37-9305-4057-97e5-2e99b21fc71d",
                "name": "lbf",
                "status": "available",
                "availability_zone": "AZ1",
                "volume_id": "a7d7783f-3e2a-4b1c-8f5e-6d9c0b1a2e3f",
                "size": 1,
                "container": None,
                "description": None,
                "fail_reason": None,
                "object_count": None,
                "snapshot_id": None,
                "created_at": "2017-08-08T04:03:27.456859",
                "updated_at": "2017-08-08T04:03:35.109308",
                "data_timestamp": "2017-08-08T04:03:27.456859",
                "has_dependent_backups": None,
                "is_incremental": None,
                "service_metadata": None,
            },
        }
    )
    assert share.created_at == datetime(2017, 8, 10, 12, 25, 40, 480424, tzinfo=UTC)
    assert share.backup is not None and share.backup.name == "lbf" and share.backup.links == []


# ---------------------------------------------------------------------------------------------------------
# policies (§3)

POLICY = {
    "backup_policy_id": "ed8b9f73-4415-494d-a54e-5f3373bc353d",
    "backup_policy_name": "plan01",
    "scheduled_policy": {
        "start_time": "12:00",
        "frequency": 1,
        "rentention_num": 10,
        "remain_first_backup_of_curMonth": "Y",
        "status": "ON",
    },
    "policy_resource_count": 0,
}


def test_policy_decodes_the_rentention_spelling_and_y_n() -> None:
    policy = Policy.model_validate(POLICY)
    sp = policy.scheduled_policy
    assert (sp.retention_num, sp.retention_day, sp.frequency) == (10, None, 1)
    assert sp.remain_first_backup_of_cur_month is True
    assert sp.status is PolicyStatus.ON and policy.enabled
    assert policy.id == "ed8b9f73-4415-494d-a54e-5f3373bc353d" and policy.name == "plan01"


def test_policy_round_trips_to_the_wire_spelling() -> None:
    dumped = Policy.model_validate(POLICY).model_dump(by_alias=True, exclude_none=True)
    assert dumped == POLICY


def test_create_policy_request_encodes_the_documented_body() -> None:
    request = CreatePolicyRequest(
        backup_policy_name="policy_01",
        scheduled_policy=ScheduledPolicy(
            start_time="22:00,00:00,02:00",
            week_frequency=[Weekday.SUN, Weekday.WED],
            retention_day=30,
            remain_first_backup_of_cur_month=True,
            status=PolicyStatus.ON,
        ),
        tags=[Tag(key="env", value="prod")],
        time_zone="UTC+02:00",
    )
    assert request.to_body() == {
        "backup_policy_name": "policy_01",
        "scheduled_policy": {
            "start_time": "22:00,00:00,02:00",
            "week_frequency": ["SUN", "WED"],
            "rentention_day": 30,
            "remain_first_backup_of_curMonth": "Y",
            "status": "ON",
        },
        "tags": [{"key": "env", "value": "prod"}],
        "time_zone": "UTC+02:00",
    }


def test_create_policy_always_sends_remain_first_without_touching_the_callers_schedule() -> None:
    schedule = ScheduledPolicy(start_time="02:00", frequency=1, retention_num=7, status=PolicyStatus.OFF)
    body = CreatePolicyRequest(backup_policy_name="p", scheduled_policy=schedule).to_body()
    assert body["scheduled_policy"] == {
        "start_time": "02:00",
        "frequency": 1,
        "rentention_num": 7,
        "remain_first_backup_of_curMonth": "N",
        "status": "OFF",
    }
    assert schedule.remain_first_backup_of_cur_month is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            {
                "start_time": "02:00",
                "frequency": 1,
                "week_frequency": ["MON"],
                "retention_num": 3,
                "status": "ON",
            },
            "not both",
        ),
        (
            {"start_time": "02:00", "frequency": 1, "retention_num": 3, "retention_day": 9, "status": "ON"},
            "not both",
        ),
        ({"start_time": "02:00", "retention_num": 3, "status": "ON"}, "frequency or week_frequency"),
        ({"start_time": "02:00", "frequency": 1, "status": "ON"}, "retention_num or retention_day"),
        ({"frequency": 1, "retention_num": 3}, "start_time, status"),
    ],
)
def test_create_policy_enforces_the_client_rules(schedule: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CreatePolicyRequest(backup_policy_name="p", scheduled_policy=ScheduledPolicy(**schedule))


def test_update_policy_request_is_partial() -> None:
    request = UpdatePolicyRequest(
        backup_policy_name="policy_01",
        scheduled_policy=ScheduledPolicy(
            start_time="12:00",
            week_frequency=[Weekday.MON],
            retention_num=10,
            remain_first_backup_of_cur_month=True,
            status=PolicyStatus.ON,
        ),
        time_zone="UTC+08:00",
    )
    assert request.to_body() == {
        "backup_policy_name": "policy_01",
        "scheduled_policy": {
            "start_time": "12:00",
            "week_frequency": ["MON"],
            "rentention_num": 10,
            "remain_first_backup_of_curMonth": "Y",
            "status": "ON",
        },
        "time_zone": "UTC+08:00",
    }
    status_only = UpdatePolicyRequest(scheduled_policy=ScheduledPolicy(status=PolicyStatus.OFF))
    assert status_only.to_body() == {"scheduled_policy": {"status": "OFF"}}


def test_associate_request_and_partial_answer() -> None:
    request = AssociateRequest(
        backup_policy_id="915d1fd8-63cb-4054-a2b0-2778210e3a75",
        resources=[PolicyResource(resource_id="0f187b65-8d0e-4fc0-9096-3b55d330531e")],
    )
    assert request.to_body() == {
        "backup_policy_id": "915d1fd8-63cb-4054-a2b0-2778210e3a75",
        "resources": [{"resource_id": "0f187b65-8d0e-4fc0-9096-3b55d330531e", "resource_type": "volume"}],
    }
    result = AssociateResult.model_validate(
        {
            "success_resources": [
                {
                    "resource_id": "bce8d47a-af17-4169-901f-4c7ae9f29c2c",
                    "resource_type": "volume",
                    "availability_zone": "eu-de-01",
                    "os_vol_host_attr": "pod01.eu-de-01",
                }
            ],
            "fail_resources": [
                {
                    "resource_id": "volume-id-2",
                    "resource_type": "volume",
                    "availability_zone": "eu-de-01",
                    "os_vol_host_attr": "pod01.eu-de-01",
                    "code": "AutoBackup.0206",
                    "message": "disk status invalid",
                }
            ],
        }
    )
    assert not result.all_succeeded and result.failed_ids == ["volume-id-2"]
    assert result.fail_resources[0].code == "AutoBackup.0206"
    with pytest.raises(ValidationError):
        AssociateRequest(backup_policy_id="915d1fd8-63cb-4054-a2b0-2778210e3a75", resources=[])


def test_disassociate_request_and_answer() -> None:
    request = DisassociateRequest(resources=[ResourceRef(resource_id="bce8d47a-af17-4169-901f-4c7ae9f29c2c")])
    assert request.to_body() == {"resources": [{"resource_id": "bce8d47a-af17-4169-901f-4c7ae9f29c2c"}]}
    result = AssociateResult.model_validate(
        {
            "success_resources": [{"resource_id": "bce8d47a-af17-4169-901f-4c7ae9f29c2c"}],
            "fail_resources": [
                {"resource_id": "0f187b65-8d0e-4fc0-9096-3b55d330531e", "code": "X", "message": "m"}
            ],
        }
    )
    assert result.failed_ids == ["0f187b65-8d0e-4fc0-9096-3b55d330531e"]


def test_policy_tasks_decode_zone_less_millisecond_times() -> None:
    tasks = PolicyTaskList.model_validate(
        {
            "tasks": [
                {
                    "job_id": "0781095c-b8ab-4ce5-99f3-4c5f6ff75319",
                    "status": "RUNNING",
                    "created_at": "2016-12-03T06:24:34.467",
                    "backup_name": "autobk_a61d",
                    "resource_id": "f47a4ab5-11f5-4509-97f5-80ce0dd74e37",
                    "resource_type": "volume",
                },
                {
                    "job_id": "c11b5a18-4559-4731-b7b3-58e2bd89cdb9",
                    "status": "EXECUTE_SUCCESS",
                    "created_at": "2016-12-02T09:06:46.706",
                    "finished_at": "2016-12-02T13:00:00.121",
                    "backup_name": "autobk_e6d2",
                    "resource_id": "f47a4ab5-11f5-4509-97f5-80ce0dd74e37",
                    "resource_type": "volume",
                },
            ],
            "count": 2,
        }
    )
    running, done = tasks.tasks
    assert tasks.count == 2
    assert running.status is TaskStatus.RUNNING and running.finished_at is None
    assert done.status is TaskStatus.EXECUTE_SUCCESS
    assert done.finished_at == datetime(2016, 12, 2, 13, 0, 0, 121000, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------------------
# tags (§3.10-§3.15)


def test_tag_bodies() -> None:
    assert {"tag": Tag(key="env", value="prod").model_dump()} == {"tag": {"key": "env", "value": "prod"}}
    project_tags = [TagValues.model_validate(t) for t in [{"key": "env", "values": ["prod", "test"]}]]
    assert project_tags[0].values == ["prod", "test"]
    assert [Tag.model_validate(t) for t in [{"key": "env", "value": "prod"}]] == [
        Tag(key="env", value="prod")
    ]


def test_batch_tags_request() -> None:
    request = BatchTagsRequest(
        action=TagAction.DELETE, tags=[BatchTag(key="env", value="prod"), BatchTag(key="owner")]
    )
    assert request.to_body() == {
        "action": "delete",
        "tags": [{"key": "env", "value": "prod"}, {"key": "owner"}],
    }
    with pytest.raises(ValidationError, match="need a value"):
        BatchTagsRequest(action=TagAction.CREATE, tags=[BatchTag(key="owner")])


def test_tag_query_sends_limit_and_offset_as_strings() -> None:
    query = TagQuery(
        limit=10,
        offset=0,
        tags=[TagValues(key="env", values=["prod", "test"])],
        matches=[TagMatch(value="plan")],
    )
    body = query.to_body()
    assert body == {
        "action": "filter",
        "tags": [{"key": "env", "values": ["prod", "test"]}],
        "matches": [{"key": "resource_name", "value": "plan"}],
        "limit": "10",
        "offset": "0",
    }
    assert json.loads(json.dumps(body))["limit"] == "10"
    # a body read back (e.g. by a test double) accepts the strings
    assert TagQuery.model_validate(body).limit == 10


def test_tag_query_rules() -> None:
    assert TagQuery(action=TagQueryAction.COUNT).to_body() == {"action": "count"}
    with pytest.raises(ValidationError, match="only apply"):
        TagQuery(action=TagQueryAction.COUNT, limit=10)
    for bad in (0, 1001):
        with pytest.raises(ValidationError):
            TagQuery(limit=bad)


def test_tag_query_results() -> None:
    result = TagQueryResult.model_validate(
        {
            "total_count": 1,
            "resources": [
                {
                    "resource_id": "0781095c-b8ab-4ce5-99f3-4c5f6ff75319",
                    "resource_name": "plan01",
                    "resource_detail": None,
                    "tags": [{"key": "env", "value": "prod"}],
                }
            ],
        }
    )
    assert result.policy_ids == ["0781095c-b8ab-4ce5-99f3-4c5f6ff75319"]
    assert result.resources[0].tags == [Tag(key="env", value="prod")]
    assert TagQueryResult.model_validate({"total_count": 3}).resources == []


# ---------------------------------------------------------------------------------------------------------
# ECS / EVS (§5a)


def test_block_devices_accept_int_and_string_sizes() -> None:
    devices = BlockDeviceList.model_validate(
        {
            "attachableQuantity": {"free_scsi": 23, "free_blk": 15, "free_disk": 23},
            "volumeAttachments": [
                {
                    "id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                    "volumeId": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                    "serverId": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
                    "device": "/dev/vda",
                    "size": 40,
                    "bootIndex": 0,
                    "pciAddress": "0000:02:01.0",
                    "bus": "virtio",
                },
                {
                    "id": "b1c2d3e4-0000-4000-8000-000000000001",
                    "volumeId": "b1c2d3e4-0000-4000-8000-000000000001",
                    "serverId": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
                    "device": "/dev/vdb",
                    "size": "10",
                    "bootIndex": 1,
                    "pciAddress": "0000:02:02.0",
                    "bus": "virtio",
                },
            ],
        }
    )
    system, data = devices.volume_attachments
    assert system.is_system_disk and system.size == 40 and system.volume_id.startswith("a26887c6")
    assert not data.is_system_disk and data.size == 10 and data.pci_address == "0000:02:02.0"
    assert devices.attachable_quantity is not None and devices.attachable_quantity.free_scsi == 23


def test_server_detail_decodes_string_boot_index_and_tags() -> None:
    server = Server.model_validate(
        {
            "id": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
            "name": "web01",
            "status": "ACTIVE",
            "tags": ["env=prod", "backup=nightly", "__type_virtual"],
            "os-extended-volumes:volumes_attached": [
                {
                    "id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                    "delete_on_termination": "false",
                    "device": "/dev/vda",
                    "bootIndex": "0",
                },
                {
                    "id": "b1c2d3e4-0000-4000-8000-000000000001",
                    "delete_on_termination": "true",
                    "device": "/dev/vdb",
                    "bootIndex": "",
                },
            ],
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
        }
    )
    system, data = server.volumes_attached
    assert (system.boot_index, system.delete_on_termination) == (0, False)
    assert (data.boot_index, data.delete_on_termination) == (None, True)
    assert server.root_device_name == "/dev/vda"
    assert server.tag_map == {"env": "prod", "backup": "nightly", "__type_virtual": ""}
    listed = ServerList.model_validate({"count": 1, "servers": [{"id": "s1", "tags": {"env": "prod"}}]})
    assert listed.servers[0].tags == ["env=prod"]


def test_nova_volume_attachments() -> None:
    item = VolumeAttachment.model_validate(
        {
            "id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
            "volumeId": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
            "serverId": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
            "device": "/dev/sdd",
        }
    )
    assert item.volume_id == item.id and item.device == "/dev/sdd"


def test_evs_volume_decodes_string_bootable_and_attachments() -> None:
    volumes = VolumeList.model_validate(
        {
            "volumes": [
                {
                    "id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                    "name": "web01-sys",
                    "status": "in-use",
                    "size": 40,
                    "bootable": "true",
                    "attachments": [
                        {
                            "server_id": "4d8c3732-a248-40ed-bebc-539a6ffd25c0",
                            "attachment_id": "3b2ab8b5-0000-4000-8000-000000000002",
                            "attached_at": "2016-05-02T09:03:01.000000",
                            "host_name": None,
                            "volume_id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                            "device": "/dev/vda",
                            "id": "a26887c6-c47b-4654-abb5-dfadf7d3f803",
                        }
                    ],
                    "availability_zone": "eu-de-01",
                    "volume_type": "SSD",
                    "metadata": {
                        "__system__encrypted": "0",
                        "policy": "ed8b9f73-4415-494d-a54e-5f3373bc353d",
                    },
                    "encrypted": False,
                    "multiattach": False,
                    "os-vol-tenant-attr:tenant_id": "17fbda95add24720a4038ba4b1c705ed",
                    "created_at": "2016-05-02T09:02:00.123456",
                    "shareable": "false",
                }
            ],
            "count": 1,
        }
    )
    volume = volumes.volumes[0]
    assert volume.bootable is True and volume.status is VolumeStatus.IN_USE and volume.can_be_backed_up
    assert volume.server_ids == ["4d8c3732-a248-40ed-bebc-539a6ffd25c0"]
    assert volume.attachments[0].attached_at == datetime(2016, 5, 2, 9, 3, 1, tzinfo=UTC)
    assert volume.tenant_id == "17fbda95add24720a4038ba4b1c705ed"
    assert volume.model_extra == {"shareable": "false"}
    backing_up = Volume.model_validate({"id": "v", "status": "backing-up", "size": 1, "bootable": "false"})
    assert not backing_up.bootable and not backing_up.can_be_backed_up


def test_create_volume_request_from_a_backup() -> None:
    request = CreateVolumeRequest(
        name="restored",
        size=10,
        volume_type="SAS",
        availability_zone="eu-de-01",
        backup_id="87566ed6-72cb-4053-aa6e-6f6216b3d507",
    )
    assert request.to_body() == {
        "volume": {
            "name": "restored",
            "size": 10,
            "volume_type": "SAS",
            "availability_zone": "eu-de-01",
            "backup_id": "87566ed6-72cb-4053-aa6e-6f6216b3d507",
        }
    }


# ---------------------------------------------------------------------------------------------------------
# IAM (§5b)


def test_token_request_encodes_the_documented_body_and_hides_the_password() -> None:
    request = CreateTokenRequest(
        user_name="IAM_USER",
        password=SecretStr("s3cret-Pa55"),
        domain_name="ACCOUNT_NAME",
        project_id="17fbda95add24720a4038ba4b1c705ed",
    )
    assert request.to_body() == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": "IAM_USER",
                        "password": "s3cret-Pa55",
                        "domain": {"name": "ACCOUNT_NAME"},
                    }
                },
            },
            "scope": {"project": {"id": "17fbda95add24720a4038ba4b1c705ed"}},
        }
    }
    assert "s3cret-Pa55" not in repr(request) and "s3cret-Pa55" not in str(request.model_dump())
    by_name = CreateTokenRequest(
        user_name="u", password=SecretStr("p"), domain_name="d", project_name="eu-de"
    )
    assert by_name.to_body()["auth"]["scope"] == {"project": {"name": "eu-de"}}
    with pytest.raises(ValidationError, match="exactly one"):
        CreateTokenRequest(user_name="u", password=SecretStr("p"), domain_name="d")


def test_token_decodes_and_hides_its_value() -> None:
    body = {
        "token": {
            "expires_at": "2015-11-09T01:42:57.527363Z",
            "issued_at": "2015-11-08T01:42:57.527363Z",
            "methods": ["password"],
            "user": {"id": "u1", "name": "IAM_USER", "domain": {"id": "d1", "name": "ACCOUNT_NAME"}},
            "project": {"id": "17fbda95add24720a4038ba4b1c705ed", "name": "eu-de", "domain": {"id": "d1"}},
            "roles": [{"id": "r1", "name": "te_admin"}],
            "catalog": [
                {
                    "type": "vbsv2",
                    "id": "c1",
                    "name": "vbs",
                    "endpoints": [
                        {
                            "url": "https://vbs.eu-de.otc.t-systems.com/v2/17fbda95add24720a4038ba4b1c705ed",
                            "interface": "public",
                            "region": "eu-de",
                            "region_id": "eu-de",
                            "id": "e1",
                        }
                    ],
                }
            ],
        }
    }
    token = Token.model_validate(
        {**body["token"], "value": "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDTALBglghkgBZQMEAgEw"}
    )
    assert token.expires_at == datetime(2015, 11, 9, 1, 42, 57, 527363, tzinfo=UTC)
    assert token.project is not None and token.project.name == "eu-de"
    assert (
        token.endpoint("vbsv2") == "https://vbs.eu-de.otc.t-systems.com/v2/17fbda95add24720a4038ba4b1c705ed"
    )
    assert token.endpoint("compute") is None
    assert token.value.get_secret_value().startswith("MIIE")
    assert "MIIE" not in repr(token) and "MIIE" not in str(token)
