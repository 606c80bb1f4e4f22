"""Changing the cloud's topology through the control API, checked through the documented API over HTTP.

Renames, detach/attach (moves and multi-attach) and planted foreign backups; every backup is kept, because a
backup belongs to its volume id, not to a server.
"""

from __future__ import annotations

import json

import pytest

WEB_01 = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"
WEB_01_SYSTEM = "0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"
WEB_01_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
DB_01_SYSTEM = "710246b6-521e-4671-8d20-f6cd120ae1df"
DB_01_DATA = "799600d6-5263-432d-84cf-6130bcb70380"
DB_01_WAL = "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af"
SCRATCH = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
OTHER_SPARE = "3c9e5d1a-7b2f-4e8a-9c6d-0f1e2d3c4b5a"  # in the `other_project` fixture's project
MISSING = "00000000-0000-4000-8000-000000000000"


# Reading the cloud through the documented API (signed calls) ----------------------------------------------


def get(emulator, path: str, **params) -> dict:
    response = emulator.call("GET", path, params=params or None)
    assert response.status_code == 200, response.text
    return response.json()


def server(emulator, server_id: str) -> dict:
    return get(emulator, f"/v1/{emulator.project_id}/cloudservers/{server_id}")["server"]


def servers_by_id(emulator, **params) -> dict[str, dict]:
    body = get(emulator, f"/v1/{emulator.project_id}/cloudservers/detail", **params)
    return {s["id"]: s for s in body["servers"]}


def volumes_attached(server_wire: dict) -> list[tuple[str, str, str]]:
    return [
        (v["id"], v["device"], v["bootIndex"]) for v in server_wire["os-extended-volumes:volumes_attached"]
    ]


def block_devices(emulator, server_id: str) -> list[tuple[str, str, int]]:
    body = get(emulator, f"/v1/{emulator.project_id}/cloudservers/{server_id}/block_device")
    return [(d["volumeId"], d["device"], d["bootIndex"]) for d in body["volumeAttachments"]]


def nova_attachments(emulator, server_id: str) -> list[tuple[str, str]]:
    body = get(emulator, f"/v2.1/{emulator.project_id}/servers/{server_id}/os-volume_attachments")
    return [(a["volumeId"], a["device"]) for a in body["volumeAttachments"]]


def evs_volume_ids(emulator, server_id: str) -> set[str]:
    body = get(emulator, f"/v2/{emulator.project_id}/cloudvolumes/detail", server_id=server_id)
    return {v["id"] for v in body["volumes"]}


def volume(emulator, volume_id: str) -> dict:
    return get(emulator, f"/v2/{emulator.project_id}/cloudvolumes/{volume_id}")["volume"]


def attachments(volume_wire: dict) -> list[tuple[str, str]]:
    return [(a["server_id"], a["device"]) for a in volume_wire["attachments"]]


def backups_detail(emulator, **params) -> dict[str, dict]:
    return {
        b["id"]: b for b in get(emulator, f"/v2/{emulator.project_id}/backups/detail", **params)["backups"]
    }


def server_disks(emulator, server_id: str) -> set[str]:
    """Every ECS/EVS view of a server's disks must agree; returns the one set of volume ids."""
    views = {
        "volumes_attached": {v for v, _, _ in volumes_attached(server(emulator, server_id))},
        "detail list": {v for v, _, _ in volumes_attached(servers_by_id(emulator)[server_id])},
        "block_device": {v for v, _, _ in block_devices(emulator, server_id)},
        "nova": {v for v, _ in nova_attachments(emulator, server_id)},
        "evs server_id filter": evs_volume_ids(emulator, server_id),
    }
    first = views["volumes_attached"]
    assert all(ids == first for ids in views.values()), views
    return first


# Acting -----------------------------------------------------------------------------------------------------


