"""The hourly watchdog over an estate (vbs_backup/estate.py): every plan of every target checked as
`backup-watchdog` checks one plan (flows/watchdog.py's `watch_plans`: the same tasks, the same checks), each
target in its own project with its own credentials block, and against its own runs in the ledger all targets
write to (plan names repeat across targets: another target's `nightly` never counts for this one's).

It ends Failed, naming every problem on a line of its own prefixed with its target's name, when any target
has one; Completed otherwise (warnings, such as a quota at 80 %, are listed but do not fail it). A target
whose credentials block is missing or signs in somewhere else, or whose cloud cannot be reached or refuses
the credentials, is a problem of that target alone: its plans are checked against the ledger's disks (a
cloud outage must not hide stale backups), and the other targets are checked as usual.

Each run publishes one markdown artifact, `estate-protection` (`vbs_backup.watchdog.estate`): the verdict,
every problem and warning, a table of the targets, then each target's plans as the one-plan watchdog's
`protection` page shows them, those with problems first.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Annotated

from prefect import flow, get_run_logger
from prefect.artifacts import acreate_markdown_artifact
from prefect.states import Completed, Failed, State
from pydantic import Field

from vbs_backup.estate import Estate, EstateError, Target, UnknownTargetError, load_estate
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import estate_watchdog_run_name
from vbs_backup.flows.watchdog import watch_plans
from vbs_backup.settings import ConfigError, Settings
from vbs_backup.tasks.estate import target_settings
from vbs_backup.tasks.runtime import CloudContext, Refusal, failure_line, ledger_engine, open_cloud, run_clock
from vbs_backup.watchdog.estate import (
    ESTATE_ARTIFACT_KEY,
    TargetWatch,
    estate_message,
    render_estate,
)
from vbs_backup.watchdog.view import PlanWatch

__all__ = ["estate_watchdog"]


@flow(name="estate-watchdog", flow_run_name=estate_watchdog_run_name, **ON_FAILURE)
async def estate_watchdog(
    estate: str,
    targets: list[str] | None = None,
    rpo_hours: Annotated[float, Field(gt=0, le=24 * 90, title="RPO (hours)")] = 26,
) -> State:
    """Check that every disk of every plan of every target of the estate has a good backup within the RPO,
    and that each plan still runs. Ends Failed, naming each problem (one line each, prefixed with its
    target's name), when not.

    Args:
        estate: The estate file (YAML) on the worker's machine: its targets, their credentials blocks and
            their plans.
        targets: Only these targets, by name; empty: every target of the estate.
        rpo_hours: Recovery point objective, in hours: the oldest a disk's newest good backup may be, and
            the longest time without a run of a plan.
    """
    try:
        loaded = load_estate(estate)
    except EstateError as exc:
        return Failed(message=str(exc))  # its problems one per line (failing_cleanly would join them)
    return await failing_cleanly(_estate_watchdog(loaded, targets or [], rpo_hours))


async def _estate_watchdog(estate: Estate, names: list[str], rpo_hours: float) -> State:
    logger = get_run_logger()
    try:
        chosen = estate.choose(names)
    except UnknownTargetError as exc:
        Refusal(failure_line(exc), invalid_input=True).throw()  # a typed name: InvalidInput if by hand
    watches = []
    for target in chosen:  # one after the other: a target's plans share its project's requests anyway
        watch = TargetWatch(target.name, await _watch_target(target, rpo_hours))
        logger.info("target %s: %s", target.name, "ok" if watch.ok else f"{len(watch.problems())} problem(s)")
        watches.append(watch)
    message = estate_message(watches)
    for warning in (line for w in watches for line in w.warnings()):
        logger.warning("watchdog warning: %s", warning)
    ok = sum(1 for w in watches if w.ok)
    # In the flow's body, not in a task: the artifact belongs to the run, and its key's newest version is
    # the estate's protection now (the UI's Artifacts page).
    await acreate_markdown_artifact(
        key=ESTATE_ARTIFACT_KEY,
        markdown=render_estate(estate.name, watches, rpo=timedelta(hours=rpo_hours), now=run_clock().now()),
        description=f"Protection of estate {estate.name}: {ok} of {len(watches)} targets within the RPO "
        f"({rpo_hours:g} h)",
    )
    if all(w.ok for w in watches):
        logger.info(message)
        return Completed(message=message)
    logger.error(message)
    return Failed(message=message)


async def _watch_target(target: Target, rpo_hours: float) -> list[PlanWatch]:
    """Each plan of `target` checked in its project; when its credentials cannot be used (no such block,
    or one for another project), against the ledger alone, that failure being each plan's problem."""
    async with AsyncExitStack() as stack:
        cloud: CloudContext | None = None
        unreachable: str | None = None
        try:
            cloud = await stack.enter_async_context(open_cloud(target_settings(target)))
        except ConfigError as exc:
            unreachable = failure_line(exc)
        # One ledger for every target (the worker's: a block's settings carry the environment's ledger URL);
        # each target's engine is let go once its plans are checked.
        engine = cloud.engine if cloud is not None else ledger_engine(Settings.from_environment())
        stack.callback(engine.dispose)
        return await watch_plans(
            cloud, engine, target.plans, rpo_hours, target=target.name, unreachable=unreachable
        )
