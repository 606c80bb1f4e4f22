"""The ledger on a real SQLite file and a real PostgreSQL server: engine factory and repository functions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, select

from tests.pg import ledger_engine
from vbs_backup.ledger import (
    DeleteStatus,
    DiskBackup,
    DiskBackupStatus,
    LedgerNotFoundError,
    RetentionAction,
    RetentionDecision,
    Run,
    RunStatus,
    disk_backups_for_run,
    find_disk_backup,
    finish_run,
    init_db,
    make_engine,
    mark_delete,
    newest_attempt,
    normalize_url,
    owned_backup_ids,
    protection_status,
    recent_runs,
    record_intent,
    record_outcome,
    record_retention_decision,
    record_submitted,
    record_verified,
    start_run,
)

T0 = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A fresh, initialized ledger: a new SQLite file, or a new schema on the PostgreSQL server."""
    with ledger_engine(request.param, tmp_path, "test_ledger") as engine:
        yield engine


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine) as s:
        yield s


def fresh(engine: Engine) -> Session:
    """A second session, so that reads really come from the database."""
    return Session(engine)


def add_disk(
    session: Session,
    run_id: int,
    *,
    volume_id: str = "vol-1",
    backup_name: str = "vbsb-web-01-vdb-202403050200",
    server_name: str = "web-01",
    device: str = "/dev/vdb",
) -> DiskBackup:
    return record_intent(
        session=session,
        run_id=run_id,
        server_id="srv-1",
        server_name=server_name,
        volume_id=volume_id,
        volume_name=f"{server_name}-{device.rsplit('/', 1)[-1]}",
        device=device,
        size_gb=40,
        is_system_disk=device.endswith("vda"),
        backup_name=backup_name,
    )


def set_times(
    session: Session, row: DiskBackup, *, requested_at: datetime, submitted_at: datetime | None
) -> None:
    row.requested_at = requested_at
    row.submitted_at = submitted_at
    session.add(row)
    session.commit()


# ------------------------------------------------------------------------------------------- engine


def test_normalize_url_selects_psycopg3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.sqlite").drivername == "sqlite"