def control_ok(emulator, method: str, path: str, body: dict) -> dict:
    response = emulator.control(method, path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


def bad_request(response) -> str:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "Emulator.BadRequest"
    return error["message"]


def finish(emulator, job_id: str) -> dict:
    """Poll the job (the fixture runs jobs in poll mode) until it ends."""
    for _ in range(10):
        job = get(emulator, f"/v1/{emulator.project_id}/jobs/{job_id}")
        if job["status"] in ("SUCCESS", "FAIL"):
            return job
    raise AssertionError(f"job {job_id} did not finish: {job}")


def submit_backup(emulator, volume_id: str, name: str) -> str:
    body = {"backup": {"volume_id": volume_id, "name": name}}
    response = emulator.call("POST", f"/v2/{emulator.project_id}/cloudbackups", json=body)
    assert response.status_code == 200, response.text
    return response.json()["job_id"]


def make_backup(emulator, volume_id: str, name: str) -> dict:
    job = finish(emulator, submit_backup(emulator, volume_id, name))
    assert job["status"] == "SUCCESS", job
    return backups_detail(emulator)[job["entities"]["backup_id"]]


# Rename -----------------------------------------------------------------------------------------------------


def test_rename_shows_everywhere_and_keeps_disks_and_backups(emulator):
    backup = make_backup(emulator, WEB_01_DATA, "before-rename")
    disks_before = volumes_attached(server(emulator, WEB_01))

    answer = control_ok(
        emulator, "POST", f"/servers/{WEB_01}", {"name": "frontend-01", "tags": {"backup": "weekly"}}
    )

    assert answer == {
        "id": WEB_01,
        "name": "frontend-01",
        "tags": {"backup": "weekly"},
        "volume_ids": [WEB_01_SYSTEM, WEB_01_DATA],
    }
    detail = server(emulator, WEB_01)
    assert (detail["name"], detail["tags"]) == ("frontend-01", ["backup=weekly"])
    assert servers_by_id(emulator)[WEB_01]["name"] == "frontend-01"
    assert set(servers_by_id(emulator, name="frontend")) == {WEB_01}
    assert servers_by_id(emulator, name="web-01") == {}
    assert set(servers_by_id(emulator, tags="backup=weekly")) == {WEB_01}
    assert volumes_attached(detail) == disks_before
    assert server_disks(emulator, WEB_01) == {WEB_01_SYSTEM, WEB_01_DATA}
    assert backups_detail(emulator)[backup["id"]] == backup


def test_rename_alone_keeps_the_tags_and_tags_alone_keep_the_name(emulator):
    control_ok(emulator, "POST", f"/servers/{DB_01}", {"name": "db-01-old"})
    assert server(emulator, DB_01)["name"] == "db-01-old"
    assert sorted(server(emulator, DB_01)["tags"]) == ["backup=nightly", "env=prod", "role=database"]
    control_ok(emulator, "POST", f"/servers/{DB_01}", {"tags": {}})
    assert (server(emulator, DB_01)["name"], server(emulator, DB_01)["tags"]) == ("db-01-old", [])


# Detach and attach ------------------------------------------------------------------------------------------


def test_detach_then_attach_elsewhere_moves_the_disk_and_keeps_its_backups(emulator):
    backup = make_backup(emulator, WEB_01_DATA, "before-move")

    detached = control_ok(emulator, "POST", f"/volumes/{WEB_01_DATA}/detach", {"server_id": WEB_01})

    assert detached == {"id": WEB_01_DATA, "status": "available", "attachments": []}
    assert server_disks(emulator, WEB_01) == {WEB_01_SYSTEM}
    assert volumes_attached(server(emulator, WEB_01)) == [(WEB_01_SYSTEM, "/dev/vda", "0")]
    loose = volume(emulator, WEB_01_DATA)
    assert (loose["status"], loose["attachments"]) == ("available", [])

    attached = control_ok(
        emulator,
        "POST",
        f"/volumes/{WEB_01_DATA}/attach",
        {"server_id": DB_01, "device": "/dev/vdd", "boot_index": None},
    )

    assert attached == {
        "id": WEB_01_DATA,
        "status": "in-use",
        "attachments": [{"server_id": DB_01, "device": "/dev/vdd", "boot_index": None}],
    }
    assert server_disks(emulator, WEB_01) == {WEB_01_SYSTEM}
    assert server_disks(emulator, DB_01) == {DB_01_SYSTEM, DB_01_DATA, DB_01_WAL, WEB_01_DATA}
    assert volumes_attached(server(emulator, DB_01))[-1] == (WEB_01_DATA, "/dev/vdd", "3")
    assert block_devices(emulator, DB_01)[-1] == (WEB_01_DATA, "/dev/vdd", 3)
    assert nova_attachments(emulator, DB_01)[-1] == (WEB_01_DATA, "/dev/vdd")
    moved = volume(emulator, WEB_01_DATA)
    assert moved["status"] == "in-use"
    assert attachments(moved) == [(DB_01, "/dev/vdd")]
    assert moved["multiattach"] is False
    assert backups_detail(emulator)[backup["id"]] == backup  # same volume id, status, times
    assert set(backups_detail(emulator, volume_id=WEB_01_DATA)) == {backup["id"]}


def test_multi_attach_shows_the_disk_on_both_servers_and_it_can_be_backed_up(emulator):
    control_ok(emulator, "POST", f"/volumes/{DB_01_DATA}/attach", {"server_id": WEB_01, "device": "/dev/vdc"})

    shared = volume(emulator, DB_01_DATA)
    assert shared["status"] == "in-use"
    assert attachments(shared) == [(DB_01, "/dev/vdb"), (WEB_01, "/dev/vdc")]
    assert (shared["multiattach"], shared["shareable"]) == (True, "true")
    assert DB_01_DATA in server_disks(emulator, WEB_01)
    assert DB_01_DATA in server_disks(emulator, DB_01)
    assert volumes_attached(server(emulator, WEB_01))[-1] == (DB_01_DATA, "/dev/vdc", "2")

    # a backup of a multi-attached in-use disk works as for any in-use disk, and the disk comes back
    backup = make_backup(emulator, DB_01_DATA, "shared-disk")
    assert (backup["volume_id"], backup["status"]) == (DB_01_DATA, "available")
    after = volume(emulator, DB_01_DATA)
    assert after["status"] == "in-use"
    assert attachments(after) == [(DB_01, "/dev/vdb"), (WEB_01, "/dev/vdc")]

    # detaching from one server leaves the other attachment, and the disk in use
    left = control_ok(emulator, "POST", f"/volumes/{DB_01_DATA}/detach", {"server_id": DB_01})
    assert left["status"] == "in-use"
    assert left["attachments"] == [{"server_id": WEB_01, "device": "/dev/vdc", "boot_index": None}]
    assert DB_01_DATA not in server_disks(emulator, DB_01)
    assert DB_01_DATA in server_disks(emulator, WEB_01)
    assert backups_detail(emulator)[backup["id"]] == backup


def test_detaching_during_a_backup_keeps_the_job_and_the_disk_ends_available(emulator):
    job_id = submit_backup(emulator, WEB_01_DATA, "racing-detach")
    assert volume(emulator, WEB_01_DATA)["status"] == "backing-up"

    detached = control_ok(emulator, "POST", f"/volumes/{WEB_01_DATA}/detach", {"server_id": WEB_01})

    assert (detached["status"], detached["attachments"]) == ("backing-up", [])
    job = finish(emulator, job_id)
    assert job["status"] == "SUCCESS"
    assert volume(emulator, WEB_01_DATA)["status"] == "available"
    assert backups_detail(emulator)[job["entities"]["backup_id"]]["status"] == "available"


def test_attaching_a_detached_disk_as_a_new_system_disk(emulator):
    control_ok(emulator, "POST", f"/volumes/{WEB_01_SYSTEM}/detach", {"server_id": WEB_01})
    control_ok(
        emulator,
        "POST",
        f"/volumes/{SCRATCH}/attach",
        {"server_id": WEB_01, "device": "/dev/vda", "boot_index": 0, "bus": "scsi"},
    )
    detail = server(emulator, WEB_01)
    assert detail["OS-EXT-SRV-ATTR:root_device_name"] == "/dev/vda"
    assert volumes_attached(detail) == [(WEB_01_DATA, "/dev/vdb", "1"), (SCRATCH, "/dev/vda", "0")]
    assert volume(emulator, SCRATCH)["status"] == "in-use"
    assert volume(emulator, WEB_01_SYSTEM)["status"] == "available"


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        (f"/volumes/{WEB_01_DATA}/attach", {"server_id": MISSING, "device": "/dev/vdd"}, f"server {MISSING}"),
        (f"/volumes/{MISSING}/attach", {"server_id": DB_01, "device": "/dev/vdd"}, f"volume {MISSING}"),
        (
            f"/volumes/{SCRATCH}/attach",
            {"server_id": DB_01, "device": "/dev/vdb"},
            "/dev/vdb is already used",
        ),
        (f"/volumes/{WEB_01_DATA}/attach", {"server_id": WEB_01, "device": "/dev/vdd"}, "already attached"),
        (f"/volumes/{SCRATCH}/attach", {"server_id": DB_01, "device": "/dev/vdd", "boot_index": 0}, "system"),
        (f"/volumes/{SCRATCH}/attach", {"server_id": DB_01, "device": "sdb"}, "device name"),
        (f"/volumes/{SCRATCH}/attach", {"server_id": DB_01, "device": "/dev/vdd", "bus": "ide"}, "bus"),
        (f"/volumes/{SCRATCH}/attach", {"server_id": DB_01}, "device required"),
        (
            f"/volumes/{SCRATCH}/attach",
            {"server_id": DB_01, "device": "/dev/vdd", "boot_index": "1"},
            "an integer",
        ),
        (f"/volumes/{SCRATCH}/attach", {"server_id": DB_01, "device": "/dev/vdd", "force": True}, "force"),
        (f"/volumes/{SCRATCH}/detach", {"server_id": DB_01}, "not attached to server"),
        (f"/volumes/{MISSING}/detach", {"server_id": DB_01}, f"volume {MISSING}"),
        (f"/volumes/{WEB_01_DATA}/detach", {"server_id": MISSING}, f"server {MISSING}"),
        (f"/volumes/{WEB_01_DATA}/detach", {}, "server_id required"),
        (f"/servers/{MISSING}", {"name": "x"}, f"server {MISSING}"),
        (f"/servers/{WEB_01}", {"name": ""}, "name must be 1 to 255"),
        (f"/servers/{WEB_01}", {}, "name and/or tags"),
        (f"/servers/{WEB_01}", {"tags": {"a=b": "c"}}, "tag keys"),
        (f"/servers/{WEB_01}", {"tags": ["env=prod"]}, "tags must be an object"),
    ],
)
def test_refusals_answer_400_with_a_clear_message_and_change_nothing(emulator, path, body, words):
    before = emulator.control("GET", "/state").json()
    assert words in bad_request(emulator.control("POST", path, json=body))
    assert emulator.control("GET", "/state").json() == before


