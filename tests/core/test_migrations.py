"""The ledger's schema migrations (Alembic) on a real SQLite file and a real PostgreSQL server: a ledger of
the previous release migrated by init_db with its data, the migration chain equal to the models, the
version checks, concurrent starts, and the `vbs-backup ledger` commands."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import Session, select
from typer.testing import CliRunner

import vbs_backup.ledger.engine as ledger_engine_module
from tests.pg import fresh_schema_url
from vbs_backup.deployments.cli.app import app
from vbs_backup.ledger import (
    DiskBackup,
    LedgerVersionError,
    RetentionDecision,
    Run,
    init_db,
    ledger_head,
    ledger_revision,
    make_engine,
    upgrade_ledger,
)
from vbs_backup.ledger.engine import alembic_config, ledger_metadata

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
PASSWORD = "s3cret-pw"


@contextmanager
def empty_database_url(kind: str, tmp_path: Path, password: bool = False) -> Iterator[str]:
    """A URL to an empty database: a new SQLite file, or a new schema on the PostgreSQL server (which trusts
    every login, so a password in the URL is accepted and ignored)."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger' / 'ledger.sqlite'}"
        return
    with fresh_schema_url("test_migrations") as url:
        yield url.replace("postgres@", f"postgres:{PASSWORD}@", 1) if password else url


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def url(kind: str, tmp_path: Path) -> Iterator[str]:
    with empty_database_url(kind, tmp_path) as url:
        yield url


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    yield engine
    engine.dispose()


