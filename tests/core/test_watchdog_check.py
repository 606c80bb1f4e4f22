"""The watchdog's checks as pure functions, no Prefect flow run (the flow against the emulator is in
tests/flows/test_watchdog.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import disk
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.ledger import DiskBackupStatus, Run, RunStatus, VolumeProtection
from vbs_backup.watchdog.check import FindingKind, LedgerSnapshot, check_protection, human_age

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
RPO = timedelta(hours=26)


def protected(
    d: DiskTarget,
    *,
    good_hours_ago: float | None,
    last: DiskBackupStatus = DiskBackupStatus.succeeded,
    code: str | None = None,
) -> VolumeProtection:
    good_at = NOW - timedelta(hours=good_hours_ago) if good_hours_ago is not None else None
    return VolumeProtection(
        volume_id=d.volume_id,
        volume_name=d.volume_name,
        server_id=d.server_id,
        server_name=d.server_name,
        device=d.device,
        newest_success_at=good_at,
        newest_success_backup_id="b-1" if good_at else None,
        age=(NOW - good_at) if good_at else None,
        last_attempt_status=last,
        last_attempt_at=NOW - timedelta(hours=2),
        last_error_code=code,
    )


def run(hours_ago: float, status: RunStatus = RunStatus.completed) -> Run:
    return Run(
        plan_name="nightly", trigger="scheduled", started_at=NOW - timedelta(hours=hours_ago), status=status
    )


WEB_A, WEB_B, DB_A = (
    disk("web-01", "/dev/vda", "v1"),
    disk("web-01", "/dev/vdb", "v2"),
    disk("db-01", "/dev/vdb", "v3"),
)


def check(disks, protections, last_run, **kwargs):
    return check_protection(
        plan_name="nightly",
        disks=disks,
        snapshot=LedgerSnapshot(protections=protections, last_run=last_run),
        rpo=RPO,
        now=NOW,
        **kwargs,
    )


def test_every_disk_fresh_and_a_recent_run_is_ok():
    report = check(
        [WEB_A, WEB_B], [protected(WEB_A, good_hours_ago=10), protected(WEB_B, good_hours_ago=25.9)], run(10)
    )
    assert report.ok and report.disks_checked == 2
    assert report.message() == "all 2 protected disks have a good backup within the RPO"


def test_a_disk_older_than_the_rpo_is_stale_and_named_with_its_last_failure():
    report = check(
        [WEB_A, DB_A],
        [
            protected(WEB_A, good_hours_ago=3),
            protected(DB_A, good_hours_ago=50, last=DiskBackupStatus.failed, code="VolumeBackup.0064"),
        ],
        run(3),
    )
    [finding] = report.findings
    assert finding.kind is FindingKind.stale
    assert str(finding) == (
        "db-01 /dev/vdb: newest good backup is 2 d 2 h old (RPO 26.0 h); "
        "last attempt failed VolumeBackup.0064"
    )
    assert "db-01 /dev/vdb" in report.message()


def test_no_run_within_the_rpo_is_a_missed_run_even_when_backups_are_fresh():
    report = check([WEB_A], [protected(WEB_A, good_hours_ago=20)], run(27, RunStatus.failed))
    [finding] = report.findings
    assert finding.kind is FindingKind.missed_run
    assert finding.detail == "no run started in the last 26.0 h (the last one started 27.0 h ago, failed)"


def test_a_plan_that_never_ran_and_disks_never_backed_up_are_all_named():
    report = check(
        [WEB_A, DB_A],
        [protected(DB_A, good_hours_ago=None, last=DiskBackupStatus.failed, code="VolumeBackup.0064")],
        None,
    )
    assert [(f.kind, f.subject) for f in report.findings] == [
        (FindingKind.missed_run, "plan nightly"),
        (FindingKind.never_backed_up, "db-01 /dev/vdb"),
        (FindingKind.never_backed_up, "web-01 /dev/vda"),
    ]
    details = {f.subject: f.detail for f in report.findings}
    assert details["web-01 /dev/vda"] == "never backed up (no run has attempted it yet)"
    assert details["db-01 /dev/vdb"] == "no good backup yet; last attempt failed VolumeBackup.0064"


def test_when_discovery_fails_the_ledger_disks_are_still_checked():
    report = check(
        None,
        [protected(WEB_A, good_hours_ago=2), protected(DB_A, good_hours_ago=40)],
        run(2),
        discovery_error="cannot list the plan's disks: 503",
    )
    assert [(f.kind, f.subject) for f in report.findings] == [
        (FindingKind.discovery_failed, "plan nightly"),
        (FindingKind.stale, "db-01 /dev/vdb"),
    ]
    assert report.disks_checked == 2


def test_the_rpo_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        check_protection(
            plan_name="nightly", disks=[], snapshot=LedgerSnapshot([], None), rpo=timedelta(0), now=NOW
        )


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(minutes=90), "1.5 h"),
        (timedelta(hours=47.9), "47.9 h"),
        (timedelta(days=3, hours=5), "3 d 5 h"),
    ],
)
def test_ages_are_short(delta, text):
    assert human_age(delta) == text
