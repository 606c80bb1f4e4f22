"""The watchdog over an estate (vbs_backup/estate.py): every plan of every target checked as the one-plan
watchdog checks it, each with its target's credentials and its target's runs in the one ledger they all
write to (plan names repeat across targets); and the result in one page and one message.

* `TargetWatch`: one target's plans as the watchdog found them (`view.PlanWatch` each), and its problems
  and warnings as lines prefixed with the target's name, which the run's message lists one per line.
* `render_estate`: the `estate-protection` page: the verdict, every problem and warning, a table of the
  targets, then each target's plans as the one-plan page shows them (`view.render_protection`), those
  with problems first.

Pure functions over plain data; no Prefect here (flows/estate_watchdog.py feeds them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .check import Finding, FindingKind
from .view import PlanWatch, _hours, _md, protection_mark

__all__ = [
    "ESTATE_ARTIFACT_KEY",
    "TargetWatch",
    "estate_message",
    "render_estate",
]

ESTATE_ARTIFACT_KEY = "estate-protection"

# Findings about one disk of a plan: when a target has several plans, their lines name the plan (the
# others name it already, "plan nightly: ...", or are the project's: its quotas).
_DISK_FINDINGS = frozenset({FindingKind.stale, FindingKind.never_backed_up})
_MARK_RANK = {"❌": 0, "⚠️": 1, "✅": 2}


@dataclass(frozen=True)
class TargetWatch:
    """One target of the estate as the watchdog found it: each of its plans, checked in its project."""

    target: str
    plans: Sequence[PlanWatch]

    @property
    def ok(self) -> bool:
        return all(p.report.ok for p in self.plans)

    @property
    def disks_checked(self) -> int:
        return sum(p.report.disks_checked for p in self.plans)

    def problems(self) -> list[str]:
        """Each problem on one line, prefixed with the target's name (a quota problem, which every plan of
        the project reports, once)."""
        return self._lines(lambda p: p.report.findings)

    def warnings(self) -> list[str]:
        return self._lines(lambda p: p.report.warnings)

    def _lines(self, findings_of) -> list[str]:
        several = len(self.plans) > 1
        lines: dict[str, None] = {}
        for plan in self.plans:
            for finding in findings_of(plan):
                lines[f"{self.target}: {_said(finding, plan.plan_name, several)}"] = None
        return list(lines)


def _said(finding: Finding, plan_name: str, several_plans: bool) -> str:
    if several_plans and finding.kind in _DISK_FINDINGS:
        return f"{finding.subject} (plan {plan_name}): {finding.detail}"
    return str(finding)


def estate_message(watches: Sequence[TargetWatch]) -> str:
    """The run's message: its verdict, then one line per problem and per warning, each prefixed with its
    target's name."""
    problems = [line for w in watches for line in w.problems()]
    warnings = [line for w in watches for line in w.warnings()]
    if problems:
        failing = sum(1 for w in watches if not w.ok)
        verdict = f"{len(problems)} protection problem(s) in {failing} of {len(watches)} target(s):"
        lines = [verdict, *problems]
    else:
        disks = sum(w.disks_checked for w in watches)
        lines = [f"all {disks} protected disks of {len(watches)} target(s) have a good backup within the RPO"]
    if warnings:
        lines += [f"{len(warnings)} warning(s):", *warnings]
    return "\n".join(lines)


def render_estate(estate: str, watches: Sequence[TargetWatch], *, rpo: timedelta, now: datetime) -> str:
    """The `estate-protection` page (markdown): the verdict, the problems and warnings, a table of the
    targets and their plans, then one section per target and plan, those with problems first."""
    sections = [(protection_mark(p.report), w.target, p) for w in watches for p in w.plans]
    ok = sum(1 for w in watches if w.ok)
    worst = min((mark for mark, _, _ in sections), key=_MARK_RANK.__getitem__, default="✅")
    lines = [
        f"# {worst} Estate {_md(estate)}: {ok} of {len(watches)} targets protected within the RPO "
        f"({_hours(rpo)})",
        "",
        f"Checked {now.astimezone(UTC):%Y-%m-%d %H:%M} UTC; each plan's section shows its times in the "
        "plan's schedule timezone.",
        "",
    ]
    problems = [line for w in watches for line in w.problems()]
    warnings = [line for w in watches for line in w.warnings()]
    if problems:
        lines += [f"## Problems ({len(problems)})", "", *[f"- ❌ {_md(line)}" for line in problems], ""]
    if warnings:
        lines += [f"## Warnings ({len(warnings)})", "", *[f"- ⚠️ {_md(line)}" for line in warnings], ""]
    lines += [
        "## Targets",
        "",
        "| | target | plan | disks within the RPO | problems | warnings |",
        "|---|---|---|---|---|---|",
    ]
    for mark, target, plan in sections:
        report = plan.report
        lines.append(
            f"| {mark} | {_md(target)} | {_md(plan.plan_name)} | {report.disks_ok} of {len(report.disks)} "
            f"| {len(report.findings)} | {len(report.warnings)} |"
        )
    # Problems first, then warnings, then the rest; in the estate's order within each (a stable sort).
    for _, target, plan in sorted(sections, key=lambda section: _MARK_RANK[section[0]]):
        lines += ["", plan.render(target=target).rstrip("\n")]
    return "\n".join(lines) + "\n"
