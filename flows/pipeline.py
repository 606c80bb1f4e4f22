"""The steps every backup flow shares, in order: discover, back up, apply retention, publish, judge.

No HTTP and no SQL here: each step is a task. A task given the whole fleet's disks, listings or outcomes
gets them `quote`d: Prefect would otherwise walk every element of every argument to track inputs, which
at 10,000 disks stalled the run for minutes (bench/nightly_fleet.py).

The run ends Failed, with a message naming the failed disks, when any disk failed or timed out, so that
alert automations fire; partial success is never green.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prefect import get_run_logger
from prefect.states import Completed, Failed, State
from prefect.utilities.annotations import quote
from sqlmodel import Session

from vbs_backup.backup.submit import DiskOutcome
from vbs_backup.backup.targets import ServerTarget
from vbs_backup.cloud.models.backups import Backup
from vbs_backup.cloud.ratelimit import RequestBudget
from vbs_backup.flows.params import Credentials
from vbs_backup.ledger import RunStatus, finish_run
from vbs_backup.plan import BackupPlan
from vbs_backup.retention.prune import PruneResult
from vbs_backup.settings import Settings
from vbs_backup.tasks.backup import ServerWave, back_up_disk, confirm, outcome_of, reconcile
from vbs_backup.tasks.discovery import discover_servers
from vbs_backup.tasks.progress import RunProgress
from vbs_backup.tasks.quota import check_quota
from vbs_backup.tasks.report import publish_summary
from vbs_backup.tasks.retention import apply_server_retention, list_backups
from vbs_backup.tasks.runtime import RunContext, open_run, unwrap


async def back_up(
    ctx: RunContext, servers: Sequence[ServerTarget], listed: dict[str, list[Backup]]
) -> list[DiskOutcome]:
    """Every disk of every server; biggest disks (the longest jobs) first, so the makespan is shortest.
    `listed`: each disk's backups in the cloud before the run, where a backup of this slot is adopted."""

    async def one_server(server: ServerTarget) -> list[DiskOutcome]:
        async with ctx.servers_in_flight:
            disks = sorted(server.disks, key=lambda d: -d.size_gb)
            size = ctx.plan.max_concurrent_jobs
            outcomes: list[DiskOutcome] = []
            for wave_disks in (disks[i : i + size] for i in range(0, len(disks), size)):
                async with ServerWave(ctx, len(wave_disks)) as wave:
                    # Prefect's types make an async task called with return_state=True a State, not the
                    # awaitable it is at run time (mypy, here and where a task's arguments are quote()d).
                    states = await asyncio.gather(  # type: ignore[call-overload]
                        *(
                            back_up_disk(
                                ctx, d, listed.get(d.volume_id, []), wave.member(), return_state=True
                            )
                            for d in wave_disks
                        )
                    )
                outcomes += [await outcome_of(state) for state in states]
            return outcomes

    ordered = sorted(servers, key=lambda s: -max((d.size_gb for d in s.disks), default=0))
    per_server = await asyncio.gather(*(one_server(s) for s in ordered))
    return [outcome for outcomes in per_server for outcome in outcomes]


async def prune(
    ctx: RunContext, servers: Sequence[ServerTarget], backups: dict[str, list[Backup]]
) -> list[PruneResult]:
    if not any(s.disks for s in servers):
        return []
    # Each task gets only its own disks' backups: Prefect walks every task argument to record its inputs,
    # and handing the whole fleet's listing to every server's task stalled the loop for minutes (bench).
    per_server = await asyncio.gather(
        *(
            apply_server_retention(ctx, s, {d.volume_id: backups.get(d.volume_id, []) for d in s.disks})
            for s in servers
            if s.disks
        )
    )
    return [result for results in per_server for result in results]


async def run_plan(
    plan: BackupPlan,
    *,
    flow_name: str,
    back_up_disks: bool = True,
    credentials: Credentials | Settings = None,
    one_server: str | None = None,
    target: str | None = None,
    budget: RequestBudget | None = None,
) -> State:
    """Run one plan end to end and return the flow's final state. `one_server`: the server name or id a
    person typed (backup-server), which must name exactly one server. `target` and `budget`: the estate
    target this plan runs for and its account's shared API budget (flows/estate.py)."""
    logger = get_run_logger()
    async with open_run(plan, credentials=credentials, target=target, budget=budget) as ctx:
        # an expected failure: raised, run Failed
        servers = unwrap(await discover_servers(ctx, one_server))
        disks = [d for s in servers for d in s.disks]
        logger.info("%d servers, %d disks selected (slot %s)", len(servers), len(disks), plan.local(ctx.slot))
        # The cloud is the truth: what exists before the run settles earlier attempts and is adopted; what
        # exists after it decides which disks are protected and what retention sees.
        before = await list_backups(ctx, disks) if disks else {}
        ctx.waiter.note_listing(b for found in before.values() for b in found)
        if disks and back_up_disks and not plan.dry_run:
            # A night beyond the project's quotas is refused whole here, before any create (tasks/quota.py).
            unwrap(await check_quota(ctx, quote(disks), quote(before)))  # type: ignore[call-overload]
        if not plan.dry_run:
            await reconcile(ctx, quote(before))  # type: ignore[call-overload]
        outcomes: list[DiskOutcome] = []
        if back_up_disks and not plan.dry_run:
            ctx.progress = RunProgress(
                len(disks), key=f"{flow_name}-progress", timezone=plan.schedule_timezone
            )
            await ctx.progress.start()
            try:
                outcomes = await back_up(ctx, servers, before)
            finally:
                await ctx.progress.stop()
        after = await list_backups(ctx, disks) if disks else {}
        outcomes = await confirm(ctx, quote(outcomes), quote(after)) if outcomes else outcomes  # type: ignore[call-overload]
        prunes = await prune(ctx, servers, after)
        line = await publish_summary(flow_name, outcomes, prunes)  # on the flow run itself
        failed = [o for o in outcomes if not o.ok]
        delete_failures = [f for p in prunes for f in p.delete_failures]
        status = RunStatus.failed if failed or delete_failures else RunStatus.completed
        with Session(ctx.engine) as session:
            finish_run(session=session, run_id=ctx.run_id, status=status, message=line)
        logger.info(line)
        rates = ctx.client.session.rate_report()
        if rates is not None:  # what the gateway really let through, for the operator and the benchmark
            logger.info("cloud API: %s", rates.describe())
        if failed or delete_failures:
            return Failed(message=line)
        return Completed(message=line)
