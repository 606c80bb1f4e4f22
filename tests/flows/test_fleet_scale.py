"""Fleet scale, as the cloud sees it: the nightly flow polls with the backups list and asks the job API
only for what the list cannot tell; a gateway slower than the client's own limit slows the client down
without failing a disk. Requests are counted in the emulator's request log."""

from __future__ import annotations

from collections import Counter

from sqlmodel import Session, select

from tests.emulator_state import project
from tests.factories import plan
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.ledger import DiskBackup

FAILING = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb


def requests(emulator) -> Counter[str]:
    return Counter(e.operation for e in emulator.state.request_log if e.operation)


async def test_jobs_that_succeed_cost_no_job_request(cloud_env, virtual_time, ledger):
    state = await nightly_backup(plan(), return_state=True)

    assert state.is_completed(), state.message
    seen = requests(cloud_env)
    disks = sum(len(s.volume_ids) for s in project(cloud_env).servers.values() if s.tags.get("backup"))
    assert seen["vbs.create_backup"] == disks == 5
    assert seen["vbs.get_job"] == 0  # the backups list told every job's end
    with Session(ledger) as session:
        rows = session.exec(select(DiskBackup)).all()
    backups = {b.id: b for b in project(cloud_env).backups.values()}
    assert {r.status.value for r in rows} == {"succeeded"}
    assert {backups[r.backup_id].status for r in rows} == {"available"}  # each row names its own backup
    assert len({r.backup_id for r in rows}) == 5


async def test_only_a_failed_job_is_asked_for_its_error_code(cloud_env, virtual_time, ledger):
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": FAILING}).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert requests(cloud_env)["vbs.get_job"] == 1  # the list shows `error`; only the job has the code
    with Session(ledger) as session:
        failed = session.exec(select(DiskBackup).where(DiskBackup.volume_id == FAILING)).one()
    assert (failed.status.value, failed.error_code) == ("failed", "VolumeBackup.0064")
    assert project(cloud_env).backups[failed.backup_id].status == "error"


async def test_a_retry_is_never_confused_with_the_failed_attempt_of_its_slot(cloud_env, virtual_time, ledger):
    # The first job of the disk fails, its retry succeeds: both backups carry the same identity, so only
    # "appeared after the wait began and not the earlier attempt's" tells them apart.
    fault = {"mode": "fail", "volume_id": FAILING, "count": 1}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()

    state = await nightly_backup(plan(retry_failed_job_once=True), return_state=True)

    assert state.is_completed(), state.message
    with Session(ledger) as session:
        attempts = session.exec(
            select(DiskBackup).where(DiskBackup.volume_id == FAILING).order_by(DiskBackup.attempt)
        ).all()
    backups = project(cloud_env).backups
    first, retry = attempts
    assert (first.status.value, retry.status.value) == ("failed", "succeeded")
    assert first.backup_id != retry.backup_id
    assert backups[retry.backup_id].status == "available"
    # the failed attempt's own backup, recorded as ours, is already being cleaned up by retention
    assert backups[first.backup_id].status in ("error", "deleting")


async def test_a_throttling_gateway_slows_the_client_and_fails_no_disk(
    cloud_env, virtual_time, ledger, monkeypatch
):
    # The client is configured for 10 requests/s; the gateway lets 2 through (burst 1).
    monkeypatch.setenv("VBS_BACKUP_MAX_REQUESTS_PER_SECOND", "10")
    cloud_env.control("POST", "/rate_limit", json={"rate": 2, "burst": 1}).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_completed(), state.message
    log = cloud_env.state.request_log
    assert any(e.status == 429 for e in log)  # it was throttled...
    creates = [e.operation for e in log if e.operation == "vbs.create_backup" and e.status < 300]
    volumes = [b.volume_id for b in project(cloud_env).backups.values()]
    assert len(creates) == len(volumes) == len(set(volumes)) == 5  # ...and made each backup once
    assert {b.status for b in project(cloud_env).backups.values()} == {"available"}
