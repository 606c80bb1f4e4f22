"""The Prefect-free restore and drill core against the emulator over HTTP: choosing a backup, every
documented precondition as one clear message before anything is sent, restoring with the ledger written
first (also after a lost answer), the drill's sample and scratch disk lifecycle, and the ledger functions.

Time is the emulator's ManualClock: sleeping advances it, so no test waits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from tests.clients import backup_now, connect
from tests.conftest import OTHER_PROJECT
from tests.emulator_state import calls
from tests.pg import ledger_engine
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.clock import Clock
from vbs_backup.cloud import CloudClient, JobFailedError
from vbs_backup.ledger import DiskBackupStatus, init_db, make_engine, record_intent, record_outcome, start_run
from vbs_backup.ledger.restores import (
    DrillStatus,
    Restore,
    RestoreDrill,
    RestoreStatus,
    finish_drill,
    last_passed_drills,
    leftover_scratch_drills,
    record_restore_request,
    record_scratch_volume,
    start_drill,
    verified_backup_ids,
)
from vbs_backup.plan import BackupPlan
from vbs_backup.restore.drill import choose_sample, clean_leftovers, drill_disk, scratch_name
from vbs_backup.restore.restore import (
    RestoreRequest,
    plan_restore,
    record_request,
    restore_and_wait,
    run_restore,
)

WEB_DATA = "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708"  # web-01 /dev/vdb, 100 GiB, attached
WEB_SERVER = "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10"
DB_DATA = "799600d6-5263-432d-84cf-6130bcb70380"  # db-01 /dev/vdb, 200 GiB
SCRATCH = "9d3a7b6c-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # scratch-01, 200 GiB, detached
OTHER_SPARE = OTHER_PROJECT["volumes"][0]["id"]


@pytest.fixture
def timing(emulator) -> Clock:
    """A clock on the emulator's: sleeping advances it."""
    clock = emulator.state.clock

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    return Clock(sleep=sleep, monotonic=lambda: clock.now().timestamp(), now=clock.now)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    init_db(engine)
    return engine


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """The ledger functions alone run on both databases."""
    with ledger_engine(request.param, tmp_path, "test_restores") as engine:
        yield engine


async def _no_sleep(_seconds: float) -> None:
    return None


async def small_disk(client: CloudClient, size: int = 20) -> str:
    created = await client.evs.create_volume(
        name="small", size=size, volume_type="SAS", availability_zone="eu-west-0a"
    )
    return created.volume_ids[0]


# -- choosing the backup -------------------------------------------------------------------------------


async def test_a_backup_chosen_by_id_onto_a_detached_disk_passes_every_check(client, emulator, timing):
    backup_id = await backup_now(client, WEB_DATA, "b1")

    plan = await plan_restore(client, RestoreRequest(WEB_DATA, backup_id, None, SCRATCH), now=timing.now())

    assert plan.ok, plan.problems
    assert (plan.backup.id, plan.target.id) == (backup_id, SCRATCH)
    text = plan.describe()
    assert "b1" in text and "scratch-01" in text and "overwriting" in text


async def test_before_chooses_the_newest_available_backup_made_before_that_time(client, emulator, timing):
    first = await backup_now(client, WEB_DATA, "day-1")
    emulator.state.clock.advance(86400)
    second = await backup_now(client, WEB_DATA, "day-2")
    half_way = timing.now() - timedelta(hours=12)

    def request(before):
        return RestoreRequest(WEB_DATA, before=before, target_volume_id=SCRATCH)

    chosen = await plan_restore(client, request(half_way), now=timing.now())
    newest = await plan_restore(client, request(None), now=timing.now() + timedelta(seconds=1))
    naive = await plan_restore(client, request(half_way.replace(tzinfo=None)), now=timing.now())
    too_early = await plan_restore(client, request(half_way - timedelta(days=2)), now=timing.now())

    assert chosen.backup.id == first and naive.backup.id == first  # a time without offset is UTC
    assert newest.backup.id == second
    assert not too_early.ok and "has no available backup created before" in too_early.refusal


async def test_an_attached_target_is_refused_with_the_advice_to_detach_it(client, emulator, timing):
    backup_id = await backup_now(client, WEB_DATA, "in-place")

    plan = await plan_restore(client, RestoreRequest(WEB_DATA, backup_id), now=timing.now())

    assert not plan.ok
    (problem,) = plan.problems
    assert "attached to server" in problem and WEB_SERVER in problem and "detach" in problem
    assert calls(emulator, "vbs.restore_backup") == 0


