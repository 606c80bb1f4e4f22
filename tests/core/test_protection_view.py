"""The protection view (the watchdog's `protection` artifact) as a pure function: what an operator must read
in it, from a known history."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import disk
from vbs_backup.backup.targets import DiskTarget
from vbs_backup.identity import slot_start
from vbs_backup.ledger import DiskBackupStatus, Run, RunStatus, VolumeProtection
from vbs_backup.ledger.history import SlotAttempt
from vbs_backup.watchdog import view as protection_view
from vbs_backup.watchdog.check import LedgerSnapshot, check_protection
from vbs_backup.watchdog.view import (
    Night,
    night_columns,
    night_history,
    render_protection,
    run_kind,
    window_start,
)

PARIS = "Europe/Paris"
ZONE = ZoneInfo(PARIS)
NOW = datetime(2026, 11, 30, 3, 30, tzinfo=ZONE).astimezone(UTC)  # the 3 a.m. look, Paris time
RPO = timedelta(hours=26)
REASON = "CreateBackup Task-fail: fsp cinder return backup status is error."
FAILED_NIGHT = date(2026, 11, 24)


WEB_A = disk("web-01", "/dev/vda", "6a1c3a02-7e4b-4a43-9e0b-2f1d7c2b9a10")
WEB_B = disk("web-01", "/dev/vdb", "5c1f2a3b-6d7e-4f80-a192-b3c4d5e6f708")
DB_B = disk("db-01", "/dev/vdb", "799600d6-5263-432d-84cf-6130bcb70380")
DB_C = disk("db-01", "/dev/vdc", "a26eae5c-ba50-45e5-bfa5-43f8f6bf95af")


def slot_of(night: date) -> datetime:
    return slot_start(datetime(night.year, night.month, night.day, 12, tzinfo=ZONE), 1440, PARIS)


def attempt(
    d: DiskTarget,
    night: date,
    status: DiskBackupStatus,
    *,
    deployment: str | None = "nightly-backup",
    at_hour: int = 2,
) -> SlotAttempt:
    failed = status not in DiskBackupStatus.successes()
    return SlotAttempt(
        volume_id=d.volume_id,
        slot_start=slot_of(night),
        requested_at=datetime(night.year, night.month, night.day, at_hour, 1, tzinfo=ZONE).astimezone(UTC),
        status=status,
        error_code="VolumeBackup.0064" if failed else None,
        error_reason=REASON if failed else None,
        deployment=deployment,
        trigger="scheduled" if deployment == "nightly-backup" else "deployment",
    )


NIGHTS_SHOWN = [date(2026, 11, 17) + timedelta(days=i) for i in range(14)]


def history_of_the_fleet() -> list[SlotAttempt]:
    """web-01's disks every night (web-01 /dev/vdb failed on the 24th), db-01 /dev/vdb failing for the last
    two nights after being fine, db-01 /dev/vdc backed up only until the 27th."""
    rows = []
    for night in NIGHTS_SHOWN:
        rows.append(attempt(WEB_A, night, DiskBackupStatus.succeeded))
        ok_b = DiskBackupStatus.failed if night == FAILED_NIGHT else DiskBackupStatus.succeeded
        rows.append(attempt(WEB_B, night, ok_b))
        if night <= date(2026, 11, 27):
            rows.append(attempt(DB_C, night, DiskBackupStatus.succeeded))
        rows.append(
            attempt(
                DB_B,
                night,
                DiskBackupStatus.failed if night >= date(2026, 11, 29) else DiskBackupStatus.adopted,
            )
        )
    return sorted(rows, key=lambda a: a.requested_at)


def protection_from(rows: list[SlotAttempt], d: DiskTarget) -> VolumeProtection:
    """What the ledger's protection_status says for the disk, given these attempts."""
    mine = [r for r in rows if r.volume_id == d.volume_id]
    last = mine[-1]
    good = [r for r in mine if r.status in DiskBackupStatus.successes()]
    return VolumeProtection(
        volume_id=d.volume_id,
        volume_name=None,
        server_id=d.server_id,
        server_name=d.server_name,
        device=d.device,
        newest_success_at=good[-1].requested_at if good else None,
        newest_success_backup_id="b-" + d.volume_id[:4] if good else None,
        age=None,
        last_attempt_status=last.status,
        last_attempt_at=last.requested_at,
        last_error_code=last.error_code,
    )


