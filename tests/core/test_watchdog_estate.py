"""The estate watchdog's core as pure functions: which targets, each problem's line, the run's message and
the `estate-protection` page (the flow against the emulator is in tests/flows/test_estate_watchdog.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tests.factories import disk
from vbs_backup.cloud.models.backups import Quotas
from vbs_backup.estate import validate_estate
from vbs_backup.ledger import DiskBackupStatus, Run, RunStatus, VolumeProtection
from vbs_backup.watchdog.check import LedgerSnapshot, check_protection
from vbs_backup.watchdog.estate import (
    TargetWatch,
    estate_message,
    render_estate,
)
from vbs_backup.watchdog.view import NIGHTLY_DEPLOYMENTS, NightHistory, PlanWatch, night_columns, run_kind

NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
RPO = timedelta(hours=26)
WEB = disk("web-01", "/dev/vdb", "v-web")
DB = disk("db-01", "/dev/vdb", "v-db")
FULL = Quotas.model_validate({"resources": [{"type": "backups", "used": 100, "quota": 100}]})
PROJECTS = {"alpha": "0123456789abcdef0123456789abcdef", "beta": "fedcba9876543210fedcba9876543210"}


def estate_of(*names: str):
    plan = {"name": "nightly", "selection": {"tags": {"backup": "nightly"}}}
    return validate_estate(
        {
            "name": "acme",
            "targets": [
                {
                    "name": name,
                    "cloud": "huaweicloud",
                    "region": "eu-west-0",
                    "project_id": PROJECTS[name],
                    "credentials": f"{name}-creds",
                    "plans": [plan],
                }
                for name in names
            ],
        }
    )


def watch(plan_name: str, *, stale: bool = False, quotas: Quotas | None = None) -> PlanWatch:
    """A plan checked now: web-01 fresh, db-01 fresh or stale; its last run 3 h ago."""
    good = {WEB.volume_id: 3.0, DB.volume_id: 30.0 if stale else 3.0}
    protections = [
        VolumeProtection(
            volume_id=d.volume_id,
            volume_name=None,
            server_id=d.server_id,
            server_name=d.server_name,
            device=d.device,
            newest_success_at=NOW - timedelta(hours=good[d.volume_id]),
            newest_success_backup_id="b-" + d.volume_id,
            age=None,
            last_attempt_status=DiskBackupStatus.succeeded,
            last_attempt_at=NOW - timedelta(hours=3),
            last_error_code=None,
        )
        for d in (WEB, DB)
    ]
    run = Run(plan_name=plan_name, trigger="scheduled", started_at=NOW - timedelta(hours=3))
    run.status = RunStatus.completed
    report = check_protection(
        plan_name=plan_name,
        disks=[WEB, DB],
        snapshot=LedgerSnapshot(protections=protections, last_run=run),
        rpo=RPO,
        now=NOW,
        quotas=quotas,
    )
    columns = night_columns(NOW, slot_minutes=1440, timezone="UTC")
    return PlanWatch(plan_name, "UTC", RPO, NOW, report, NightHistory(columns=columns))


def test_each_problem_is_a_line_prefixed_with_its_target():
    watches = [TargetWatch("alpha", [watch("nightly")]), TargetWatch("beta", [watch("nightly", stale=True)])]

    assert watches[0].ok and not watches[1].ok
    assert watches[0].problems() == []
    assert watches[1].problems() == ["beta: db-01 /dev/vdb: newest good backup is 30.0 h old (RPO 26.0 h)"]
    assert estate_message(watches) == (
        "1 protection problem(s) in 1 of 2 target(s):\n"
        "beta: db-01 /dev/vdb: newest good backup is 30.0 h old (RPO 26.0 h)"
    )
    assert estate_message(watches[:1]) == (
        "all 2 protected disks of 1 target(s) have a good backup within the RPO"
    )


def test_with_several_plans_a_disk_line_names_its_plan_and_a_project_quota_is_said_once():
    beta = TargetWatch(
        "beta", [watch("nightly", stale=True, quotas=FULL), watch("db", stale=True, quotas=FULL)]
    )

    assert beta.problems() == [
        "beta: db-01 /dev/vdb (plan nightly): newest good backup is 30.0 h old (RPO 26.0 h)",
        "beta: quota backups: 100 % used (100 of 100 backups): the next night cannot back up",
        "beta: db-01 /dev/vdb (plan db): newest good backup is 30.0 h old (RPO 26.0 h)",
    ]


def test_warnings_are_listed_but_do_not_fail():
    nearly = Quotas.model_validate({"resources": [{"type": "backups", "used": 85, "quota": 100}]})
    alpha = TargetWatch("alpha", [watch("nightly", quotas=nearly)])

    assert alpha.ok
    assert estate_message([alpha]) == (
        "all 2 protected disks of 1 target(s) have a good backup within the RPO\n"
        "1 warning(s):\n"
        "alpha: quota backups: 85 % used (85 of 100 backups)"
    )


def test_the_page_puts_the_targets_with_problems_first_each_as_the_plan_page_shows_it():
    watches = [TargetWatch("alpha", [watch("nightly")]), TargetWatch("beta", [watch("nightly", stale=True)])]

    page = render_estate("acme", watches, rpo=RPO, now=NOW)

    assert page.startswith(
        "# ❌ Estate acme: 1 of 2 targets protected within the RPO (26 h)\n\nChecked 2026-11-30 10:00 UTC; "
    )
    problems = page.split("## Problems (1)\n\n", 1)[1].split("\n\n", 1)[0]
    assert problems == "- ❌ beta: db-01 /dev/vdb: newest good backup is 30.0 h old (RPO 26.0 h)"
    table = page.split("## Targets\n\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[2:] == [
        "| ✅ | alpha | nightly | 2 of 2 | 0 | 0 |",
        "| ❌ | beta | nightly | 1 of 2 | 1 | 0 |",
    ]
    sections = re.findall(r"^## (\S+) Target (\w+), plan (\w+): (.*)$", page, re.MULTILINE)
    assert sections == [
        ("❌", "beta", "nightly", "1 of 2 disks protected within the RPO (26 h)"),
        ("✅", "alpha", "nightly", "2 of 2 disks protected within the RPO (26 h)"),
    ]
    # each section is the one-plan page, whole (its disks table, its nights)
    assert page.count("### Disks") == 2 and page.count("### Last 14 nights") == 2

    healthy = render_estate("acme", watches[:1], rpo=RPO, now=NOW)
    assert healthy.startswith("# ✅ Estate acme: 1 of 1 targets protected within the RPO (26 h)\n")
    assert "## Problems" not in healthy


def test_an_estates_target_runs_are_its_plans_nightly_runs():
    # estate-nightly starts one estate-target run per target (flows/estate.py): those are the nights
    assert "estate-target" in NIGHTLY_DEPLOYMENTS
    assert run_kind("estate-target", "deployment") == "nightly"