def test_make_engine_connects_lazily_and_creates_the_directory(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "ledger.sqlite"
    eng = make_engine(f"sqlite:///{path}")
    assert path.parent.is_dir()
    assert not path.exists()  # nothing connected yet
    init_db(eng)
    assert path.exists()
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    eng.dispose()


def test_make_engine_postgres_is_lazy() -> None:
    # An unreachable server is no error until something connects.
    eng = make_engine("postgresql://nobody:pw@127.0.0.1:1/none")
    assert eng.url.drivername == "postgresql+psycopg"
    assert "pw" not in repr(eng)


def test_in_memory_sqlite_is_shared_by_sessions() -> None:
    eng = make_engine("sqlite://")
    init_db(eng)
    with Session(eng) as s:
        run_id = start_run(session=s, plan_name="p", trigger="cli").id
    with Session(eng) as s:
        assert s.get(Run, run_id) is not None


def test_init_db_is_idempotent(engine: Engine) -> None:
    init_db(engine)
    init_db(engine)
    assert {"runs", "disk_backups", "retention_decisions"} <= set(inspect(engine).get_table_names())


# ------------------------------------------------------------------------------------------- runs


def test_start_run(engine: Engine, session: Session) -> None:
    run = start_run(
        session=session, plan_name="nightly", trigger="schedule", flow_run_id="fr-1", deployment="d"
    )
    with fresh(engine) as s:
        row = s.get(Run, run.id)
        assert row is not None
        assert (row.plan_name, row.trigger, row.flow_run_id, row.deployment) == (
            "nightly",
            "schedule",
            "fr-1",
            "d",
        )
        assert row.status is RunStatus.running
        assert row.started_at.tzinfo is UTC
        assert row.finished_at is None
        assert (row.disks_total, row.disks_succeeded, row.disks_failed, row.deletes_done) == (0, 0, 0, 0)


def test_recent_runs_newest_first(session: Session) -> None:
    ids = [start_run(session=session, plan_name="p", trigger="cli").id for _ in range(5)]
    older = session.get(Run, ids[-1])
    assert older is not None
    older.started_at = T0  # started long ago although inserted last
    session.add(older)
    session.commit()
    got = [r.id for r in recent_runs(session=session, limit=3)]
    assert got == [ids[3], ids[2], ids[1]]
    assert [r.id for r in recent_runs(session=session)][-1] == ids[-1]


def test_finish_run_counts(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="manual")
    other = start_run(session=session, plan_name="p", trigger="manual")
    outcomes = {
        "v-ok": DiskBackupStatus.succeeded,
        "v-adopted": DiskBackupStatus.adopted,
        "v-failed": DiskBackupStatus.failed,
        "v-timeout": DiskBackupStatus.timed_out,
        "v-running": DiskBackupStatus.running,
        "v-submitted": None,
        "v-intent": "intent-only",
    }
    for volume_id, status in outcomes.items():
        disk = add_disk(session, run.id, volume_id=volume_id)
        if status == "intent-only":
            continue
        record_submitted(session=session, disk_backup_id=disk.id, job_id=f"job-{volume_id}")
        if status is not None:
            record_outcome(session=session, disk_backup_id=disk.id, status=status)
    add_disk(session, other.id, volume_id="v-other")  # another run's disk is not counted
    for i, status in enumerate(
        [DeleteStatus.done, DeleteStatus.done, DeleteStatus.failed, DeleteStatus.requested]
    ):
        decision = record_retention_decision(
            session=session,
            run_id=run.id,
            volume_id="v-ok",
            backup_id=f"b{i}",
            backup_name=f"n{i}",
            created_at_cloud=T0,
            action="delete",
            reasons=["older than rules"],
        )
        mark_delete(session=session, decision_id=decision.id, delete_status=status)
    record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="v-ok",
        backup_id="keep",
        backup_name="k",
        created_at_cloud=T0,
        action="keep",
        reasons="keep_last 1",
    )

    finished = finish_run(session=session, run_id=run.id, status="failed", message="2 disks failed")
    assert finished.status is RunStatus.failed
    with fresh(engine) as s:
        row = s.get(Run, run.id)
        assert row is not None
        assert row.disks_total == 7
        assert row.disks_succeeded == 2
        assert row.disks_failed == 5  # failed, timed out, and the three left unfinished
        assert row.deletes_done == 2
        assert row.message == "2 disks failed"
        assert row.finished_at is not None and row.finished_at.tzinfo is UTC
        assert row.finished_at >= row.started_at


