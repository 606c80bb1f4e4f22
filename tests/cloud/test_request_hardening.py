"""Requests that must not go astray: a path segment that would change the path is refused before anything is
sent, a tag key that needs encoding is signed as it crosses the wire, and an answer that drips in cannot hold
a call past its deadline.

The first two drive the real client against the emulator (its request log tells what crossed the socket);
the deadline tests use a tiny raw-socket server that answers one byte at a time, with short timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tests.clients import REGION
from vbs_backup.cloud import CloudClient, ConfigurationError, NotFoundError, RetryPolicy, TransportError
from vbs_backup.cloud.models import CreatePolicyRequest, PolicyStatus, ScheduledPolicy, Tag
from vbs_backup.cloud.session import Service

WEB_DATA = "web-01-data"


def policy_request(tags: list[Tag] | None = None) -> CreatePolicyRequest:
    schedule = ScheduledPolicy(start_time="02:00", frequency=1, retention_num=7, status=PolicyStatus.ON)
    return CreatePolicyRequest(backup_policy_name="hardening", scheduled_policy=schedule, tags=tags)


# -- item 6: a path segment that would change the path ------------------------------------------------------


@pytest.mark.parametrize("key", ["..", "."])
async def test_a_dot_tag_key_is_refused_and_the_policy_survives(client, wire, key):
    policy_id = await client.vbs.create_policy(policy_request(tags=[Tag(key="env", value="prod")]))
    wire.clear()

    with pytest.raises(ValueError, match="dot segment"):
        await client.vbs.delete_policy_tag(policy_id, key)

    assert wire.entries() == []  # nothing was sent, least of all a DELETE of the policy
    assert (await client.vbs.get_policy(policy_id)).backup_policy_id == policy_id
    assert [t.key for t in await client.vbs.list_policy_tags(policy_id)] == ["env"]


@pytest.mark.parametrize("key", ["a/b", "a=b", "a*", "<k>", "a\\b", "a,b", "a|b", "tab\tkey", "", "k" * 37])
async def test_a_tag_key_outside_the_documented_rule_is_refused_before_sending(client, wire, key):
    policy_id = await client.vbs.create_policy(policy_request())
    wire.clear()

    with pytest.raises(ValueError, match="key"):
        await client.vbs.delete_policy_tag(policy_id, key)
    with pytest.raises(ValueError, match="key"):
        await client.vbs.add_policy_tag(policy_id, key, "v")

    assert wire.entries() == []


@pytest.mark.parametrize("segment", ["..", ".", "%2E%2E", "%2e", ".%2E"])
async def test_the_session_refuses_any_dot_segment_whoever_built_the_path(client, wire, segment):
    policy_id = await client.vbs.create_policy(policy_request())
    wire.clear()
    path = f"/v2/{client.project_id}/backuppolicy/{policy_id}/tags/{segment}"

    with pytest.raises(ValueError, match="dot segment"):
        await client.session.request(Service.VBS, "DELETE", path, ok=(204,))

    assert wire.entries() == []
    assert (await client.vbs.get_policy(policy_id)).backup_policy_id == policy_id


async def test_dots_inside_a_key_are_an_ordinary_segment(client, wire):
    policy_id = await client.vbs.create_policy(policy_request())
    await client.vbs.batch_policy_tags(policy_id, "create", {"...": "v", "a..b": "v", ".x": "v"})

    for key in ("...", "a..b", ".x"):
        await client.vbs.delete_policy_tag(policy_id, key)

    assert await client.vbs.list_policy_tags(policy_id) == []
    assert wire.statuses("vbs.delete_policy_tag") == [204, 204, 204]


# -- item 7: the signature covers the path as it is sent ----------------------------------------------------


@pytest.mark.parametrize("key", ["a%41", "%2541", "100%", "%zz"])
async def test_a_key_that_looks_percent_encoded_is_deleted_by_its_literal_text(client, emulator, wire, key):
    policy_id = await client.vbs.create_policy(policy_request())
    await client.vbs.batch_policy_tags(policy_id, "create", {key: "v", "A": "keep"})

    await client.vbs.delete_policy_tag(policy_id, key)  # 401 APIGW.0301 when the path is decoded twice

    assert {t.key: t.value for t in await client.vbs.list_policy_tags(policy_id)} == {"A": "keep"}
    assert wire.statuses("vbs.delete_policy_tag") == [204]
    with pytest.raises(NotFoundError):  # and the literal key is gone, not some decoded cousin of it
        await client.vbs.delete_policy_tag(policy_id, key)


# -- item 8: a deadline per attempt -------------------------------------------------------------------------


@dataclass
class DripServer:
    """An HTTP/1.1 server on 127.0.0.1 that reads each request, sends a 200 head, then its body one byte per
    `pause` seconds (a body of `length` bytes, `body` first then spaces) - each read is quick, the answer is
    not. Counts the requests it received per path."""

    body: bytes = b""
    length: int = 100_000
    pause: float = 0.02
    requests: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            self.requests.append(request_line)
            headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
            length = int({k.lower(): v for k, v in headers.items()}.get("content-length", "0"))
            await reader.readexactly(length)
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {self.length}\r\n\r\n".encode()
            )
            payload = self.body.ljust(self.length)
            for i in range(self.length):
                writer.write(payload[i : i + 1])
                await writer.drain()
                await asyncio.sleep(self.pause)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client gave up and closed the connection: the point of the test
        finally:
            writer.close()


@pytest.fixture
async def drip() -> AsyncIterator[DripServer]:
    server = DripServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    async with listener:
        yield server
        listener.close()


def drip_client(server: DripServer, emulator, **kwargs) -> CloudClient:
    return CloudClient.connect(
        region=REGION,
        project_id=emulator.project_id,
        ak=emulator.ak,
        sk=emulator.sk,
        endpoint=server.url,
        **kwargs,
    )


async def test_a_dripping_answer_ends_at_the_default_deadline_and_a_read_is_retried(drip, emulator):
    # each byte comes well within the 0.25 s read timeout; the whole answer would take 2,000 s
    cloud = drip_client(drip, emulator, timeout=0.25, retry=RetryPolicy(max_attempts=2, wait=False))

    async with cloud, asyncio.timeout(10):  # a guard only: without a deadline the call never ends
        with pytest.raises(TransportError) as caught:
            await cloud.vbs.get_quotas()

    assert caught.value.may_have_reached_server
    assert "deadline" in str(caught.value)
    assert caught.value.operation == "vbs.get_quotas"
    assert len(drip.requests) == 2  # an idempotent GET gets its retry, as after a read timeout


async def test_a_create_whose_answer_drips_is_not_resent_and_may_have_run(drip, emulator, fleet):
    cloud = drip_client(drip, emulator, timeout=5, deadline=0.3, retry=RetryPolicy(wait=False))

    async with cloud, asyncio.timeout(10):
        with pytest.raises(TransportError) as caught:
            await cloud.vbs.create_backup(fleet.volume[WEB_DATA], "dripped")

    # the request went out and the answer was on its way: the backup may exist, so it is adopted by name,
    # never created a second time
    assert caught.value.may_have_reached_server
    assert [line.split()[0] for line in drip.requests] == ["POST"]


async def test_a_slow_but_steady_answer_within_the_deadline_is_read(drip, emulator):
    drip.body = b'{"quotas": {"resources": [{"type": "backups", "used": 3, "quota": 50}]}}'
    drip.length = len(drip.body)
    drip.pause = 0.005
    cloud = drip_client(drip, emulator, timeout=5, deadline=5, retry=RetryPolicy(wait=False))

    async with cloud:
        quotas = await cloud.vbs.get_quotas()

    assert quotas.backups is not None and quotas.backups.used == 3
    assert len(drip.requests) == 1


def test_a_deadline_must_be_positive(emulator):
    with pytest.raises(ConfigurationError, match="deadline"):
        CloudClient.connect(
            region=REGION,
            project_id=emulator.project_id,
            ak=emulator.ak,
            sk=emulator.sk,
            endpoint=emulator.url,
            deadline=0,
        )