def migrate(engine: Engine, revision: str) -> None:
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def schema_diff(engine: Engine) -> list:
    """What Alembic's autogenerate would change to make the database match the models (types, nullability,
    server defaults, indexes, unique constraints, foreign keys): nothing, for a current ledger."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, ledger_metadata())


def build_old_ledger(engine: Engine, *, versioned: bool) -> dict[str, int]:
    """A ledger of the previous release, with data: its schema from the 0001 migration's DDL (never from
    the models), its rows written through the reflected tables. Unversioned (no `alembic_version`, as the
    release before migrations left it) unless `versioned`. Returns the row ids by name."""
    migrate(engine, "0001")
    old = MetaData()
    old.reflect(engine)
    runs, disks, decisions = (old.tables[n] for n in ("runs", "disk_backups", "retention_decisions"))
    run_defaults = {"trigger": "schedule", "status": "completed", "disks_total": 2, "disks_succeeded": 2}
    run_defaults |= {"disks_failed": 0, "deletes_done": 0}
    disk_defaults = {"server_id": "srv-1", "server_name": "web-01", "device": "/dev/vdb", "size_gb": 40}
    disk_defaults |= {"is_system_disk": False, "status": "succeeded", "attempts": 1, "requested_at": T0}
    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for plan in ("nightly", "archive"):
            ids[f"run-{plan}"] = conn.execute(
                runs.insert().values(plan_name=plan, started_at=T0, **run_defaults).returning(runs.c.id)
            ).scalar_one()
        for key, plan, volume, backup_name, backup_id in (
            ("web", "nightly", "vol-1", "vbsb-web-01-vdb-202611290100", "bk-1"),
            ("web-root", "nightly", "vol-2", "vbsb-web-01-vda-202611290100", "bk-2"),
            ("archive", "archive", "vol-1", "vbsa-web-01-vdb-202612010000", "bk-3"),
            ("hand-named", "archive", "vol-3", "before-the-upgrade", None),
            ("no-date", "archive", "vol-4", "vbsa-web-01-vdc-202613450100", None),  # month 45
        ):
            ids[key] = conn.execute(
                disks.insert()
                .values(
                    run_id=ids[f"run-{plan}"], volume_id=volume, backup_name=backup_name, backup_id=backup_id
                )
                .values(verified_at=T0 + timedelta(days=1) if key == "web" else None, **disk_defaults)
                .returning(disks.c.id)
            ).scalar_one()
        ids["decision"] = conn.execute(
            decisions.insert()
            .values(run_id=ids["run-nightly"], volume_id="vol-1", backup_id="bk-1", created_at_cloud=T0)
            .values(action="keep", reasons="newest daily", dry_run=False, decided_at=T0 + timedelta(hours=1))
            .returning(decisions.c.id)
        ).scalar_one()
        if not versioned:
            conn.execute(text("DROP TABLE alembic_version"))
    return ids


@pytest.mark.parametrize("versioned", [False, True], ids=["unversioned", "at-0001"])
def test_old_ledger_is_migrated_with_its_data(
    engine: Engine, versioned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ids = build_old_ledger(engine, versioned=versioned)
    assert ledger_revision(engine) == ("0001" if versioned else None)

    with caplog.at_level(logging.INFO, logger="vbs_backup.ledger"):
        init_db(engine)
    assert f"ledger migrated from 0001 to {ledger_head()}" in caplog.messages
    assert ledger_revision(engine) == ledger_head()
    assert schema_diff(engine) == []

    with Session(engine) as session:
        runs = {r.id: r for r in session.exec(select(Run)).all()}
        assert {r.plan_name for r in runs.values()} == {"nightly", "archive"}
        assert all(r.heartbeat_at is None and r.started_at == T0 for r in runs.values())
        rows = {row.id: row for row in session.exec(select(DiskBackup)).all()}
        assert len(rows) == 5
        web = rows[ids["web"]]
        assert (web.volume_id, web.backup_name, web.backup_id, web.status) == (
            "vol-1",
            "vbsb-web-01-vdb-202611290100",
            "bk-1",
            "succeeded",
        )
        assert (web.requested_at, web.verified_at) == (T0, T0 + timedelta(days=1))
        assert {(rows[ids[k]].plan_name, rows[ids[k]].slot_start) for k in ("web", "web-root")} == {
            ("nightly", T0)
        }
        assert (rows[ids["archive"]].plan_name, rows[ids["archive"]].slot_start) == (
            "archive",
            datetime(2026, 12, 1, 0, 0, tzinfo=UTC),
        )
        assert rows[ids["hand-named"]].slot_start is None
        assert rows[ids["no-date"]].slot_start is None
        assert all(row.attempt == 1 and row.created_by_us is True for row in rows.values())
        decision = session.get(RetentionDecision, ids["decision"])
        assert decision is not None
        assert (decision.backup_id, decision.action, decision.reasons) == ("bk-1", "keep", "newest daily")

        # The new identity: a second attempt at the same plan, volume and slot (and name) is a row of its
        # own; the same attempt twice is refused.
        def attempt(n: int) -> DiskBackup:
            return DiskBackup(
                run_id=ids["run-nightly"],
                plan_name="nightly",
                slot_start=T0,
                attempt=n,
                server_id="srv-1",
                server_name="web-01",
                volume_id="vol-1",
                device="/dev/vdb",
                size_gb=40,
                is_system_disk=False,
                backup_name="vbsb-web-01-vdb-202611290100",
            )

        session.add(attempt(2))
        session.commit()
        session.add(attempt(2))
        with pytest.raises(IntegrityError):
            session.commit()
        session.rollback()
        rows_of_slot = session.exec(
            select(DiskBackup).where(DiskBackup.volume_id == "vol-1", DiskBackup.slot_start == T0)
        ).all()
        assert sorted(r.attempt for r in rows_of_slot) == [1, 2]


def test_runs_get_their_target_and_project_and_lose_them_on_downgrade(engine: Engine) -> None:
    """0003 on a ledger at 0002: the runs already there ran outside any estate (target NULL) and did not
    record their project (NULL); the target is indexed (every read of a target's runs filters on it)."""
    migrate(engine, "0002")
    old = MetaData()
    old.reflect(engine)
    with engine.begin() as conn:
        conn.execute(
            old.tables["runs"]
            .insert()
            .values(plan_name="nightly", trigger="scheduled", started_at=T0, status="completed")
            .values(disks_total=1, disks_succeeded=1, disks_failed=0, deletes_done=0)
        )

    init_db(engine)

    assert ledger_revision(engine) == ledger_head() and schema_diff(engine) == []
    assert "ix_runs_target" in {i["name"] for i in inspect(engine).get_indexes("runs")}
    with Session(engine) as session:
        [run] = session.exec(select(Run)).all()
        assert (run.plan_name, run.status, run.target, run.project_id) == ("nightly", "completed", None, None)
        session.add(Run(plan_name="nightly", trigger="scheduled", target="hwc-prod", project_id="0" * 32))
        session.commit()

    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0002")
    assert ledger_revision(engine) == "0002"
    assert not {"target", "project_id"} & {c["name"] for c in inspect(engine).get_columns("runs")}
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM runs")).scalar_one() == 2


def test_migration_chain_matches_the_models(engine: Engine) -> None:
    migrate(engine, "head")  # every migration from an empty database, as an old ledger lives through them
    assert ledger_revision(engine) == ledger_head()
    # No differences at all, cosmetic ones included: 0002 drops the server defaults it used to fill the
    # existing rows, since the models have none.
    assert schema_diff(engine) == []


def test_init_db_creates_an_empty_ledger_at_head_then_does_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="vbs_backup.ledger"):
        init_db(engine)
    assert f"ledger created at revision {ledger_head()}" in caplog.messages
    assert ledger_revision(engine) == ledger_head()
    assert {"runs", "disk_backups", "alembic_version"} <= set(inspect(engine).get_table_names())
    with Session(engine) as session:
        session.add(Run(plan_name="nightly", trigger="cli"))
        session.commit()

    def no_migration(_engine: Engine) -> tuple[str | None, str]:
        raise AssertionError("init_db migrated a current ledger")

    # A current ledger: init_db reads its revision and stops there, however often it is called.
    monkeypatch.setattr(ledger_engine_module, "upgrade_ledger", no_migration)
    init_db(engine)
    init_db(engine)
    monkeypatch.undo()
    assert upgrade_ledger(engine) == (ledger_head(), ledger_head())
    with Session(engine) as session:
        assert [r.plan_name for r in session.exec(select(Run)).all()] == ["nightly"]
    assert schema_diff(engine) == []