async def test_every_unmet_precondition_is_named_in_one_message(client, emulator, timing):
    emulator.control("POST", "/job_faults", json={"mode": "fail", "volume_id": DB_DATA}).raise_for_status()
    job = await client.vbs.create_backup(DB_DATA, "broken")  # 200 GiB, ends in error
    with pytest.raises(JobFailedError, match=r"VolumeBackup\.0064"):
        await client.vbs.wait_for_job(job, interval=0, clock=Clock(sleep=_no_sleep))
    (broken,) = await client.vbs.find_backups_by_name("broken")
    small = await small_disk(client)

    plan = await plan_restore(client, RestoreRequest(DB_DATA, broken.id, None, small), now=timing.now())

    assert len(plan.problems) == 2
    assert "is error; only an available backup can be restored" in plan.refusal
    assert "has 20 GiB, less than the backup's 200 GiB" in plan.refusal
    assert plan.refusal.startswith(f"restore of disk {small} refused, nothing was changed: (1) ")


async def test_unknown_and_malformed_ids_are_refused(client, emulator, timing):
    unknown = str(uuid.uuid4())

    missing = await plan_restore(client, RestoreRequest(WEB_DATA, unknown, None, SCRATCH), now=timing.now())
    malformed = await plan_restore(client, RestoreRequest("disk-1", "x", None, "y"), now=timing.now())
    both = await plan_restore(client, RestoreRequest(WEB_DATA, unknown, timing.now()), now=timing.now())

    assert f"backup {unknown} does not exist in this project" in missing.refusal
    assert len(malformed.problems) == 3 and "must be a UUID" in malformed.refusal
    assert "not both" in both.refusal


async def test_a_backup_shared_in_from_another_project_cannot_restore_our_disk(
    client, emulator, other_project, timing
):
    async with connect(other_project) as theirs:
        shared = await backup_now(theirs, OTHER_SPARE, "theirs")
        await theirs.vbs.share_backup(shared, [emulator.project_id])

    plan = await plan_restore(client, RestoreRequest(OTHER_SPARE, shared, None, SCRATCH), now=timing.now())

    (problem,) = plan.problems
    assert f"belongs to project {other_project.project_id}" in problem and "only shared" in problem


async def test_a_target_with_a_backup_being_created_is_refused(client, emulator, timing):
    backup_id = await backup_now(client, WEB_DATA, "source")
    await client.vbs.create_backup(SCRATCH, "scratch-running")

    plan = await plan_restore(client, RestoreRequest(WEB_DATA, backup_id, None, SCRATCH), now=timing.now())

    (problem,) = plan.problems
    assert "is being created (scratch-running)" in problem and "VolumeBackup.0206" in problem


async def test_a_backup_of_another_disk_is_refused_naming_its_disk(client, emulator, timing):
    backup_id = await backup_now(client, WEB_DATA, "web")

    plan = await plan_restore(client, RestoreRequest(DB_DATA, backup_id, None, SCRATCH), now=timing.now())

    (problem,) = plan.problems
    assert f"is a backup of disk {WEB_DATA}, not of disk {DB_DATA}" in problem


# -- running a restore ---------------------------------------------------------------------------------


async def test_a_restore_is_recorded_before_the_call_and_after_the_job(client, emulator, timing, engine):
    backup_id = await backup_now(client, WEB_DATA, "good")
    plan = await plan_restore(client, RestoreRequest(WEB_DATA, backup_id, None, SCRATCH), now=timing.now())
    restore_id = record_request(engine, plan, dry_run=False, at=timing.now())
    with Session(engine) as session:
        assert session.get(Restore, restore_id).status is RestoreStatus.intent

    outcome = await run_restore(client, engine, plan, restore_id, timeout=600, clock=timing)

    assert outcome.ok and outcome.seconds > 0, outcome.message
    with Session(engine) as session:
        row = session.get(Restore, restore_id)
    assert (row.status, row.job_id, row.backup_id) == (RestoreStatus.succeeded, outcome.job_id, backup_id)
    assert row.finished_at is not None
    assert emulator.state.projects[emulator.project_id].volumes[SCRATCH].status == "available"


async def test_a_failed_restore_job_is_recorded_with_its_code_and_the_disk_state(
    client, emulator, timing, engine
):
    backup_id = await backup_now(client, WEB_DATA, "good")
    fault = {"mode": "fail", "job_type": "bksRestoreBackup", "error_code": "VolumeBackup.0200"}
    emulator.control("POST", "/job_faults", json=fault).raise_for_status()
    plan = await plan_restore(client, RestoreRequest(WEB_DATA, backup_id, None, SCRATCH), now=timing.now())
    restore_id = record_request(engine, plan, dry_run=False, at=timing.now())

    outcome = await run_restore(client, engine, plan, restore_id, timeout=600, clock=timing)

    assert not outcome.ok and outcome.error_code == "VolumeBackup.0200"
    assert "error_restoring" in outcome.message
    with Session(engine) as session:
        row = session.get(Restore, restore_id)
    assert (row.status, row.error_code) == (RestoreStatus.failed, "VolumeBackup.0200")


