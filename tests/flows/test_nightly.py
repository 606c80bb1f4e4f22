"""The nightly flow against the emulator over HTTP, under a Prefect test server."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from tests.emulator_state import calls, project
from tests.factories import plan
from vbs_backup.backup.waiter import JobResult, JobWaiter
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.ledger import DiskBackup, DiskBackupStatus, Run

WEB = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB = "990f449e-b54d-4554-b65d-0d8dedb27e13"


async def test_every_disk_of_every_selected_server_is_backed_up(cloud_env, virtual_time, ledger):
    state = await nightly_backup(plan(), return_state=True)
    assert state.is_completed(), state.message

    project = cloud_env.state.projects[cloud_env.project_id]
    attached = {v for s in project.servers.values() for v in s.volume_ids}
    backups = {b.volume_id: b for b in project.backups.values()}
    assert set(backups) == attached  # every disk of both servers, once
    assert {b.status for b in backups.values()} == {"available"}
    with Session(ledger) as session:
        rows = session.exec(select(DiskBackup)).all()
        run = session.exec(select(Run)).one()
    assert {r.volume_id: r.backup_id for r in rows} == {v: b.id for v, b in backups.items()}
    assert {r.status.value for r in rows} == {"succeeded"}
    assert (run.status.value, run.disks_total, run.disks_succeeded, run.disks_failed) == (
        "completed",
        5,
        5,
        0,
    )


async def test_one_failing_disk_fails_the_run_and_the_others_are_recorded(cloud_env, virtual_time, ledger):
    failing = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb
    cloud_env.control("POST", "/job_faults", json={"mode": "fail", "volume_id": failing}).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert "db-01 /dev/vdb" in state.message and "VolumeBackup.0064" in state.message
    with Session(ledger) as session:
        rows = {r.volume_id: r for r in session.exec(select(DiskBackup)).all()}
        run = session.exec(select(Run)).one()
    assert rows[failing].status.value == "failed" and rows[failing].error_code == "VolumeBackup.0064"
    assert rows[failing].backup_id  # the failed backup is known, so it can be cleaned up later
    assert {r.status.value for v, r in rows.items() if v != failing} == {"succeeded"}
    assert (run.status.value, run.disks_succeeded, run.disks_failed) == ("failed", 4, 1)
    statuses = {b.volume_id: b.status for b in project(cloud_env).backups.values()}
    assert statuses.pop(failing) == "error"
    assert set(statuses.values()) == {"available"}


async def test_a_create_whose_answer_was_lost_is_adopted_not_duplicated(cloud_env, virtual_time, ledger):
    fault = {"operation": "vbs.create_backup", "kind": "drop_after", "count": 1}
    cloud_env.control("POST", "/faults", json=fault).raise_for_status()

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_completed(), state.message
    backups = list(project(cloud_env).backups.values())
    assert len(backups) == 5 and len({b.volume_id for b in backups}) == 5
    assert calls(cloud_env, "vbs.create_backup") == 5  # the lost one was looked up, not sent again
    with Session(ledger) as session:
        statuses = sorted(r.status.value for r in session.exec(select(DiskBackup)).all())
    assert statuses == ["adopted", "succeeded", "succeeded", "succeeded", "succeeded"]


async def test_unknown_server_fails_before_any_backup(cloud_env, virtual_time, ledger):
    bad = plan(selection={"ids": [WEB, "00000000-0000-4000-8000-000000000000"]})

    state = await nightly_backup(bad, return_state=True)

    assert state.is_failed()
    assert "unknown server id" in state.message and "00000000-0000-4000-8000-000000000000" in state.message
    assert calls(cloud_env, "vbs.create_backup") == 0 and not project(cloud_env).backups


async def test_wrong_credentials_fail_before_any_backup_and_leak_nothing(
    cloud_env, virtual_time, monkeypatch
):
    monkeypatch.setenv("VBS_BACKUP_SK", "not-the-secret-0123456789")

    state = await nightly_backup(plan(), return_state=True)

    assert state.is_failed()
    assert "APIGW.0301" in state.message and "not-the-secret" not in state.message
    assert calls(cloud_env, "vbs.create_backup") == 0 and not project(cloud_env).backups


async def test_dry_run_creates_and_deletes_nothing(cloud_env, virtual_time, ledger):
    state = await nightly_backup(plan(), return_state=True)
    assert state.is_completed()
    before = set(project(cloud_env).backups)
    cloud_env.state.clock.advance(86400)

    state = await nightly_backup(
        plan(dry_run=True, retention={"keep_last": 1, "min_successful": 1}), return_state=True
    )

    assert state.is_completed(), state.message
    assert set(project(cloud_env).backups) == before
    assert calls(cloud_env, "vbs.delete_backup") == 0


async def test_a_failed_job_is_submitted_once_more_when_the_plan_says_so(cloud_env, virtual_time, ledger):
    failing = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb fails once, then works
    fault = {"mode": "fail", "volume_id": failing, "count": 1}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()

    state = await nightly_backup(plan(retry_failed_job_once=True), return_state=True)

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 6
    backups = {b.id: b.status for b in project(cloud_env).backups.values() if b.volume_id == failing}
    with Session(ledger) as session:
        rows = session.exec(
            select(DiskBackup).where(DiskBackup.volume_id == failing).order_by(DiskBackup.attempt)
        ).all()
    # One row per attempt: the failed job's `error` backup stays ours, so retention cleans it up at once.
    assert [(r.attempt, r.status.value, r.error_code) for r in rows] == [
        (1, "failed", "VolumeBackup.0064"),
        (2, "succeeded", None),
    ]
    assert backups == {rows[0].backup_id: "deleting", rows[1].backup_id: "available"}


async def test_a_retry_after_a_failure_only_inferred_adopts_the_backup_the_job_made(
    cloud_env, virtual_time, ledger, monkeypatch
):
    # The job API forgets a job (common.0011, "job not found") whose backup the cloud did make: the disk is
    # failed for want of an answer, but the slot holds a good backup. The retry asks the cloud again and
    # adopts it; it never creates a second backup of the same (plan, volume, slot).
    target = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb
    real_wait = JobWaiter.wait
    forgotten: list[str] = []

    async def forgetful_wait(self, job_id, marker, *, volume_id, **kwargs):
        result = await real_wait(self, job_id, marker, volume_id=volume_id, **kwargs)
        if volume_id == target and not forgotten:
            forgotten.append(result.backup_id)
            return JobResult(
                result.key, DiskBackupStatus.failed, error_code="common.0011", error_reason="job not found"
            )
        return result

    monkeypatch.setattr(JobWaiter, "wait", forgetful_wait)

    state = await nightly_backup(plan(retry_failed_job_once=True), return_state=True)

    assert state.is_completed(), state.message
    assert calls(cloud_env, "vbs.create_backup") == 5  # one per disk: the retry created nothing
    slot_backups = [b for b in project(cloud_env).backups.values() if b.volume_id == target]
    assert [(b.id, b.status) for b in slot_backups] == [(forgotten[0], "available")]
    with Session(ledger) as session:
        rows = session.exec(
            select(DiskBackup).where(DiskBackup.volume_id == target).order_by(DiskBackup.attempt)
        ).all()
    assert [(r.status.value, r.error_code, r.backup_id) for r in rows] == [
        ("failed", "common.0011", None),
        ("adopted", None, forgotten[0]),
    ]


async def test_a_job_that_never_ends_times_out_at_the_disk_deadline(cloud_env, virtual_time, ledger):
    hanging = "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af"  # db-01 /dev/vdc
    cloud_env.control("POST", "/job_faults", json={"mode": "hang", "volume_id": hanging}).raise_for_status()

    state = await nightly_backup(plan(disk_deadline_minutes=30), return_state=True)

    assert state.is_failed() and "db-01 /dev/vdc (timed_out: job " in state.message
    with Session(ledger) as session:
        rows = {r.volume_id: r.status.value for r in session.exec(select(DiskBackup)).all()}
    assert rows.pop(hanging) == "timed_out" and set(rows.values()) == {"succeeded"}


async def test_results_are_published_as_artifacts(cloud_env, virtual_time):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    state = await nightly_backup(plan(), return_state=True)

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts}
    assert {"nightly-backup-disks", "nightly-backup-retention", "nightly-backup-summary"} <= set(by_key)
    disks = by_key["nightly-backup-disks"].data
    rows = json.loads(disks) if isinstance(disks, str) else disks
    assert sorted((r["server"], r["device"], r["status"]) for r in rows) == [
        ("db-01", "/dev/vda", "succeeded"),
        ("db-01", "/dev/vdb", "succeeded"),
        ("db-01", "/dev/vdc", "succeeded"),
        ("web-01", "/dev/vda", "succeeded"),
        ("web-01", "/dev/vdb", "succeeded"),
    ]
