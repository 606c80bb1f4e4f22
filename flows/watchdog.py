"""The hourly watchdog flow: ends Failed, naming what is wrong, when a protected disk's newest good backup
is older than the RPO, when the plan's nightly run did not happen, or when a disk the plan protects has
never been backed up, or when a backup quota of the project is used up. Failing is the point: the alert
automations fire on it. A quota at or above 80 % is a warning: logged at WARNING, in the artifact and the
run's message, but the run stays Completed (nothing is unprotected yet).

The checks are `vbs_backup.watchdog.check`'s; here they are fed with the cloud's view of the plan (which
disks it protects today, and which backups of the plan those disks have) and the ledger's (its runs, and
what it recorded). The cloud decides how old a disk's newest good backup is; dead runs are marked on the way.
`watch_plans` is that path, for the plans of one project: this flow gives it one plan, the estate's watchdog
(flows/estate_watchdog.py) each plan of each target, with the ledger read scoped to the target's runs.

Each run publishes the protection view (`vbs_backup.watchdog.view`) as the markdown artifact `protection`,
from the flow itself, so that it hangs off the run and its newest version is the plan's current protection in
the UI's Artifacts page: the findings first, per disk its newest good backup, its age against the RPO and its
last attempt, and the last 14 nights at a glance. (It replaces the findings-only `backup-watchdog` artifact
of earlier versions: everything that one said is in it.)
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated, ParamSpec, TypeVar

from prefect import Task, flow, get_run_logger, task
from prefect.artifacts import acreate_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, Failed, State
from pydantic import Field
from sqlalchemy import Engine
from sqlmodel import Session

from vbs_backup.backup.targets import DiskTarget, SelectionError, discover_targets
from vbs_backup.cloud.errors import CloudError
from vbs_backup.cloud.models.backups import Quotas
from vbs_backup.flows.default_plan import DEFAULT
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import watchdog_run_name
from vbs_backup.flows.params import Credentials
from vbs_backup.ledger.history import slot_attempts
from vbs_backup.plan import BackupPlan
from vbs_backup.retention.prune import backups_by_volume
from vbs_backup.tasks.runtime import CloudContext, Refusal, open_cloud, run_clock
from vbs_backup.watchdog.check import WatchdogReport, check_protection, ledger_snapshot, newest_in_cloud
from vbs_backup.watchdog.view import (
    ARTIFACT_KEY,
    NIGHTLY_DEPLOYMENTS,
    NIGHTS,
    NightHistory,
    PlanWatch,
    night_columns,
    night_history,
    window_start,
)

# NIGHTLY_DEPLOYMENTS: the deployments whose runs count as "the nightly run happened" (plus runs outside any
# deployment, such as `vbs-backup run`), and paint the nights of the protection view. On-demand retention or
# one-server runs of the same plan do not.
__all__ = ["NIGHTLY_DEPLOYMENTS", "backup_watchdog", "watch_plans"]


InCloud = dict[str, tuple[str, datetime] | None]
P = ParamSpec("P")
R = TypeVar("R")


@task(name="discover-protected-disks", task_run_name="discover protected disks", cache_policy=NO_CACHE)
async def discover_protected_disks(
    cloud: CloudContext, plan: BackupPlan
) -> tuple[list[DiskTarget], InCloud] | Refusal:
    """Every disk the plan protects in the cloud right now, and each one's newest good backup of the plan;
    or, when the cloud cannot say (returned, not raised: no traceback for an outage), why not."""
    try:
        servers = await discover_targets(cloud.client, plan)
        disks = [d for s in servers for d in s.disks]
        listed = await backups_by_volume(cloud.client, [d.volume_id for d in disks])
    except (CloudError, SelectionError) as exc:
        return Refusal.of(exc)
    return disks, newest_in_cloud(plan.name, {d.volume_id: listed.get(d.volume_id, []) for d in disks})


@task(name="read-quotas", task_run_name="read quotas", cache_policy=NO_CACHE)
async def read_quotas(cloud: CloudContext) -> Quotas | Refusal:
    """The project's backup quotas; or (returned, not raised) why they cannot be read."""
    try:
        return await cloud.client.vbs.get_quotas()
    except CloudError as exc:
        return Refusal.of(exc)


@task(name="check-protection", task_run_name="check protection", cache_policy=NO_CACHE)
def check(
    engine: Engine,
    plan: BackupPlan,
    disks: list[DiskTarget] | None,
    in_cloud: InCloud | None,
    error: str | None,
    rpo_hours: float,
    quotas: Quotas | None,
    quota_error: str | None,
    now: datetime,
    target: str | None = None,
) -> WatchdogReport:
    """Compare the protected disks with what the cloud holds and the ledger recorded (the runs of
    `target`, in an estate); and the project's quotas with their limits."""
    snapshot = ledger_snapshot(
        engine, plan_name=plan.name, now=now, deployments=NIGHTLY_DEPLOYMENTS, target=target
    )
    return check_protection(
        plan_name=plan.name,
        disks=disks,
        snapshot=snapshot,
        rpo=timedelta(hours=rpo_hours),
        now=now,
        discovery_error=error,
        cloud=in_cloud,
        quotas=quotas,
        quota_error=quota_error,
    )


