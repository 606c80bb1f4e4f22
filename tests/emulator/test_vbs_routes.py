"""Wire shapes and status codes of the emulated VBS, at the ASGI level (no gateway, no auth).

A tiny Starlette app carries only the VBS routes; the state uses a ManualClock, so time moves only when a
test says so.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from vbs_backup.emulator.clock import ManualClock
from vbs_backup.emulator.state import CloudState, Project, Volume, new_uuid
from vbs_backup.emulator.vbs import install, routes

PID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"
BASE = "http://vbs.test"
V2 = f"/v2/{PID}"

OPERATIONS = set(
    [
        "create_backup",
        "delete_cloud_backup",
        "restore_backup",
        "create_native_backup",
        "list_backups",
        "list_backup_details",
        "get_backup",
        "get_job",
        "delete_backup",
        "restore_native_backup",
        "share_backup",
        "cancel_share",
        "list_shares",
        "count_shares",
        "get_share",
        "get_quotas",
        "create_policy",
        "list_policies",
        "update_policy",
        "delete_policy",
        "associate_resources",
        "disassociate_resources",
        "execute_policy",
        "list_policy_tasks",
        "add_policy_tag",
        "delete_policy_tag",
        "list_project_policy_tags",
        "list_policy_tags",
        "batch_policy_tags",
        "query_policies_by_tags",
    ]
)


@pytest.fixture
def state() -> CloudState:
    state = CloudState(clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC)), rng=random.Random(3))
    for pid in (PID, OTHER):
        state.projects[pid] = Project(id=pid, name=pid[:4])
    install(state)
    return state


@pytest.fixture
async def client(state: CloudState) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(routes=routes())
    app.state.cloud = state
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def add_volume(state: CloudState, *, status: str = "in-use", size: int = 10) -> Volume:
    volume = Volume(id=new_uuid(state.rng), name="data", size=size, status=status)
    state.projects[PID].volumes[volume.id] = volume
    return volume


async def finished_backup(
    client: httpx.AsyncClient, state: CloudState, volume: Volume, name: str = "b1"
) -> str:
    r = await client.post(f"{V2}/cloudbackups", json={"backup": {"volume_id": volume.id, "name": name}})
    job_id = r.json()["job_id"]
    state.clock.advance(3600)
    job = (await client.get(f"/v1/{PID}/jobs/{job_id}")).json()
    assert job["status"] == "SUCCESS"
    return job["entities"]["backup_id"]


def error(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


def test_route_names_are_the_operation_names() -> None:
    names = [r.name for r in routes()]
    assert {n.removeprefix("vbs.") for n in names} == OPERATIONS
    assert all(n.startswith("vbs.") for n in names) and len(names) == len(set(names))


# --------------------------------------------------------------------------------------------------------
# backups and jobs


async def test_create_backup_and_poll_the_job(client: httpx.AsyncClient, state: CloudState) -> None:
    volume = add_volume(state)
    r = await client.post(f"{V2}/cloudbackups", json={"backup": {"volume_id": volume.id, "name": "b1"}})
    assert r.status_code == 200 and set(r.json()) == {"job_id"}
    job_id = r.json()["job_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", job_id)
    job = (await client.get(f"/v1/{PID}/jobs/{job_id}")).json()
    assert job == {
        "status": "INIT",
        "entities": {},
        "job_id": job_id,
        "job_type": "bksCreateBackup",
        "begin_time": "2026-01-01T00:00:00.000Z",
        "end_time": None,
        "error_code": None,
        "fail_reason": None,
        "sub_jobs": [],
    }
    state.clock.advance(100)  # the route's tick moves the job on the next request
    job = (await client.get(f"/v1/{PID}/jobs/{job_id}")).json()
    assert job["status"] == "SUCCESS" and job["end_time"] == "2026-01-01T00:01:16.000Z"
    assert set(job["entities"]) == {"backup_id", "volume_id", "snapshot_id", "bks_create_volume_name"}


async def test_cloud_errors_have_the_vbs_shape(client: httpx.AsyncClient, state: CloudState) -> None:
    r = await client.post(f"{V2}/cloudbackups", json={"backup": {"name": "x", "volume_id": "nope"}})
    assert r.status_code == 400
    assert r.json() == {"error": {"code": "VolumeBackup.0011", "message": r.json()["error"]["message"]}}
    assert error(await client.post(f"{V2}/cloudbackups", content=b"")) == (400, "VolumeBackup.0002")
    assert error(await client.post(f"{V2}/cloudbackups", content=b"{nope")) == (400, "VolumeBackup.0002")
    r = await client.get(f"/v1/{PID}/jobs/{'0' * 32}")
    assert r.status_code == 404 and r.json() == {
        "error": {"code": "common.0011", "message": "query job fail"}
    }


async def test_native_list_detail_and_get_shapes(client: httpx.AsyncClient, state: CloudState) -> None:
    volume = add_volume(state)
    first = await finished_backup(client, state, volume, "b1")
    second = await finished_backup(client, state, volume, "b2")
    r = await client.get(f"{V2}/backups")
    assert r.status_code == 200 and set(r.json()) == {"backups"}
    brief = r.json()["backups"][0]
    assert brief == {
        "id": second,
        "name": "b2",
        "links": [
            {"href": f"{BASE}/v2/{PID}/backups/{second}", "rel": "self"},
            {"href": f"{BASE}/{PID}/backups/{second}", "rel": "bookmark"},
        ],
    }
    page = (await client.get(f"{V2}/backups/detail", params={"limit": 1, "volume_id": volume.id})).json()
    (detail,) = page["backups"]
    assert detail["id"] == second and detail["os-bak-tenant-attr:tenant_id"] == PID
    assert set(detail) >= {
        "status",
        "description",
        "availability_zone",
        "volume_id",
        "snapshot_id",
        "fail_reason",
    }
    assert set(detail) >= {"size", "object_count", "container", "created_at", "updated_at", "data_timestamp"}
    assert isinstance(detail["description"], str) and isinstance(detail["service_metadata"], str)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", detail["created_at"])
    (link,) = page["backups_links"]
    assert link["rel"] == "next" and f"marker={second}" in link["href"] and "/v2/" in link["href"]
    follow = (await client.get(link["href"])).json()
    assert [b["id"] for b in follow["backups"]] == [first] and "backups_links" not in follow
    r = await client.get(f"{V2}/backups/{first}")
    assert r.status_code == 200 and r.json()["backup"]["name"] == "b1"
    r = await client.get(f"{V2}/backups/{new_uuid()}")
    assert r.status_code == 404 and r.json()["itemNotFound"]["code"] == 404
    r = await client.get(f"{V2}/backups/detail", params={"sort_key": "colour"})
    assert r.status_code == 400 and r.json()["badRequest"]["code"] == 400


async def test_native_create_delete_and_restore(client: httpx.AsyncClient, state: CloudState) -> None:
    volume = add_volume(state, status="available")
    r = await client.post(f"{V2}/backups", json={"backup": {"volume_id": volume.id, "name": "nat"}})
    assert r.status_code == 202 and set(r.json()["backup"]) == {"id", "name", "links"}
    backup_id = r.json()["backup"]["id"]
    r = await client.post(f"{V2}/backups", content=b"[")
    assert r.status_code == 400 and "badRequest" in r.json()
    state.clock.advance(3600)
    r = await client.post(f"{V2}/backups/{backup_id}/restore", json={"restore": {"volume_id": volume.id}})
    assert r.status_code == 202
    assert r.json() == {"restore": {"backup_id": backup_id, "volume_id": volume.id, "volume_name": "data"}}
    state.clock.advance(3600)
    r = await client.delete(f"{V2}/backups/{backup_id}")
    assert r.status_code == 202 and r.content == b""
    assert (await client.get(f"{V2}/backups/{backup_id}")).json()["backup"]["status"] == "deleting"
    state.clock.advance(5)
    assert (await client.get(f"{V2}/backups/{backup_id}")).status_code == 404
    assert (await client.delete(f"{V2}/backups/{backup_id}")).status_code == 404


async def test_cloud_restore_delete_and_quota(client: httpx.AsyncClient, state: CloudState) -> None:
    volume = add_volume(state, status="available")
    backup_id = await finished_backup(client, state, volume)
    r = await client.post(
        f"{V2}/cloudbackups/{backup_id}/restore", json={"restore": {"volume_id": volume.id}}
    )
    assert r.status_code == 200 and set(r.json()) == {"job_id"}
    assert error(await client.post(f"{V2}/cloudbackups/{backup_id}/restore", content=b"")) == (
        400,
        "VolumeBackup.0210",
    )
    state.clock.advance(3600)
    r = await client.get(f"{V2}/cloudbackups/quota")
    assert r.status_code == 200
    assert r.json()["quotas"]["resources"][0] == {"type": "backups", "used": 1, "reserved": 0, "quota": 1000}
    other = await finished_backup(client, state, volume, "b2")
    for method in ("POST", "DELETE"):  # the documented POST and the DELETE old clients send
        target = backup_id if method == "POST" else other
        r = await client.request(method, f"{V2}/cloudbackups/{target}")
        assert r.status_code == 200 and set(r.json()) == {"job_id"}
    assert error(await client.post(f"{V2}/cloudbackups/{new_uuid()}")) == (404, "VolumeBackup.0110")


# --------------------------------------------------------------------------------------------------------
# sharing


async def test_sharing_round_trip(client: httpx.AsyncClient, state: CloudState) -> None:
    backup_id = await finished_backup(client, state, add_volume(state))
    r = await client.post(
        f"{V2}/os-vendor-backup-sharing", json={"shared": {"backup_id": backup_id, "to_project_ids": [OTHER]}}
    )
    assert r.status_code == 200
    (record,) = r.json()["shared"]
    fields = "id backup_id from_project_id to_project_id created_at updated_at deleted deleted_at"
    assert set(record) == set(fields.split())
    assert (record["from_project_id"], record["to_project_id"], record["created_at"]) == (PID, OTHER, None)
    listing = (
        await client.get(f"/v2/{OTHER}/os-vendor-backup-sharing/detail", params={"share_to_me": "true"})
    ).json()
    (item,) = listing["shared"]
    assert item["id"] == record["id"] and item["backup"]["id"] == backup_id
    assert "links" not in item["backup"] and "os-bak-tenant-attr:tenant_id" not in item["backup"]
    assert item["backup"]["has_dependent_backups"] is None and item["created_at"] is not None
    r = await client.get(f"{V2}/os-vendor-backup-sharing/count")
    assert r.json() == {"count": 1}
    one = (await client.get(f"/v2/{OTHER}/os-vendor-backup-sharing/{record['id']}")).json()
    assert one["shared"]["id"] == record["id"] and one["shared"]["backup"]["status"] == "available"
    assert (await client.get(f"{V2}/os-vendor-backup-sharing/{new_uuid()}")).status_code == 404
    r = await client.delete(f"{V2}/os-vendor-backup-sharing/{backup_id}", params={"is_backup_id": "true"})
    assert r.status_code == 200 and r.content == b""
    assert (await client.get(f"{V2}/os-vendor-backup-sharing/count")).json() == {"count": 0}


# --------------------------------------------------------------------------------------------------------
# policies, tasks, tags


POLICY = {
    "backup_policy_name": "plan01",
    "scheduled_policy": {
        "start_time": "02:00",
        "frequency": 1,
        "rentention_num": 2,
        "remain_first_backup_of_curMonth": "N",
        "status": "OFF",
    },
    "tags": [{"key": "env", "value": "prod"}],
}


async def test_policy_round_trip(client: httpx.AsyncClient, state: CloudState) -> None:
    volume = add_volume(state)
    r = await client.post(f"{V2}/backuppolicy", json=POLICY)
    assert r.status_code == 200 and set(r.json()) == {"backup_policy_id"}
    pid = r.json()["backup_policy_id"]
    assert error(await client.post(f"{V2}/backuppolicy", content=b"")) == (400, "AutoBackup.0000")
    assert error(await client.post(f"{V2}/backuppolicy", content=b"{x")) == (400, "AutoBackup.0008")
    assert error(await client.post(f"{V2}/backuppolicy", json={})) == (400, "AutoBackup.0001")

    r = await client.post(
        f"{V2}/backuppolicyresources",
        json={
            "backup_policy_id": pid,
            "resources": [{"resource_id": volume.id, "resource_type": "volume"}, {}],
        },
    )
    assert r.status_code == 200
    (ok,), (failed,) = r.json()["success_resources"], r.json()["fail_resources"]
    assert ok == {
        "resource_id": volume.id,
        "resource_type": "volume",
        "availability_zone": volume.availability_zone,
        "os_vol_host_attr": f"pod01.{volume.availability_zone}",
    }
    assert failed["code"] == "AutoBackup.0209" and "message" in failed

    (listed,) = (await client.get(f"{V2}/backuppolicy")).json()["backup_policies"]
    assert listed["backup_policy_id"] == pid and listed["policy_resource_count"] == 1
    assert listed["scheduled_policy"]["rentention_num"] == 2

    r = await client.put(f"{V2}/backuppolicy/{pid}", json={"scheduled_policy": {"status": "OFF"}})
    assert r.status_code == 200 and r.json() == {"backup_policy_id": pid}
    assert error(await client.put(f"{V2}/backuppolicy/{new_uuid()}", json={"backup_policy_name": "x"})) == (
        404,
        "AutoBackup.0205",
    )

    r = await client.post(f"{V2}/backuppolicy/{pid}/action")
    assert r.status_code == 204 and r.content == b""
    assert error(await client.post(f"{V2}/backuppolicy/{pid}/action")) == (409, "AutoBackup.0225")
    tasks = (await client.get(f"{V2}/backuppolicy/{pid}/backuptasks")).json()
    assert tasks["count"] == 1 and tasks["tasks"][0]["status"] == "WAITING"
    assert "finished_at" not in tasks["tasks"][0]
    state.clock.advance(3600)
    (task,) = (await client.get(f"{V2}/backuppolicy/{pid}/backuptasks")).json()["tasks"]
    assert task["status"] == "EXECUTE_SUCCESS" and re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", task["finished_at"]
    )

    r = await client.post(
        f"{V2}/backuppolicyresources/{pid}/deleted_resources",
        json={"resources": [{"resource_id": volume.id}]},
    )
    assert r.json() == {"success_resources": [{"resource_id": volume.id}], "fail_resources": []}
    r = await client.delete(f"{V2}/backuppolicy/{pid}")
    assert r.status_code == 204 and r.content == b""
    assert (await client.get(f"{V2}/backuppolicy")).json() == {"backup_policies": []}


async def test_policy_tags_and_query_by_tag(client: httpx.AsyncClient, state: CloudState) -> None:
    pid = (await client.post(f"{V2}/backuppolicy", json=POLICY)).json()["backup_policy_id"]
    r = await client.post(f"{V2}/backuppolicy/{pid}/tags", json={"tag": {"key": "owner#1", "value": "x"}})
    assert error(r) == (400, "AutoBackup.0214")
    r = await client.post(f"{V2}/backuppolicy/{pid}/tags", json={"tag": {"key": "owner", "value": "ops"}})
    assert r.status_code == 204
    r = await client.get(f"{V2}/backuppolicy/{pid}/tags")
    assert r.json() == {"tags": [{"key": "env", "value": "prod"}, {"key": "owner", "value": "ops"}]}
    r = await client.get(f"{V2}/backuppolicy/tags")  # not a policy called "tags"
    assert r.json() == {"tags": [{"key": "env", "values": ["prod"]}, {"key": "owner", "values": ["ops"]}]}
    assert (await client.delete(f"{V2}/backuppolicy/{pid}/tags/owner")).status_code == 204
    assert error(await client.delete(f"{V2}/backuppolicy/{pid}/tags/owner")) == (404, "AutoBackup.0216")
    r = await client.post(
        f"{V2}/backuppolicy/{pid}/tags/action",
        json={"action": "create", "tags": [{"key": "a", "value": "b"}]},
    )
    assert r.status_code == 204
    query = {"action": "filter", "limit": "10", "offset": "0", "tags": [{"key": "env", "values": ["prod"]}]}
    r = await client.post(f"{V2}/backuppolicy/resource_instances/action", json=query)
    assert r.status_code == 200
    assert r.json() == {
        "total_count": 1,
        "resources": [
            {
                "resource_id": pid,
                "resource_name": "plan01",
                "resource_detail": None,
                "tags": [{"key": "env", "value": "prod"}, {"key": "a", "value": "b"}],
            }
        ],
    }
    r = await client.post(f"{V2}/backuppolicy/resource_instances/action", json={"action": "count"})
    assert r.json() == {"total_count": 1}
    assert error(await client.post(f"{V2}/backuppolicy/resource_instances/action", json={"action": "x"})) == (
        400,
        "AutoBackup.0222",
    )


async def test_unknown_project_is_refused(client: httpx.AsyncClient) -> None:
    r = await client.get(f"/v2/{'9' * 32}/backuppolicy")
    assert r.status_code == 404


async def test_list_shapes_on_an_empty_project(client: httpx.AsyncClient) -> None:
    responses: dict[str, Any] = {
        "backups": (await client.get(f"{V2}/backups")).json(),
        "detail": (await client.get(f"{V2}/backups/detail")).json(),
        "shares": (await client.get(f"{V2}/os-vendor-backup-sharing/detail")).json(),
        "policies": (await client.get(f"{V2}/backuppolicy")).json(),
    }
    assert responses == {
        "backups": {"backups": []},
        "detail": {"backups": []},
        "shares": {"shared": []},
        "policies": {"backup_policies": []},
    }
