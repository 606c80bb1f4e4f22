"""Marker paging while rows are deleted: the emulator refuses a marker that no longer exists the way Cinder
does (400 badRequest "Marker <id> could not be found."; the reference says nothing), and the client's
`CloudSession.paginate` recovers from exactly that answer without losing or repeating a row that still
exists.

The listings run against the emulator over a real socket; the async iterator is consumed step by step so
that a page's last row (the next request's marker) can be deleted between two page requests. A deleted
backup first turns `deleting` and is only gone `delete_seconds` of virtual time later, so the tests move
the emulator clock past that (or use a `status=available` listing, which the backup leaves at once). The
recovery bounds and the precision of the "marker vanished" test are checked with `httpx.MockTransport`.
"""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from tests.clients import backup_now
from vbs_backup.cloud import (
    AkSkAuth,
    BadRequestError,
    CloudSession,
    Endpoints,
    NotFoundError,
    RetryPolicy,
    ServerError,
)
from vbs_backup.cloud.models import BackupStatus
from vbs_backup.cloud.session import MARKER_LOSSES, Service

LIST = "vbs.list_backup_details"
DISKS = ["web-01-system", "web-01-data", "db-01-system", "db-01-data", "db-01-wal", "scratch-01"]


async def _seven_backups(client, emulator, fleet) -> list[str]:
    """Seven available backups, one virtual second apart; their ids newest first (the listing order)."""
    made = []
    for n, disk in enumerate([*DISKS, "web-01-data"]):
        made.append(await backup_now(client, fleet.volume[disk], f"page-{n}"))
        emulator.control("POST", "/clock/advance", json={"seconds": 1}).raise_for_status()
    return made[::-1]


async def _delete(client, emulator, *backup_ids: str, gone: bool = True) -> None:
    """Delete through the API; with `gone`, move the emulator clock past `deleting` so the rows vanish."""
    for backup_id in backup_ids:
        await client.vbs.delete_backup(backup_id)
    if gone:
        emulator.control("POST", "/clock/advance", json={"seconds": 60}).raise_for_status()
        with emulator.state.locked():
            backups = emulator.state.projects[emulator.project_id].backups
            assert not set(backup_ids) & set(backups)


async def _take(iterator, n: int) -> list:
    return [await anext(iterator) for _ in range(n)]


def _existing(emulator) -> set[str]:
    with emulator.state.locked():
        return set(emulator.state.projects[emulator.project_id].backups)


def _recoveries(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "no longer exists" in r.getMessage()]


# -- the emulator's answer to an unknown marker -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/backups", "/backups/detail"])
def test_an_unknown_marker_is_a_cinder_bad_request_naming_it(emulator, path):
    missing = str(uuid.uuid4())

    r = emulator.call("GET", f"/v2/{emulator.project_id}{path}", params={"limit": 2, "marker": missing})

    assert r.status_code == 400
    assert r.json() == {"badRequest": {"code": 400, "message": f"Marker {missing} could not be found."}}


async def test_a_deleted_backups_id_stops_being_a_marker_once_it_is_gone(client, emulator, fleet):
    _, second, *_ = await _seven_backups(client, emulator, fleet)
    await _delete(client, emulator, second, gone=False)

    # `deleting` is still a row of the list: its id still works as a marker
    page = await client.vbs.list_backup_details(limit=2, marker=second)
    assert len(page.backups) == 2 and second not in {b.id for b in page.backups}

    emulator.control("POST", "/clock/advance", json={"seconds": 60}).raise_for_status()
    with pytest.raises(BadRequestError) as caught:
        await client.vbs.list_backup_details(limit=2, marker=second)
    assert caught.value.http_status == 400 and caught.value.code == "badRequest"
    assert caught.value.message == f"Marker {second} could not be found."
    with pytest.raises(BadRequestError):
        await client.vbs.list_backups(limit=2, marker=second)


# -- the client lists on when its marker vanishes ---------------------------------------------------------


