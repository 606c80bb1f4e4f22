"""The estate-wide summary: what each child run did to its target's disks, read from the shared ledger by the
child's flow run id, and the parent's verdict and page (vbs_backup/estate_summary.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from vbs_backup.estate_summary import TargetDisks, TargetResult, estate_line, render, target_disks
from vbs_backup.ledger import DiskBackup, DiskBackupStatus, Run, RunStatus, init_db, make_engine

NIGHT = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


def _attempt(
    session: Session, run: Run, volume: str, status: DiskBackupStatus, at: datetime, **extra
) -> None:
    session.add(
        DiskBackup(
            run_id=run.id,
            plan_name=extra.pop("plan", "nightly"),
            slot_start=at.replace(hour=0),
            server_id="s",
            server_name="web-01",
            volume_id=volume,
            device="/dev/vdb",
            size_gb=10,
            is_system_disk=False,
            backup_name=f"b-{volume}-{at:%d}",
            status=status,
            requested_at=at,
            submitted_at=at,
            **extra,
        )
    )


def _run(session: Session, flow_run_id: str, at: datetime, target: str | None = None) -> Run:
    run = Run(
        flow_run_id=flow_run_id,
        plan_name="nightly",
        trigger="deployment",
        started_at=at,
        status=RunStatus.completed,
        target=target,
    )
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def test_a_child_s_disks_come_from_its_own_runs_with_the_oldest_good_backup_of_the_night(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'ledger.sqlite'}")
    init_db(engine)
    yesterday = NIGHT - timedelta(days=1)
    with Session(engine) as session:
        earlier = _run(session, "child-yesterday", yesterday)
        for volume in ("v1", "v2"):
            _attempt(session, earlier, volume, DiskBackupStatus.succeeded, yesterday)
        tonight = _run(session, "child-tonight", NIGHT, target="alpha")
        _attempt(session, tonight, "v1", DiskBackupStatus.succeeded, NIGHT)
        _attempt(session, tonight, "v2", DiskBackupStatus.failed, NIGHT, error_code="VolumeBackup.0064")
        _attempt(session, tonight, "v3", DiskBackupStatus.submitted, NIGHT)  # left open by a crash
        other = _run(session, "child-other", NIGHT, target="beta")  # another target's run: not counted
        _attempt(session, other, "v9", DiskBackupStatus.failed, NIGHT)
        session.commit()

        disks = target_disks(session, "child-tonight")
        # v1 good tonight; v2 failed (its newest good backup is yesterday's); v3 never had a good one.
        assert disks == TargetDisks(protected=1, failed=2, oldest_good=yesterday, never=1)
        assert target_disks(session, "no-such-run") == TargetDisks()


def test_the_verdict_names_each_failed_target_and_the_page_lists_every_one():
    ok = TargetResult(
        "alpha", "Completed", True, "plan nightly: 4 of 4 disks ok", "r1", TargetDisks(4, 0, NIGHT)
    )
    crashed = TargetResult(
        "beta",
        "Crashed",
        False,
        "no heartbeat for 10 min",
        "r2",
        TargetDisks(1, 3, NIGHT - timedelta(days=2), 3),
    )
    late = TargetResult(
        "gamma", "TimedOut", False, "not finished after 360 min: cancelled", "r3", TargetDisks(0, 2, None, 2)
    )
    results = [ok, crashed, late]

    line = estate_line("acme", results)
    assert line.startswith("estate acme: 1 of 3 targets ok, 5 of 10 disks protected; failed: ")
    assert "beta Crashed: no heartbeat for 10 min" in line and "gamma TimedOut: not finished" in line
    assert estate_line("acme", [ok]) == "estate acme: 1 of 1 targets ok, 4 of 4 disks protected"

    page = render("acme", results, now=NIGHT + timedelta(hours=1))
    assert page.startswith("# ❌ Estate acme: 1 of 3 targets ok")
    assert "- **beta** Crashed: no heartbeat for 10 min" in page
    assert "| ❌ | beta | Crashed | 1 of 4 | 3 | 2026-11-28 02:00 UTC (49 h ago) (3 never) | r2 |" in page
    assert "| ✅ | alpha | Completed | 4 of 4 | 0 | 2026-11-30 02:00 UTC (1 h ago) | r1 |" in page
    assert "| ❌ | gamma | TimedOut | 0 of 2 | 2 | never | r3 |" in page
    # Failures first in the table, as in the list.
    assert page.index("| beta |") < page.index("| alpha |")
    assert render("acme", [ok], now=NIGHT).startswith("# ✅ Estate acme: 1 of 1 targets ok")
