"""The watchdog: its checks as pure functions, then the flow against the emulator and a real ledger."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from tests.factories import disk
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.flows.nightly import nightly_backup
from vbs_backup.flows.watchdog import backup_watchdog
from vbs_backup.ledger import DiskBackupStatus, Run, RunStatus, VolumeProtection
from vbs_backup.plan import BackupPlan
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


# ---------------------------------------------------------------------------------------------- the flow

DB_01 = "990f449e-b54d-4554-b65d-0d8dedb27e13"


def plan(**overrides) -> BackupPlan:
    data = {"selection": {"tags": {"backup": "nightly"}}, "poll_interval_seconds": 30}
    data.update(overrides)
    return BackupPlan.model_validate(data)


async def test_the_watchdog_is_green_after_a_good_night(cloud_env, virtual_time, ledger):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_completed(), state.message
    assert state.message == "all 5 protected disks have a good backup within the RPO"


async def test_a_day_without_a_run_fails_naming_every_stale_disk_and_the_missed_run(
    cloud_env, virtual_time, ledger
):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    cloud_env.state.clock.advance(27 * 3600)  # the next night's run never happened

    state = await backup_watchdog(plan(), rpo_hours=26, return_state=True)

    assert state.is_failed()
    assert "plan nightly: no run started in the last 26.0 h" in state.message
    for label in ("web-01 /dev/vda", "web-01 /dev/vdb", "db-01 /dev/vda", "db-01 /dev/vdb", "db-01 /dev/vdc"):
        # 27 h and the few virtual minutes the night's job polling took
        assert re.search(rf"{label}: newest good backup is 27\.\d h old \(RPO 26\.0 h\)", state.message)


async def test_a_disk_that_no_run_has_backed_up_fails_the_watchdog(cloud_env, virtual_time, ledger):
    # Last night's plan left db-01 out; today's plan protects it.
    assert (
        await nightly_backup(plan(selection={"name_patterns": ["web-*"]}), return_state=True)
    ).is_completed()

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    for device in ("/dev/vda", "/dev/vdb", "/dev/vdc"):
        assert f"db-01 {device}: never backed up (no run has attempted it yet)" in state.message
    assert "web-01" not in state.message


async def test_a_cloud_outage_is_reported_and_the_ledger_is_still_checked(cloud_env, virtual_time, ledger):
    assert (await nightly_backup(plan(), return_state=True)).is_completed()
    cloud_env.control(
        "POST", "/faults", json={"operation": "*", "kind": "error", "status": 403, "code": "APIGW.0301"}
    ).raise_for_status()
    cloud_env.state.clock.advance(27 * 3600)

    state = await backup_watchdog(plan(), return_state=True)

    assert state.is_failed()
    assert "plan nightly: cannot list the plan's disks" in state.message
    assert re.search(r"db-01 /dev/vdb: newest good backup is 27\.\d h old", state.message)  # the ledger's
