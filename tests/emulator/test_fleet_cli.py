"""Fleet files (loading, validation messages, applying to a state) and the `vbs-backup emulator` command."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from vbs_backup.deployments.cli.app import app as cli_app
from vbs_backup.emulator import SAMPLE_FLEET
from vbs_backup.emulator.fleet import FleetError, apply_fleet, load_fleet
from vbs_backup.emulator.state import CloudState

VBS_BACKUP = Path(sys.executable).with_name("vbs-backup")


def minimal_fleet(**project) -> dict:
    return {
        "region": "eu-west-0",
        "projects": [
            {
                "id": "0123456789abcdef0123456789abcdef",
                "name": "eu-west-0",
                "servers": [
                    {
                        "id": "11111111-2222-4333-8444-555555555555",
                        "name": "s1",
                        "disks": [
                            {
                                "id": "21111111-2222-4333-8444-555555555555",
                                "name": "sys",
                                "size_gb": 40,
                                "device": "/dev/vda",
                                "boot_index": 0,
                            },
                        ],
                    }
                ],
                **project,
            }
        ],
    }


def error_of(source) -> str:
    with pytest.raises(FleetError) as excinfo:
        load_fleet(source)
    return str(excinfo.value)


def test_example_fleet_loads_and_applies(fleet_path):
    fleet = load_fleet(fleet_path)
    state = CloudState()
    [project] = apply_fleet(state, fleet)
    assert project.access_keys == {"EXAMPLEAK0000000001": "example-secret-1"}
    assert [u.name for u in project.users] == ["ops"]
    assert project.quotas == {"backups": 1000, "backup_gigabytes": 100000}
    assert {s.name: len(s.volume_ids) for s in project.servers.values()} == {"web-01": 2, "db-01": 3}
    statuses = {v.name: (v.status, v.bootable) for v in project.volumes.values()}
    assert statuses["web-01-system"] == ("in-use", True)
    assert statuses["web-01-data"] == ("in-use", False)
    assert statuses["scratch-01"] == ("available", False)
    scratch = next(v for v in project.volumes.values() if v.name == "scratch-01")
    assert (scratch.attachments, scratch.availability_zone, scratch.size) == ([], "eu-west-0a", 200)


def test_sample_fleet_has_two_projects_with_a_spare_disk_each():
    fleet = load_fleet(SAMPLE_FLEET)
    assert len(fleet.projects) == 2
    assert 3 <= sum(len(p.servers) for p in fleet.projects) <= 4
    assert all(len(p.volumes) == 1 for p in fleet.projects)
    assert all(any(d.boot_index == 0 for d in s.disks) for p in fleet.projects for s in p.servers)
    apply_fleet(CloudState(), fleet)


def test_fleet_can_be_yaml_text_and_carries_settings():
    text = yaml.safe_dump(
        {**minimal_fleet(), "settings": {"job_mode": "polls"}, "availability_zone": "eu-west-0b"}
    )
    state = CloudState()
    [project] = apply_fleet(state, load_fleet(text))
    assert state.settings.job_mode == "polls"
    assert {v.availability_zone for v in project.volumes.values()} == {"eu-west-0b"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": "NOT-HEX"}, "projects.0.id:"),
        ({"servers": [{"id": "nope", "name": "s"}]}, "projects.0.servers.0.id: Value error, must be a UUID"),
        (
            {
                "servers": [
                    {
                        "id": "11111111-2222-4333-8444-555555555555",
                        "name": "s",
                        "disks": [
                            {
                                "id": "21111111-2222-4333-8444-555555555555",
                                "name": "d",
                                "size_gb": 0,
                                "device": "/dev/vda",
                            }
                        ],
                    }
                ]
            },
            "projects.0.servers.0.disks.0.size_gb: Input should be greater than or equal to 1",
        ),
        ({"access_keys": [{"ak": "A"}]}, "projects.0.access_keys.0.sk: Field required"),
        (
            {"volumes": [{"id": "21111111-2222-4333-8444-555555555555", "name": "dup", "size_gb": 1}]},
            "volume id used more than once: 21111111-2222-4333-8444-555555555555",
        ),
    ],
)
def test_fleet_errors_name_the_field(change, expected):
    assert expected in error_of(minimal_fleet(**change))


def test_a_server_has_at_most_one_system_disk_and_unique_devices():
    disks = [
        {
            "id": "31111111-2222-4333-8444-555555555555",
            "name": "a",
            "size_gb": 10,
            "device": "/dev/vda",
            "boot_index": 0,
        },
        {
            "id": "41111111-2222-4333-8444-555555555555",
            "name": "b",
            "size_gb": 10,
            "device": "/dev/vda",
            "boot_index": 0,
        },
    ]
    message = error_of(
        minimal_fleet(servers=[{"id": "11111111-2222-4333-8444-555555555555", "name": "s", "disks": disks}])
    )
    assert "projects.0.servers.0" in message
    assert "device used by more than one disk: /dev/vda" in message


def test_unknown_settings_and_bad_documents_are_reported(tmp_path):
    assert "unknown settings: warp" in error_of({**minimal_fleet(), "settings": {"warp": 9}})
    assert "must be a mapping" in error_of("- just\n- a list\n")
    missing = tmp_path / "missing.yaml"
    assert "cannot read fleet file" in error_of(missing)
    assert "projects: Field required" in error_of({"region": "eu-west-0"})


def test_applying_a_fleet_twice_clashes():
    state = CloudState()
    apply_fleet(state, load_fleet(minimal_fleet()))
    with pytest.raises(FleetError, match="project 0123456789abcdef0123456789abcdef already exists"):
        apply_fleet(state, load_fleet(minimal_fleet()))


# The `vbs-backup emulator` command --------------------------------------------------------------------------


def test_emulator_command_rejects_an_invalid_fleet(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("region: eu-west-0\nprojects: []\n")
    result = CliRunner().invoke(cli_app, ["emulator", "--fleet", str(bad)])
    assert result.exit_code == 2
    assert "projects: List should have at least 1 item" in result.output


def test_emulator_command_serves_the_fleet_until_terminated(fleet_path, signer):
    process = subprocess.Popen(
        [
            str(VBS_BACKUP),
            "emulator",
            "--fleet",
            str(fleet_path),
            "--port",
            "0",
            "--speed",
            "60",
            "--seed",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    try:
        ready = lines.get(timeout=30)
        assert ready.startswith("emulator ready at http://127.0.0.1:")
        url = ready.split()[-1]
        env = dict(lines.get(timeout=5).strip().split("=", 1) for _ in range(8))
        assert env["VBS_BACKUP_ENDPOINT"] == url
        assert env["VBS_BACKUP_PROJECT_ID"] == "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
        assert (env["VBS_BACKUP_USERNAME"], env["VBS_BACKUP_DOMAIN"]) == ("ops", "example-domain")
        with httpx.Client(base_url=url, timeout=10) as client:
            request = client.build_request("GET", f"/v1/{env['VBS_BACKUP_PROJECT_ID']}/cloudservers/detail")
            response = client.send(signer(request, env["VBS_BACKUP_AK"], env["VBS_BACKUP_SK"]))
        assert response.status_code == 200
        assert {s["name"] for s in response.json()["servers"]} == {"web-01", "db-01"}
    finally:
        process.terminate()
        process.wait(timeout=15)
    assert process.returncode == 0
