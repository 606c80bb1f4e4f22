"""`vbs-backup report --target NAME`, as an operator runs it (the installed command in a process of its own),
on one ledger holding the runs of two estate targets that both have a plan `nightly`, and a run outside
any estate."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlmodel import Session

from tests.commands import VBS_BACKUP
from vbs_backup.ledger import (
    RunStatus,
    finish_run,
    init_db,
    make_engine,
    record_intent,
    record_outcome,
    start_run,
)

T0 = datetime(2026, 11, 29, 1, 0, tzinfo=UTC)
# target -> (server, volume) of its one disk; the run outside any estate backs up a disk of its own
DISKS = {"alpha": ("web-01", "vol-alpha"), "beta": ("app-01", "vol-beta"), None: ("lab-01", "vol-lab")}


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'ledger.sqlite'}"
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        for night in range(2):
            for target in ("alpha", "beta", None):
                run = start_run(
                    session=session,
                    plan_name="nightly",
                    trigger="scheduled",
                    deployment="nightly-backup",
                    target=target,
                    project_id=None if target is None else f"{target}-project",
                )
                assert run.id is not None
                server, volume = DISKS[target]
                attempt = record_intent(
                    session=session,
                    run_id=run.id,
                    plan_name="nightly",
                    slot_start=T0 + timedelta(days=night),
                    server_id=f"id-{server}",
                    server_name=server,
                    volume_id=volume,
                    volume_name=None,
                    device="/dev/vdb",
                    size_gb=10,
                    is_system_disk=False,
                    backup_name=f"vbsb-{server}-vdb-{night}",
                )
                assert attempt.id is not None
                record_outcome(
                    session=session, disk_backup_id=attempt.id, status="succeeded", backup_id=f"b-{volume}"
                )
                finish_run(session=session, run_id=run.id, status=RunStatus.completed)
    engine.dispose()
    return url


def report(ledger: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VBS_BACKUP), "report", "--database-url", ledger, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,  # no .env of the repository's
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"},
    )


def tables(output: str) -> list[list[list[str]]]:
    """Each rich table of the output as its rows of cells, its header first."""
    found: list[list[list[str]]] = []
    for line in output.splitlines():
        if line.startswith("┏"):
            found.append([])
        elif "┃" in line or ("│" in line and found):
            found[-1].append([cell.strip() for cell in line.replace("┃", "│").split("│")[1:-1]])
    return found


def test_one_target_shows_its_runs_and_disks_only_with_a_target_column(ledger, tmp_path):
    done = report(ledger, "--target", "alpha", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    runs, disks = tables(done.stdout)
    assert runs[0][:3] == ["run", "target", "plan"]
    assert [(row[1], row[2]) for row in runs[1:]] == [("alpha", "nightly")] * 2
    assert disks[0][:2] == ["target", "server"]
    assert [(row[0], row[1], row[3]) for row in disks[1:]] == [("alpha", "web-01", "vol-alpha")]


def test_several_targets_and_every_run(ledger, tmp_path):
    done = report(ledger, "--target", "beta", "--target", "alpha", cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    runs, disks = tables(done.stdout)
    assert sorted(row[1] for row in runs[1:]) == ["alpha", "alpha", "beta", "beta"]
    assert [(row[0], row[1]) for row in disks[1:]] == [("alpha", "web-01"), ("beta", "app-01")]

    done = report(ledger, cwd=tmp_path)  # every run: the one outside any estate has no target

    assert done.returncode == 0, done.stderr
    runs, disks = tables(done.stdout)
    assert sorted(row[1] for row in runs[1:]) == ["-", "-", "alpha", "alpha", "beta", "beta"]
    assert [(row[0], row[1]) for row in disks[1:]] == [
        ("-", "lab-01"),
        ("alpha", "web-01"),
        ("beta", "app-01"),
    ]


def test_an_unknown_target_shows_nothing_and_says_so(ledger, tmp_path):
    done = report(ledger, "--target", "alpha", "--target", "gamma", cwd=tmp_path)

    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "no runs of target gamma in the ledger",
        "(the ledger has runs of: alpha, beta)",
    ]


def test_a_ledger_outside_any_estate_has_no_target_column(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    engine = make_engine(url)
    init_db(engine)
    with Session(engine) as session:
        start_run(session=session, plan_name="nightly", trigger="direct")
    engine.dispose()

    done = report(url, cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    runs, disks = tables(done.stdout)
    assert runs[0][:3] == ["run", "plan", "kind"] and disks[0][0] == "server"

    done = report(url, "--target", "alpha", cwd=tmp_path)

    assert (done.returncode, done.stdout, done.stderr) == (2, "", "no runs of target alpha in the ledger\n")
