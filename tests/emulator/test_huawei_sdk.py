"""Huawei's own Python SDK (huaweicloudsdkecs / huaweicloudsdkevs) against the emulator.

An independent client: its signer (huaweicloudsdkcore.signer) and its response models check our AK/SK
verification and our ECS/EVS wire shapes without any code of ours on the client side. The SDK signs
`host`, `x-project-id` and `x-sdk-date` (plus `content-type` when set) and talks plain http to the
endpoint given with `with_endpoints`.
"""

from __future__ import annotations

import pytest

pytest.importorskip("huaweicloudsdkecs")
pytest.importorskip("huaweicloudsdkevs")

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkecs.v2 import (
    EcsClient,
    ListServerBlockDevicesRequest,
    ListServersDetailsRequest,
    ShowServerRequest,
)
from huaweicloudsdkevs.v2 import EvsClient, ListVolumesRequest, ShowVolumeRequest

WEB_01 = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"
WEB_01_SYSTEM = "0b2e4f71-8c3d-4e5a-9b6c-7d8e9f0a1b2c"

# The SDK still calls datetime.utcnow() when it signs; that deprecation is not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def build(client_class, emulator, *, sk: str | None = None):
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True  # plain http anyway; keeps the SDK from loading CA bundles
    credentials = BasicCredentials(emulator.ak, sk or emulator.sk, emulator.project_id)
    return (
        client_class.new_builder()
        .with_credentials(credentials)
        .with_endpoints([emulator.url])
        .with_http_config(config)
        .build()
    )


def test_sdk_lists_block_devices(emulator):
    response = build(EcsClient, emulator).list_server_block_devices(
        ListServerBlockDevicesRequest(server_id=DB_01)
    )
    assert [(d.device, d.boot_index, d.size) for d in response.volume_attachments] == [
        ("/dev/vda", 0, 40),
        ("/dev/vdb", 1, 200),
        ("/dev/vdc", 2, 50),
    ]
    assert response.attachable_quantity.free_disk == 22


def test_sdk_shows_a_server(emulator):
    server = build(EcsClient, emulator).show_server(ShowServerRequest(server_id=WEB_01)).server
    assert server.name == "web-01"
    assert [(v.id, v.boot_index) for v in server.os_extended_volumesvolumes_attached] == [
        (WEB_01_SYSTEM, "0"),
        ("5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708", "1"),
    ]
    assert server.os_ext_srv_att_rroot_device_name == "/dev/vda"
    assert sorted(server.tags) == ["backup=nightly", "env=prod"]


def test_sdk_lists_servers_with_filters(emulator):
    client = build(EcsClient, emulator)
    response = client.list_servers_details(
        ListServersDetailsRequest(tags="role=database", limit=10, offset=1)
    )
    assert (response.count, [s.name for s in response.servers]) == (1, ["db-01"])
    response = client.list_servers_details(ListServersDetailsRequest(name="web"))
    assert [s.name for s in response.servers] == ["web-01"]


def test_sdk_sees_ecs_errors_with_code_and_request_id(emulator):
    with pytest.raises(ClientRequestException) as excinfo:
        build(EcsClient, emulator).show_server(
            ShowServerRequest(server_id="00000000-0000-4000-8000-000000000000")
        )
    error = excinfo.value
    assert (error.status_code, error.error_code) == (404, "Ecs.0114")
    assert len(error.request_id) == 32


def test_sdk_with_a_wrong_secret_gets_the_gateway_401(emulator):
    with pytest.raises(ClientRequestException) as excinfo:
        build(EcsClient, emulator, sk="wrong").show_server(ShowServerRequest(server_id=WEB_01))
    assert (excinfo.value.status_code, excinfo.value.error_code) == (401, "APIGW.0301")
    assert "verify aksk signature fail" in excinfo.value.error_msg


def test_sdk_shows_a_volume(emulator):
    volume = build(EvsClient, emulator).show_volume(ShowVolumeRequest(volume_id=WEB_01_SYSTEM)).volume
    assert (volume.name, volume.status, volume.bootable, volume.size) == (
        "web-01-system",
        "in-use",
        "true",
        40,
    )
    assert [a.server_id for a in volume.attachments] == [WEB_01]


def test_sdk_lists_volumes_of_a_server_page_by_page(emulator):
    client = build(EvsClient, emulator)
    first = client.list_volumes(ListVolumesRequest(server_id=DB_01, limit=2))
    assert first.count == 3 and len(first.volumes) == 2
    assert first.volumes_links[0].rel == "next"
    rest = client.list_volumes(ListVolumesRequest(server_id=DB_01, limit=2, marker=first.volumes[-1].id))
    assert len(rest.volumes) == 1 and not rest.volumes_links
    names = {v.name for v in first.volumes + rest.volumes}
    assert names == {"db-01-system", "db-01-data", "db-01-wal"}
