"""The client's backup-sharing operations (reference §2.11-§2.15, §4.9) against the emulator over a real
socket, seen from both sides: the owner shares, lists, counts, reads and cancels (by share id and by backup
id); the receiving project sees the share with `share_to_me`, can create a new disk from the backup, and
cannot restore its own disks from it.
"""

from __future__ import annotations

import uuid

import pytest

from tests.clients import backup_now
from vbs_backup.cloud import BadRequestError, NotFoundError
from vbs_backup.cloud.models import BackupStatus

# Any 32-hex project id is accepted as a target (the service cannot refuse a project it has not seen).
THIRD_PROJECT = "aabbccddeeff00112233445566778899"


async def test_share_then_list_count_get_and_cancel_by_share_id(client, other_client, other_project, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "shared-1")
    me, them = client.project_id, other_project.project_id

    (share,) = await client.vbs.share_backup(backup_id, [them])

    assert (share.backup_id, share.from_project_id, share.to_project_id) == (backup_id, me, them)
    assert share.created_at is None and share.backup is None  # the create answer's documented shape
    (listed,) = await client.vbs.list_shares()
    assert listed.id == share.id
    assert listed.backup is not None and listed.backup.name == "shared-1"
    assert listed.backup.status == BackupStatus.AVAILABLE and listed.created_at is not None
    assert await client.vbs.count_shares() == 1
    assert await client.vbs.count_shares(backup_id=backup_id, to_project_id=them) == 1
    assert await client.vbs.count_shares(share_to_me=True) == 0  # nothing was shared *to* us
    got = await client.vbs.get_share(share.id)
    assert got.id == share.id and got.backup is not None and got.backup.id == backup_id

    await client.vbs.cancel_share(share.id)

    assert await client.vbs.list_shares() == []
    assert await other_client.vbs.count_shares(share_to_me=True) == 0
    with pytest.raises(NotFoundError):
        await client.vbs.get_share(share.id)


async def test_the_receiving_project_sees_the_share_and_can_create_a_disk_from_it(
    client, other_client, other_project, fleet
):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "shared-2")
    (share,) = await client.vbs.share_backup(backup_id, [other_project.project_id])

    received = await other_client.vbs.list_shares(share_to_me=True)
    made_by_them = await other_client.vbs.list_shares()

    assert [s.id for s in received] == [share.id] and made_by_them == []
    assert received[0].from_project_id == client.project_id
    assert await other_client.vbs.count_shares(share_to_me=True, name="SHARED") == 1  # fuzzy name match
    assert (await other_client.vbs.get_share(share.id)).backup_id == backup_id
    # the shared backup is not one of their backups ...
    assert [b async for b in other_client.vbs.iter_backup_details()] == []
    # ... they can make a new disk from it (§4.9) ...
    created = await other_client.evs.create_volume(
        name="from-shared",
        size=fleet.size["web-01-data"],
        volume_type="SAS",
        availability_zone="eu-west-0a",
        backup_id=backup_id,
    )
    (new_volume,) = created.volume_ids
    assert (await other_client.evs.get_volume(new_volume)).status == "available"
    # ... but not restore one of their own disks from it (§2.3)
    with pytest.raises(NotFoundError) as caught:
        await other_client.vbs.restore_backup(backup_id, new_volume)
    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0111", 404)


async def test_cancel_share_by_backup_id_removes_every_share_of_the_backup(
    client, other_client, other_project, fleet
):
    kept_id = await backup_now(client, fleet.volume["db-01-wal"], "kept-shared")
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "shared-twice")
    await client.vbs.share_backup(kept_id, [other_project.project_id])
    shares = await client.vbs.share_backup(backup_id, [other_project.project_id, THIRD_PROJECT])
    assert sorted(s.to_project_id for s in shares) == sorted([other_project.project_id, THIRD_PROJECT])
    assert await client.vbs.count_shares() == 3

    await client.vbs.cancel_share(backup_id, is_backup_id=True)

    assert [s.backup_id for s in await client.vbs.list_shares()] == [kept_id]
    assert [s.backup_id for s in await other_client.vbs.list_shares(share_to_me=True)] == [kept_id]


async def test_sharing_a_backup_that_is_not_available_is_refused(client, fleet):
    await client.vbs.create_backup(fleet.volume["web-01-data"], "still-creating")
    (creating,) = await client.vbs.find_backups_by_name("still-creating")

    with pytest.raises(BadRequestError) as caught:
        await client.vbs.share_backup(creating.id, [THIRD_PROJECT])

    assert (caught.value.code, caught.value.http_status) == ("VolumeBackup.0089", 400)


async def test_sharing_an_unknown_backup_is_not_found(client):
    # The reference documents no sharing error codes; the emulator answers VolumeBackup.0043 (its choice).
    with pytest.raises(NotFoundError) as caught:
        await client.vbs.share_backup(str(uuid.uuid4()), [THIRD_PROJECT])

    assert caught.value.http_status == 404 and caught.value.code == "VolumeBackup.0043"


async def test_only_the_owner_cancels_a_share(client, other_client, other_project, fleet):
    backup_id = await backup_now(client, fleet.volume["web-01-data"], "owner-only")
    (share,) = await client.vbs.share_backup(backup_id, [other_project.project_id])

    with pytest.raises(NotFoundError):
        await other_client.vbs.cancel_share(share.id)

    assert await client.vbs.count_shares() == 1


async def test_iter_shares_reads_every_share_oldest_first_over_offset_pages(
    client, other_project, fleet, wire
):
    backup_ids = [await backup_now(client, fleet.volume["web-01-data"], f"paged-{i}") for i in range(5)]
    for backup_id in backup_ids:
        await client.vbs.share_backup(backup_id, [other_project.project_id])
    wire.clear()

    shares = [s async for s in client.vbs.iter_shares(page_size=2)]

    assert [s.backup_id for s in shares] == backup_ids  # oldest first, each once
    assert len(wire.entries("vbs.list_shares")) == 3  # pages of 2, 2 and 1: a short page ends it


async def test_a_filter_no_list_declares_is_refused_before_any_request(client, wire):
    # The filters are declared once per resource (vbs_shares.ShareFilters, vbs_backups.BackupFilters): a
    # misspelt one is a TypeError, as a misspelt keyword argument was, and never a silently ignored filter.
    wire.clear()

    with pytest.raises(TypeError, match="volumeid"):
        await client.vbs.count_shares(volumeid="x")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="volumeid"):
        [b async for b in client.vbs.iter_backup_details(volumeid="x")]  # type: ignore[call-arg]

    assert wire.entries() == []
