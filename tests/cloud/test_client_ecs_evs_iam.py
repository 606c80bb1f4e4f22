"""The client's ECS, EVS and IAM operations (reference §5a, §5b) and its authentication (§5c, §5b) against
the emulator over a real socket: servers and their disks, disk create/delete, tokens end to end with a
renewal after expiry, wrong credentials without a retry storm, and the one INFO log line per request that
never carries a secret.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from types import SimpleNamespace

import pytest

from tests.clients import REGION, backup_now, connect
from vbs_backup.cloud import AuthenticationError, BadRequestError, CloudClient, NotFoundError, RetryPolicy

# -- ECS (§5a) ----------------------------------------------------------------------------------------------


async def test_list_block_devices_gives_size_and_boot_order(client, fleet):
    devices = await client.ecs.list_block_devices(fleet.server["db-01"])

    assert [(d.volume_id, d.device, d.boot_index, d.size) for d in devices.volume_attachments] == [
        (fleet.volume["db-01-system"], "/dev/vda", 0, fleet.size["db-01-system"]),
        (fleet.volume["db-01-data"], "/dev/vdb", 1, fleet.size["db-01-data"]),
        (fleet.volume["db-01-wal"], "/dev/vdc", 2, fleet.size["db-01-wal"]),
    ]
    assert [d.is_system_disk for d in devices.volume_attachments] == [True, False, False]
    assert devices.attachable_quantity is not None and devices.attachable_quantity.free_disk == 22


async def test_get_server_decodes_string_boot_indexes_and_tags(client, fleet):
    server = await client.ecs.get_server(fleet.server["web-01"])

    assert server.name == "web-01" and server.status == "ACTIVE"
    assert server.tag_map == {"backup": "nightly", "env": "prod"}
    assert server.root_device_name == "/dev/vda"
    assert [(v.id, v.boot_index) for v in server.volumes_attached] == [
        (fleet.volume["web-01-system"], 0),
        (fleet.volume["web-01-data"], 1),
    ]


async def test_get_unknown_server_is_not_found(client):
    with pytest.raises(NotFoundError) as caught:
        await client.ecs.get_server(str(uuid.uuid4()))

    # the reference names no code: Ecs.0114 ("the ECS does not exist") is the emulator's choice
    assert (caught.value.code, caught.value.http_status) == ("Ecs.0114", 404)


async def test_list_servers_by_name_and_by_tag(client, fleet):
    by_name = await client.ecs.list_servers(name="db")
    nightly = await client.ecs.list_servers(tags="backup=nightly")
    databases = await client.ecs.list_servers(tags="role=database")
    not_databases = await client.ecs.list_servers(not_tags="role=database")

    assert [s.id for s in by_name.servers] == [fleet.server["db-01"]] and by_name.count == 1
    assert {s.name for s in nightly.servers} == {"web-01", "db-01"}
    assert [s.name for s in databases.servers] == ["db-01"]
    assert [s.name for s in not_databases.servers] == ["web-01"]


@pytest.fixture
def many_servers(emulator) -> dict:
    """A third project with five servers, added through the control API (`POST /_emulator/fleet`)."""
    project = {
        "id": "99990000111122223333444455556666",
        "name": "eu-west-0_many",
        "access_keys": [{"ak": "MANYSERVERSAK0000001", "sk": "many-secret"}],
        "servers": [
            {
                "id": str(uuid.UUID(int=n + 1)),
                "name": f"app-{n:02d}",
                "tags": {"tier": "web" if n % 2 else "db"},
            }
            for n in range(5)
        ],
    }
    emulator.control("POST", "/fleet", json={"region": REGION, "projects": [project]}).raise_for_status()
    return project


async def test_iter_servers_walks_the_pages(emulator, many_servers, wire):
    key = many_servers["access_keys"][0]
    handle = SimpleNamespace(url=emulator.url, project_id=many_servers["id"], ak=key["ak"], sk=key["sk"])
    async with connect(handle) as cloud:
        wire.clear()
        names = [s.name async for s in cloud.ecs.iter_servers(page_size=2)]
        pages = [await cloud.ecs.list_servers(limit=2, offset=page) for page in (1, 2, 3)]
        web = [s.name async for s in cloud.ecs.iter_servers(tags="tier=web", page_size=1)]
        named = [s.name async for s in cloud.ecs.iter_servers(name="app-04", page_size=2)]

    assert names == [f"app-{n:02d}" for n in range(5)]
    # offset is a 1-based page number: pages of 2, 2 and 1; the short page ends the walk
    assert len(wire.entries("ecs.list_servers")) == 3 + 3 + 3 + 1
    assert [[s.name for s in p.servers] for p in pages] == [
        ["app-00", "app-01"],
        ["app-02", "app-03"],
        ["app-04"],
    ]
    assert all(p.count == 5 for p in pages)
    assert web == ["app-01", "app-03"]
    assert named == ["app-04"]


async def test_list_volume_attachments_of_a_server(client, fleet):
    attachments = await client.ecs.list_volume_attachments(fleet.server["web-01"])

    assert [(a.volume_id, a.device) for a in attachments] == [
        (fleet.volume["web-01-system"], "/dev/vda"),
        (fleet.volume["web-01-data"], "/dev/vdb"),
    ]


# -- EVS (§5a) ----------------------------------------------------------------------------------------------


async def test_get_volume_shows_status_attachment_and_bootable(client, fleet):
    system = await client.evs.get_volume(fleet.volume["web-01-system"])
    scratch = await client.evs.get_volume(fleet.volume["scratch-01"])

    assert system.status == "in-use" and system.bootable is True  # "true" on the wire
    assert system.server_ids == [fleet.server["web-01"]] and system.can_be_backed_up
    assert system.volume_type == "SSD" and system.size == fleet.size["web-01-system"]
    assert scratch.status == "available" and scratch.bootable is False and scratch.attachments == []


async def test_get_missing_volume_is_not_found(client):
    with pytest.raises(NotFoundError) as caught:
        await client.evs.get_volume(str(uuid.uuid4()))

    assert (caught.value.code, caught.value.http_status) == ("EVS.1002", 404)


async def test_list_and_iter_volumes_filtered_by_server(client, fleet, wire):
    db = fleet.server["db-01"]
    db_disks = {fleet.volume[n] for n in ("db-01-system", "db-01-data", "db-01-wal")}

    page = await client.evs.list_volumes(server_id=db, limit=2)
    wire.clear()
    walked = [v.id async for v in client.evs.iter_volumes(server_id=db, page_size=2)]
    everything = [v.id async for v in client.evs.iter_volumes(page_size=4)]

    assert page.count == 3 and len(page.volumes) == 2 and page.next_marker == page.volumes[-1].id
    assert set(walked) == db_disks and len(walked) == 3
    assert set(everything) == set(fleet.volume.values()) and len(everything) == 6
    assert len(wire.entries("evs.list_volumes")) == 2 + 2
    available = await client.evs.list_volumes(status="available")
    assert [v.id for v in available.volumes] == [fleet.volume["scratch-01"]]


async def test_create_volume_from_a_backup_then_delete_it(client, emulator, fleet):
    backup_id = await backup_now(client, fleet.volume["db-01-wal"], "wal-for-new-disk")

    created = await client.evs.create_volume(
        name="wal-copy",
        size=60,
        volume_type="SSD",
        availability_zone="eu-west-0a",
        backup_id=backup_id,
    )

    (volume_id,) = created.volume_ids
    assert created.job_id
    volume = await client.evs.get_volume(volume_id)
    assert (volume.name, volume.size, volume.status) == ("wal-copy", 60, "available")
    job_id = await client.evs.delete_volume(volume_id)
    assert job_id
    with pytest.raises(NotFoundError):
        await client.evs.get_volume(volume_id)
    assert (await client.vbs.get_backup(backup_id)).volume_id == fleet.volume["db-01-wal"]  # §4.11


async def test_deleting_an_attached_volume_is_refused(client, emulator, fleet):
    volume_id = fleet.volume["web-01-data"]

    with pytest.raises(BadRequestError) as caught:
        await client.evs.delete_volume(volume_id)

    assert caught.value.http_status == 400 and caught.value.code == "EVS.2024"  # the emulator's choice
    with emulator.state.locked():
        assert volume_id in emulator.state.projects[emulator.project_id].volumes


# -- IAM and token auth (§5b) -------------------------------------------------------------------------------


async def test_create_token_returns_a_secret_project_scoped_token(client, emulator):
    token = await client.iam.create_token(
        user_name=emulator.username,
        password=emulator.password,
        domain_name=emulator.domain,
        project_id=emulator.project_id,
    )

    value = token.value.get_secret_value()
    assert value in emulator.state.tokens
    assert value not in repr(token) and value not in str(token)
    assert token.project is not None and token.project.id == emulator.project_id
    assert token.issued_at is not None
    assert (token.expires_at - token.issued_at).total_seconds() == 24 * 3600
    assert any(entry.type == "vbsv2" for entry in token.catalog)


async def test_create_token_with_a_wrong_password_is_unauthorized(client, emulator):
    with pytest.raises(AuthenticationError) as caught:
        await client.iam.create_token(
            user_name=emulator.username,
            password="not-the-password",
            domain_name=emulator.domain,
            project_id=emulator.project_id,
        )

    assert caught.value.http_status == 401
    assert "not-the-password" not in str(caught.value) + repr(caught.value)


async def test_token_auth_end_to_end_fetches_one_token_for_many_calls(token_client, fleet, wire):
    server = await token_client.ecs.get_server(fleet.server["web-01"])
    volume = await token_client.evs.get_volume(fleet.volume["web-01-data"])
    backup_id = await backup_now(token_client, volume.id, "with-a-token")

    assert server.name == "web-01"
    assert (await token_client.vbs.get_backup(backup_id)).status == "available"
    assert token_client.session.auth.fetches == 1
    operations = wire.operations()
    assert operations[0] == "iam.create_token" and operations.count("iam.create_token") == 1


async def test_an_expired_token_is_renewed_once_on_401(token_client, emulator, fleet, wire):
    await token_client.ecs.get_server(fleet.server["web-01"])
    emulator.control("POST", "/clock/advance", json={"seconds": 25 * 3600}).raise_for_status()
    wire.clear()

    server = await token_client.ecs.get_server(fleet.server["db-01"])

    assert server.name == "db-01"
    assert [(r["operation"], r["status"]) for r in wire.entries()] == [
        ("ecs.get_server", 401),
        ("iam.create_token", 201),
        ("ecs.get_server", 200),
    ]
    assert token_client.session.auth.fetches == 2
    assert token_client.session.stats["ecs.get_server"] == 2  # one attempt per call: the renewal is auth's


async def test_concurrent_callers_with_an_expired_token_share_one_renewal(
    token_client, emulator, fleet, wire
):
    await token_client.ecs.get_server(fleet.server["web-01"])
    emulator.control("POST", "/clock/advance", json={"seconds": 25 * 3600}).raise_for_status()
    wire.clear()

    servers = await asyncio.gather(*(token_client.ecs.get_server(fleet.server["web-01"]) for _ in range(5)))

    assert {s.name for s in servers} == {"web-01"}
    assert token_client.session.auth.fetches == 2
    assert wire.statuses("iam.create_token") == [201]
    assert sorted(wire.statuses("ecs.get_server")) == [200] * 5 + [401] * 5


async def test_a_create_refused_for_an_expired_token_is_sent_again_with_its_body(
    token_client, emulator, fleet, wire
):
    # A 401 comes from the gateway before the operation runs, so re-sending even a create is safe.
    await token_client.ecs.get_server(fleet.server["web-01"])
    emulator.control("POST", "/clock/advance", json={"seconds": 25 * 3600}).raise_for_status()
    wire.clear()

    job_id = await token_client.vbs.create_backup(fleet.volume["web-01-data"], "after-expiry")

    assert [(r["operation"], r["status"]) for r in wire.entries()] == [
        ("vbs.create_backup", 401),
        ("iam.create_token", 201),
        ("vbs.create_backup", 200),
    ]
    assert (await token_client.vbs.get_job(job_id)).job_id == job_id
    with emulator.state.locked():
        backups = emulator.state.projects[emulator.project_id].backups.values()
        assert [b.name for b in backups] == ["after-expiry"]  # one backup, not two


async def test_token_client_with_a_wrong_password_fails_before_any_api_call(emulator, wire):
    cloud = CloudClient.connect(
        region=REGION,
        project_id=emulator.project_id,
        username=emulator.username,
        password="wrong-password",
        domain=emulator.domain,
        endpoint=emulator.url,
        retry=RetryPolicy(wait=False),
    )
    async with cloud:
        with pytest.raises(AuthenticationError) as caught:
            await cloud.ecs.get_server(str(uuid.uuid4()))

    assert caught.value.http_status == 401
    assert wire.operations() == ["iam.create_token"]  # no retry, and the API call was never sent
    assert "wrong-password" not in str(caught.value) + repr(caught.value) + repr(cloud)


# -- AK/SK failures (§5c) -----------------------------------------------------------------------------------


async def test_wrong_sk_is_authentication_error_without_retries(emulator, fleet, wire):
    async with connect(emulator, sk="not-the-secret-key", retry=RetryPolicy(wait=False)) as cloud:
        with pytest.raises(AuthenticationError) as caught:
            await cloud.evs.get_volume(fleet.volume["web-01-data"])

    assert (caught.value.code, caught.value.http_status) == ("APIGW.0301", 401)
    assert "verify aksk signature fail" in caught.value.message
    assert wire.statuses("evs.get_volume") == [401]  # no retry storm (5 failures can lock an AK, §5c)
    assert "not-the-secret-key" not in str(caught.value) + repr(caught.value) + repr(cloud)


async def test_unknown_ak_is_authentication_error(emulator, fleet, wire):
    async with connect(emulator, ak="UNKNOWNAK00000000000") as cloud:
        with pytest.raises(AuthenticationError) as caught:
            await cloud.ecs.list_servers()

    assert (caught.value.code, caught.value.http_status) == ("APIGW.0301", 401)
    assert "not exist" in caught.value.message
    assert wire.statuses("ecs.list_servers") == [401]


# -- logging ------------------------------------------------------------------------------------------------


async def test_one_info_line_per_request_and_no_secret_in_any_log(
    client, token_client, emulator, fleet, wire, caplog
):
    caplog.set_level(logging.DEBUG, logger="vbs_backup.cloud")

    await client.ecs.get_server(fleet.server["web-01"])
    await client.vbs.get_quotas()
    with pytest.raises(NotFoundError):
        await client.vbs.get_job("0" * 32)
    await token_client.evs.get_volume(fleet.volume["scratch-01"])

    info = [r for r in caplog.records if r.name == "vbs_backup.cloud" and r.levelno == logging.INFO]
    entries = wire.entries()
    assert len(info) == len(entries) == 5  # 3 AK/SK calls, 1 token request, 1 token call
    for record, entry in zip(info, entries, strict=True):
        message = record.getMessage()
        assert message.startswith(
            f"{entry['operation']} {entry['method']} {entry['path']} {entry['status']} "
        )
    token_value = next(iter(emulator.state.tokens))
    text = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    for secret in (emulator.sk, emulator.password, token_value):
        assert secret not in text
    assert "Authorization" not in text and "X-Auth-Token" not in text