def test_a_ledger_of_a_newer_version_is_refused(engine: Engine) -> None:
    init_db(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(LedgerVersionError, match="written by a newer vbs-backup"):
        init_db(engine)
    with pytest.raises(LedgerVersionError):
        upgrade_ledger(engine)
    assert ledger_revision(engine) == "0999"  # left as it was


def test_a_failed_migration_leaves_the_ledger_as_it_was(engine: Engine) -> None:
    build_old_ledger(engine, versioned=False)
    with engine.begin() as conn:  # an index squatting the name of 0002's last index: it fails at the end
        conn.execute(text("CREATE INDEX ix_disk_backups_slot_start ON runs (plan_name)"))
    with pytest.raises(DBAPIError):
        init_db(engine)
    assert ledger_revision(engine) is None  # not even stamped 0001: no version table at all
    assert "alembic_version" not in inspect(engine).get_table_names()
    assert "heartbeat_at" not in {c["name"] for c in inspect(engine).get_columns("runs")}
    assert "plan_name" not in {c["name"] for c in inspect(engine).get_columns("disk_backups")}

    with engine.begin() as conn:
        conn.execute(text("DROP INDEX ix_disk_backups_slot_start"))
    init_db(engine)
    assert ledger_revision(engine) == ledger_head()
    assert schema_diff(engine) == []


def test_workers_starting_together_migrate_once(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Two workers (threads here, each with its engine) find the same old ledger at the same moment."""
    engines = [make_engine(url) for _ in range(2)]
    build_old_ledger(engines[0], versioned=False)
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(engine: Engine) -> None:
        start.wait()
        try:
            init_db(engine)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    with caplog.at_level(logging.INFO, logger="vbs_backup.ledger"):
        threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert [m for m in caplog.messages if m.startswith("ledger ")] == [
        f"ledger migrated from 0001 to {ledger_head()}"
    ]
    for engine in engines:
        assert ledger_revision(engine) == ledger_head()
        engine.dispose()


def test_two_ledgers_migrated_at_once_in_one_process(tmp_path: Path) -> None:
    """Alembic's running migration lives in module globals: init_db migrates one ledger at a time."""
    engines = [make_engine(f"sqlite:///{tmp_path / f'ledger-{n}.sqlite'}") for n in range(3)]
    for engine in engines:
        build_old_ledger(engine, versioned=False)
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def worker(engine: Engine) -> None:
        start.wait()
        try:
            init_db(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(e,)) for e in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [ledger_revision(e) for e in engines] == [ledger_head()] * len(engines)
    for engine in engines:
        engine.dispose()


def test_a_migration_waits_for_the_database_lock(url: str) -> None:
    """Another process's migration (here: its lock, held on another engine's connection) makes init_db wait
    until it commits: the PostgreSQL advisory lock, the SQLite write lock."""
    holder, waiter = make_engine(url), make_engine(url)
    build_old_ledger(holder, versioned=False)
    done = threading.Event()
    errors: list[BaseException] = []

    def migrate_in_thread() -> None:
        try:
            init_db(waiter)
        except BaseException as exc:
            errors.append(exc)
        done.set()

    with holder.begin() as conn:
        ledger_engine_module._lock(conn)
        thread = threading.Thread(target=migrate_in_thread)
        thread.start()
        assert not done.wait(1.0), errors  # waiting on the lock
        assert ledger_revision(holder) is None
    thread.join(timeout=60)
    assert done.is_set() and errors == []
    assert ledger_revision(holder) == ledger_head()
    holder.dispose()
    waiter.dispose()


def test_ledger_commands(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vbs-backup ledger version | upgrade` on an old ledger named by VBS_BACKUP_DATABASE_URL; the URL is
    shown with its password hidden (PostgreSQL: the URL carries one)."""
    with empty_database_url(kind, tmp_path, password=True) as url:
        engine = make_engine(url)
        build_old_ledger(engine, versioned=False)
        monkeypatch.setenv("VBS_BACKUP_DATABASE_URL", url)
        runner = CliRunner()
        head = ledger_head()

        def run(*args: str) -> str:
            result = runner.invoke(app, ["ledger", *args])
            assert result.exit_code == 0, result.output
            assert PASSWORD not in result.output
            return result.output

        assert f"revision none, this vbs-backup writes {head}" in run("version")
        assert f"migrated from revision 0001 to {head}" in run("upgrade")
        assert f"already at revision {head}" in run("upgrade")
        out = run("version")
        assert f"revision {head}, this vbs-backup writes {head}" in out
        assert ("***" in out) if kind == "postgresql" else (str(tmp_path) in out)
        assert ledger_revision(engine) == head

        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
        result = runner.invoke(app, ["ledger", "upgrade"])
        assert result.exit_code == 1
        assert "newer vbs-backup" in result.output
        engine.dispose()


def test_ledger_command_failure_is_one_line_without_the_password() -> None:
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test"  # nothing listens on port 1
    result = CliRunner().invoke(app, ["ledger", "upgrade", "--database-url", url])
    assert result.exit_code == 1
    assert "postgres:***@127.0.0.1:1/test" in result.output
    assert PASSWORD not in result.output and "Traceback" not in result.output