def test_finish_run_without_disks(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    done = finish_run(session=session, run_id=run.id, status=RunStatus.completed)
    assert (done.disks_total, done.disks_succeeded, done.disks_failed, done.deletes_done) == (0, 0, 0, 0)


def test_finish_run_rejects_unknown_status_and_run(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    with pytest.raises(ValueError):
        finish_run(session=session, run_id=run.id, status="green")
    with pytest.raises(LedgerNotFoundError):
        finish_run(session=session, run_id=run.id + 100, status="completed")


# ------------------------------------------------------------------------------------------- disk backups


def test_record_intent(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.status is DiskBackupStatus.intent
        assert row.attempts == 1
        assert (row.volume_id, row.backup_name, row.device, row.size_gb) == (
            "vol-1",
            "vbsb-web-01-vdb-202403050200",
            "/dev/vdb",
            40,
        )
        assert row.is_system_disk is False
        assert row.job_id is None and row.backup_id is None
        assert row.requested_at.tzinfo is UTC


def test_record_intent_is_idempotent(engine: Engine, session: Session) -> None:
    first_run = start_run(session=session, plan_name="p", trigger="schedule")
    disk = add_disk(session, first_run.id)
    record_submitted(session=session, disk_backup_id=disk.id, job_id="job-1")
    retry_run = start_run(session=session, plan_name="p", trigger="manual")

    again = add_disk(session, retry_run.id)

    assert again.id == disk.id
    assert again.attempts == 2
    assert again.run_id == retry_run.id  # the row follows the latest attempt
    assert again.status is DiskBackupStatus.submitted  # the caller sees the job it may adopt
    assert again.job_id == "job-1"
    with fresh(engine) as s:
        assert len(s.exec(select(DiskBackup)).all()) == 1
    # a different slot or a different volume is a different row
    assert add_disk(session, retry_run.id, backup_name="vbsb-web-01-vdb-202403060200").id != disk.id
    assert add_disk(session, retry_run.id, volume_id="vol-2").id != disk.id


def test_volume_and_name_are_unique_in_the_database(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    twin = DiskBackup.model_validate(disk.model_dump(exclude={"id"}))
    session.add(twin)
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_record_submitted(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    record_submitted(session=session, disk_backup_id=disk.id, job_id="4010b39b5281d3590152874bfa3b1604")
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.status is DiskBackupStatus.submitted
        assert row.job_id == "4010b39b5281d3590152874bfa3b1604"
        assert row.submitted_at is not None and row.submitted_at.tzinfo is UTC
    with pytest.raises(LedgerNotFoundError):
        record_submitted(session=session, disk_backup_id=disk.id + 1000, job_id="x")


def test_record_outcome_success(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    record_submitted(session=session, disk_backup_id=disk.id, job_id="job")
    running = record_outcome(session=session, disk_backup_id=disk.id, status="running")
    assert running.status is DiskBackupStatus.running
    assert running.finished_at is None
    record_outcome(
        session=session,
        disk_backup_id=disk.id,
        status=DiskBackupStatus.succeeded,
        backup_id="b-1",
        incremental=True,
    )
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.status is DiskBackupStatus.succeeded
        assert row.backup_id == "b-1"
        assert row.incremental is True
        assert row.finished_at is not None and row.finished_at.tzinfo is UTC
        assert row.error_code is None and row.error_reason is None


def test_record_outcome_failure_then_success_clears_the_error(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    reason = "CreateBackup Task-fail: " + "x" * 5000
    failed = record_outcome(
        session=session,
        disk_backup_id=disk.id,
        status="failed",
        error_code="VolumeBackup.0064",
        error_reason=reason,
    )
    assert failed.error_code == "VolumeBackup.0064"
    assert failed.error_reason is not None
    assert failed.error_reason.startswith("CreateBackup Task-fail: ")
    assert len(failed.error_reason) == 2000  # long texts are cut
    assert failed.backup_id is None

    record_outcome(session=session, disk_backup_id=disk.id, status="adopted", backup_id="b-9")
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.status is DiskBackupStatus.adopted
        assert row.backup_id == "b-9"
        assert row.error_code is None and row.error_reason is None
        assert row.incremental is None


def test_record_outcome_timed_out(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    row = record_outcome(
        session=session, disk_backup_id=disk.id, status="timed_out", error_reason="deadline of 60 min passed"
    )
    assert row.status is DiskBackupStatus.timed_out
    assert row.finished_at is not None


@pytest.mark.parametrize("status", ["intent", "submitted", "done", ""])
def test_record_outcome_rejects_non_outcomes(session: Session, status: str) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    with pytest.raises(ValueError):
        record_outcome(session=session, disk_backup_id=disk.id, status=status)


def test_record_verified(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    record_verified(session=session, disk_backup_id=disk.id, at=T0)
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None and row.verified_at == T0


def test_find_disk_backup(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    found = find_disk_backup(session=session, volume_id="vol-1", backup_name=disk.backup_name)
    assert found is not None and found.id == disk.id
    assert find_disk_backup(session=session, volume_id="vol-2", backup_name=disk.backup_name) is None
    assert find_disk_backup(session=session, volume_id="vol-1", backup_name="vbsb-other") is None


def test_owned_backup_ids(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    for i, (volume_id, backup_id) in enumerate(
        [("vol-1", "b-1"), ("vol-1", "b-2"), ("vol-1", None), ("vol-1", ""), ("vol-2", "b-3")]
    ):
        disk = add_disk(session, run.id, volume_id=volume_id, backup_name=f"vbsb-web-01-vdb-{i}")
        if backup_id is not None:
            record_outcome(session=session, disk_backup_id=disk.id, status="failed", backup_id=backup_id)
    assert owned_backup_ids(session=session, volume_id="vol-1") == {"b-1", "b-2"}
    assert owned_backup_ids(session=session, volume_id="vol-2") == {"b-3"}
    assert owned_backup_ids(session=session, volume_id="vol-9") == set()


def test_newest_attempt(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    assert newest_attempt(session=session, volume_id="vol-1") is None
    old = add_disk(session, run.id, backup_name="n-old")
    new = add_disk(session, run.id, backup_name="n-new")
    backfill = add_disk(session, run.id, backup_name="n-backfill")  # inserted last, requested earlier
    set_times(session, old, requested_at=T0, submitted_at=None)
    set_times(session, new, requested_at=T0 + timedelta(days=2), submitted_at=None)
    set_times(session, backfill, requested_at=T0 + timedelta(days=1), submitted_at=None)
    record_outcome(session=session, disk_backup_id=new.id, status="failed", error_code="VolumeBackup.0064")
    newest = newest_attempt(session=session, volume_id="vol-1")
    assert newest is not None
    assert newest.id == new.id
    assert newest.status is DiskBackupStatus.failed


def test_disk_backups_for_run(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    other = start_run(session=session, plan_name="p", trigger="cli")
    add_disk(session, run.id, volume_id="v2", server_name="web-02", device="/dev/vda")
    add_disk(session, run.id, volume_id="v1", server_name="web-01", device="/dev/vdb")
    add_disk(session, run.id, volume_id="v0", server_name="web-01", device="/dev/vda")
    add_disk(session, other.id, volume_id="v9")
    rows = disk_backups_for_run(session=session, run_id=run.id)
    assert [(r.server_name, r.device) for r in rows] == [
        ("web-01", "/dev/vda"),
        ("web-01", "/dev/vdb"),
        ("web-02", "/dev/vda"),
    ]


# ------------------------------------------------------------------------------------------- retention


def test_record_retention_decision(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    created = datetime(2024, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=2)))
    delete = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="vol-1",
        backup_id="b-1",
        backup_name="vbsb-a",
        created_at_cloud=created,
        action="delete",
        reasons=["not kept by any rule", "older than 7 days"],
    )
    keep = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="vol-1",
        backup_id="b-2",
        backup_name="vbsb-b",
        created_at_cloud=created,
        action=RetentionAction.keep,
        reasons="keep_daily 1",
    )
    dry = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="vol-1",
        backup_id="b-3",
        backup_name="vbsb-c",
        created_at_cloud=created,
        action="delete",
        reasons=[],
        dry_run=True,
    )
    with fresh(engine) as s:
        d = s.get(RetentionDecision, delete.id)
        k = s.get(RetentionDecision, keep.id)
        n = s.get(RetentionDecision, dry.id)
        assert d is not None and k is not None and n is not None
        assert d.action is RetentionAction.delete
        assert d.reasons == "not kept by any rule; older than 7 days"
        assert d.delete_status is DeleteStatus.intent  # the intent exists before the delete call
        assert d.created_at_cloud == created
        assert d.created_at_cloud.tzinfo is UTC
        assert d.decided_at.tzinfo is UTC
        assert k.action is RetentionAction.keep and k.delete_status is None and k.reasons == "keep_daily 1"
        assert n.dry_run is True and n.delete_status is None and n.reasons == ""
    with pytest.raises(ValueError):
        record_retention_decision(
            session=session,
            run_id=run.id,
            volume_id="vol-1",
            backup_id="b-4",
            backup_name=None,
            created_at_cloud=created,
            action="archive",
            reasons="",
        )


def test_mark_delete(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    decision = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="vol-1",
        backup_id="b-1",
        backup_name="vbsb-a",
        created_at_cloud=T0,
        action="delete",
        reasons="not kept by any rule",
    )
    mark_delete(session=session, decision_id=decision.id, delete_status="requested")
    mark_delete(
        session=session,
        decision_id=decision.id,
        delete_status=DeleteStatus.failed,
        error="VolumeBackup.0075: backup is being used",
    )
    with fresh(engine) as s:
        row = s.get(RetentionDecision, decision.id)
        assert row is not None
        assert row.delete_status is DeleteStatus.failed
        assert row.delete_error == "VolumeBackup.0075: backup is being used"
    done = mark_delete(session=session, decision_id=decision.id, delete_status="done")
    assert done.delete_status is DeleteStatus.done and done.delete_error is None


def test_mark_delete_refuses_keeps_dry_runs_and_unknown_ids(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    keep = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="v",
        backup_id="b-1",
        backup_name="n",
        created_at_cloud=T0,
        action="keep",
        reasons="keep_last 1",
    )
    dry = record_retention_decision(
        session=session,
        run_id=run.id,
        volume_id="v",
        backup_id="b-2",
        backup_name="n",
        created_at_cloud=T0,
        action="delete",
        reasons="x",
        dry_run=True,
    )
    for decision in (keep, dry):
        with pytest.raises(ValueError, match="not a real delete"):
            mark_delete(session=session, decision_id=decision.id, delete_status="done")
    with pytest.raises(LedgerNotFoundError):
        mark_delete(session=session, decision_id=dry.id + 100, delete_status="done")
    with pytest.raises(ValueError):
        mark_delete(session=session, decision_id=keep.id, delete_status="gone")


# ------------------------------------------------------------------------------------------- time


def test_timestamps_round_trip_timezone_aware(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    tokyo = timezone(timedelta(hours=9))
    local = datetime(2024, 3, 5, 11, 0, 0, 123456, tzinfo=tokyo)
    set_times(session, disk, requested_at=local, submitted_at=local + timedelta(seconds=1))
    with fresh(engine) as s:
        if engine.dialect.name == "postgresql":
            # timestamptz answers in the session's timezone: it must still come back as UTC.
            s.connection().exec_driver_sql("SET TIME ZONE 'Asia/Tokyo'")
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.requested_at == local
        assert row.requested_at.tzinfo is UTC
        assert row.requested_at == datetime(2024, 3, 5, 2, 0, 0, 123456, tzinfo=UTC)
        assert row.submitted_at == local + timedelta(seconds=1)


def test_naive_timestamps_are_refused(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    disk.verified_at = datetime(2024, 1, 1)
    session.add(disk)
    with pytest.raises(StatementError, match="naive datetime"):
        session.commit()
    session.rollback()


# ------------------------------------------------------------------------------------------- report


def test_protection_status(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    now = T0 + timedelta(days=3, hours=5)

    # web-01 /dev/vdb: two successes, then a failure on the newest slot
    for day, status in [(0, "succeeded"), (1, "adopted"), (2, "failed")]:
        disk = add_disk(session, run.id, volume_id="vol-b", backup_name=f"vbsb-web-01-vdb-{day}")
        slot = T0 + timedelta(days=day)
        set_times(
            session, disk, requested_at=slot, submitted_at=slot + timedelta(minutes=1) if day != 1 else None
        )
        record_outcome(
            session=session,
            disk_backup_id=disk.id,
            status=status,
            backup_id=f"b-{day}" if day < 2 else None,
            error_code="VolumeBackup.0064" if status == "failed" else None,
        )
    # web-01 /dev/vda: one success
    disk = add_disk(session, run.id, volume_id="vol-a", device="/dev/vda", backup_name="vbsb-web-01-vda-0")
    set_times(session, disk, requested_at=T0, submitted_at=T0 + timedelta(minutes=2))
    record_outcome(session=session, disk_backup_id=disk.id, status="succeeded", backup_id="b-a")
    # db-01 /dev/vdb: never succeeded, still submitted
    disk = add_disk(session, run.id, volume_id="vol-c", server_name="db-01", backup_name="vbsb-db-01-vdb-0")
    record_submitted(session=session, disk_backup_id=disk.id, job_id="job-c")

    status = protection_status(session=session, now=now)

    assert [(p.server_name, p.device, p.volume_id) for p in status] == [
        ("db-01", "/dev/vdb", "vol-c"),
        ("web-01", "/dev/vda", "vol-a"),
        ("web-01", "/dev/vdb", "vol-b"),
    ]
    db, vda, vdb = status
    assert db.newest_success_at is None and db.age is None and db.newest_success_backup_id is None
    assert db.last_attempt_status is DiskBackupStatus.submitted

    assert vda.newest_success_at == T0 + timedelta(minutes=2)
    assert vda.newest_success_backup_id == "b-a"
    assert vda.age == now - (T0 + timedelta(minutes=2))
    assert vda.last_attempt_status is DiskBackupStatus.succeeded

    # the adopted backup of day 1 (no submission: its request time counts) is the newest success
    assert vdb.newest_success_at == T0 + timedelta(days=1)
    assert vdb.newest_success_at is not None and vdb.newest_success_at.tzinfo is UTC
    assert vdb.newest_success_backup_id == "b-1"
    assert vdb.age == timedelta(days=2, hours=5)
    assert vdb.last_attempt_status is DiskBackupStatus.failed
    assert vdb.last_attempt_at == T0 + timedelta(days=2)
    assert vdb.last_error_code == "VolumeBackup.0064"
    assert vdb.volume_name == "web-01-vdb"


def test_protection_status_empty(session: Session) -> None:
    assert protection_status(session=session) == []
