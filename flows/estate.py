"""The estate-wide night: one parent run, `estate-nightly`, starts one child run of the `estate-target`
deployment per target of the estate file and waits for them; each child backs up its target's plans with
the target's own credentials, on whichever worker of the work pool picks it up.

Each child is a first-class flow run (its own logs, artifacts, state and alert), started through Prefect's
deployments and work pool (a process pool, a worker per machine), not through anything home-made. The
parent ends Failed, naming every target that failed, crashed or timed out (and, through the children's
messages, their disks), and publishes one estate-wide summary artifact, `estate-summary`: targets x disks
protected, failed, oldest good backup, read from the ledger all children write to.

A target's account shares one API budget across every worker: the child takes a slot of the account's
Prefect global rate limit (`vbs-backup estate limits` creates them) for every request, on top of its own
process's rate limiter (tasks/budget.py).

A child that dies with its worker is marked Crashed by Prefect once its heartbeats stop (the automation
`vbs-backup alerts setup` creates, deployments/alerts.py); the parent reports it like any failure. The
next run of that target (the next night, or `targets: [name]` now) adopts the backups the dead child had
started: a backup's identity is its plan, volume and slot, which the cloud carries (backup/submit.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from prefect import flow, get_client, get_run_logger, runtime
from prefect.artifacts import acreate_markdown_artifact
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.flow_runs import arun_deployment
from prefect.states import Cancelling, Completed, Failed, State
from pydantic import Field
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from vbs_backup.clock import poll_until
from vbs_backup.estate import Estate, Target, UnknownTargetError, load_estate
from vbs_backup.estate_summary import TargetDisks, TargetResult, estate_line, render, target_disks
from vbs_backup.flows.failures import failing_cleanly
from vbs_backup.flows.hooks import ON_FAILURE
from vbs_backup.flows.names import estate_run_name, target_run_name
from vbs_backup.flows.pipeline import run_plan
from vbs_backup.settings import Settings
from vbs_backup.tasks.budget import shared_budget
from vbs_backup.tasks.estate import target_settings
from vbs_backup.tasks.runtime import Refusal, failure_line, ledger_engine, run_clock

__all__ = ["TARGET_DEPLOYMENT", "estate_nightly", "estate_target"]

# The child deployment (flow name / deployment name), as prefect.yaml and deployments/catalog.py name it.
TARGET_DEPLOYMENT = "estate-target/estate-target"
SUMMARY_KEY = "estate-summary"
POLL_SECONDS = 5.0  # how often the parent reads its children's states


def _artifact_prefix(target: Target, plan_name: str) -> str:
    """`<target>-<plan>` as an artifact key prefix (lowercase letters, digits and dashes only)."""
    return f"{target.name}-{plan_name}".lower().replace("_", "-")


@flow(name="estate-target", flow_run_name=target_run_name, log_prints=True, **ON_FAILURE)
async def estate_target(target: Target, estate: str = "estate") -> State:
    """Back up one target of an estate: each of its plans in turn, with the target's credentials block,
    within its account's shared API budget. Ends Failed, naming the plans and their failed disks, when any
    plan failed.

    Args:
        target: The target (cloud, region, project, credentials block, account, plans), as the estate
            file gives it; `estate-nightly` fills it in.
        estate: The estate's name, for the run's logs.
    """
    return await failing_cleanly(_estate_target(target, estate))


async def _estate_target(target: Target, estate: str) -> State:
    logger = get_run_logger()
    settings = target_settings(target)  # the block must sign in where the target says, before any request
    budget = await shared_budget(target.account)
    logger.info(
        "estate %s, target %s: %s %s project %s, %d plan(s), account %s",
        estate,
        target.name,
        target.cloud,
        target.region,
        target.project_id,
        len(target.plans),
        target.account,
    )
    states: list[tuple[str, State]] = []
    for plan in target.plans:  # one after the other: they share the account's budget anyway
        state = await failing_cleanly(
            run_plan(
                plan,
                flow_name=_artifact_prefix(target, plan.name),
                credentials=settings,
                target=target.name,
                budget=budget,
            )
        )
        states.append((plan.name, state))
    if budget is not None:  # what the account's budget let through, beside each plan's own rate report
        logger.info("shared API budget: %s", budget.describe())
    return _target_state(target, states)


def _target_state(target: Target, states: Sequence[tuple[str, State]]) -> State:
    def said(name: str, state: State) -> str:
        return f"plan {name}: {state.message or state.name}"

    failed = [said(name, state) for name, state in states if not state.is_completed()]
    if failed:
        return Failed(message=f"target {target.name}: " + "; ".join(failed))
    return Completed(message="; ".join(said(name, state) for name, state in states))


@flow(name="estate-nightly", flow_run_name=estate_run_name, **ON_FAILURE)
async def estate_nightly(
    estate: str = "estate.yaml",
    targets: list[str] | None = None,
    timeout_minutes: Annotated[float, Field(gt=0, le=24 * 60, title="Timeout (minutes)")] = 360,
) -> State:
    """Back up every target of the estate: one `estate-target` run per target on the work pool, waited
    for together. Ends Failed, naming each target that failed, crashed or timed out, when any did.

    Args:
        estate: The estate file (YAML), on the worker's machine; relative to the deployment's directory.
        targets: Only these targets (by name); empty: every target. To re-run one target after a failure.
        timeout_minutes: How long to wait for the children; a child still running then is cancelled and
            reported as timed out.
    """
    return await failing_cleanly(_estate_nightly(estate, targets or [], timeout_minutes))


async def _estate_nightly(path: str, names: list[str], timeout_minutes: float) -> State:
    logger = get_run_logger()
    estate = load_estate(path)
    try:
        chosen = estate.choose(names)
    except UnknownTargetError as exc:
        Refusal(failure_line(exc), invalid_input=True).throw()  # a typed name: InvalidInput if by hand
    logger.info("estate %s: %d target(s): %s", estate.name, len(chosen), ", ".join(t.name for t in chosen))
    started = {target.name: await _start(estate, target) for target in chosen}
    finals, late = await _wait(started, timeout_minutes * 60)
    results = await asyncio.to_thread(_results, chosen, finals, late, timeout_minutes)
    message = estate_line(estate.name, results)
    await acreate_markdown_artifact(
        key=SUMMARY_KEY,
        markdown=render(estate.name, results, now=run_clock().now()),
        description=message[:500],
    )
    if all(r.ok for r in results):
        logger.info(message)
        return Completed(message=message)
    logger.error(message)
    return Failed(message=message)


def _results(
    chosen: Sequence[Target], finals: dict[str, FlowRun], late: set[str], timeout_minutes: float
) -> list[TargetResult]:
    """Each target's child as it ended, with what it did to its disks (from the ledger all children write
    to; a ledger that cannot be read leaves the disks out, never the targets' states)."""
    try:
        engine = ledger_engine(Settings.from_environment())
        with Session(engine) as session:
            disks = {name: target_disks(session, str(run.id)) for name, run in finals.items()}
        engine.dispose()
    except SQLAlchemyError as exc:
        get_run_logger().error("cannot read the ledger for the summary's disks: %s", failure_line(exc))
        disks = {}
    results = []
    for target in chosen:
        run = finals[target.name]
        if target.name in late:
            state, message = "TimedOut", f"not finished after {timeout_minutes:g} min: cancelled"
        else:
            state, message = _state_name(run), (run.state.message or "") if run.state is not None else ""
        ok = target.name not in late and run.state is not None and run.state.is_completed()
        results.append(
            TargetResult(target.name, state, ok, message, str(run.id), disks.get(target.name, TargetDisks()))
        )
    return results