async def test_a_lost_restore_answer_is_followed_on_the_disk_not_sent_again(client, emulator, timing):
    backup_id = await backup_now(client, WEB_DATA, "good")
    emulator.control("POST", "/settings", json={"job_mode": "time"}).raise_for_status()
    fault = {"operation": "vbs.restore_backup", "kind": "drop_after", "count": 1}
    emulator.control("POST", "/faults", json=fault).raise_for_status()

    result = await restore_and_wait(client, backup_id, SCRATCH, timeout=3600, clock=timing)

    assert result.ok and result.job_id is None, result.error
    assert result.disk.status == "available" and result.seconds > 0
    assert calls(emulator, "vbs.restore_backup") == 1


# -- drills --------------------------------------------------------------------------------------------


def disk(volume_id: str, server: str, device: str) -> DiskTarget:
    return DiskTarget(
        server_id=WEB_SERVER,
        server_name=server,
        volume_id=volume_id,
        volume_name=f"{server}-{device}",
        device=device,
        size_gb=100,
        is_system=False,
        status="in-use",
    )


def test_the_sample_prefers_disks_never_verified_then_verified_longest_ago():
    a, b, c, d = (disk(str(uuid.UUID(int=i)), f"s{i}", "/dev/vdb") for i in range(1, 5))
    now = datetime(2024, 5, 1, tzinfo=UTC)
    last = {a.volume_id: now, b.volume_id: now - timedelta(days=7)}

    assert choose_sample([a, b, c, d], last, 3) == [c, d, b]
    assert choose_sample([d, c, b, a], last, 3) == [c, d, b]  # input order does not matter
    assert choose_sample([a, a], {}, 5) == [a]


def test_scratch_names_carry_our_prefix_and_fit_the_limit():
    plan = BackupPlan.model_validate({"selection": {"ids": [WEB_SERVER]}})
    name = scratch_name(plan, 17, disk(WEB_DATA, "web 01/prod" + "x" * 80, "/dev/vdb"))

    assert name.startswith("vbsb-drill-17-web-01-prod") and len(name) <= 64


async def own_backup(engine: Engine, client: CloudClient, volume_id: str, name: str) -> str:
    backup_id = await backup_now(client, volume_id, name)
    with Session(engine) as session:
        run = start_run(session=session, plan_name="nightly", trigger="test")
        row = record_intent(
            session=session,
            run_id=run.id,
            plan_name="nightly",
            slot_start=datetime.now(UTC),
            server_id=WEB_SERVER,
            server_name="web-01",
            volume_id=volume_id,
            volume_name="web-01-data",
            device="/dev/vdb",
            size_gb=100,
            is_system_disk=False,
            backup_name=name,
        )
        record_outcome(
            session=session, disk_backup_id=row.id, status=DiskBackupStatus.succeeded, backup_id=backup_id
        )
    return backup_id


async def test_a_drill_restores_into_a_scratch_disk_verifies_and_deletes_it(client, emulator, timing, engine):
    plan = BackupPlan.model_validate({"selection": {"ids": [WEB_SERVER]}})
    backup_id = await own_backup(engine, client, WEB_DATA, "vbsb-web-01-vdb-1")
    volumes_before = set(emulator.state.projects[emulator.project_id].volumes)

    result = await drill_disk(
        client=client,
        engine=engine,
        plan=plan,
        disk=disk(WEB_DATA, "web-01", "/dev/vdb"),
        timeout=3600,
        clock=timing,
    )

    assert result.ok and result.backup_id == backup_id, result.error
    assert result.duration_seconds > 0 and result.scratch_volume_id not in volumes_before
    assert set(emulator.state.projects[emulator.project_id].volumes) == volumes_before
    with Session(engine) as session:
        row = session.get(RestoreDrill, result.drill_id)
        assert verified_backup_ids(session=session, volume_id=WEB_DATA) == {backup_id}
    assert row.status is DrillStatus.passed and row.scratch_deleted_at is not None
    assert row.scratch_name.startswith(f"vbsb-drill-{row.id}-web-01-vdb") and row.job_id