def test_a_body_must_be_a_json_object(emulator):
    assert "JSON object" in bad_request(emulator.control("POST", f"/volumes/{SCRATCH}/attach"))
    response = emulator.client.post(
        f"/_emulator/volumes/{SCRATCH}/attach", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert "not JSON" in bad_request(response)


def test_a_disk_cannot_be_attached_to_a_server_of_another_project(emulator, other_project):
    response = emulator.control(
        "POST", f"/volumes/{OTHER_SPARE}/attach", {"server_id": WEB_01, "device": "/dev/vdd"}
    )
    assert "different projects" in bad_request(response)


# Planted backups --------------------------------------------------------------------------------------------


def test_planted_policy_backup_is_served_like_any_other(emulator):
    # the documented API refuses the name: only a policy may make it
    refused = emulator.call(
        "POST",
        f"/v2/{emulator.project_id}/cloudbackups",
        json={"backup": {"volume_id": WEB_01_DATA, "name": "autobk_a1b2"}},
    )
    assert refused.json()["error"]["code"] == "VolumeBackup.0005"

    answer = control_ok(
        emulator,
        "POST",
        "/backups",
        {
            "volume_id": WEB_01_DATA,
            "name": "autobk_a1b2",
            "created_at": "2025-03-01T02:00:00Z",
            "kind": "auto",
        },
    )

    assert set(answer) == {"id"}
    listed = backups_detail(emulator)[answer["id"]]
    assert listed["name"] == "autobk_a1b2"
    assert listed["status"] == "available"
    assert listed["volume_id"] == WEB_01_DATA
    assert listed["size"] == 100
    assert listed["created_at"] == "2025-03-01T02:00:00.000000"
    assert listed["os-bak-tenant-attr:tenant_id"] == emulator.project_id
    assert json.loads(listed["description"]) == {"DESC": "", "INC": 0}
    assert json.loads(listed["service_metadata"])["Type"] == 0
    one = get(emulator, f"/v2/{emulator.project_id}/backups/{answer['id']}")["backup"]
    assert one == listed
    assert set(backups_detail(emulator, name="autobk_a1b2")) == {answer["id"]}
    summary = emulator.control("GET", "/state").json()["projects"][emulator.project_id]
    assert [b["kind"] for b in summary["backups"] if b["id"] == answer["id"]] == ["auto"]
    # the disk is untouched and can still be backed up; the next backup is incremental
    assert volume(emulator, WEB_01_DATA)["status"] == "in-use"
    mine = make_backup(emulator, WEB_01_DATA, "mine")
    assert json.loads(mine["description"])["INC"] == 1


def test_planted_backup_with_a_copied_description_and_status(emulator):
    now = emulator.control("GET", "/clock").json()["now"]
    copied = control_ok(
        emulator,
        "POST",
        "/backups",
        {
            "volume_id": DB_01_DATA,
            "name": "look-alike",
            "description": "vbs-backup run 42",
            "status": "error",
        },
    )
    naive_time = control_ok(
        emulator,
        "POST",
        "/backups",
        {"volume_id": SCRATCH, "name": "old", "created_at": "2024-12-31T23:59:58.5", "status": "creating"},
    )

    listed = backups_detail(emulator)
    assert listed[copied["id"]]["name"] == "look-alike"
    assert listed[copied["id"]]["status"] == "error"
    assert json.loads(listed[copied["id"]]["description"]) == {"DESC": "vbs-backup run 42", "INC": 0}
    assert listed[copied["id"]]["created_at"] == now.replace("+00:00", "") + ".000000"
    assert listed[naive_time["id"]]["created_at"] == "2024-12-31T23:59:58.500000"
    assert listed[naive_time["id"]]["status"] == "creating"
    # newest first, as the documented list sorts
    assert list(listed)[-1] == naive_time["id"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"volume_id": MISSING, "name": "x"}, f"volume {MISSING}"),
        ({"volume_id": SCRATCH}, "name required"),
        ({"volume_id": SCRATCH, "name": "x", "status": "lost"}, "status must be one of"),
        ({"volume_id": SCRATCH, "name": "x", "kind": "policy"}, "kind must be"),
        ({"volume_id": SCRATCH, "name": "x", "created_at": "yesterday"}, "ISO 8601"),
        ({"volume_id": SCRATCH, "name": "x", "size": 5}, "unknown keys size"),
    ],
)
def test_planting_refusals(emulator, body, words):
    assert words in bad_request(emulator.control("POST", "/backups", json=body))
    assert backups_detail(emulator) == {}