def render(rows=None, *, cloud=None, disks=(WEB_A, WEB_B, DB_B, DB_C), last_run=None) -> str:
    rows = history_of_the_fleet() if rows is None else rows
    protections = [protection_from(rows, d) for d in disks if any(r.volume_id == d.volume_id for r in rows)]
    if cloud is None:  # the cloud holds what the ledger says
        cloud = {p.volume_id: (p.newest_success_backup_id, p.newest_success_at) for p in protections}
        cloud = {v: (None if at is None else (b, at)) for v, (b, at) in cloud.items()}
    report = check_protection(
        plan_name="nightly",
        disks=list(disks),
        snapshot=LedgerSnapshot(protections=protections, last_run=last_run),
        rpo=RPO,
        now=NOW,
        cloud=cloud,
    )
    columns = night_columns(NOW, slot_minutes=1440, timezone=PARIS)
    history = night_history(rows, columns, PARIS)
    return render_protection(report, history, plan_name="nightly", timezone=PARIS, rpo=RPO, now=NOW)


def table(text: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table under the heading starting with `heading`."""
    section = text.split(f"### {heading}", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_the_headline_counts_the_disks_within_the_rpo():
    text = render()
    assert text.splitlines()[0] == "## ❌ Plan nightly: 2 of 4 disks protected within the RPO (26 h)"


def test_problems_come_first_with_their_reason():
    text = render()
    problems = text.split("### Problems", 1)[1].split("###", 1)[0]
    assert text.index("### Problems") < text.index("### Disks") < text.index("### Last 14 nights")
    lines = [line for line in problems.splitlines() if line.startswith("- ")]
    assert len(lines) == 3
    assert lines[0] == "- ❌ **plan nightly**: no nightly run of this plan recorded yet"  # the plan's first
    assert lines[1].startswith("- ❌ **db-01 /dev/vdb**: newest good backup is 2 d 1 h old (RPO 26.0 h); ")
    assert "last attempt failed VolumeBackup.0064" in lines[1] and REASON in lines[1]
    assert lines[2].startswith("- ❌ **db-01 /dev/vdc**: newest good backup is 3 d 1 h old")
    assert REASON not in lines[2]  # its last attempt succeeded: there is no failure to explain


def test_the_disk_table_lists_failures_first_with_local_times_and_age_against_the_rpo():
    rows = table(render(), "Disks")
    assert rows[0] == [
        "",
        "server",
        "device",
        "volume",
        "newest good backup",
        "age (RPO 26 h)",
        "last attempt",
    ]
    body = rows[2:]
    assert [(r[0], r[1], r[2]) for r in body] == [
        ("❌", "db-01", "/dev/vdb"),  # stale, last attempts failing
        ("❌", "db-01", "/dev/vdc"),  # stale, nothing tried since the 27th
        ("✅", "web-01", "/dev/vda"),
        ("✅", "web-01", "/dev/vdb"),
    ]
    db_b = body[0]
    assert db_b[3] == "`799600d6…`"
    assert db_b[4] == "11-28 02:01"  # Paris time (the zone is named above the table)
    assert db_b[5] == "**2 d 1 h — OVER RPO**"
    assert db_b[6] == "11-30 02:01 failed VolumeBackup.0064"  # its reason is in the Problems list
    web_a = body[2]
    assert (web_a[4], web_a[5], web_a[6]) == (
        "11-30 02:01",
        "1.5 h ok",
        "11-30 02:01 succeeded",
    )


def test_the_nights_grid_has_14_nights_newest_right_and_the_right_glyphs():
    text = render()
    assert "### Last 14 nights (2026-11-17 to Mon 2026-11-30, newest right)" in text
    assert "✅ backed up — ❌ failed" in text and "· no attempt" in text and "Europe/Paris" in text
    rows = table(text, "Last 14 nights")
    assert rows[0] == ["disk", *(f"{d:%d}" for d in NIGHTS_SHOWN)]
    assert len(rows[0]) == 1 + 14
    grid = {r[0]: "".join(r[1:]) for r in rows[2:]}
    assert list(grid) == ["db-01 /dev/vdb", "db-01 /dev/vdc", "web-01 /dev/vda", "web-01 /dev/vdb"]
    assert grid["web-01 /dev/vda"] == "✅" * 14
    assert grid["web-01 /dev/vdb"] == "✅" * 7 + "❌" + "✅" * 6  # the 24th, 8th of 14
    assert grid["db-01 /dev/vdb"] == "✅" * 12 + "❌" * 2
    assert grid["db-01 /dev/vdc"] == "✅" * 11 + "·" * 3


def test_a_good_night_reads_green_and_names_the_last_nightly_run():
    rows = [a for a in history_of_the_fleet() if a.volume_id == WEB_A.volume_id]
    run = Run(
        plan_name="nightly",
        trigger="scheduled",
        deployment="nightly-backup",
        started_at=datetime(2026, 11, 30, 2, 0, tzinfo=ZONE).astimezone(UTC),
        finished_at=datetime(2026, 11, 30, 2, 9, tzinfo=ZONE).astimezone(UTC),
        status=RunStatus.completed,
        disks_total=1,
        disks_succeeded=1,
    )
    text = render(rows, disks=(WEB_A,), last_run=run)
    assert text.splitlines()[0] == "## ✅ Plan nightly: 1 of 1 disks protected within the RPO (26 h)"
    assert "### Problems" not in text
    assert "Last nightly run: 2026-11-30 02:00 CET (nightly), completed, 1 of 1 disks ok." in text
    assert "Checked 2026-11-30 03:30 CET; times in Europe/Paris." in text


def test_a_disk_never_backed_up_and_a_backup_gone_from_the_cloud_say_so():
    rows = [a for a in history_of_the_fleet() if a.volume_id != WEB_B.volume_id]
    gone = {WEB_A.volume_id: None}  # the cloud lost web-01 /dev/vda's backups; the ledger remembers
    keep = {DB_B.volume_id, DB_C.volume_id}
    cloud = {
        p.volume_id: (p.newest_success_backup_id, p.newest_success_at)
        for p in (protection_from(rows, d) for d in (DB_B, DB_C))
    }
    text = render(rows, cloud={**gone, **{v: cloud[v] for v in keep}})
    body = {r[1] + " " + r[2]: r for r in table(text, "Disks")[2:]}
    assert body["web-01 /dev/vdb"][4] == "**never**" and body["web-01 /dev/vdb"][6] == "none yet"
    assert body["web-01 /dev/vda"][4].startswith("**gone**")
    assert "- ❌ **web-01 /dev/vdb**: never backed up (no run has attempted it yet)" in text
    # the not-protected-at-all come before the stale ones
    assert list(body)[:2] == ["web-01 /dev/vda", "web-01 /dev/vdb"]


def test_an_on_demand_backup_does_not_paint_a_failed_night_and_is_named_as_such():
    night = NIGHTS_SHOWN[-1]
    rows = [
        attempt(WEB_A, night, DiskBackupStatus.failed),
        attempt(WEB_A, night, DiskBackupStatus.succeeded, deployment="backup-server", at_hour=9),
    ]
    now_rows = [r for r in rows]
    text = render(now_rows, disks=(WEB_A,))
    grid = table(text, "Last 14 nights")[2:]
    assert grid[0][-1] == "❌"  # the nightly failed that night, whatever happened by hand later
    disks = table(text, "Disks")[2:]
    assert disks[0][6] == "11-30 09:01 succeeded (on demand: backup-server)"


def test_retries_in_one_night_count_once_the_best_outcome():
    night = NIGHTS_SHOWN[-1]
    rows = [
        attempt(WEB_A, night, DiskBackupStatus.failed),
        attempt(WEB_A, night, DiskBackupStatus.succeeded, at_hour=3),
        attempt(WEB_B, night, DiskBackupStatus.running),
    ]
    history = night_history(rows, NIGHTS_SHOWN, PARIS)
    assert history.cell(WEB_A.volume_id, night) is Night.ok
    assert history.cell(WEB_B.volume_id, night) is Night.unfinished
    assert history.cell(DB_B.volume_id, night) is Night.missing


def test_nights_are_the_plans_local_slot_dates_across_a_dst_change():
    # Europe/Paris leaves summer time on 2026-10-25: slots still start at local midnight.
    now = datetime(2026, 10, 26, 1, 0, tzinfo=ZONE)
    columns = night_columns(now, slot_minutes=1440, timezone=PARIS)
    assert columns[0] == date(2026, 10, 13) and columns[-1] == date(2026, 10, 26) and len(columns) == 14
    assert window_start(columns, PARIS) <= slot_of(date(2026, 10, 13))
    rows = [attempt(WEB_A, d, DiskBackupStatus.succeeded) for d in (date(2026, 10, 25), date(2026, 10, 26))]
    history = night_history(rows, columns, PARIS)
    assert [history.cell(WEB_A.volume_id, d) for d in columns[-3:]] == [Night.missing, Night.ok, Night.ok]


def test_weekly_slots_show_weeks():
    columns = night_columns(NOW, slot_minutes=7 * 1440, timezone=PARIS)
    assert columns[-1] == date(2026, 11, 30) and columns[-2] == date(2026, 11, 23)  # ISO weeks: Mondays


@pytest.mark.parametrize(
    ("deployment", "trigger", "kind"),
    [
        ("nightly-backup", "scheduled", "nightly"),
        ("nightly-backup", "deployment", "nightly, started by hand"),
        ("backup-server", "deployment", "on demand: backup-server"),
        ("apply-retention", "deployment", "retention"),
        (None, "direct", "direct"),
        (None, "cli", "direct (cli)"),
        ("restore-drill", "scheduled", "deployment restore-drill"),
    ],
)
def test_run_kinds(deployment, trigger, kind):
    assert run_kind(deployment, trigger) == kind


def test_reasons_cannot_break_the_tables():
    night = NIGHTS_SHOWN[-1]
    bad = attempt(WEB_A, night, DiskBackupStatus.failed)
    bad = SlotAttempt(**{**{f: getattr(bad, f) for f in bad.__slots__}, "error_reason": "a | b\nc *d*"})
    text = render([bad], disks=(WEB_A,))
    row = table(text, "Disks")[2]
    assert len(row) == 7 and "- ❌ **web-01 /dev/vda**: " in text and text.count("a \\| b c \\*d\\*") == 1


def test_a_big_fleet_lists_its_problems_and_counts_the_rest(monkeypatch):
    monkeypatch.setattr(protection_view, "MAX_ROWS", 2)
    text = render()
    assert len(table(text, "Disks")) == 2 + 2
    assert "… and 2 more disks not shown (0 of them not protected)." in text


def test_a_disk_whose_last_night_failed_but_still_within_the_rpo_is_flagged_first_among_the_ok():
    rows = [a for a in history_of_the_fleet() if a.volume_id in (WEB_A.volume_id, WEB_B.volume_id)]
    rows = [
        attempt(WEB_B, a.slot_start.astimezone(ZONE).date(), DiskBackupStatus.failed)
        if a.volume_id == WEB_B.volume_id and a.slot_start == slot_of(NIGHTS_SHOWN[-1])
        else a
        for a in rows
    ]
    text = render(rows, disks=(WEB_A, WEB_B))
    assert text.splitlines()[0].endswith("2 of 2 disks protected within the RPO (26 h)")
    assert "### Problems" in text  # only the plan's (no nightly run recorded in this made-up ledger)
    assert (
        "- ⚠️ **web-01 /dev/vdb**: last attempt failed VolumeBackup.0064 (2026-11-30 02:01 CET); "
        f"newest good backup 25.5 h old, over the RPO in 0.5 h — {REASON}"
    ) in text
    body = table(text, "Disks")[2:]
    assert [(r[0], r[1] + " " + r[2]) for r in body] == [("⚠️", "web-01 /dev/vdb"), ("✅", "web-01 /dev/vda")]
    grid = table(text, "Last 14 nights")[2:]
    assert grid[0][0] == "web-01 /dev/vdb" and grid[0][-1] == "❌" and grid[0][-2] == "✅"
