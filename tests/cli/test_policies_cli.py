"""`vbs-backup policies plan|apply|import|execute|list|tags` against the emulator over a real socket: what
each command prints, what it changes in the emulator, and what crossed the wire (a second apply sends no
mutating request; bad input sends none at all)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.commands import command_runner
from tests.environment import use_emulator
from vbs_backup.deployments.cli.app import app

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policies.yaml"
WEB = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
WEB_SYSTEM = "0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"
WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"
DB_WAL = "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af"
SCRATCH = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"


@pytest.fixture
def cli(emulator, monkeypatch, tmp_path):
    """Runs `vbs-backup ...` with the settings of the emulator's example project."""
    use_emulator(
        monkeypatch,
        emulator,
        DATABASE_URL=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        MAX_REQUESTS_PER_SECOND="1000",
    )
    return command_runner(app)


def policies(emulator) -> dict[str, Any]:
    """name -> the emulator's policy object."""
    return {p.name: p for p in emulator.state.projects[emulator.project_id].policies.values()}


def wire(emulator) -> list[dict[str, Any]]:
    """The emulator's request log, through the control API: it is served after the gateway has logged the
    previous request (which it does once the response is sent), unlike a direct read of the state."""
    response = emulator.control("GET", "/requests")
    response.raise_for_status()
    return response.json()


def mutating(emulator) -> list[str]:
    return [e["operation"] for e in wire(emulator) if e["method"] != "GET"]


