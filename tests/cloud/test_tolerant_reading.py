"""One odd item does not make a whole page unreadable (reference §1, §2.6, §2.8).

A listed backup that cannot be read in full is logged (its id and the bad fields, never values or secrets)
and yielded as what could be read: with a bad field that decides anything (no `created_at`, say) it becomes
a placeholder with status `unknown`, which retention keeps and nothing counts as done; the rest of the page
is used as usual. A job whose times cannot be read still reports its status and error code.

The decoding rules are checked on crafted pages (`httpx.MockTransport`); the end-to-end checks plant backups
in the emulator and garble one in its state, so that the real client lists it over a socket and the real
pruning decides on it with a real ledger.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from tests.clients import wait
from vbs_backup.backup.waiter import JobWaiter
from vbs_backup.clock import Clock
from vbs_backup.cloud import CloudClient, InvalidResponseError, JobFailedError, RetryPolicy
from vbs_backup.cloud.models import BackupStatus, JobStatus
from vbs_backup.cloud.models.backups import UNKNOWN_CREATED_AT, UNREADABLE_STATUS
from vbs_backup.ledger import DiskBackupStatus, init_db, make_engine, record_intent, record_outcome, start_run
from vbs_backup.ledger.tables import RetentionDecision
from vbs_backup.plan import BackupPlan
from vbs_backup.retention.prune import backups_by_volume, prune_disk

PID = "17fbda95add24720a4038ba4b1c705ed"
AK = "QTWAOYTTINDUT2QVKYUC"
SK = "MFyfvK41ba2giqM7Uio6PznpdUKGpownRZlmVmHc"
VOLUME = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"
WEB_DATA = "web-01-data"


def listed(backup_id: str, **fields: Any) -> dict[str, Any]:
    item = {
        "id": backup_id,
        "name": f"name-{backup_id}",
        "status": "available",
        "volume_id": VOLUME,
        "created_at": "2024-05-01T02:00:00.000000",
        "description": json.dumps({"DESC": f"desc-{backup_id}", "INC": 1}),
        "size": 10,
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not ...}


def mock_client(*pages: dict[str, Any]) -> CloudClient:
    """A client whose cloud answers the backups listing with `pages` in turn (and any job with pages[0])."""
    answers = list(pages)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=answers.pop(0) if len(answers) > 1 else answers[0])

    return CloudClient.connect(
        cloud="otc",
        region="eu-de",
        project_id=PID,
        ak=AK,
        sk=SK,
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(wait=False),
    )


# -- decoding rules, on crafted pages -----------------------------------------------------------------------


async def test_a_backup_without_created_at_becomes_an_unknown_placeholder_and_the_page_is_used(caplog):
    page = {
        "backups": [
            listed("b1"),
            listed("b2", created_at=...),  # no created_at at all (a third-party fixture)
            listed("b3", created_at="last tuesday", volume_id=...),
            listed("b4", size="ten"),  # a bad field that decides nothing
            listed("b5", status=None),
            {"name": "no id"},
            "not an object",
            listed("b6"),
        ]
    }
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")

    async with mock_client(page) as cloud:
        backups = {b.id: b async for b in cloud.vbs.iter_backup_details(volume_id=VOLUME)}

    assert list(backups) == ["b1", "b2", "b3", "b4", "b5", "b6"]
    assert backups["b1"].status == BackupStatus.AVAILABLE and backups["b1"].unreadable == []
    for bad in ("b2", "b3", "b5"):
        assert backups[bad].status == UNREADABLE_STATUS
        assert backups[bad].volume_id == VOLUME  # b3's from the listing's filter
        assert backups[bad].name == f"name-{bad}"
        assert backups[bad].description == f"desc-{bad}"  # still its identity, for adoption and ownership
    assert backups["b2"].unreadable == ["created_at"]
    assert backups["b2"].created_at == UNKNOWN_CREATED_AT
    assert backups["b3"].unreadable == ["created_at", "volume_id"]
    assert backups["b5"].unreadable == ["status"]
    assert backups["b5"].created_at == datetime(2024, 5, 1, 2, tzinfo=UTC)  # what was readable is kept
    # a bad field that decides nothing is dropped, the backup is read as it is
    assert backups["b4"].status == BackupStatus.AVAILABLE
    assert (backups["b4"].size, backups["b4"].unreadable) == (None, ["size"])

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("b2" in m and "created_at" in m and "unknown" in m for m in warnings)
    assert any("b4" in m and "size" in m for m in warnings)
    assert any("without a readable id" in m for m in warnings)
    assert not any(
        secret in m for m in warnings for secret in (SK, "last tuesday", "ten", "Signature=")
    )  # names, never values or secrets


async def test_one_page_of_the_listing_is_read_tolerantly_too():
    page = {"backups": [listed("b1"), listed("b2", created_at=...)], "backups_links": []}

    async with mock_client(page) as cloud:
        result = await cloud.vbs.list_backup_details()

    assert [(b.id, str(b.status)) for b in result.backups] == [("b1", "available"), ("b2", "unknown")]


async def test_a_failed_job_with_an_unparsable_time_still_reports_its_error_code(caplog):
    job = {
        "job_id": "4010b39b5281d3590152874bfa3b1604",
        "job_type": "bksCreateBackup",
        "status": "FAIL",
        "entities": {"backup_id": ""},
        "begin_time": "2024-13-45T99:00:00.000Z",
        "end_time": "soon",
        "error_code": "VolumeBackup.0064",
        "fail_reason": "CreateBackup Task-fail: fsp cinder return backup status is error.",
    }
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")

    async with mock_client(job) as cloud:
        read = await cloud.vbs.get_job(job["job_id"])
        with pytest.raises(JobFailedError) as caught:
            await wait(cloud, job["job_id"])

    assert (read.status, read.begin_time, read.end_time) == (JobStatus.FAIL, None, None)
    assert caught.value.error_code == "VolumeBackup.0064"
    assert caught.value.fail_reason == job["fail_reason"]
    assert any(
        job["job_id"] in r.getMessage() and "begin_time, end_time" in r.getMessage() for r in caplog.records
    )


async def test_a_job_whose_status_cannot_be_read_is_still_an_invalid_response():
    job = {"job_id": "4010b39b5281d3590152874bfa3b1604", "status": {"odd": True}, "begin_time": "soon"}

    async with mock_client(job) as cloud:
        with pytest.raises(InvalidResponseError, match="status"):
            await cloud.vbs.get_job(job["job_id"])


# -- end to end: the emulator serves a garbled backup and job ----------------------------------------------


class Garbled(datetime):
    """A time the emulator stores and sorts like any other, but serves as text no parser accepts."""

    def strftime(self, fmt: str) -> str:
        return "garbled"


def garble(when: datetime) -> Garbled:
    return Garbled(
        when.year, when.month, when.day, when.hour, when.minute, when.second, when.microsecond, when.tzinfo
    )


PLAN = BackupPlan.model_validate(
    {"selection": {"tags": {"backup": "nightly"}}, "retention": {"keep_last": 1, "min_successful": 1}}
)


async def test_retention_keeps_a_backup_it_cannot_read_and_decides_the_others(
    client, emulator, fleet, tmp_path, caplog
):
    volume_id = fleet.volume[WEB_DATA]
    night_1 = datetime.now(UTC).replace(microsecond=0) - timedelta(days=3)
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    init_db(engine)
    ids: list[str] = []
    with Session(engine) as session:
        run = start_run(session=session, plan_name=PLAN.name, trigger="test")
        assert run.id is not None
        run_id = run.id
        for night in range(3):
            slot = night_1 + timedelta(days=night)
            name = PLAN.backup_name("web-01", "/dev/vdb", slot)
            planted = emulator.control(
                "POST",
                "/backups",
                json={
                    "volume_id": volume_id,
                    "name": name,
                    "description": PLAN.identity_marker(slot),
                    "created_at": slot.isoformat(),
                },
            )
            planted.raise_for_status()
            ids.append(planted.json()["id"])
            row = record_intent(
                session=session,
                run_id=run_id,
                plan_name=PLAN.name,
                slot_start=slot,
                server_id=fleet.server["web-01"],
                server_name="web-01",
                volume_id=volume_id,
                volume_name=WEB_DATA,
                device="/dev/vdb",
                size_gb=fleet.size[WEB_DATA],
                is_system_disk=False,
                backup_name=name,
            )
            assert row.id is not None
            record_outcome(
                session=session, disk_backup_id=row.id, status=DiskBackupStatus.succeeded, backup_id=ids[-1]
            )
    oldest, middle, newest = ids
    # the oldest backup - the one the rules would delete first - comes back with a time nobody can read
    with emulator.state.locked():
        backup = emulator.state.projects[emulator.project_id].backups[oldest]
        backup.created_at = garble(backup.created_at)
    caplog.set_level(logging.WARNING, logger="vbs_backup.cloud")

    listing = await backups_by_volume(client, [volume_id])  # what a nightly run reads
    result = await prune_disk(
        client=client,
        engine=engine,
        run_id=run_id,
        volume_id=volume_id,
        label="web-01 /dev/vdb",
        backups=listing[volume_id],
        plan=PLAN,
        now=datetime.now(UTC),
    )

    assert {b.id: str(b.status) for b in listing[volume_id]} == {
        oldest: UNREADABLE_STATUS,
        middle: "available",
        newest: "available",
    }
    decided = {d.backup_id: (d.action, d.reasons) for d in result.decisions}
    assert decided[oldest][0] == "keep" and "unknown" in decided[oldest][1]
    assert decided[newest][0] == "keep"
    assert decided[middle] == ("delete", "no rule keeps it")
    assert (result.kept, result.deleted, result.delete_failures) == (2, 1, [])
    with emulator.state.locked():
        left = emulator.state.projects[emulator.project_id].backups
        assert oldest in left and left[oldest].status == "available"  # still there, untouched
        assert left[middle].status == "deleting"
    with Session(engine) as session:  # the unreadable backup is recorded as seen and kept
        rows = session.exec(select(RetentionDecision).where(RetentionDecision.backup_id == oldest)).all()
        assert [r.action for r in rows] == ["keep"]
    assert any(oldest in r.getMessage() and "created_at" in r.getMessage() for r in caplog.records)


async def test_a_failed_job_served_with_a_garbled_time_reports_its_error_code(client, emulator, fleet):
    volume_id = fleet.volume[WEB_DATA]
    emulator.control(
        "POST",
        "/job_faults",
        json={"mode": "fail", "volume_id": volume_id, "error_code": "VolumeBackup.0062", "count": 1},
    ).raise_for_status()
    job_id = await client.vbs.create_backup(volume_id, "doomed")
    with emulator.state.locked():
        job = emulator.state.projects[emulator.project_id].jobs[job_id]
        job.begin_time = garble(job.begin_time)

    with pytest.raises(JobFailedError) as caught:  # was InvalidResponseError, hiding the code
        await wait(client, job_id)

    assert caught.value.error_code == "VolumeBackup.0062"


async def test_the_waiter_still_follows_a_backup_listed_next_to_an_unreadable_one(client, emulator, fleet):
    volume_id = fleet.volume[WEB_DATA]
    slot = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    marker = PLAN.identity_marker(slot)
    ours = emulator.control(
        "POST", "/backups", json={"volume_id": volume_id, "name": "adopted", "description": marker}
    )
    odd = emulator.control("POST", "/backups", json={"volume_id": volume_id, "name": "odd"})
    with emulator.state.locked():
        backup = emulator.state.projects[emulator.project_id].backups[odd.json()["id"]]
        backup.created_at = garble(backup.created_at)
    ticks: list[float] = []

    async def tick(seconds: float) -> None:
        ticks.append(seconds)

    waiter = JobWaiter(client.vbs, interval=10, clock=Clock(sleep=tick, monotonic=lambda: 10.0 * len(ticks)))
    # a backup adopted by identity (no job): the disk's listing says how it ended
    result = await waiter.wait(None, marker, volume_id=volume_id, timeout=60)

    assert (result.status, result.backup_id) == ("succeeded", ours.json()["id"])
    assert len(ticks) == 1  # found in the first round, not timed out after rounds of unreadable pages
