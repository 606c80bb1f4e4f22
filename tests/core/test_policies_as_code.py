"""Policies as code without a cloud: the file model and its messages, member resolution, the diff, the
wire bodies it leads to, and the import writer (the cloud side is in tests/cli/test_policies_cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vbs_backup.cloud.models.ecs import Server
from vbs_backup.cloud.models.evs import Volume
from vbs_backup.cloud.models.policies import Policy
from vbs_backup.policies import (
    ChangeKind,
    CloudPolicy,
    Inventory,
    PolicyFile,
    PolicyFileError,
    dump_policy_file,
    load_policy_file,
    make_plan,
    resolve_members,
    spec_from_cloud,
    validate_policy_file,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"
SERVER = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
SYSTEM = "0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"
DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
SPARE = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
POLICY_ID = "ed8b9f73-4415-494d-a54e-5f3373bc353d"


def volume(vid: str, name: str, *, device: str | None = None, status: str = "in-use", **metadata) -> Volume:
    attachments = [{"server_id": SERVER, "device": device, "volume_id": vid}] if device else []
    return Volume.model_validate(
        {
            "id": vid,
            "name": name,
            "status": status,
            "size": 10,
            "attachments": attachments,
            "metadata": metadata,
        }
    )


def inventory(**statuses: str) -> Inventory:
    server = Server.model_validate(
        {
            "id": SERVER,
            "name": "web-01",
            "os-extended-volumes:volumes_attached": [
                {"id": SYSTEM, "device": "/dev/vda", "bootIndex": "0"},
                {"id": DATA, "device": "/dev/vdb", "bootIndex": "1"},
            ],
        }
    )
    volumes = [
        volume(SYSTEM, "web-01-system", device="/dev/vda"),
        volume(DATA, "web-01-data", device="/dev/vdb", status=statuses.get("data", "in-use")),
        volume(SPARE, "spare", status=statuses.get("spare", "available")),
    ]
    return Inventory(volumes={v.id: v for v in volumes}, servers=[server])


def spec(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "web",
        "schedule": {"start_time": ["02:00"], "frequency": 1},
        "retention": {"retention_num": 7},
        "members": {"servers": ["web-01"], "include_system_disk": False},
    }
    data.update(overrides)
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(PolicyFileError) as excinfo:
        validate_policy_file(data, source="t.yaml")
    return excinfo.value.problems


def cloud_policy(members: set[str], tags: dict[str, str] | None = None, **scheduled: Any) -> CloudPolicy:
    sp = {"start_time": "02:00", "frequency": 1, "rentention_num": 7, "remain_first_backup_of_curMonth": "N"}
    sp["status"] = "ON"
    sp.update(scheduled)
    policy = Policy.model_validate(
        {
            "backup_policy_id": POLICY_ID,
            "backup_policy_name": "web",
            "scheduled_policy": sp,
            "policy_resource_count": len(members),
        }
    )
    return CloudPolicy(policy, tags or {}, set(members))


def plan_for(data: dict[str, Any], cloud: list[CloudPolicy], inv: Inventory | None = None, **kwargs: Any):
    inv = inv or inventory()
    file = validate_policy_file({"policies": [data]})
    return make_plan(file, resolve_members(file, inv), cloud, inv, **kwargs)


# -- the file ------------------------------------------------------------------------------------------


def test_the_example_file_loads():
    file = load_policy_file(EXAMPLE)
    assert [p.name for p in file.policies] == ["db-wal-6-hourly", "web-twice-weekly"]
    web = file.policies[1]
    assert web.enabled is False and web.time_zone == "UTC+02:00"
    assert web.schedule.week_frequency == ["SUN", "WED"] and web.retention.retention_day == 30


def test_problems_name_the_policy_and_the_field():
    bad = spec(retention={"retention_num": 1}, time_zone="UTC+2", tags={"bad key": "x"})
    found = problems({"policies": [bad]})
    assert "policies[web].retention.retention_num: must be from 2 to 99, got 1 (the service" in found[0]
    assert any(p.startswith("policies[web].time_zone: 'UTC+2' is not a time zone") for p in found)
    assert any(p.startswith("policies[web].tags: tag key 'bad key'") for p in found)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"schedule": {"start_time": "02:00", "frequency": 1, "week_frequency": ["MON"]}}, "exactly one"),
        ({"schedule": {"start_time": ["02:15"], "frequency": 1}}, "whole UTC hours"),
        ({"schedule": {"start_time": ["02:00", "02:00"], "frequency": 1}}, "listed twice"),
        ({"schedule": {"start_time": ["02:00"], "frequency": 31}}, "1 to 30"),
        ({"schedule": {"start_time": ["02:00"], "week_frequency": ["MON", "FUNDAY"]}}, "weekdays"),
        ({"retention": {"retention_num": 3, "retention_day": 9}}, "exactly one"),
        ({"retention": {"retention_day": 1}}, "2 to 99999"),
        ({"name": "no spaces"}, "letters, digits"),
        ({"members": {"servers": [{"id": SERVER, "name": "web-01"}]}}, "exactly one"),
        ({"members": {"disks": ["not-a-uuid"]}}, "not a disk id"),
        ({"enabled": "maybe"}, "enabled"),
        ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ],
)
def test_each_rule_has_a_clear_message(change, expected):
    assert any(expected in p for p in problems({"policies": [spec(**change)]}))


def test_duplicate_names_and_non_mapping_files_are_refused():
    assert "listed more than once: web" in problems({"policies": [spec(), spec()]})[0]
    assert "expected a mapping" in problems(["policies"])[0]
    assert validate_policy_file(None).policies == []


def test_yaml_conveniences_on_off_and_comma_times():
    file = validate_policy_file(
        {
            "policies": [
                spec(enabled="OFF", schedule={"start_time": "14:00, 02:00", "week_frequency": ["wed", "sun"]})
            ]
        }
    )
    web = file.policies[0]
    assert web.enabled is False and web.schedule.start_time == ["14:00", "02:00"]
    assert web.schedule.week_frequency == ["SUN", "WED"]


def test_unquoted_yaml_times_are_clock_times(tmp_path):
    # YAML 1.1 reads 12:00 unquoted as the integer 720 (base 60), 02:00 as a string
    path = tmp_path / "p.yaml"
    path.write_text(
        "policies:\n- name: a\n  schedule: {start_time: [12:00, 02:00], frequency: 1}\n"
        "  retention: {retention_num: 3}\n"
    )
    assert load_policy_file(path).policies[0].schedule.start_time == ["12:00", "02:00"]


def test_start_times_go_on_the_wire_in_ascending_local_order():
    file = validate_policy_file(
        {
            "policies": [
                spec(
                    time_zone="UTC+02:00",
                    schedule={"start_time": ["00:00", "02:00", "22:00"], "frequency": 1},
                )
            ]
        }
    )
    body = file.policies[0].scheduled_policy(with_status=True).model_dump(by_alias=True, exclude_none=True)
    # 22:00 UTC is midnight at UTC+2, so it comes first (§3.1)
    assert body["start_time"] == "22:00,00:00,02:00"
    assert body["rentention_num"] == 7 and body["remain_first_backup_of_curMonth"] == "N"
    assert body["status"] == "ON"


# -- members -------------------------------------------------------------------------------------------


def test_servers_expand_to_their_disks_with_or_without_the_system_disk():
    file = validate_policy_file({"policies": [spec(members={"servers": [SERVER], "disks": [SPARE]})]})
    assert resolve_members(file, inventory()) == {"web": sorted([SYSTEM, DATA, SPARE])}
    assert resolve_members(validate_policy_file({"policies": [spec()]}), inventory()) == {"web": [DATA]}


def test_unknown_members_and_shared_disks_are_all_listed():
    file = validate_policy_file(
        {
            "policies": [
                spec(members={"disks": ["00000000-0000-4000-8000-000000000000"], "servers": ["nope"]}),
                spec(name="other", members={"servers": [{"name": "web-01"}]}),
                spec(name="third", members={"disks": [DATA]}),
            ]
        }
    )
    with pytest.raises(PolicyFileError) as excinfo:
        resolve_members(file, inventory(), source="f.yaml")
    found = excinfo.value.problems
    assert "policies[web].members.disks: unknown disk 00000000-0000-4000-8000-000000000000" in found[0]
    assert "policies[web].members.servers: no server named 'nope'" in found[1]
    assert f"policies[third].members: disk web-01 /dev/vdb (web-01-data) {DATA} is also a member" in found[2]


# -- the diff ------------------------------------------------------------------------------------------


def test_a_new_policy_is_created_then_its_disks_associated():
    plan = plan_for(spec(tags={"env": "prod"}), [])
    assert [c.kind for c in plan.changes] == [ChangeKind.create, ChangeKind.associate]
    assert plan.changes[1].volume_ids == (DATA,)
    assert "02:00 UTC every 1 day(s), keep 7, ON" in plan.changes[0].detail


def test_a_matching_policy_plans_nothing():
    plan = plan_for(spec(), [cloud_policy({DATA})])
    assert plan.changes == [] and plan.errors == [] and plan.warnings == []


def test_a_time_zone_of_utc_equals_no_time_zone():
    same = cloud_policy({DATA})
    same.policy.time_zone = "UTC+00:00"
    assert plan_for(spec(), [same]).changes == []


def test_every_kind_of_difference_becomes_a_change_in_apply_order():
    cloud = cloud_policy({SYSTEM}, tags={"env": "prod", "old": "x"}, status="OFF", rentention_num=3)
    plan = plan_for(spec(tags={"env": "test", "new": "y"}), [cloud])
    kinds = [c.kind for c in plan.changes]
    assert kinds == [
        ChangeKind.disassociate,
        ChangeKind.modify,
        ChangeKind.enable,
        ChangeKind.tag_add,
        ChangeKind.tag_update,
        ChangeKind.tag_delete,
        ChangeKind.associate,
    ]
    modify = plan.changes[1]
    assert modify.fields == ("retention_num",) and modify.detail == "retention_num 3 -> 7"
    assert plan.changes[0].volume_ids == (SYSTEM,) and plan.changes[-1].volume_ids == (DATA,)


def test_unmanaged_policies_are_kept_unless_pruned():
    other = cloud_policy(set())
    other.policy.backup_policy_name = "legacy"
    kept = plan_for(spec(), [other])
    assert kept.unmanaged == ["legacy"] and ChangeKind.delete not in [c.kind for c in kept.changes]
    pruned = plan_for(spec(), [other], prune=True)
    assert pruned.changes[0].kind is ChangeKind.delete and pruned.changes[0].policy == "legacy"
    assert pruned.policy_ids["legacy"] == POLICY_ID


def test_warnings_and_errors():
    cloud = cloud_policy({DATA})
    cloud.policy.policy_resource_count = 5
    plan = plan_for(spec(), [cloud], nightly={DATA: "web-01 /dev/vdb"})
    assert any("the service counts 5 member disks" in w for w in plan.warnings)
    assert any("web-01 /dev/vdb is in native policy web and in the nightly plan" in w for w in plan.warnings)

    broken = plan_for(spec(members={"disks": [SPARE]}), [], inventory(spare="error"))
    assert "is error: VBS refuses to associate it (AutoBackup.0206)" in broken.errors[0]

    twin = cloud_policy(set())
    twin.policy.backup_policy_id = "0781095c-b8ab-4ce5-99f3-4c5f6ff75319"
    doubled = plan_for(spec(), [cloud_policy({DATA}), twin])
    assert "2 cloud policies are named web" in doubled.errors[0]


# -- import --------------------------------------------------------------------------------------------


def test_an_imported_policy_round_trips_through_the_file(tmp_path):
    cloud = cloud_policy(
        {DATA},
        tags={"env": "prod"},
        frequency=None,
        week_frequency=["MON", "THU"],
        rentention_num=None,
        rentention_day=30,
        remain_first_backup_of_curMonth="Y",
        start_time="22:00,02:00",
    )
    cloud.policy.time_zone = "UTC+02:00"
    inv = inventory()
    text = dump_policy_file(PolicyFile(policies=[spec_from_cloud(cloud, inv)]), inv, header="# imported\n")
    path = tmp_path / "imported.yaml"
    path.write_text(text)

    assert text.startswith("# imported\n") and f"- {DATA}  # web-01 /dev/vdb (web-01-data)" in text
    assert "servers" not in text and "include_system_disk" not in text  # defaults are left out
    file = load_policy_file(path)
    assert make_plan(file, resolve_members(file, inv), [cloud], inv).changes == []
    web = file.policies[0]
    assert (web.enabled, web.time_zone, web.remain_first_backup_of_cur_month) == (True, "UTC+02:00", True)
    assert web.schedule.start_time == ["22:00", "02:00"] and web.retention.retention_day == 30