async def test_listing_survives_the_deletion_of_its_marker_between_pages(
    client, emulator, fleet, wire, caplog
):
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")
    made = await _seven_backups(client, emulator, fleet)
    wire.clear()
    pages = client.vbs.iter_backup_details(page_size=2)

    first = await _take(pages, 2)  # the first page; the next request will carry marker=first[-1]
    await _delete(client, emulator, first[-1].id)
    rest = [b async for b in pages]

    ids = [b.id for b in first + rest]
    assert ids == made  # newest first, every row once, nothing lost around the vanished marker
    assert len(set(ids)) == len(ids)
    assert _existing(emulator) <= set(ids)
    # the refused marker, then the page after the row before it (made[0]), which starts at made[2]
    assert wire.statuses(LIST) == [200, 400, 200, 200, 200]
    assert _recoveries(caplog) == [f"{LIST}: marker {made[1]} no longer exists; resuming after {made[0]}"]


async def test_a_status_filtered_listing_survives_a_marker_that_turns_deleting(client, emulator, fleet, wire):
    made = await _seven_backups(client, emulator, fleet)
    wire.clear()
    pages = client.vbs.iter_backup_details(status="available", page_size=2)

    first = await _take(pages, 4)
    # not gone yet, but `deleting` no longer matches status=available: the marker vanishes at once
    await _delete(client, emulator, first[-1].id, gone=False)
    rest = [b async for b in pages]

    ids = [b.id for b in first + rest]
    assert ids == made and len(set(ids)) == 7
    assert all(b.status == BackupStatus.AVAILABLE for b in rest)
    assert 400 in wire.statuses(LIST)


async def test_listing_walks_back_over_several_vanished_rows(client, emulator, fleet, wire, caplog):
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")
    made = await _seven_backups(client, emulator, fleet)
    wire.clear()
    pages = client.vbs.iter_backup_details(page_size=2)

    first = await _take(pages, 4)
    await _delete(client, emulator, made[3], made[2])  # the whole second page
    rest = [b async for b in pages]

    assert [b.id for b in first + rest] == made
    assert [b.id for b in rest] == made[4:]
    assert _existing(emulator) == set(made) - {made[2], made[3]}
    # marker made[3] refused, made[2] refused, made[1] answers the rows after it: made[4], made[5]
    assert wire.statuses(LIST) == [200, 200, 400, 400, 200, 200]
    assert _recoveries(caplog) == [
        f"{LIST}: marker {made[3]} no longer exists; resuming after {made[2]}",
        f"{LIST}: marker {made[2]} no longer exists; resuming after {made[1]}",
    ]


async def test_listing_restarts_from_the_first_page_when_the_rows_behind_it_are_gone(
    client, emulator, fleet, wire, caplog
):
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")
    made = await _seven_backups(client, emulator, fleet)
    wire.clear()
    pages = client.vbs.iter_backup_details(page_size=2)

    first = await _take(pages, 4)
    await _delete(client, emulator, made[3], made[2], made[1])
    rest = [b async for b in pages]

    ids = [b.id for b in first + rest]
    assert ids == made and len(set(ids)) == 7  # made[0] is read again on the first page, not yielded again
    assert _existing(emulator) == {made[0], *made[4:]}
    # three refused markers, then pages [made[0], made[4]] and [made[5], made[6]]
    assert wire.statuses(LIST) == [200, 200, 400, 400, 400, 200, 200]
    assert (
        _recoveries(caplog)[-1] == f"{LIST}: marker {made[1]} no longer exists; resuming from the first page"
    )


async def test_a_marker_deleted_after_every_page_never_stops_the_listing(client, emulator, fleet):
    made = await _seven_backups(client, emulator, fleet)
    pages = client.vbs.iter_backup_details(page_size=2)
    ids: list[str] = []
    deleted: list[str] = []

    while True:
        try:
            ids.append((await anext(pages)).id)
        except StopAsyncIteration:
            break
        if len(ids) % 2 == 0 and ids[-1] != made[-1]:
            deleted.append(ids[-1])
            await _delete(client, emulator, ids[-1])

    assert ids == made and len(deleted) == 3
    assert _existing(emulator) == set(made) - set(deleted)


async def test_evs_volume_listing_survives_a_deleted_marker_volume(client, fleet):
    zone = (await client.evs.get_volume(fleet.volume["scratch-01"])).availability_zone
    for n in range(4):
        await client.evs.create_volume(name=f"spare-{n}", size=10, volume_type="SAS", availability_zone=zone)
    before = [v.id async for v in client.evs.iter_volumes(status="available")]
    assert len(before) == 5
    pages = client.evs.iter_volumes(status="available", page_size=2)

    first = await _take(pages, 2)
    await client.evs.delete_volume(first[-1].id)
    rest = [v async for v in pages]

    assert [v.id for v in first + rest] == before


