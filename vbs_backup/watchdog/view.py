"""The protection view: what the watchdog publishes, each hour, as the Prefect markdown artifact `protection`,
the first page an operator opens at 3 a.m. Pure functions over plain data; no Prefect here.

It shows, for the plan:

* a headline, "n of N disks protected within the RPO (26 h)", then the problems (the watchdog's findings, in
  its words, with the failed attempt's reason) and warnings;
* per disk: the newest good backup (the cloud's, as judged by `vbs_backup.watchdog.check.check_protection`:
  the same facts as the findings), its age against the RPO, and the last attempt (when, how it ended, its
  error code and reason, and which kind of run made it when that was not the nightly one). Disks not OK first;
* the last 14 nights, disks x nights, oldest on the left and newest on the right: a night is the local date
  (in the plan's timezone) of a schedule slot, and its cell says what the plan's nightly runs did for that
  slot (ok / failed / still running / no attempt). On-demand runs do not paint nights (see
  `night_history`).

All times are shown in the plan's `schedule_timezone`, with the zone named.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from ..identity import DAY_MINUTES, slot_start
from ..ledger.history import SlotAttempt
from ..ledger.tables import DiskBackupStatus
from ..text import one_line
from .check import DiskProtection, WatchdogReport, human_age

__all__ = [
    "ARTIFACT_KEY",
    "GLYPHS",
    "NIGHTLY_DEPLOYMENTS",
    "NIGHTS",
    "Night",
    "NightHistory",
    "PlanWatch",
    "night_columns",
    "night_history",
    "protection_mark",
    "render_protection",
    "run_kind",
    "window_start",
]

ARTIFACT_KEY = "protection"
NIGHTS = 14
# At most this many disks get a row in each table (problems first); a 10,000-disk fleet's page stays
# readable and small, and says how many more disks were left out and how many of those are not OK.
MAX_ROWS = 200
MAX_REASON = 160

Clock = Callable[[datetime | None], str]  # a moment as the page shows it: local time, zone named


class Night(StrEnum):
    ok = "ok"  # an attempt for the slot succeeded (or adopted the slot's backup)
    failed = "failed"  # attempts ended, none well: failed, timed out, abandoned
    unfinished = "unfinished"  # an attempt is still running (or its run died and nobody settled it yet)
    missing = "missing"  # no run attempted the disk for that slot


GLYPHS = {Night.ok: "✅", Night.failed: "❌", Night.unfinished: "⏳", Night.missing: "·"}
LEGEND = "Legend: ✅ backed up — ❌ failed (failed, timed out or abandoned) — ⏳ still running — · no attempt"

# The deployments whose runs are the plan's nightly runs (with runs outside any deployment): an estate's
# nightly runs each target's plans in a run of `estate-target` (flows/estate.py), which estate-nightly starts.
NIGHTLY_DEPLOYMENTS = frozenset({"nightly-backup", "estate-target"})

# How each kind of run of a plan reads (Run.deployment, as tasks.runtime records it).
_KINDS = {
    "nightly-backup": "nightly",
    "estate-target": "nightly",  # always started by estate-nightly's run (or a person's re-run of it)
    "backup-server": "on demand: backup-server",
    "apply-retention": "retention",
}


def run_kind(deployment: str | None, trigger: str | None) -> str:
    """What kind of run of a plan a ledger run was: `nightly` (the scheduled nightly-backup deployment;
    `nightly, started by hand` for a run of it started from the UI or API), `on demand: backup-server`,
    `retention` (apply-retention), `direct` (outside any deployment: `vbs-backup run`, a script)."""
    if deployment is None:
        return "direct" if trigger in (None, "", "direct") else f"direct ({trigger})"
    kind = _KINDS.get(deployment, f"deployment {deployment}")
    if deployment == "nightly-backup" and trigger == "deployment":
        return "nightly, started by hand"
    return kind


# ---------------------------------------------------------------------------------------------- nights


def night_columns(now: datetime, *, slot_minutes: int, timezone: str, count: int = NIGHTS) -> list[date]:
    """The nights shown, oldest first, ending with the night of the slot containing `now`: consecutive
    local dates (one per slot of whole days when the slot is longer than a day)."""
    zone = ZoneInfo(timezone)
    current = slot_start(now, slot_minutes, timezone).astimezone(zone).date()
    step = max(1, slot_minutes // DAY_MINUTES)
    return [current - timedelta(days=step * i) for i in reversed(range(count))]


def window_start(columns: Sequence[date], timezone: str) -> datetime:
    """The earliest slot start (aware) that can fall on one of `columns`: the oldest night's local midnight
    (a day earlier, to be safe around DST; `night_history` keeps only the columns' nights)."""
    zone = ZoneInfo(timezone)
    return datetime.combine(columns[0] - timedelta(days=1), time(0), tzinfo=zone)


@dataclass(frozen=True)
class NightHistory:
    """Per volume, what each night's attempts did; and its newest attempt in the window."""

    columns: list[date]  # oldest first
    cells: dict[str, dict[date, Night]] = field(default_factory=dict)
    last: dict[str, SlotAttempt] = field(default_factory=dict)

    def cell(self, volume_id: str, night: date) -> Night:
        return self.cells.get(volume_id, {}).get(night, Night.missing)


_NIGHT_OF_STATUS = {
    DiskBackupStatus.succeeded: Night.ok,
    DiskBackupStatus.adopted: Night.ok,
    DiskBackupStatus.failed: Night.failed,
    DiskBackupStatus.timed_out: Night.failed,
    DiskBackupStatus.abandoned: Night.failed,
}


def night_history(
    attempts: Iterable[SlotAttempt],
    columns: Sequence[date],
    timezone: str,
    *,
    nightly: Collection[str] = NIGHTLY_DEPLOYMENTS,
) -> NightHistory:
    """Fold the plan's attempts (oldest request first, as `ledger.history.slot_attempts` returns them)
    into one cell per volume and night. Only the nightly runs' attempts make the picture (runs of the
    `nightly` deployments, or outside any deployment: `vbs-backup run`); an on-demand backup (backup-server,
    in a slot of its own) does not make a failed night look done, but it is the disk's last attempt and may
    be its newest good backup."""
    zone = ZoneInfo(timezone)
    shown = set(columns)
    history = NightHistory(columns=list(columns))
    for attempt in attempts:
        history.last[attempt.volume_id] = attempt
        if attempt.deployment is not None and attempt.deployment not in nightly:
            continue
        night = attempt.slot_start.astimezone(zone).date()
        if night not in shown:
            continue
        # The night's newest attempt decides: a retry that succeeded makes it green, and a good backup
        # that vanished and could not be made again leaves it red.
        history.cells.setdefault(attempt.volume_id, {})[night] = _NIGHT_OF_STATUS.get(
            attempt.status, Night.unfinished
        )
    return history


# ---------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class PlanWatch:
    """One plan as the watchdog checked it (its findings and disks, its nights), with the moment and the
    RPO it was judged at: everything its protection page shows."""

    plan_name: str
    timezone: str  # the plan's schedule timezone: the page's times and nights are in it
    rpo: timedelta
    now: datetime
    report: WatchdogReport
    nights: NightHistory

    def render(self, *, target: str | None = None) -> str:
        """The plan's protection page (`render_protection`); titled with `target` in an estate's page."""
        return render_protection(
            self.report,
            self.nights,
            plan_name=self.plan_name,
            timezone=self.timezone,
            rpo=self.rpo,
            now=self.now,
            target=target,
        )


def protection_mark(report: WatchdogReport) -> str:
    """The page's verdict: ❌ a problem; ⚠️ a warning, or a disk still within the RPO whose last attempt
    failed (the next one to become a problem); ✅ all well."""
    if not report.ok:
        return "❌"
    shown = sorted(report.disks, key=_severity)[:MAX_ROWS]
    slipping = any(d.finding is None and _last_failed(d) for d in shown)
    return "⚠️" if report.warnings or slipping else "✅"


def render_protection(
    report: WatchdogReport,
    history: NightHistory,
    *,
    plan_name: str,
    timezone: str,
    rpo: timedelta,
    now: datetime,
    target: str | None = None,
) -> str:
    """The artifact's markdown: headline, problems, the per-disk table, the nights grid. With `target`
    (an estate's page, one section per target and plan), the headline names the target too."""
    zone = ZoneInfo(timezone)

    def at(moment: datetime | None) -> str:  # Clock
        return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if moment is not None else "never"

    def cell_at(moment: datetime | None) -> str:  # Clock: in the tables, whose zone the text above names
        return moment.astimezone(zone).strftime("%m-%d %H:%M") if moment is not None else "never"

    rpo_text = _hours(rpo)
    total, ok = len(report.disks), report.disks_ok
    ordered = sorted(report.disks, key=_severity)
    # Disks still within the RPO whose last attempt failed: not a problem yet, the next one to become one.
    slipping = [d for d in ordered[:MAX_ROWS] if d.finding is None and _last_failed(d)]
    subject = f"Plan {_md(plan_name)}" if target is None else f"Target {_md(target)}, plan {_md(plan_name)}"
    mark = protection_mark(report)
    lines = [
        f"## {mark} {subject}: {ok} of {total} disks protected within the RPO ({rpo_text})",
        "",
        f"Checked {at(now)}; times in {timezone}. {_last_run_line(report, at)}",
        "",
    ]

    disk_problems = {d.finding for d in report.disks if d.finding is not None}
    plan_problems = [f for f in report.findings if f not in disk_problems]
    if report.findings:
        lines += [f"### Problems ({len(report.findings)})", ""]
        for finding in plan_problems:
            lines.append(f"- ❌ **{_md(finding.subject)}**: {_md(finding.detail)}")
        for disk in ordered[:MAX_ROWS]:
            if disk.finding is not None:
                reason = _failure_reason(disk, history)
                tail = f" — {_md(reason)}" if reason else ""
                lines.append(f"- ❌ **{_md(disk.label)}**: {_md(disk.finding.detail)}{tail}")
        hidden = sum(1 for d in ordered[MAX_ROWS:] if d.finding is not None)
        if hidden:
            lines.append(f"- … and {hidden:,} more disks not protected (not listed)")
        lines.append("")
    if report.warnings or slipping:
        lines += [f"### Warnings ({len(report.warnings) + len(slipping)})", ""]
        for disk in slipping:
            lines.append(f"- ⚠️ **{_md(disk.label)}**: {_slipping(disk, history, now, rpo, at)}")
        lines += [f"- ⚠️ **{_md(w.subject)}**: {_md(w.detail)}" for w in report.warnings]
        lines.append("")

    lines += [
        f"### Disks ({total - ok} not OK, listed first)" if ok < total else f"### Disks ({total})",
        "",
        "| | server | device | volume | newest good backup | age (RPO " + rpo_text + ") | last attempt |",
        "|---|---|---|---|---|---|---|",
    ]
    for disk in ordered[:MAX_ROWS]:
        lines.append(
            "| "
            + " | ".join(
                [
                    _disk_mark(disk),
                    _md(disk.server_name or "?"),
                    _md(disk.device or "?"),
                    f"`{_short(disk.volume_id)}`",
                    _newest_cell(disk, cell_at),
                    _age_cell(disk, now, rpo, rpo_text),
                    _last_attempt_cell(disk, history, cell_at),
                ]
            )
            + " |"
        )
    lines += _more_rows(ordered)

    columns = history.columns
    if columns:
        lines += [
            "",
            f"### Last {len(columns)} nights "
            f"({columns[0]:%Y-%m-%d} to {columns[-1]:%a %Y-%m-%d}, newest right)",
            "",
            f"{LEGEND}. A night is the date of the plan's schedule slot in {timezone}; a column, its day.",
            "",
            # Day numbers only, so that the newest nights fit on the page beside the disk's name.
            "| disk | " + " | ".join(f"{night:%d}" for night in columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for disk in ordered[:MAX_ROWS]:
            cells = [GLYPHS[history.cell(disk.volume_id, night)] for night in columns]
            lines.append(f"| {_md(disk.label)} | " + " | ".join(cells) + " |")
        lines += _more_rows(ordered)
    return "\n".join(lines) + "\n"


def _severity(disk: DiskProtection) -> tuple[int, str]:
    """Not protected first (never backed up or gone, then stale), then OK disks whose last attempt failed,
    then the rest; by label within each."""
    if disk.finding is not None:
        rank = 1 if disk.newest_good_at is not None else 0
    else:
        rank = 2 if _last_failed(disk) else 3
    return rank, disk.label


def _last_failed(disk: DiskProtection) -> bool:
    p = disk.protection
    return p is not None and p.last_attempt_status not in DiskBackupStatus.successes()


def _disk_mark(disk: DiskProtection) -> str:
    if disk.finding is not None:
        return "❌"
    return "⚠️" if _last_failed(disk) else "✅"


def _newest_cell(disk: DiskProtection, at: Clock) -> str:
    p = disk.protection
    if p is not None and p.newest_success_at is None and p.newest_success_backup_id:
        return f"**gone** (`{_short(p.newest_success_backup_id)}` not in the cloud)"
    if disk.newest_good_at is None:
        return "**never**"
    return at(disk.newest_good_at)


def _age_cell(disk: DiskProtection, now: datetime, rpo: timedelta, rpo_text: str) -> str:
    good = disk.newest_good_at
    if good is None:
        return "**no good backup**"
    age = max(now - good, timedelta(0))  # a cloud clock ahead of ours reads as "just made"
    if age > rpo:
        return f"**{human_age(age)} — OVER RPO**"
    return f"{human_age(age)} ok"  # the column's heading says the RPO


def _last_attempt_cell(disk: DiskProtection, history: NightHistory, at: Clock) -> str:
    p = disk.protection
    if p is None:
        return "none yet"
    text = f"{at(p.last_attempt_at)} {p.last_attempt_status.value}"
    failed = p.last_attempt_status not in DiskBackupStatus.successes()
    if failed and p.last_error_code:
        text += f" {p.last_error_code}"
    # (its reason is in the Problems and Warnings above: the table stays narrow enough to read)
    attempt = _matching_attempt(disk, history)
    if (
        attempt is not None
        and attempt.deployment is not None
        and attempt.deployment not in NIGHTLY_DEPLOYMENTS
    ):
        text += f" ({run_kind(attempt.deployment, attempt.trigger)})"  # not a nightly run's
    return _md(text)


def _matching_attempt(disk: DiskProtection, history: NightHistory) -> SlotAttempt | None:
    """The window's newest attempt on the disk, when it is the last attempt the ledger reports."""
    attempt = history.last.get(disk.volume_id)
    p = disk.protection
    if attempt is None or p is None or attempt.requested_at != p.last_attempt_at:
        return None
    return attempt


def _failure_reason(disk: DiskProtection, history: NightHistory) -> str | None:
    """The last attempt's error reason when it failed (the finding already names its status and code)."""
    attempt = _matching_attempt(disk, history)
    if attempt is None or not _last_failed(disk) or not attempt.error_reason:
        return None
    return one_line(attempt.error_reason, MAX_REASON)


def _slipping(disk: DiskProtection, history: NightHistory, now: datetime, rpo: timedelta, at: Clock) -> str:
    p = disk.protection
    assert p is not None and disk.newest_good_at is not None
    code = f" {p.last_error_code}" if p.last_error_code else ""
    reason = _failure_reason(disk, history)
    age = now - disk.newest_good_at
    return _md(
        f"last attempt {p.last_attempt_status.value}{code} ({at(p.last_attempt_at)}); newest good backup "
        f"{human_age(age)} old, over the RPO in {human_age(rpo - age)}" + (f" — {reason}" if reason else "")
    )


def _last_run_line(report: WatchdogReport, at: Clock) -> str:
    run = report.last_run
    if run is None:
        return "No nightly run of the plan recorded yet."
    kind = run_kind(run.deployment, run.trigger)
    counts = f", {run.disks_succeeded} of {run.disks_total} disks ok" if run.finished_at else ""
    return f"Last nightly run: {at(run.started_at)} ({kind}), {run.status.value}{counts}."


def _more_rows(ordered: Sequence[DiskProtection]) -> list[str]:
    rest = ordered[MAX_ROWS:]
    if not rest:
        return []
    bad = sum(1 for d in rest if d.finding is not None)
    return ["", f"… and {len(rest):,} more disks not shown ({bad:,} of them not protected)."]


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


def _short(volume_id: str) -> str:
    return volume_id if len(volume_id) <= 13 else volume_id[:8] + "…"


def _md(text: str) -> str:
    """Plain text safe in a markdown table cell or list item: one line, no table breaks, no emphasis."""
    text = " ".join(str(text).split())
    for char in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        text = text.replace(char, "\\" + char)
    return text