async def test_a_scratch_disk_that_could_not_be_deleted_fails_the_drill_and_is_cleaned_up_later(
    client, emulator, timing, engine
):
    plan = BackupPlan.model_validate({"selection": {"ids": [WEB_SERVER]}})
    await own_backup(engine, client, WEB_DATA, "vbsb-web-01-vdb-1")
    fault = {"operation": "evs.delete_volume", "kind": "error", "status": 409, "code": "EVS.2024"}
    emulator.control("POST", "/faults", json=fault).raise_for_status()
    volumes_before = set(emulator.state.projects[emulator.project_id].volumes)

    result = await drill_disk(
        client=client,
        engine=engine,
        plan=plan,
        disk=disk(WEB_DATA, "web-01", "/dev/vdb"),
        timeout=3600,
        clock=timing,
    )

    assert not result.ok and result.error_code == "ScratchDelete" and "could not be deleted" in result.error
    assert result.scratch_volume_id in emulator.state.projects[emulator.project_id].volumes
    emulator.control("DELETE", "/faults").raise_for_status()

    problems = await clean_leftovers(client, engine, now=timing.now(), started_before=timing.now())

    assert problems == []
    assert set(emulator.state.projects[emulator.project_id].volumes) == volumes_before
    with Session(engine) as session:
        assert session.get(RestoreDrill, result.drill_id).scratch_deleted_at is not None
        assert leftover_scratch_drills(session=session, started_before=timing.now()) == []


async def test_a_disk_without_a_good_backup_fails_its_drill_without_a_scratch_disk(
    client, emulator, timing, engine
):
    plan = BackupPlan.model_validate({"selection": {"ids": [WEB_SERVER]}})

    result = await drill_disk(
        client=client,
        engine=engine,
        plan=plan,
        disk=disk(WEB_DATA, "web-01", "/dev/vdb"),
        timeout=60,
        clock=timing,
    )

    assert not result.ok and result.error_code == "NoBackup" and result.scratch_volume_id is None
    assert calls(emulator, "evs.create_volume") == 0


# -- ledger --------------------------------------------------------------------------------------------


def test_last_passed_drills_are_aware_and_ignore_failed_drills(any_ledger):
    engine = any_ledger
    t0 = datetime(2024, 5, 1, 3, tzinfo=UTC)
    with Session(engine) as session:
        for volume_id, at, status in (
            (WEB_DATA, t0, DrillStatus.passed),
            (WEB_DATA, t0 + timedelta(days=7), DrillStatus.passed),
            (DB_DATA, t0 + timedelta(days=7), DrillStatus.failed),
        ):
            row = start_drill(
                session=session, volume_id=volume_id, disk_label="x", backup_id=None, backup_name=None, at=at
            )
            finish_drill(session=session, drill_id=row.id, status=status, at=at, duration_seconds=5)
        last = last_passed_drills(session=session, volume_ids=[WEB_DATA, DB_DATA])

    assert last == {WEB_DATA: t0 + timedelta(days=7)}
    assert last[WEB_DATA].tzinfo is not None


def test_a_running_drill_is_a_leftover_only_once_it_is_older_than_the_deadline(any_ledger):
    engine = any_ledger
    t0 = datetime(2024, 5, 1, 3, tzinfo=UTC)
    with Session(engine) as session:
        row = start_drill(
            session=session, volume_id=WEB_DATA, disk_label="x", backup_id=None, backup_name=None, at=t0
        )
        record_scratch_volume(session=session, drill_id=row.id, scratch_name="vbsb-drill-1-x")

        assert leftover_scratch_drills(session=session, started_before=t0) == []
        assert [r.id for r in leftover_scratch_drills(session=session, started_before=t0 + timedelta(1))] == [
            row.id
        ]


def test_dry_runs_and_refusals_are_final_rows(any_ledger):
    engine = any_ledger
    at = datetime(2024, 5, 1, tzinfo=UTC)
    with Session(engine) as session:
        dry = record_restore_request(
            session=session,
            volume_id=WEB_DATA,
            target_volume_id=SCRATCH,
            backup_id=None,
            backup_name=None,
            at=at,
            dry_run=True,
        )
        refused = record_restore_request(
            session=session,
            volume_id=WEB_DATA,
            target_volume_id=WEB_DATA,
            backup_id=None,
            backup_name=None,
            at=at,
            refused="target disk is attached",
        )
        rows = session.exec(select(Restore).order_by(Restore.id)).all()
    assert [(r.status, r.dry_run, r.finished_at) for r in rows] == [
        (RestoreStatus.dry_run, True, at),
        (RestoreStatus.refused, False, at),
    ]
    assert refused.error == "target disk is attached" and dry.error is None