@task(name="read-nights", task_run_name=f"read the last {NIGHTS} nights", cache_policy=NO_CACHE)
def read_nights(engine: Engine, plan: BackupPlan, now: datetime, target: str | None = None) -> NightHistory:
    """What the plan's nightly runs (of `target`, in an estate) did for each disk over the last nights,
    from the ledger."""
    columns = night_columns(now, slot_minutes=plan.slot_minutes, timezone=plan.schedule_timezone)
    with Session(engine) as session:
        attempts = slot_attempts(
            session=session,
            plan_name=plan.name,
            since=window_start(columns, plan.schedule_timezone),
            target=target,
        )
    return night_history(attempts, columns, plan.schedule_timezone, nightly=NIGHTLY_DEPLOYMENTS)


async def watch_plans(
    cloud: CloudContext | None,
    engine: Engine,
    plans: Sequence[BackupPlan],
    rpo_hours: float,
    *,
    target: str | None = None,
    unreachable: str | None = None,
) -> list[PlanWatch]:
    """Check the protection of each plan of one project: the disks it protects there today and the backups
    they have (from `cloud`), against what the ledger recorded (the runs of the estate target `target`, or
    every run of the plan). The backup-watchdog flow watches one plan this way, the estate-watchdog each
    plan of each target.

    Without a cloud (`cloud` None: `unreachable` says why), or when the cloud cannot list a plan's disks,
    the disks the ledger knows are checked instead: a cloud outage must not hide stale backups."""
    quotas: Quotas | None = None
    quota_error: str | None = None
    found: list[tuple[list[DiskTarget], InCloud] | Refusal]
    if cloud is None:
        found = [Refusal(unreachable or "no cloud to ask")] * len(plans)
    else:
        found = [await _named(discover_protected_disks, target, plan)(cloud, plan) for plan in plans]
        read = await _named(read_quotas, target)(cloud)
        if isinstance(read, Refusal):
            quota_error = f"cannot read them: {read.message}"
        else:
            quotas = read
    now = (cloud.clock if cloud is not None else run_clock()).now()  # one moment: checks and view agree
    watches = []
    for plan, plan_found in zip(plans, found, strict=True):
        disks: list[DiskTarget] | None
        in_cloud: InCloud | None
        if isinstance(plan_found, Refusal):
            # Keep checking the ledger: a cloud outage must not hide stale backups.
            disks, in_cloud, error = None, None, f"cannot list the plan's disks: {plan_found.message}"
        else:
            (disks, in_cloud), error = plan_found, None
        report = _named(check, target, plan)(
            engine, plan, disks, in_cloud, error, rpo_hours, quotas, quota_error, now, target
        )
        nights = _named(read_nights, target, plan)(engine, plan, now, target)
        watches.append(
            PlanWatch(plan.name, plan.schedule_timezone, timedelta(hours=rpo_hours), now, report, nights)
        )
    return watches


def _named(step: Task[P, R], target: str | None, plan: BackupPlan | None = None) -> Task[P, R]:
    """`step` as it is (one plan), or with its runs named after the target and plan they work for (an
    estate: many runs of each task in one flow run)."""
    if target is None:
        return step
    about = target if plan is None else f"{target} {plan.name}"
    return step.with_options(task_run_name=f"{step.task_run_name} ({about})")


@flow(name="backup-watchdog", flow_run_name=watchdog_run_name, **ON_FAILURE)
async def backup_watchdog(
    plan: BackupPlan = DEFAULT,
    rpo_hours: Annotated[
        float,
        # Prefect titles top-level parameters with their name and describes them from the docstring.
        Field(gt=0, le=24 * 90, title="RPO (hours)"),
    ] = 26,
    credentials: Credentials = None,
) -> State:
    """Check that every disk of the plan has a good backup within the RPO and that the plan still runs.
    Ends Failed, naming each problem, when not.

    Args:
        plan: The plan to watch: the disks of its servers today, and its runs in the ledger.
        rpo_hours: Recovery point objective, in hours: the oldest a disk's newest good backup may be, and
            the longest time without a run of the plan.
        credentials: A saved VBS credentials block; empty: the worker's VBS_BACKUP_ environment.
    """
    return await failing_cleanly(_backup_watchdog(plan, rpo_hours, credentials))


async def _backup_watchdog(plan: BackupPlan, rpo_hours: float, credentials: Credentials) -> State:
    logger = get_run_logger()
    async with open_cloud(credentials) as cloud:
        [watch] = await watch_plans(cloud, cloud.engine, [plan], rpo_hours)
    report = watch.report
    message = report.message()
    for warning in report.warnings:
        logger.warning("watchdog warning: %s", warning)
    # In the flow's body, not in a task: the artifact belongs to the run (its Artifacts tab) and its key's
    # newest version is the plan's protection now (the UI's Artifacts page).
    await acreate_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=watch.render(),
        description=f"Protection of plan {plan.name}: {report.disks_ok} of {len(report.disks)} disks "
        f"within the RPO ({rpo_hours:g} h)",
    )
    if report.ok:
        logger.info(message)
        return Completed(message=message)
    logger.error(message)
    return Failed(message=message)
