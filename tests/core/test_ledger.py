"""The ledger on a real SQLite file and a real PostgreSQL server: engine factory and repository functions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, inspect
from sqlalchemy.exc import IntegrityError, StatementError
from sqlmodel import Session, select

from tests.pg import ledger_engine
from vbs_backup.ledger import (
    RUN_LEASE,
    DeleteStatus,
    DiskBackup,
    DiskBackupStatus,
    LedgerNotFoundError,
    RetentionAction,
    RetentionDecision,
    Run,
    RunStatus,
    attempts_for_slot,
    beat,
    disk_backups_for_run,
    find_disk_backup,
    finish_run,
    init_db,
    live_run_ids,
    make_engine,
    mark_abandoned_runs,
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
    recorded_backup_ids,
    run_targets,
    start_run,
    take_up_attempt,
    unreconciled_attempts,
)
from vbs_backup.ledger.history import slot_attempts

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
    plan_name: str = "p",
    slot_start: datetime = T0,
    volume_id: str = "vol-1",
    backup_name: str = "vbsb-web-01-vdb-202403050200",
    server_name: str = "web-01",
    device: str = "/dev/vdb",
) -> DiskBackup:
    return record_intent(
        session=session,
        run_id=run_id,
        plan_name=plan_name,
        slot_start=slot_start,
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
        assert row.heartbeat_at == row.started_at  # the start is the first sign of life
        assert row.finished_at is None
        assert (row.disks_total, row.disks_succeeded, row.disks_failed, row.deletes_done) == (0, 0, 0, 0)
        assert (row.target, row.project_id) == (None, None)  # outside any estate

    project = "0123456789abcdef0123456789abcdef"
    run = start_run(
        session=session, plan_name="nightly", trigger="scheduled", target="hwc-prod", project_id=project
    )
    with fresh(engine) as s:
        row = s.get(Run, run.id)
        assert row is not None and (row.target, row.project_id) == ("hwc-prod", project)


def test_recent_runs_of_some_targets_and_the_targets_of_the_ledger(session: Session) -> None:
    assert run_targets(session=session) == []
    ids = {
        target: start_run(session=session, plan_name="nightly", trigger="cli", target=target).id
        for target in ("beta", "alpha", None, "gamma")
    }

    assert [r.id for r in recent_runs(session=session, targets=["alpha", "beta"])] == [
        ids["alpha"],
        ids["beta"],
    ]
    assert [r.id for r in recent_runs(session=session, targets=["alpha", "beta"], limit=1)] == [ids["alpha"]]
    assert recent_runs(session=session, targets=["delta"]) == []
    assert recent_runs(session=session, targets=[]) == []
    assert len(recent_runs(session=session)) == 4  # every run, those outside any estate too
    assert run_targets(session=session) == ["alpha", "beta", "gamma"]


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


def test_finish_run_counts_a_disk_once_by_its_newest_attempt(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="schedule")
    # vol-1 failed, then its retry in the same run succeeded: one disk, succeeded
    first = add_disk(session, run.id, volume_id="vol-1")
    record_outcome(session=session, disk_backup_id=first.id, status="failed", error_code="VolumeBackup.0064")
    retry = add_disk(session, run.id, volume_id="vol-1")
    assert retry.attempt == 2
    record_outcome(session=session, disk_backup_id=retry.id, status="succeeded", backup_id="b-1")
    # vol-2 succeeded, then a second attempt is still unfinished: the newest counts, so it is not protected
    ok = add_disk(session, run.id, volume_id="vol-2")
    record_outcome(session=session, disk_backup_id=ok.id, status="succeeded", backup_id="b-2")
    add_disk(session, run.id, volume_id="vol-2")

    finish_run(session=session, run_id=run.id, status="completed")
    with fresh(engine) as s:
        row = s.get(Run, run.id)
        assert row is not None
        assert (row.disks_total, row.disks_succeeded, row.disks_failed) == (2, 1, 1)


def test_beat_refreshes_a_running_run_only(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    run.heartbeat_at = T0
    session.add(run)
    session.commit()
    beat(session=session, run_id=run.id)
    with fresh(engine) as s:
        row = s.get(Run, run.id)
        assert row is not None and row.heartbeat_at is not None
        assert row.heartbeat_at > T0 and row.heartbeat_at.tzinfo is UTC

    done = start_run(session=session, plan_name="p", trigger="cli")
    finish_run(session=session, run_id=done.id, status="completed")
    done.heartbeat_at = T0
    session.add(done)
    session.commit()
    beat(session=session, run_id=done.id)  # a finished run does not come back to life
    with fresh(engine) as s:
        row = s.get(Run, done.id)
        assert row is not None and row.heartbeat_at == T0
    with pytest.raises(LedgerNotFoundError):
        beat(session=session, run_id=done.id + 100)


def make_run(
    session: Session,
    *,
    plan_name: str = "p",
    heartbeat_at: datetime | None,
    started_at: datetime,
    status: RunStatus = RunStatus.running,
    target: str | None = None,
) -> int:
    run = start_run(session=session, plan_name=plan_name, trigger="schedule", target=target)
    run.started_at = started_at
    run.heartbeat_at = heartbeat_at
    run.status = status
    session.add(run)
    session.commit()
    assert run.id is not None
    return run.id


def test_mark_abandoned_runs(engine: Engine, session: Session) -> None:
    now = T0 + timedelta(hours=3)
    stale = make_run(session, started_at=T0, heartbeat_at=now - RUN_LEASE - timedelta(seconds=1))
    fresh_run = make_run(session, started_at=T0, heartbeat_at=now - timedelta(minutes=1))
    # a run from before heartbeats is judged by its start
    old_silent = make_run(session, started_at=now - timedelta(hours=1), heartbeat_at=None)
    young_silent = make_run(session, started_at=now - timedelta(minutes=2), heartbeat_at=None)
    other_plan = make_run(session, plan_name="q", started_at=T0, heartbeat_at=T0)
    finished = make_run(session, started_at=T0, heartbeat_at=T0, status=RunStatus.completed)
    # the dead run's counts are frozen when it is marked
    disk = add_disk(session, stale, volume_id="vol-1")
    record_outcome(session=session, disk_backup_id=disk.id, status="succeeded", backup_id="b-1")
    add_disk(session, stale, volume_id="vol-2")

    marked = mark_abandoned_runs(session=session, plan_name="p", now=now)

    assert sorted(r.id for r in marked) == sorted([stale, old_silent])
    with fresh(engine) as s:
        status = {run_id: s.get(Run, run_id) for run_id in (stale, fresh_run, old_silent, young_silent)}
        status |= {other_plan: s.get(Run, other_plan), finished: s.get(Run, finished)}
        rows = {run_id: row for run_id, row in status.items() if row is not None}
        assert rows[stale].status is RunStatus.abandoned
        assert rows[stale].finished_at is not None
        assert rows[stale].message is not None and rows[stale].message.startswith("abandoned: ")
        assert (rows[stale].disks_total, rows[stale].disks_succeeded, rows[stale].disks_failed) == (2, 1, 1)
        assert rows[old_silent].status is RunStatus.abandoned
        assert rows[fresh_run].status is RunStatus.running and rows[fresh_run].finished_at is None
        assert rows[young_silent].status is RunStatus.running
        assert rows[other_plan].status is RunStatus.running  # another plan's run is left to that plan
        assert rows[finished].status is RunStatus.completed

    # marking again finds nothing new; without a plan, every plan's dead runs are marked
    assert mark_abandoned_runs(session=session, plan_name="p", now=now) == []
    assert [r.id for r in mark_abandoned_runs(session=session, now=now)] == [other_plan]
    # a shorter lease judges the fresh run dead too
    assert {r.id for r in mark_abandoned_runs(session=session, now=now, lease=timedelta(seconds=30))} == {
        fresh_run,
        young_silent,
    }


def test_mark_abandoned_runs_of_one_target(engine: Engine, session: Session) -> None:
    """Two targets of an estate, each with its plan `p`: one target's run never marks the other's."""
    now = T0 + timedelta(hours=3)
    silent = now - RUN_LEASE - timedelta(seconds=1)
    alpha = make_run(session, started_at=T0, heartbeat_at=silent, target="alpha")
    beta = make_run(session, started_at=T0, heartbeat_at=silent, target="beta")
    outside = make_run(session, started_at=T0, heartbeat_at=silent)  # outside any estate

    assert [r.id for r in mark_abandoned_runs(session=session, plan_name="p", target="alpha", now=now)] == [
        alpha
    ]
    with fresh(engine) as s:
        assert [s.get(Run, i).status for i in (alpha, beta, outside)] == [  # type: ignore[union-attr]
            RunStatus.abandoned,
            RunStatus.running,
            RunStatus.running,
        ]
    assert mark_abandoned_runs(session=session, target="alpha", now=now) == []
    # without a target: every dead run of the plan, whatever its target (a ledger outside any estate)
    assert sorted(r.id for r in mark_abandoned_runs(session=session, plan_name="p", now=now)) == [
        beta,
        outside,
    ]


def test_mark_abandoned_runs_default_clock_leaves_a_new_run_alone(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    assert mark_abandoned_runs(session=session) == []
    assert live_run_ids(session=session, plan_name="p") == {run.id}


def test_live_run_ids(session: Session) -> None:
    now = T0 + timedelta(hours=3)
    live = make_run(session, started_at=T0, heartbeat_at=now - timedelta(minutes=1))
    live_no_beat = make_run(session, started_at=now - timedelta(minutes=5), heartbeat_at=None)
    make_run(session, started_at=T0, heartbeat_at=now - RUN_LEASE - timedelta(seconds=1))  # dead
    make_run(session, started_at=T0, heartbeat_at=now, status=RunStatus.completed)
    make_run(session, started_at=T0, heartbeat_at=now, status=RunStatus.abandoned)
    make_run(session, plan_name="q", started_at=T0, heartbeat_at=now)

    assert live_run_ids(session=session, plan_name="p", now=now) == {live, live_no_beat}
    assert live_run_ids(session=session, plan_name="p", now=now, lease=timedelta(minutes=2)) == {live}
    assert live_run_ids(session=session, plan_name="none", now=now) == set()

    alpha = make_run(session, started_at=T0, heartbeat_at=now, target="alpha")
    beta = make_run(session, started_at=T0, heartbeat_at=now, target="beta")
    assert live_run_ids(session=session, plan_name="p", target="alpha", now=now) == {alpha}
    assert live_run_ids(session=session, plan_name="p", target="gamma", now=now) == set()
    assert live_run_ids(session=session, plan_name="p", now=now) == {live, live_no_beat, alpha, beta}


# ------------------------------------------------------------------------------------------- disk backups


def test_record_intent(engine: Engine, session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    with fresh(engine) as s:
        row = s.get(DiskBackup, disk.id)
        assert row is not None
        assert row.status is DiskBackupStatus.intent
        assert (row.plan_name, row.slot_start, row.attempt, row.attempts) == ("p", T0, 1, 1)
        assert row.slot_start is not None and row.slot_start.tzinfo is UTC
        assert row.created_by_us is True
        assert (row.volume_id, row.backup_name, row.device, row.size_gb) == (
            "vol-1",
            "vbsb-web-01-vdb-202403050200",
            "/dev/vdb",
            40,
        )
        assert row.is_system_disk is False
        assert row.job_id is None and row.backup_id is None
        assert row.requested_at.tzinfo is UTC


def test_a_second_intent_for_the_same_identity_is_a_new_attempt(engine: Engine, session: Session) -> None:
    first_run = start_run(session=session, plan_name="p", trigger="schedule")
    disk = add_disk(session, first_run.id)
    record_submitted(session=session, disk_backup_id=disk.id, job_id="job-1")
    record_outcome(session=session, disk_backup_id=disk.id, status="failed", backup_id="b-error")
    retry_run = start_run(session=session, plan_name="p", trigger="manual")

    again = add_disk(session, retry_run.id)

    assert again.id != disk.id
    assert (again.attempt, again.attempts) == (2, 1)
    assert again.run_id == retry_run.id
    assert again.status is DiskBackupStatus.intent
    assert again.job_id is None and again.backup_id is None
    with fresh(engine) as s:
        rows = s.exec(select(DiskBackup).order_by(DiskBackup.attempt)).all()
        # both rows kept: the first attempt's backup stays recorded as ours
        assert [(r.id, r.attempt, r.run_id, r.status) for r in rows] == [
            (disk.id, 1, first_run.id, DiskBackupStatus.failed),
            (again.id, 2, retry_run.id, DiskBackupStatus.intent),
        ]
        assert rows[0].job_id == "job-1" and rows[0].backup_id == "b-error"
    assert add_disk(session, retry_run.id).attempt == 3
    # a different slot, volume or plan is a different identity: its attempts start at 1
    assert add_disk(session, retry_run.id, slot_start=T0 + timedelta(days=1)).attempt == 1
    assert add_disk(session, retry_run.id, volume_id="vol-2").attempt == 1
    assert add_disk(session, retry_run.id, plan_name="q").attempt == 1
    # the same instant in another timezone is the same slot
    tokyo = T0.astimezone(timezone(timedelta(hours=9)))
    assert add_disk(session, retry_run.id, slot_start=tokyo).attempt == 4


def test_attempt_is_unique_in_the_database(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    disk = add_disk(session, run.id)
    values = disk.model_dump(exclude={"id"})
    table = DiskBackup.__table__  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError):
        session.execute(insert(table).values(**values))
    session.rollback()
    # the same name and volume are no longer unique by themselves: another attempt, plan or slot is fine
    session.execute(insert(table).values(**(values | {"attempt": 2})))
    session.execute(insert(table).values(**(values | {"plan_name": "q"})))
    session.execute(insert(table).values(**(values | {"slot_start": T0 + timedelta(days=1)})))
    session.commit()
    assert len(session.exec(select(DiskBackup)).all()) == 4


def test_record_intent_takes_the_next_attempt_when_another_worker_wins(
    engine: Engine, session: Session
) -> None:
    run = start_run(session=session, plan_name="p", trigger="schedule")
    add_disk(session, run.id)
    raced = False

    def other_worker_inserts(*args: Any) -> None:  # after_cursor_execute(conn, cursor, statement, ...)
        nonlocal raced
        if raced or "max(" not in str(args[2]).lower():
            return
        raced = True
        with Session(engine) as other:
            add_disk(other, run.id)  # reads max 1, writes attempt 2 first

    event.listen(engine, "after_cursor_execute", other_worker_inserts)
    try:
        mine = add_disk(session, run.id)
    finally:
        event.remove(engine, "after_cursor_execute", other_worker_inserts)

    assert raced
    assert mine.attempt == 3
    attempts = attempts_for_slot(session=session, plan_name="p", volume_id="vol-1", slot_start=T0)
    assert [a.attempt for a in attempts] == [1, 2, 3]


def test_take_up_attempt(engine: Engine, session: Session) -> None:
    first_run = start_run(session=session, plan_name="p", trigger="schedule")
    disk = add_disk(session, first_run.id)
    record_submitted(session=session, disk_backup_id=disk.id, job_id="job-1")
    resume_run = start_run(session=session, plan_name="p", trigger="manual")

    taken = take_up_attempt(session=session, disk_backup_id=disk.id, run_id=resume_run.id)

    assert taken.id == disk.id
    assert (taken.attempt, taken.attempts) == (1, 2)
    assert taken.run_id == resume_run.id  # the row follows the latest run that works on it
    assert taken.status is DiskBackupStatus.submitted  # the job it carries on
    assert taken.job_id == "job-1"
    with fresh(engine) as s:
        assert len(s.exec(select(DiskBackup)).all()) == 1
    with pytest.raises(LedgerNotFoundError):
        take_up_attempt(session=session, disk_backup_id=disk.id + 100, run_id=resume_run.id)


def test_attempts_for_slot(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    assert attempts_for_slot(session=session, plan_name="p", volume_id="vol-1", slot_start=T0) == []
    first = add_disk(session, run.id)
    add_disk(session, run.id, slot_start=T0 + timedelta(days=1))
    add_disk(session, run.id, volume_id="vol-2")
    add_disk(session, run.id, plan_name="q")
    second = add_disk(session, run.id)
    got = attempts_for_slot(session=session, plan_name="p", volume_id="vol-1", slot_start=T0)
    assert [(a.id, a.attempt) for a in got] == [(first.id, 1), (second.id, 2)]


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
        disk = add_disk(
            session,
            run.id,
            volume_id=volume_id,
            slot_start=T0 + timedelta(days=i),
            backup_name=f"vbsb-web-01-vdb-{i}",
        )
        if backup_id is not None:
            record_outcome(session=session, disk_backup_id=disk.id, status="failed", backup_id=backup_id)
    assert owned_backup_ids(session=session, plan_name="p", volume_id="vol-1") == {"b-1", "b-2"}
    assert owned_backup_ids(session=session, plan_name="p", volume_id="vol-2") == {"b-3"}
    assert owned_backup_ids(session=session, plan_name="p", volume_id="vol-9") == set()


def test_owned_backup_ids_are_plan_scoped_and_created_by_us(session: Session) -> None:
    run_p = start_run(session=session, plan_name="p", trigger="cli")
    run_q = start_run(session=session, plan_name="q", trigger="cli")
    # two plans back up the same volume at the same slot
    mine = add_disk(session, run_p.id, plan_name="p")
    record_outcome(session=session, disk_backup_id=mine.id, status="succeeded", backup_id="b-p")
    theirs = add_disk(session, run_q.id, plan_name="q")
    record_outcome(session=session, disk_backup_id=theirs.id, status="succeeded", backup_id="b-q")
    # p adopted a backup of its identity that it has no proof of creating (another ledger's)
    found = add_disk(session, run_p.id, plan_name="p", slot_start=T0 + timedelta(days=1))
    record_outcome(
        session=session, disk_backup_id=found.id, status="adopted", backup_id="b-found", created_by_us=False
    )
    row = session.get(DiskBackup, found.id)
    assert row is not None and row.created_by_us is False

    assert owned_backup_ids(session=session, plan_name="p", volume_id="vol-1") == {"b-p"}
    assert owned_backup_ids(session=session, plan_name="q", volume_id="vol-1") == {"b-q"}
    assert owned_backup_ids(session=session, plan_name="r", volume_id="vol-1") == set()
    # recorded, though not owned
    assert recorded_backup_ids(session=session, plan_name="p", volume_id="vol-1") == {"b-p", "b-found"}
    assert recorded_backup_ids(session=session, plan_name="q", volume_id="vol-1") == {"b-q"}
    assert recorded_backup_ids(
        session=session, plan_name="p", volume_id="vol-1", created_by_us_only=True
    ) == {"b-p"}
    # created_by_us is only written when given
    record_outcome(session=session, disk_backup_id=found.id, status="adopted", backup_id="b-found")
    assert owned_backup_ids(session=session, plan_name="p", volume_id="vol-1") == {"b-p"}


def test_newest_attempt(session: Session) -> None:
    run = start_run(session=session, plan_name="p", trigger="cli")
    assert newest_attempt(session=session, plan_name="p", volume_id="vol-1") is None
    old = add_disk(session, run.id, slot_start=T0, backup_name="n-old")
    new = add_disk(session, run.id, slot_start=T0 + timedelta(days=2), backup_name="n-new")
    # inserted last, requested earlier
    backfill = add_disk(session, run.id, slot_start=T0 + timedelta(days=1), backup_name="n-backfill")
    set_times(session, old, requested_at=T0, submitted_at=None)
    set_times(session, new, requested_at=T0 + timedelta(days=2), submitted_at=None)
    set_times(session, backfill, requested_at=T0 + timedelta(days=1), submitted_at=None)
    record_outcome(session=session, disk_backup_id=new.id, status="failed", error_code="VolumeBackup.0064")
    newest = newest_attempt(session=session, plan_name="p", volume_id="vol-1")
    assert newest is not None
    assert newest.id == new.id
    assert newest.status is DiskBackupStatus.failed


def test_newest_attempt_is_per_plan(session: Session) -> None:
    run_p = start_run(session=session, plan_name="p", trigger="cli")
    run_q = start_run(session=session, plan_name="q", trigger="cli")
    p_first = add_disk(session, run_p.id, plan_name="p")
    p_retry = add_disk(session, run_p.id, plan_name="p")  # same slot, attempt 2
    q_only = add_disk(session, run_q.id, plan_name="q")  # the newest on the volume, but another plan's
    set_times(session, p_first, requested_at=T0, submitted_at=None)
    set_times(session, p_retry, requested_at=T0 + timedelta(minutes=30), submitted_at=None)
    set_times(session, q_only, requested_at=T0 + timedelta(hours=1), submitted_at=None)
    record_outcome(session=session, disk_backup_id=p_retry.id, status="succeeded", backup_id="b-p")

    p = newest_attempt(session=session, plan_name="p", volume_id="vol-1")
    q = newest_attempt(session=session, plan_name="q", volume_id="vol-1")
    assert p is not None and (p.id, p.attempt, p.status) == (p_retry.id, 2, DiskBackupStatus.succeeded)
    assert q is not None and q.id == q_only.id
    assert newest_attempt(session=session, plan_name="r", volume_id="vol-1") is None
    assert newest_attempt(session=session, plan_name="p", volume_id="vol-2") is None


def test_unreconciled_attempts(session: Session) -> None:
    now = datetime.now(UTC)  # live_run_ids and the runs' heartbeats share this clock
    dead = make_run(session, started_at=now - timedelta(hours=2), heartbeat_at=now - timedelta(hours=1))
    live = make_run(session, started_at=now - timedelta(minutes=5), heartbeat_at=now)
    other_plan = make_run(session, plan_name="q", started_at=T0, heartbeat_at=T0)
    rows: dict[str, int] = {}
    for i, status in enumerate(
        ["intent", "submitted", "running", "timed_out", "succeeded", "adopted", "failed"]
    ):
        disk = add_disk(session, dead, slot_start=T0 + timedelta(days=i))
        if status == "submitted":
            record_submitted(session=session, disk_backup_id=disk.id, job_id="job")
        elif status != "intent":
            record_outcome(session=session, disk_backup_id=disk.id, status=status)
        rows[status] = disk.id
    abandoned = add_disk(session, dead, slot_start=T0 - timedelta(days=1))
    record_outcome(session=session, disk_backup_id=abandoned.id, status=DiskBackupStatus.abandoned)
    live_row = add_disk(session, live, volume_id="vol-2")
    other_volume = add_disk(session, dead, volume_id="vol-9")
    add_disk(session, other_plan, plan_name="q")

    live_ids = live_run_ids(session=session, plan_name="p", now=now)
    assert live_ids == {live}
    got = unreconciled_attempts(
        session=session, plan_name="p", volume_ids=["vol-1", "vol-2"], exclude_run_ids=live_ids
    )
    # the ends the ledger does not know, in insertion order; a timed-out job may still have finished
    assert [r.id for r in got] == [rows["intent"], rows["submitted"], rows["running"], rows["timed_out"]]
    # nothing excluded: the live run's attempt is among them; a volume not asked for never is
    got_all = unreconciled_attempts(
        session=session, plan_name="p", volume_ids=["vol-1", "vol-2"], exclude_run_ids=set()
    )
    assert [r.id for r in got_all][-1] == live_row.id
    assert other_volume.id not in {r.id for r in got_all}
    assert unreconciled_attempts(session=session, plan_name="p", volume_ids=[], exclude_run_ids=set()) == []
    assert [
        r.plan_name
        for r in unreconciled_attempts(
            session=session, plan_name="q", volume_ids=["vol-1"], exclude_run_ids=set()
        )
    ] == ["q"]


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
        slot = T0 + timedelta(days=day)
        disk = add_disk(
            session, run.id, volume_id="vol-b", slot_start=slot, backup_name=f"vbsb-web-01-vdb-{day}"
        )
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
    assert protection_status(session=session, plan_name="p") == []


def test_protection_status_filtered_by_plan(session: Session) -> None:
    run_p = start_run(session=session, plan_name="p", trigger="cli")
    run_q = start_run(session=session, plan_name="q", trigger="cli")
    now = T0 + timedelta(days=1)
    # vol-1: p succeeded at T0, q failed later (q's attempt is the volume's newest)
    p_ok = add_disk(session, run_p.id, plan_name="p")
    set_times(session, p_ok, requested_at=T0, submitted_at=T0 + timedelta(minutes=1))
    record_outcome(session=session, disk_backup_id=p_ok.id, status="succeeded", backup_id="b-p")
    q_failed = add_disk(session, run_q.id, plan_name="q")
    set_times(session, q_failed, requested_at=T0 + timedelta(hours=1), submitted_at=None)
    record_outcome(session=session, disk_backup_id=q_failed.id, status="failed", error_code="E-q")
    # vol-2: only q backs it up
    q_only = add_disk(session, run_q.id, plan_name="q", volume_id="vol-2", device="/dev/vdc")
    set_times(session, q_only, requested_at=T0, submitted_at=T0)
    record_outcome(session=session, disk_backup_id=q_only.id, status="succeeded", backup_id="b-q2")

    (p_vol1,) = protection_status(session=session, now=now, plan_name="p")
    assert p_vol1.volume_id == "vol-1"
    assert p_vol1.last_attempt_status is DiskBackupStatus.succeeded  # q's newer failure is not p's
    assert p_vol1.last_error_code is None
    assert p_vol1.newest_success_backup_id == "b-p"
    assert p_vol1.age == now - (T0 + timedelta(minutes=1))

    q_vol1, q_vol2 = protection_status(session=session, now=now, plan_name="q")
    assert (q_vol1.volume_id, q_vol2.volume_id) == ("vol-1", "vol-2")
    assert q_vol1.last_attempt_status is DiskBackupStatus.failed
    assert q_vol1.newest_success_at is None and q_vol1.newest_success_backup_id is None  # p's is not q's
    assert q_vol2.newest_success_backup_id == "b-q2"

    # all plans: one line per volume, its newest attempt and its newest success whatever the plan
    every_vol1, every_vol2 = protection_status(session=session, now=now)
    assert every_vol1.last_attempt_status is DiskBackupStatus.failed
    assert every_vol1.newest_success_backup_id == "b-p"
    assert every_vol2.newest_success_backup_id == "b-q2"
    assert protection_status(session=session, now=now, plan_name="r") == []


def test_protection_and_nights_of_one_target(session: Session) -> None:
    """Two targets with a plan `p` each (their own project, their own volumes) in one ledger: each one's
    protection and nights are its own runs' rows; an attempt belongs to the run that last worked on it."""
    now = T0 + timedelta(days=1)
    alpha = start_run(session=session, plan_name="p", trigger="cli", target="alpha")
    beta = start_run(session=session, plan_name="p", trigger="cli", target="beta")
    hand = start_run(session=session, plan_name="p", trigger="cli")  # outside the estate
    for run, volume, server, status in (
        (alpha, "vol-a", "web-01", "succeeded"),
        (beta, "vol-b", "web-01", "failed"),  # the same server name, in another project
    ):
        row = add_disk(session, run.id, volume_id=volume, server_name=server)
        record_outcome(session=session, disk_backup_id=row.id, status=status, backup_id=f"b-{volume}")
    # an attempt that a run outside the estate started and alpha's run took up (resumed) is alpha's now
    resumed = add_disk(session, hand.id, volume_id="vol-a2", device="/dev/vdc")
    take_up_attempt(session=session, disk_backup_id=resumed.id, run_id=alpha.id)
    record_outcome(session=session, disk_backup_id=resumed.id, status="succeeded", backup_id="b-a2")
    add_disk(session, hand.id, volume_id="vol-h", server_name="lab-01")  # never taken up

    of_alpha = protection_status(session=session, now=now, plan_name="p", target="alpha")
    assert [(p.volume_id, p.target, p.newest_success_backup_id) for p in of_alpha] == [
        ("vol-a", "alpha", "b-vol-a"),
        ("vol-a2", "alpha", "b-a2"),
    ]
    [of_beta] = protection_status(session=session, now=now, plan_name="p", target="beta")
    assert (of_beta.volume_id, of_beta.target, of_beta.newest_success_at) == ("vol-b", "beta", None)
    assert protection_status(session=session, now=now, target="gamma") == []
    every = protection_status(session=session, now=now, plan_name="p")
    assert {(p.volume_id, p.target) for p in every} == {
        ("vol-a", "alpha"),
        ("vol-a2", "alpha"),
        ("vol-b", "beta"),
        ("vol-h", None),
    }

    nights = slot_attempts(session=session, plan_name="p", since=T0, target="alpha")
    assert sorted(a.volume_id for a in nights) == ["vol-a", "vol-a2"]
    assert [a.volume_id for a in slot_attempts(session=session, plan_name="p", since=T0, target="beta")] == [
        "vol-b"
    ]
    assert len(slot_attempts(session=session, plan_name="p", since=T0)) == 4