# -- what counts as a vanished marker, and the bound (scripted server) ------------------------------------

PID = "17fbda95add24720a4038ba4b1c705ed"
ROWS = [{"id": f"b{i}"} for i in range(5)]


def _session(handler) -> tuple[CloudSession, list[httpx.Request]]:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return handler(request)

    session = CloudSession(
        endpoints=Endpoints.for_cloud("otc", "eu-de"),
        project_id=PID,
        auth=AkSkAuth("QTWAOYTTINDUT2QVKYUC", "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc", PID),
        retry=RetryPolicy(wait=False),
        transport=httpx.MockTransport(record),
    )
    return session, sent


def _first_page_then(error: httpx.Response):
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("marker"):
            return error
        body = {"backups": ROWS[:2], "backups_links": [{"href": "x?marker=b1", "rel": "next"}]}
        return httpx.Response(200, json=body)

    return handler


async def _collect(session: CloudSession) -> list:
    return [
        item
        async for item in session.paginate(
            Service.VBS, f"/v2/{PID}/backups", items_key="backups", links_key="backups_links", page_size=2
        )
    ]


async def test_a_server_that_refuses_every_marker_makes_the_listing_fail_after_a_bound():
    def handler(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        if marker:
            message = f"Marker {marker} could not be found."
            return httpx.Response(400, json={"badRequest": {"code": 400, "message": message}})
        body = {"backups": ROWS[:2], "backups_links": [{"href": "x?marker=b1", "rel": "next"}]}
        return httpx.Response(200, json=body)

    session, sent = _session(handler)
    async with session:
        with pytest.raises(BadRequestError, match="could not be found"):
            await _collect(session)
    refusals = [r for r in sent if r.url.params.get("marker")]
    assert len(refusals) == MARKER_LOSSES + 1  # the one past the bound is raised as it came
    # each refusal of b1 walks back to b0; b0 refused too restarts from the first page
    assert [r.url.params.get("marker") for r in sent[:6]] == [None, "b1", "b0", None, "b1", "b0"]


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        # a 400 about another parameter
        (
            httpx.Response(400, json={"badRequest": {"code": 400, "message": "Invalid sort key: colour"}}),
            BadRequestError,
        ),
        # a 400 that says "marker" but not which one (EVS.1024 for a malformed marker)
        (
            httpx.Response(
                400, json={"error": {"code": "EVS.1024", "message": "invalid marker! not a UUID"}}
            ),
            BadRequestError,
        ),
        # a 404 naming the id without being about the marker (the resource itself, or the path)
        (
            httpx.Response(
                404, json={"itemNotFound": {"code": 404, "message": "Backup b1 could not be found."}}
            ),
            NotFoundError,
        ),
        # the right words with another status (retried by the session as a 5xx, never re-listed)
        (
            httpx.Response(
                500, json={"computeFault": {"code": 500, "message": "Marker b1 could not be found."}}
            ),
            ServerError,
        ),
    ],
)
async def test_other_page_errors_propagate_as_before(answer, error):
    session, sent = _session(_first_page_then(answer))
    async with session:
        with pytest.raises(error):
            await _collect(session)
    assert [r.url.params.get("marker") for r in sent][:2] == [None, "b1"]
    assert all(r.url.params.get("marker") == "b1" for r in sent[1:])


async def test_a_404_that_names_the_marker_is_recovered_from():
    alive = list(ROWS)

    def handler(request: httpx.Request) -> httpx.Response:
        marker = request.url.params.get("marker")
        ids = [r["id"] for r in alive]
        if marker and marker not in ids:
            return httpx.Response(
                404, json={"itemNotFound": {"code": 404, "message": f"marker {marker} not found"}}
            )
        start = ids.index(marker) + 1 if marker else 0
        page = alive[start : start + 2]
        body: dict = {"backups": page}
        if start + 2 < len(alive):
            body["backups_links"] = [{"href": f"x?marker={page[-1]['id']}", "rel": "next"}]
        if marker is None:
            alive.remove(ROWS[1])  # deleted while the caller reads the first page
        return httpx.Response(200, json=body)

    session, sent = _session(handler)
    async with session:
        items = await _collect(session)
    assert [i["id"] for i in items] == ["b0", "b1", "b2", "b3", "b4"]
    assert [r.url.params.get("marker") for r in sent] == [None, "b1", "b0", "b3"]