async def _start(estate: Estate, target: Target) -> FlowRun:
    """Start the target's child run (returns at once). The idempotency key makes a retried parent find
    the child it already started instead of starting a second one."""
    parent = runtime.flow_run.id
    run = await arun_deployment(
        TARGET_DEPLOYMENT,
        parameters={"target": target.model_dump(mode="json"), "estate": estate.name},
        timeout=0,
        tags=[f"target:{target.name}", f"account:{target.account}"],
        idempotency_key=f"{parent}:{target.name}" if parent else None,
    )
    get_run_logger().info("target %s: started %s (%s)", target.name, run.name, run.id)
    return run


async def _wait(started: dict[str, FlowRun], timeout: float) -> tuple[dict[str, FlowRun], set[str]]:
    """Every child's flow run as it ended, and the targets whose child was not final after `timeout`
    seconds: those are cancelled (and reported as timed out)."""
    logger = get_run_logger()
    runs = dict(started)
    async with get_client() as client:

        async def probe() -> dict[str, FlowRun]:
            for name, run in list(runs.items()):
                if not _final(run):
                    runs[name] = fresh = await client.read_flow_run(run.id)
                    if _final(fresh):
                        logger.info("target %s: %s", name, _state_name(fresh))
            return runs

        await poll_until(
            probe,
            lambda found: all(_final(r) for r in found.values()),
            timeout=timeout,
            interval=POLL_SECONDS,
            clock=run_clock(),
        )
        late = {name for name, run in runs.items() if not _final(run)}
        for name in sorted(late):
            logger.error(
                "target %s: still %s after %.0f min: cancelling it",
                name,
                _state_name(runs[name]),
                timeout / 60,
            )
            await client.set_flow_run_state(
                runs[name].id, Cancelling(message="the estate run stopped waiting for it"), force=True
            )
    return runs, late


def _final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


def _state_name(run: FlowRun) -> str:
    return (run.state.name or run.state.type.value.title()) if run.state is not None else "NotStarted"
