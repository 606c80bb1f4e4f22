"""IAM tokens, ECS server/disk queries and EVS disk operations, over a real socket with signed requests."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from vbs_backup.emulator.state import Backup, Share

WEB_01 = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"
WEB_01_SYSTEM = "0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"
WEB_01_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
DB_01_DISKS = [
    "710246b6-521e-4671-8d20-f6cd120ae1df",
    "799600d6-5263-432d-84cf-6130bcb70380",
    "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af",
]
SCRATCH = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
MISSING = "00000000-0000-4000-8000-000000000000"


def password_body(emulator, *, password=None, project=None, domain=None) -> dict:
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": emulator.username,
                        "password": password or emulator.password,
                        "domain": {"name": domain or emulator.domain},
                    }
                },
            },
            "scope": {"project": project or {"id": emulator.project_id}},
        }
    }


def cloud_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]["message"]


# IAM -------------------------------------------------------------------------------------------------------


def test_password_token_is_issued_with_header_and_catalog(emulator):
    response = emulator.call("POST", "/v3/auth/tokens", json=password_body(emulator), signed=False)
    assert response.status_code == 201
    assert response.headers["X-Subject-Token"].startswith("MII")
    token = response.json()["token"]
    assert token["methods"] == ["password"]
    assert token["project"]["id"] == emulator.project_id
    assert token["project"]["name"] == "eu-west-0"
    assert token["user"]["name"] == emulator.username
    assert token["user"]["domain"]["name"] == emulator.domain
    issued = datetime.fromisoformat(token["issued_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(token["expires_at"].replace("Z", "+00:00"))
    assert expires - issued == timedelta(hours=24)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", token["expires_at"])
    urls = {entry["type"]: entry["endpoints"][0]["url"] for entry in token["catalog"]}
    assert urls["vbsv2"] == f"{emulator.url}/v2/{emulator.project_id}"
    assert urls["volumev2"] == f"{emulator.url}/v2/{emulator.project_id}"
    assert urls["ecs"] == f"{emulator.url}/v1/{emulator.project_id}"
    assert urls["identity"] == f"{emulator.url}/v3"
    assert emulator.password not in response.text


def test_nocatalog_drops_the_catalog_and_project_may_be_named(emulator):
    body = password_body(emulator, project={"name": "eu-west-0"})
    response = emulator.call("POST", "/v3/auth/tokens?nocatalog=true", json=body, signed=False)
    assert response.status_code == 201
    assert "catalog" not in response.json()["token"]
    assert response.json()["token"]["project"]["id"] == emulator.project_id


@pytest.mark.parametrize(
    "change",
    [
        {"password": "wrong"},
        {"domain": "other-domain"},
        {"project": {"id": "ffffffffffffffffffffffffffffffff"}},
        {"project": {"name": "eu-de"}},
    ],
)
def test_wrong_credentials_get_the_keystone_401(emulator, change):
    response = emulator.call("POST", "/v3/auth/tokens", json=password_body(emulator, **change), signed=False)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": 401, "message": "Unauthorized.", "title": "Unauthorized"}}
    assert "X-Subject-Token" not in response.headers


def test_user_of_another_project_cannot_scope_to_this_one(emulator, other_project):
    body = password_body(other_project, project={"id": emulator.project_id})
    assert emulator.call("POST", "/v3/auth/tokens", json=body, signed=False).status_code == 401


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"auth": {}}', b'{"auth": {"identity": {"methods": ["token"]}}}'],
)
def test_malformed_token_request_is_a_keystone_400(emulator, body):
    response = emulator.client.post(
        "/v3/auth/tokens", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400
    assert response.json()["error"]["title"] == "Bad Request"


def test_domain_scoped_token_is_not_emulated(emulator):
    body = password_body(emulator)
    body["auth"]["scope"] = {"domain": {"name": emulator.domain}}
    response = emulator.call("POST", "/v3/auth/tokens", json=body, signed=False)
    assert response.status_code == 400
    assert "project" in response.json()["error"]["message"]


def test_token_works_until_it_expires_on_the_emulator_clock(emulator):
    token = emulator.token()
    path = f"/v1/{emulator.project_id}/cloudservers/{WEB_01}"
    assert emulator.call("GET", path, token=token).status_code == 200
    emulator.control("POST", "/clock/advance", json={"seconds": 24 * 3600 - 1})
    assert emulator.call("GET", path, token=token).status_code == 200
    emulator.control("POST", "/clock/advance", json={"seconds": 1})
    expired = emulator.call("GET", path, token=token)
    assert expired.status_code == 401
    assert expired.json()["error_code"] == "APIGW.0301"
    assert "expired" in expired.json()["error_msg"]
    assert token not in expired.text
    fresh = emulator.token()  # a new token works; the old one stays expired
    assert emulator.call("GET", path, token=fresh).status_code == 200


# ECS -------------------------------------------------------------------------------------------------------


def test_block_devices_list_every_attached_disk_with_boot_order(emulator):
    response = emulator.call("GET", f"/v1/{emulator.project_id}/cloudservers/{DB_01}/block_device")
    assert response.status_code == 200
    body = response.json()
    assert body["attachableQuantity"] == {"free_scsi": 23, "free_blk": 14, "free_disk": 22}
    disks = body["volumeAttachments"]
    assert [(d["volumeId"], d["device"], d["bootIndex"], d["size"]) for d in disks] == [
        (DB_01_DISKS[0], "/dev/vda", 0, 40),
        (DB_01_DISKS[1], "/dev/vdb", 1, 200),
        (DB_01_DISKS[2], "/dev/vdc", 2, 50),
    ]
    assert all(d["serverId"] == DB_01 and d["id"] == d["volumeId"] and d["bus"] == "virtio" for d in disks)
    assert [d["pciAddress"] for d in disks] == ["0000:02:01.0", "0000:02:02.0", "0000:02:03.0"]


def test_unknown_server_is_ecs_0114(emulator):
    for suffix in ("", "/block_device"):
        response = emulator.call("GET", f"/v1/{emulator.project_id}/cloudservers/{MISSING}{suffix}")
        assert MISSING in cloud_error(response, 404, "Ecs.0114")


def test_server_detail_has_string_boot_indexes_root_device_and_tags(emulator):
    server = emulator.call("GET", f"/v1/{emulator.project_id}/cloudservers/{WEB_01}").json()["server"]
    assert (server["id"], server["name"], server["status"]) == (WEB_01, "web-01", "ACTIVE")
    assert server["os-extended-volumes:volumes_attached"] == [
        {"id": WEB_01_SYSTEM, "delete_on_termination": "false", "device": "/dev/vda", "bootIndex": "0"},
        {"id": WEB_01_DATA, "delete_on_termination": "false", "device": "/dev/vdb", "bootIndex": "1"},
    ]
    assert server["OS-EXT-SRV-ATTR:root_device_name"] == "/dev/vda"
    assert sorted(server["tags"]) == ["backup=nightly", "env=prod"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", server["created"])


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({}, ["web-01", "db-01"]),
        ({"name": "db"}, ["db-01"]),
        ({"tags": "role=database"}, ["db-01"]),
        ({"tags": "backup=nightly,env=prod"}, ["web-01", "db-01"]),
        ({"tags": "backup=nightly,env=test"}, []),
        ({"tags": "role"}, ["db-01"]),
        ({"not-tags": "role=database"}, ["web-01"]),
        ({"status": "SHUTOFF"}, []),
        ({"status": "ACTIVE", "name": "web"}, ["web-01"]),
        ({"server_id": f"{DB_01},{MISSING}", "name": "web"}, ["db-01"]),
    ],
)
def test_list_servers_filters(emulator, params, names):
    body = emulator.call("GET", f"/v1/{emulator.project_id}/cloudservers/detail", params=params).json()
    assert [s["name"] for s in body["servers"]] == names
    assert body["count"] == len(names)


def test_list_servers_pages_by_page_number(emulator):
    path = f"/v1/{emulator.project_id}/cloudservers/detail"
    pages = [emulator.call("GET", path, params={"limit": 1, "offset": n}).json() for n in (0, 1, 2, 3)]
    assert [[s["name"] for s in p["servers"]] for p in pages] == [["web-01"], ["web-01"], ["db-01"], []]
    assert {p["count"] for p in pages} == {2}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"limit": "ten"}, {"offset": -1}])
def test_list_servers_rejects_bad_paging(emulator, params):
    response = emulator.call("GET", f"/v1/{emulator.project_id}/cloudservers/detail", params=params)
    cloud_error(response, 400, "Ecs.0005")


def test_nova_volume_attachments(emulator):
    for version in ("v2.1", "v2"):
        response = emulator.call(
            "GET", f"/{version}/{emulator.project_id}/servers/{WEB_01}/os-volume_attachments"
        )
        assert response.json() == {
            "volumeAttachments": [
                {"id": WEB_01_SYSTEM, "volumeId": WEB_01_SYSTEM, "serverId": WEB_01, "device": "/dev/vda"},
                {"id": WEB_01_DATA, "volumeId": WEB_01_DATA, "serverId": WEB_01, "device": "/dev/vdb"},
            ]
        }
    missing = emulator.call("GET", f"/v2.1/{emulator.project_id}/servers/{MISSING}/os-volume_attachments")
    assert missing.status_code == 404
    assert missing.json()["itemNotFound"]["code"] == 404


# EVS reads -------------------------------------------------------------------------------------------------


def test_get_volume_returns_the_documented_fields(emulator):
    response = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/{WEB_01_SYSTEM}")
    volume = response.json()["volume"]
    assert (volume["id"], volume["name"], volume["status"], volume["size"]) == (
        WEB_01_SYSTEM,
        "web-01-system",
        "in-use",
        40,
    )
    assert volume["bootable"] == "true"
    assert volume["volume_type"] == "SSD"
    assert volume["availability_zone"] == "eu-west-0a"
    assert volume["os-vol-tenant-attr:tenant_id"] == emulator.project_id
    [attachment] = volume["attachments"]
    assert attachment["server_id"] == WEB_01 and attachment["device"] == "/dev/vda"
    assert attachment["volume_id"] == WEB_01_SYSTEM
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", volume["created_at"])
    assert {link["rel"] for link in volume["links"]} == {"self", "bookmark"}
    scratch = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/{SCRATCH}").json()["volume"]
    assert (scratch["status"], scratch["bootable"], scratch["attachments"]) == ("available", "false", [])


def test_get_volume_errors(emulator):
    missing = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/{MISSING}")
    cloud_error(missing, 404, "EVS.1002")
    malformed = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/not-a-uuid")
    cloud_error(malformed, 400, "EVS.1002")


def test_list_volumes_filters_by_server_status_and_name(emulator):
    path = f"/v2/{emulator.project_id}/cloudvolumes/detail"

    def ids(**params) -> set[str]:
        body = emulator.call("GET", path, params=params).json()
        assert body["count"] == len(body["volumes"])
        return {v["id"] for v in body["volumes"]}

    assert ids(server_id=DB_01) == set(DB_01_DISKS)
    assert ids(status="available") == {SCRATCH}
    assert ids(name="web-01-data") == {WEB_01_DATA}
    assert ids(name="web-01") == set()  # exact match
    assert len(ids()) == 6


def test_list_volumes_pages_with_marker_links_and_offset(emulator):
    path = f"/v2/{emulator.project_id}/cloudvolumes/detail"
    everything = [v["id"] for v in emulator.call("GET", path).json()["volumes"]]
    seen, params = [], {"limit": 4}
    while True:
        body = emulator.call("GET", path, params=params).json()
        assert body["count"] == 6
        seen += [v["id"] for v in body["volumes"]]
        if "volumes_links" not in body:
            break
        [link] = body["volumes_links"]
        assert link["rel"] == "next"
        params = {k: v[0] for k, v in parse_qs(urlsplit(link["href"]).query).items()}
    assert seen == everything
    offset = emulator.call("GET", path, params={"offset": 2, "limit": 2}).json()["volumes"]
    assert [v["id"] for v in offset] == everything[2:4]
    oldest_first = emulator.call("GET", path, params={"sort_dir": "asc"}).json()["volumes"]
    assert [v["id"] for v in oldest_first] == everything[::-1]


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"limit": 0}, "EVS.1023"),
        ({"limit": 1001}, "EVS.1023"),
        ({"limit": "x"}, "EVS.1023"),
        ({"marker": "not-a-uuid"}, "EVS.1024"),
        ({"marker": MISSING}, "EVS.1024"),
        ({"sort_key": "colour"}, "EVS.1025"),
    ],
)
def test_list_volumes_rejects_bad_paging(emulator, params, code):
    response = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/detail", params=params)
    cloud_error(response, 400, code)


# EVS create / delete ---------------------------------------------------------------------------------------


def create_body(**volume) -> dict:
    return {
        "volume": {
            "name": "restored",
            "size": 40,
            "volume_type": "SAS",
            "availability_zone": "eu-west-0a",
            **volume,
        }
    }


def add_backup(emulator, project_id: str, *, size: int = 100, status: str = "available") -> str:
    """A finished backup placed directly in the state (the VBS service is tested on its own)."""
    backup_id = "7e1d2c3b-4a59-4687-9a1b-2c3d4e5f6a7b"
    now = emulator.state.now()
    with emulator.state.locked():
        emulator.state.projects[project_id].backups[backup_id] = Backup(
            id=backup_id,
            name="bk",
            volume_id=WEB_01_DATA,
            project_id=project_id,
            status=status,
            size=size,
            created_at=now,
            updated_at=now,
            data_timestamp=now,
        )
    return backup_id


def test_create_volume_makes_an_available_disk_at_once(emulator):
    response = emulator.call(
        "POST", f"/v2/{emulator.project_id}/cloudvolumes", json=create_body(name="new-disk")
    )
    assert response.status_code == 200
    body = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["job_id"])
    [volume_id] = body["volume_ids"]
    volume = emulator.call("GET", f"/v2/{emulator.project_id}/cloudvolumes/{volume_id}").json()["volume"]
    assert (volume["name"], volume["status"], volume["size"], volume["attachments"]) == (
        "new-disk",
        "available",
        40,
        [],
    )
    job = emulator.state.projects[emulator.project_id].jobs[body["job_id"]]
    assert (job.job_type, job.status, job.entities) == ("createVolume", "SUCCESS", {"volume_id": volume_id})


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": "x"}, "EVS.1008"),
        (create_body(availability_zone=None), "EVS.1009"),
        (create_body(volume_type="FLOPPY"), "EVS.1009"),
        (create_body(size=5), "EVS.1010"),
        (create_body(size="40"), "EVS.1010"),
        (create_body(size=40000), "EVS.1010"),
        (create_body(backup_id="nope"), "EVS.1006"),
        (create_body(backup_id=MISSING), "EVS.1006"),
    ],
)
def test_create_volume_validates_the_request(emulator, body, code):
    response = emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes", json=body)
    cloud_error(response, 400, code)
    assert len(emulator.state.projects[emulator.project_id].volumes) == 6


def test_create_volume_without_body_is_evs_1008(emulator):
    cloud_error(emulator.call("POST", f"/v2/{emulator.project_id}/cloudvolumes"), 400, "EVS.1008")


def test_create_volume_from_own_backup_needs_room_for_it(emulator):
    backup_id = add_backup(emulator, emulator.project_id, size=100)
    path = f"/v2/{emulator.project_id}/cloudvolumes"
    too_small = emulator.call("POST", path, json=create_body(backup_id=backup_id, size=50))
    assert "smaller than the backup" in cloud_error(too_small, 400, "EVS.1010")
    null_size = emulator.call("POST", path, json=create_body(backup_id=backup_id, size=None))
    cloud_error(null_size, 400, "EVS.1010")  # an explicit null is not an integer
    body = create_body(backup_id=backup_id)
    del body["volume"]["size"]  # omitted: the backup's size
    [volume_id] = emulator.call("POST", path, json=body).json()["volume_ids"]
    assert emulator.state.projects[emulator.project_id].volumes[volume_id].size == 100


def test_create_volume_from_a_backup_that_is_not_available_fails(emulator):
    backup_id = add_backup(emulator, emulator.project_id, status="creating")
    response = emulator.call(
        "POST", f"/v2/{emulator.project_id}/cloudvolumes", json=create_body(backup_id=backup_id, size=100)
    )
    assert "creating" in cloud_error(response, 400, "EVS.1006")


def test_shared_backup_can_seed_a_disk_in_the_receiving_project_only(emulator, other_project):
    backup_id = add_backup(emulator, emulator.project_id, size=100)
    path = f"/v2/{other_project.project_id}/cloudvolumes"
    refused = other_project.call("POST", path, json=create_body(backup_id=backup_id, size=100))
    assert "neither owned by nor shared" in cloud_error(refused, 400, "EVS.1006")
    now = emulator.state.now()
    with emulator.state.locked():
        emulator.state.shares["share-1"] = Share(
            id="share-1",
            backup_id=backup_id,
            from_project_id=emulator.project_id,
            to_project_id=other_project.project_id,
            created_at=now,
        )
    response = other_project.call("POST", path, json=create_body(backup_id=backup_id, size=120))
    assert response.status_code == 200
    [volume_id] = response.json()["volume_ids"]
    assert volume_id in emulator.state.projects[other_project.project_id].volumes


def test_delete_volume_removes_a_detached_disk(emulator):
    response = emulator.call("DELETE", f"/v2/{emulator.project_id}/cloudvolumes/{SCRATCH}")
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["job_id"])
    assert SCRATCH not in emulator.state.projects[emulator.project_id].volumes
    again = emulator.call("DELETE", f"/v2/{emulator.project_id}/cloudvolumes/{SCRATCH}")
    cloud_error(again, 404, "EVS.1002")


def test_delete_volume_refuses_an_attached_disk(emulator):
    response = emulator.call("DELETE", f"/v2/{emulator.project_id}/cloudvolumes/{WEB_01_DATA}")
    assert "in-use" in cloud_error(response, 400, "EVS.2024")
    assert WEB_01_DATA in emulator.state.projects[emulator.project_id].volumes


def test_deleting_a_disk_keeps_its_backups(emulator):
    backup_id = add_backup(emulator, emulator.project_id)
    with emulator.state.locked():
        emulator.state.projects[emulator.project_id].backups[backup_id].volume_id = SCRATCH
    assert emulator.call("DELETE", f"/v2/{emulator.project_id}/cloudvolumes/{SCRATCH}").status_code == 200
    assert backup_id in emulator.state.projects[emulator.project_id].backups  # §4.11
