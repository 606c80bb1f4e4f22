"""Flow run names that say what the run does: `nightly 2026-11-30`, `backup db-01`,
`restore 4f0c… from 9a2b…`, instead of Prefect's random `psi204-galilei-instability`.

They show in the runs list, on the run page and in alert subjects. Each flow passes one of these as its
`flow_run_name`; Prefect calls it when the run starts, with the run's parameters in
`prefect.runtime.flow_run.parameters` (a deployment's run gets them as JSON, a direct call as objects).
A name never fails a run: anything unexpected falls back to the flow's own name and the date.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from prefect import runtime

from vbs_backup.tasks.runtime import run_clock

__all__ = [
    "drill_run_name",
    "estate_run_name",
    "estate_watchdog_run_name",
    "nightly_run_name",
    "policy_audit_run_name",
    "restore_run_name",
    "retention_run_name",
    "server_run_name",
    "share_run_name",
    "target_run_name",
    "watchdog_run_name",
]


def _parameters() -> Mapping[str, Any]:
    return runtime.flow_run.parameters or {}


def _plan_field(name: str, default: str | None = None) -> Any:
    plan = _parameters().get("plan")
    if plan is None:
        return default
    if isinstance(plan, Mapping):
        return plan.get(name, default)
    return getattr(plan, name, default)


def _now() -> datetime:
    """Now in the plan's schedule timezone (UTC without one), on the runs' clock (tests: the emulator's)."""
    now = run_clock().now()
    try:
        return now.astimezone(ZoneInfo(str(_plan_field("schedule_timezone") or "UTC")))
    except (ValueError, KeyError):
        return now.astimezone(UTC)


def _today() -> str:
    """The run's date in the plan's schedule timezone: the night it belongs to."""
    return _now().date().isoformat()


def _plan_suffix(usual: str = "nightly") -> str:
    """' <plan>' unless the plan is the usual one (its name would only repeat the run's kind)."""
    name = _plan_field("name")
    return f" {name}" if name and name != usual else ""


def _short(value: object) -> str:
    """An id cut to its first block (`4f0c1a2b…`), enough to tell runs apart in a list."""
    text = str(value)
    return f"{text[:8]}…" if len(text) > 12 else text


def _safe(build: Callable[[], str], fallback: str) -> Callable[[], str]:
    def name() -> str:
        try:
            return build()
        except Exception:
            return f"{fallback} {datetime.now(UTC).date().isoformat()}"

    name.__name__ = f"{fallback.replace(' ', '_')}_run_name"
    return name


nightly_run_name = _safe(lambda: f"nightly {_today()}{_plan_suffix()}", "nightly")
server_run_name = _safe(lambda: f"backup {_parameters().get('server')}", "backup")
retention_run_name = _safe(
    lambda: (
        f"retention{_plan_suffix('')}"
        + (" (dry run)" if _parameters().get("dry_run", True) else "")
        + f" {_today()}"
    ),
    "retention",
)
drill_run_name = _safe(lambda: f"drill {_today()}{_plan_suffix()}", "drill")
share_run_name = _safe(lambda: f"share {_today()}{_plan_suffix()}", "share")
# `estate 2026-11-30` (UTC: targets may be in several zones), `estate 2026-11-30 (db-eu, web-eu)` for some.
estate_run_name = _safe(
    lambda: (
        f"estate {run_clock().now().date().isoformat()}"
        + (f" ({', '.join(_parameters()['targets'])})" if _parameters().get("targets") else "")
    ),
    "estate",
)


# `estate watchdog 2026-11-30 03:30 UTC`, `... (alpha, beta)` when only some targets are watched.
estate_watchdog_run_name = _safe(
    lambda: (
        f"estate watchdog {run_clock().now().astimezone(UTC):%Y-%m-%d %H:%M} UTC"
        + (
            f" ({', '.join(str(t) for t in _parameters()['targets'])})"
            if _parameters().get("targets")
            else ""
        )
    ),
    "estate watchdog",
)


def _target() -> str:
    target = _parameters().get("target") or {}
    get = target.get if isinstance(target, Mapping) else lambda key: getattr(target, key, None)
    plans = get("plans") or []
    first = plans[0] if plans else {}
    zone = (
        first.get("schedule_timezone")
        if isinstance(first, Mapping)
        else getattr(first, "schedule_timezone", None)
    )
    return f"{get('name')} {run_clock().now().astimezone(ZoneInfo(str(zone or 'UTC'))).date().isoformat()}"


# `hwc-prod 2026-11-30`: the target and its night (in its first plan's zone).
target_run_name = _safe(_target, "target")
policy_audit_run_name = _safe(lambda: f"policy audit {_today()}", "policy audit")
# `watchdog nightly 2026-11-30 03:30 CET`: the plan watched and when (it runs hourly).
watchdog_run_name = _safe(
    lambda: f"watchdog {_plan_field('name') or 'nightly'} {_now():%Y-%m-%d %H:%M %Z}", "watchdog"
)


def _restore() -> str:
    params = _parameters()
    source = _short(params["backup_id"]) if params.get("backup_id") else "newest good backup"
    target = params.get("target_volume_id")
    onto = f" onto {_short(target)}" if target and target != params.get("volume_id") else ""
    dry = " (dry run)" if params.get("dry_run") else ""
    return f"restore {_short(params.get('volume_id'))} from {source}{onto}{dry}"


restore_run_name = _safe(_restore, "restore")