def write(tmp_path: Path, data: dict, name: str = "policies.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_apply_creates_the_example_policies_and_a_second_apply_changes_nothing(cli, emulator):
    out = cli("policies", "plan", "--file", str(EXAMPLE))
    assert "+ create db-wal-6-hourly" in out and "+ create web-twice-weekly" in out
    assert "+ associate web-twice-weekly: web-01 /dev/vdb (web-01-data)" in out
    assert mutating(emulator) == []  # plan only reads

    out = cli("policies", "apply", "--file", str(EXAMPLE))

    assert "4 done, 0 failed" in out
    made = policies(emulator)
    wal, web = made["db-wal-6-hourly"], made["web-twice-weekly"]
    assert (wal.frequency, wal.retention_num, wal.status, wal.resource_ids) == (1, 8, "ON", [DB_WAL])
    assert wal.tags == {"env": "prod", "tier": "db"} and wal.start_time == "00:00,06:00,12:00,18:00"
    assert (web.week_frequency, web.retention_day, web.status) == (["SUN", "WED"], 30, "OFF")
    assert (web.time_zone, web.start_time, web.remain_first_backup_of_cur_month) == (
        "UTC+02:00",
        "22:00,02:00",
        "Y",
    )
    assert web.resource_ids == [WEB_DATA]  # the system disk is left out
    volumes = emulator.state.projects[emulator.project_id].volumes
    assert volumes[WEB_DATA].metadata["policy"] == web.id  # §4.8: how members are read back

    emulator.control("DELETE", "/requests").raise_for_status()
    out = cli("policies", "apply", "--file", str(EXAMPLE))

    assert "No changes: the cloud matches the file." in out
    assert mutating(emulator) == []
    assert wire(emulator)  # it did read the cloud


def test_plan_shows_each_kind_of_change_and_apply_makes_it(cli, emulator, tmp_path):
    cli("policies", "apply", "--file", str(EXAMPLE))
    data = example()
    wal, web = data["policies"]
    wal["retention"] = {"retention_day": 14}
    wal["enabled"] = False
    wal["tags"] = {"owner": "dba", "cost": "c42"}  # two keys go, two come: one batch each
    wal["members"] = {"disks": [DB_DATA]}  # wal leaves, data joins
    web["enabled"] = "ON"
    web["time_zone"] = "UTC-05:00"
    web["schedule"]["start_time"] = ["05:00", "09:00"]
    web["tags"] = {"env": "staging", "app": "shop"}  # one changes, one comes, one goes
    path = write(tmp_path, data)

    out = cli("policies", "plan", "--file", str(path))

    assert "~ modify db-wal-6-hourly: retention_num 8 -> -; retention_day - -> 14" in out
    assert "~ disable db-wal-6-hourly: status ON -> OFF" in out
    assert "+ tag-add db-wal-6-hourly: cost=c42, owner=dba" in out
    assert "- tag-delete db-wal-6-hourly: env, tier" in out
    assert f"- disassociate db-wal-6-hourly: db-01 /dev/vdc (db-01-wal) {DB_WAL}" in out
    assert f"+ associate db-wal-6-hourly: db-01 /dev/vdb (db-01-data) {DB_DATA}" in out
    assert "~ enable web-twice-weekly: status OFF -> ON" in out
    assert "start_time 02:00,22:00 -> 05:00,09:00; time_zone UTC+02:00 -> UTC-05:00" in out
    assert "+ tag-add web-twice-weekly: app=shop" in out
    assert "~ tag-update web-twice-weekly: env: prod -> staging" in out
    assert "- tag-delete web-twice-weekly: team" in out
    emulator.control("DELETE", "/requests").raise_for_status()

    out = cli("policies", "apply", "--file", str(path))

    assert "11 done, 0 failed" in out
    ops = mutating(emulator)
    for op in ("update_policy", "add_policy_tag", "delete_policy_tag", "batch_policy_tags"):
        assert f"vbs.{op}" in ops
    # batches: wal's two new keys, wal's two removed keys, web's changed value (the documented upsert)
    assert ops.count("vbs.batch_policy_tags") == 3
    assert ops.count("vbs.add_policy_tag") == ops.count("vbs.delete_policy_tag") == 1
    assert ops.count("vbs.disassociate_resources") == ops.count("vbs.associate_resources") == 1
    made = policies(emulator)
    wal, web = made["db-wal-6-hourly"], made["web-twice-weekly"]
    assert (wal.retention_num, wal.retention_day, wal.status) == (None, 14, "OFF")
    assert wal.tags == {"owner": "dba", "cost": "c42"} and wal.resource_ids == [DB_DATA]
    assert (web.status, web.time_zone, web.start_time) == ("ON", "UTC-05:00", "05:00,09:00")
    assert web.tags == {"env": "staging", "app": "shop"}
    assert "No changes" in cli("policies", "plan", "--file", str(path))


def test_plan_warns_about_disks_also_in_the_nightly_plan(cli, emulator, tmp_path):
    nightly = write(tmp_path, {"selection": {"ids": [WEB]}}, "plan.yaml")

    out = cli("policies", "plan", "--file", str(EXAMPLE), "--nightly-plan", str(nightly))

    assert "! warning: disk web-01 /dev/vdb (web-01-data)" in out
    assert "native policy web-twice-weekly and in the nightly plan" in out
    assert "db-01" not in out.split("! warning")[1]  # the WAL disk is not in the nightly plan


def test_an_unknown_disk_or_server_is_refused_before_any_change(cli, emulator, tmp_path):
    data = example()
    data["policies"][0]["members"]["disks"].append("00000000-0000-4000-8000-000000000000")
    data["policies"][1]["members"]["servers"].append({"name": "no-such-server"})
    path = write(tmp_path, data)

    out = cli("policies", "apply", "--file", str(path), code=2)

    assert "policies[db-wal-6-hourly].members.disks: unknown disk 00000000-0000-4000-8000-000000000000" in out
    assert "policies[web-twice-weekly].members.servers: no server named 'no-such-server'" in out
    assert mutating(emulator) == [] and policies(emulator) == {}


def test_a_disk_in_two_policies_is_refused(cli, emulator, tmp_path):
    data = example()
    data["policies"][0]["members"] = {"servers": [WEB]}  # by id: includes web-01's data disk
    path = write(tmp_path, data)

    out = cli("policies", "apply", "--file", str(path), code=2)

    assert "disk web-01 /dev/vdb (web-01-data)" in out and "also a member of policy db-wal-6-hourly" in out
    assert mutating(emulator) == []


def test_a_malformed_file_names_each_bad_field_and_sends_nothing(cli, emulator, tmp_path):
    data = example()
    data["policies"][0]["retention"] = {"retention_num": 1}
    data["policies"][1]["schedule"]["start_time"] = ["22:30"]
    data["policies"][0]["schedule"]["week_frequency"] = ["MON"]  # and frequency
    path = write(tmp_path, data)

    out = cli("policies", "plan", "--file", str(path), code=2)

    assert "policies[db-wal-6-hourly].retention.retention_num: must be from 2 to 99, got 1" in out
    assert "AutoBackup.0107" in out
    assert "policies[web-twice-weekly].schedule.start_time: start times are whole UTC hours" in out
    assert "policies[db-wal-6-hourly].schedule: give frequency (every N days) or week_frequency" in out
    assert wire(emulator) == []


def test_a_range_the_cloud_refuses_is_reported_with_its_code(cli, emulator, tmp_path):
    # eu-west-0's modify page documents rentention_num 2-14 (§8.2): the file's 20 passes our check only
    emulator.control("POST", "/settings", json={"retention_num_range": [2, 14]}).raise_for_status()
    data = example()
    data["policies"][0]["retention"] = {"retention_num": 20}
    path = write(tmp_path, data)

    out = cli("policies", "apply", "--file", str(path), code=1)

    assert "FAILED create db-wal-6-hourly" in out and "AutoBackup.0107" in out
    assert "associate db-wal-6-hourly: skipped: the policy could not be created" in out
    assert set(policies(emulator)) == {"web-twice-weekly"}  # the other policy was still made
    assert "1 failed, 1 skipped" in out  # its association had nothing to join


def test_import_writes_a_file_that_plans_no_change(cli, emulator, tmp_path):
    cli("policies", "apply", "--file", str(EXAMPLE))
    target = tmp_path / "imported.yaml"

    out = cli("policies", "import", "--file", str(target))

    assert "wrote 2 policies" in out
    text = target.read_text()
    assert f"- {WEB_DATA}  # web-01 /dev/vdb (web-01-data)" in text
    imported = yaml.safe_load(text)["policies"]
    web = next(p for p in imported if p["name"] == "web-twice-weekly")
    assert web["schedule"] == {"start_time": ["22:00", "02:00"], "week_frequency": ["SUN", "WED"]}
    assert (
        web["time_zone"] == "UTC+02:00"
        and web["enabled"] is False
        and web["tags"] == {"env": "prod", "team": "web"}
    )
    assert "No changes" in cli("policies", "plan", "--file", str(target))
    cli("policies", "import", "--file", str(target), code=2)  # no silent overwrite
    cli("policies", "import", "--file", str(target), "--force")


def test_prune_deletes_policies_the_file_does_not_name(cli, emulator, tmp_path):
    cli("policies", "apply", "--file", str(EXAMPLE))
    data = example()
    del data["policies"][1]
    path = write(tmp_path, data)

    out = cli("policies", "plan", "--file", str(path))
    assert "= web-twice-weekly: in the cloud, not in the file (kept; --prune deletes it)" in out
    assert "No changes" in out

    out = cli("policies", "apply", "--file", str(path), "--prune")

    assert "- delete web-twice-weekly" in out and "1 done" in out
    assert set(policies(emulator)) == {"db-wal-6-hourly"}
    assert "policy" not in emulator.state.projects[emulator.project_id].volumes[WEB_DATA].metadata


def test_execute_waits_for_the_tasks_and_fails_on_a_failed_one(cli, emulator, tmp_path):
    data = example()
    data["policies"][1]["members"]["include_system_disk"] = True
    cli("policies", "apply", "--file", str(write(tmp_path, data)))

    out = cli("policies", "execute", "web-twice-weekly", "--wait", "--interval", "0")

    assert "started on 2 disk(s)" in out
    assert out.count("EXECUTE_SUCCESS") == 2 and "autobk_" in out
    backups = emulator.state.projects[emulator.project_id].backups.values()
    assert {b.volume_id for b in backups if b.kind == "auto"} == {WEB_SYSTEM, WEB_DATA}

    emulator.control("POST", "/job_faults", json={"mode": "fail", "volume_id": WEB_DATA}).raise_for_status()
    out = cli("policies", "execute", "web-twice-weekly", "--wait", "--interval", "0", code=1)

    assert f"disk {WEB_DATA} (EXECUTE_FAIL)" in out
    out = cli("policies", "execute", "nope", code=2)
    assert "no backup policy named nope" in out and "web-twice-weekly" in out


def test_list_by_tag_count_and_project_tags(cli, emulator):
    cli("policies", "apply", "--file", str(EXAMPLE))

    everything = cli("policies", "list")
    by_tag = cli("policies", "list", "--tag", "tier=db")
    counted = cli("policies", "list", "--tag", "env=prod", "--count")
    by_name = cli("policies", "list", "--name", "web")
    tags = cli("policies", "tags")

    assert "db-wal-6-hourly" in everything and "web-twice-weekly" in everything and "2 policies" in everything
    assert "db-wal-6-hourly" in by_tag and "web-twice-weekly" not in by_tag and "1 policies" in by_tag
    assert counted.strip() == "2"
    assert "web-twice-weekly" in by_name and "db-wal-6-hourly" not in by_name
    assert "env: prod" in tags and "tier: db" in tags
    ops = [e["operation"] for e in wire(emulator)]
    assert "vbs.query_policies_by_tags" in ops and "vbs.list_project_policy_tags" in ops
    cli("policies", "list", "--tag", "nonsense", code=2)
