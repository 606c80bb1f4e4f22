"""The restore-drill flow against the emulator over HTTP, under a Prefect test server: scratch disks are
created and always deleted, results and durations land in the ledger, drilled backups are verified, the
sample moves on to disks drilled longest ago, a failed drill ends Failed, and retention keeps drilled-good
backups per `min_verified`.
"""

from __future__ import annotations

import json

from sqlmodel import Session, select

from tests.emulator_state import calls, project
from tests.factories import plan
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.restore import restore_drill
from vbs_backup.ledger import DiskBackup
from vbs_backup.ledger.restores import DrillStatus, RestoreDrill
from vbs_backup.plan import BackupPlan

DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"
DAY = 86400


def drills(ledger) -> list[RestoreDrill]:
    with Session(ledger) as session:
        return list(session.exec(select(RestoreDrill).order_by(RestoreDrill.id)).all())


def disk_backups(ledger) -> dict[str, DiskBackup]:
    with Session(ledger) as session:
        return {r.backup_id: r for r in session.exec(select(DiskBackup)).all()}


async def night(plan_: BackupPlan) -> None:
    state = await nightly_backup(plan_, return_state=True)
    assert state.is_completed(), state.message


async def test_a_drill_restores_into_scratch_disks_records_and_deletes_them(cloud_env, virtual_time, ledger):
    await night(plan())
    volumes_before = set(project(cloud_env).volumes)

    state = await restore_drill(plan(), sample=2, return_state=True)

    assert state.is_completed(), state.message
    assert state.message == "2 of 2 restore drills passed"
    assert set(project(cloud_env).volumes) == volumes_before  # no scratch disk left over
    assert [
        calls(cloud_env, op) for op in ("evs.create_volume", "vbs.restore_backup", "evs.delete_volume")
    ] == [
        2,
        2,
        2,
    ]
    rows = drills(ledger)
    assert [r.status for r in rows] == [DrillStatus.passed] * 2
    assert all(r.duration_seconds > 0 and r.finished_at > r.started_at for r in rows)
    assert all(r.scratch_volume_id and r.scratch_deleted_at and r.job_id for r in rows)
    assert all(r.scratch_name.startswith(f"vbsb-drill-{r.id}-") for r in rows)
    backups = disk_backups(ledger)
    verified = {b for b, row in backups.items() if row.verified_at is not None}
    assert verified == {r.backup_id for r in rows}
    restored = [j for j in project(cloud_env).jobs.values() if j.job_type == "bksRestoreBackup"]
    assert {j.entities["backup_id"] for j in restored} == verified and {j.status for j in restored} == {
        "SUCCESS"
    }


async def test_the_next_drill_prefers_disks_not_yet_drilled(cloud_env, virtual_time, ledger):
    await night(plan())

    first = await restore_drill(plan(), sample=2, return_state=True)
    cloud_env.state.clock.advance(7 * DAY)
    second = await restore_drill(plan(), sample=2, return_state=True)

    assert first.is_completed() and second.is_completed(), (first.message, second.message)
    volumes = [r.volume_id for r in drills(ledger)]
    assert len(set(volumes)) == 4  # four different disks out of five


async def test_a_failed_drill_ends_failed_and_still_deletes_its_scratch_disk(cloud_env, virtual_time, ledger):
    await night(plan())
    volumes_before = set(project(cloud_env).volumes)
    fault = {"mode": "fail", "job_type": "bksRestoreBackup", "error_code": "VolumeBackup.0200", "count": 1}
    cloud_env.control("POST", "/job_faults", json=fault).raise_for_status()

    state = await restore_drill(plan(), sample=2, return_state=True)

    assert state.is_failed()
    assert "1 of 2 restore drills passed" in state.message and "VolumeBackup.0200" in state.message
    assert set(project(cloud_env).volumes) == volumes_before
    assert calls(cloud_env, "evs.delete_volume") == 2
    failed, passed = sorted(drills(ledger), key=lambda r: r.status != DrillStatus.failed)
    assert (failed.status, failed.error_code) == (DrillStatus.failed, "VolumeBackup.0200")
    assert "error_restoring" in failed.error and failed.scratch_deleted_at is not None
    assert failed.disk_label in state.message
    assert passed.status is DrillStatus.passed
    backups = disk_backups(ledger)
    assert backups[failed.backup_id].verified_at is None
    assert backups[passed.backup_id].verified_at is not None


async def test_drill_results_are_published_as_a_table(cloud_env, virtual_time):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    await night(plan())
    state = await restore_drill(plan(), sample=3, return_state=True)

    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])
            )
        )
    by_key = {a.key: a for a in artifacts}
    data = by_key["restore-drill-results"].data
    rows = json.loads(data) if isinstance(data, str) else data
    assert sorted(r["disk"] for r in rows) == ["db-01 /dev/vda", "db-01 /dev/vdb", "db-01 /dev/vdc"]
    assert {r["status"] for r in rows} == {"passed"} and all(r["restore_seconds"] > 0 for r in rows)


async def test_a_disk_without_any_backup_fails_the_drill(cloud_env, virtual_time, ledger):
    state = await restore_drill(plan(), sample=1, return_state=True)

    assert state.is_failed()
    assert "db-01 /dev/vda (NoBackup)" in state.message
    assert calls(cloud_env, "evs.create_volume") == 0


async def test_a_dry_run_plan_only_names_the_disks_it_would_drill(cloud_env, virtual_time, ledger):
    await night(plan())

    state = await restore_drill(plan(dry_run=True), sample=2, return_state=True)

    assert state.is_completed()
    assert state.message == "dry run: would drill db-01 /dev/vda, db-01 /dev/vdb"
    assert calls(cloud_env, "evs.create_volume") == 0 and drills(ledger) == []


async def test_retention_keeps_the_newest_drilled_backups_per_min_verified(cloud_env, virtual_time, ledger):
    nightly = plan(retention={"keep_last": 1, "min_successful": 1, "min_verified": 1})
    await night(nightly)
    first_night = set(disk_backups(ledger))
    state = await restore_drill(nightly, sample=5, return_state=True)
    assert state.is_completed(), state.message

    for _ in range(3):
        cloud_env.state.clock.advance(DAY)
        await night(nightly)

    alive = {b.id for b in project(cloud_env).backups.values() if b.status == "available"}
    newest = {
        max(
            (b for b in project(cloud_env).backups.values() if b.volume_id == v), key=lambda b: b.created_at
        ).id
        for v in {b.volume_id for b in project(cloud_env).backups.values()}
    }
    assert alive == first_night | newest  # drilled night 1 and the newest night survive, per disk
    assert len(alive) == 10


def test_the_drill_command_reads_the_plan_file(cloud_env, virtual_time, ledger, tmp_path):
    from typer.testing import CliRunner

    from vbs_backup.deployments.cli import app

    missing = CliRunner().invoke(app, ["drill", "--plan", str(tmp_path / "nope.yaml")])
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text("selection: {tags: {backup: nightly}}\ndry_run: true\n")
    dry = CliRunner().invoke(app, ["drill", "--plan", str(plan_file), "--sample", "1"])

    assert missing.exit_code == 2 and "cannot read" in missing.output
    assert dry.exit_code == 0, dry.output
    assert "would drill db-01 /dev/vda" in dry.output
