"""`vbs-backup policies ...`: native VBS backup policies as code. Every command but `audit` talks to the
cloud alone, without Prefect; `audit` runs the `policy-audit` flow once.

    vbs-backup policies plan    --file policies.yaml [--nightly-plan plan.yaml] [--prune]
    vbs-backup policies apply   --file policies.yaml [--nightly-plan plan.yaml] [--prune]
    vbs-backup policies import  --file policies.yaml [--force]
    vbs-backup policies execute NAME [--wait] [--timeout S] [--interval S]
    vbs-backup policies list    [--tag key=value ...] [--name TEXT] [--count]
    vbs-backup policies tags
    vbs-backup policies audit   [--since-hours 24]

Exit codes: 0 done (or nothing to do), 1 the cloud refused something (`audit`: the flow failed), 2 bad
input found before any change (file, unknown disk or server, settings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from vbs_backup.deployments.cli.running import run_flow

if TYPE_CHECKING:  # pragma: no cover
    from vbs_backup.cloud import CloudClient
    from vbs_backup.policies import Inventory, PolicyPlan

__all__ = ["policies_app"]

policies_app = typer.Typer(
    name="policies",
    help="Native VBS backup policies as code: plan, apply, import, execute, list.",
    no_args_is_help=True,
)

T = TypeVar("T")

FileOption = Annotated[Path, typer.Option("--file", dir_okay=False, help="Policy YAML file.")]
NightlyOption = Annotated[
    Path | None,
    typer.Option("--nightly-plan", exists=True, dir_okay=False, help="Warn about disks also in this plan."),
]
PruneOption = Annotated[bool, typer.Option("--prune", help="Delete cloud policies the file does not name.")]


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code)


def _client() -> CloudClient:
    from vbs_backup.connection import connect
    from vbs_backup.settings import ConfigError, Settings

    try:
        return connect(Settings())
    except ConfigError as exc:
        raise _fail(str(exc)) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one command's cloud work; a cloud error is one line and exit 1, bad input exit 2."""
    from vbs_backup.backup.targets import SelectionError
    from vbs_backup.cloud.errors import CloudError
    from vbs_backup.policies import PolicyFileError
    from vbs_backup.policies.audit import PolicyNotFoundError

    try:
        return asyncio.run(coro)
    except (PolicyFileError, PolicyNotFoundError, SelectionError) as exc:
        raise _fail(str(exc)) from None
    except CloudError as exc:
        raise _fail(str(exc), 1) from None


async def _plan(client: CloudClient, file: Path, nightly_plan: Path | None, prune: bool):
    from vbs_backup.backup.targets import discover_targets
    from vbs_backup.plan import load_plan
    from vbs_backup.policies import (
        load_policy_file,
        make_plan,
        read_cloud,
        read_inventory,
        resolve_members,
    )

    policies = load_policy_file(file)  # every file problem is found before the cloud is asked anything
    nightly = load_plan(nightly_plan) if nightly_plan else None
    inventory = await read_inventory(client)
    members = resolve_members(policies, inventory, source=str(file))
    cloud = await read_cloud(client, inventory)
    nightly_disks: dict[str, str] = {}
    if nightly is not None:
        nightly_disks = {
            d.volume_id: f"{d.label} ({d.volume_name})"
            for s in await discover_targets(client, nightly)
            for d in s.disks
        }
    return make_plan(policies, members, cloud, inventory, prune=prune, nightly=nightly_disks), inventory


def _print_plan(plan: PolicyPlan, file: Path) -> None:
    typer.echo(f"Policies in {file} against the cloud:")
    for change in plan.changes:
        typer.echo(f"  {change}")
    for name in plan.unmanaged:
        typer.echo(f"  = {name}: in the cloud, not in the file (kept; --prune deletes it)")
    for warning in plan.warnings:
        typer.echo(f"  ! warning: {warning}")
    for error in plan.errors:
        typer.echo(f"  x error: {error}")
    count = len(plan.changes)
    typer.echo(f"{count} change(s)." if count else "No changes: the cloud matches the file.")


def _load_inputs(file: Path, nightly_plan: Path | None) -> None:
    from vbs_backup.plan import PlanError, load_plan
    from vbs_backup.policies import PolicyFileError, load_policy_file

    try:
        load_policy_file(file)
        if nightly_plan is not None:
            load_plan(nightly_plan)
    except (PolicyFileError, PlanError) as exc:
        raise _fail(str(exc)) from None


@policies_app.command("plan")
def plan_cmd(file: FileOption, nightly_plan: NightlyOption = None, prune: PruneOption = False) -> None:
    """Show what apply would change: create, modify, associate, disassociate, enable/disable, tags."""
    _load_inputs(file, nightly_plan)
    client = _client()

    async def main() -> PolicyPlan:
        async with client:
            return (await _plan(client, file, nightly_plan, prune))[0]

    plan = _run(main())
    _print_plan(plan, file)
    if plan.errors:
        raise typer.Exit(2)


@policies_app.command("apply")
def apply_cmd(file: FileOption, nightly_plan: NightlyOption = None, prune: PruneOption = False) -> None:
    """Make the cloud's policies match the file; a second apply changes nothing."""
    from vbs_backup.policies import Change, apply_plan

    _load_inputs(file, nightly_plan)
    client = _client()

    def report(change: Change, failure: str | None) -> None:
        typer.echo(f"  {'ok' if failure is None else 'FAILED'} {change.kind.value} {change.policy}", nl=False)
        typer.echo("" if failure is None else f": {failure}")

    async def main() -> tuple[PolicyPlan, Inventory, Any]:
        async with client:
            plan, inventory = await _plan(client, file, nightly_plan, prune)
            _print_plan(plan, file)
            if plan.errors or not plan.changes:
                return plan, inventory, None
            typer.echo("Applying:")
            return plan, inventory, await apply_plan(client, plan, inventory, report=report)

    plan, _, result = _run(main())
    if plan.errors:
        raise typer.Exit(2)
    if result is None:
        return
    typer.echo(f"{len(result.done)} done, {len(result.failed)} failed, {len(result.skipped)} skipped.")
    if not result.ok:
        raise typer.Exit(1)


@policies_app.command("import")
def import_cmd(
    file: FileOption,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write the file from the cloud's current policies (members as disk ids, named in comments)."""
    from vbs_backup.policies import dump_policy_file, import_policies

    if file.exists() and not force:
        raise _fail(f"{file} exists: give --force to overwrite it")
    client = _client()

    async def main() -> str:
        async with client:
            policies, inventory = await import_policies(client)
        header = (
            "# VBS backup policies imported from the cloud (vbs-backup policies import).\n"
            "# Members are the disks whose EVS metadata names the policy (the API has no member list).\n"
        )
        return dump_policy_file(policies, inventory, header=header)

    text = _run(main())
    file.write_text(text, encoding="utf-8")
    typer.echo(f"wrote {text.count('- name: ')} policies to {file}")


@policies_app.command("execute")
def execute_cmd(
    name: Annotated[str, typer.Argument(help="Policy name.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the tasks it starts.")] = False,
    timeout: Annotated[float, typer.Option(min=0, help="Seconds to wait at most.")] = 3600.0,
    interval: Annotated[float, typer.Option(min=0, help="Seconds between two task reads.")] = 30.0,
) -> None:
    """Run a policy now (one backup per member disk); with --wait, exit 1 if a task failed or timed out."""
    from vbs_backup.policies.audit import execute_policy_by_name

    client = _client()

    async def main():
        async with client:
            return await execute_policy_by_name(client, name, wait=wait, timeout=timeout, interval=interval)

    execution = _run(main())
    policy = execution.policy
    typer.echo(f"policy {name} ({policy.backup_policy_id}) started on {policy.policy_resource_count} disk(s)")
    if not wait:
        return
    for task in sorted(execution.tasks, key=lambda t: t.resource_id or ""):
        typer.echo(f"  {task.resource_id} {task.backup_name} {task.status}")
    if not execution.finished:
        raise _fail(f"policy {name}: tasks still running after {timeout:g} s", 1)
    if execution.problems:
        failed = ", ".join(f"disk {t.resource_id} ({t.status})" for t in execution.problems)
        raise _fail(f"policy {name}: {failed}", 1)


def _tag_filters(tags: list[str]) -> list[Any]:
    from vbs_backup.cloud.models.common import TagValues

    grouped: dict[str, list[str]] = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise _fail(f"--tag takes key=value, got {item!r}")
        grouped.setdefault(key, []).append(value)
    return [TagValues(key=k, values=v) for k, v in grouped.items()]


@policies_app.command("list")
def list_cmd(
    tag: Annotated[
        list[str] | None, typer.Option("--tag", help="key=value; keys AND-ed, values of a key OR-ed.")
    ] = None,
    name: Annotated[str | None, typer.Option("--name", help="Fuzzy match on the policy name.")] = None,
    count: Annotated[bool, typer.Option("--count", help="Only count the matching policies.")] = False,
) -> None:
    """The policies (by tag through the service's tag query), with schedule, disks and tags."""
    from vbs_backup.cloud.models.tags import TagMatch, TagQuery, TagQueryAction

    filters = _tag_filters(tag or [])
    client = _client()

    async def main() -> tuple[int, list[tuple[Any, dict[str, str]]]]:
        async with client:
            policies = {p.backup_policy_id: p for p in await client.vbs.list_policies()}
            if not filters and name is None:
                chosen = list(policies)
            else:
                query = TagQuery(
                    action=TagQueryAction.COUNT if count else TagQueryAction.FILTER,
                    tags=filters or None,
                    matches=[TagMatch(value=name)] if name else None,
                )
                found = await client.vbs.query_policies_by_tags(query)
                if count:
                    return found.total_count, []
                chosen = found.policy_ids
            if count:
                return len(chosen), []
            rows = []
            for policy_id in chosen:
                if policy_id in policies:
                    tags = {t.key: t.value for t in await client.vbs.list_policy_tags(policy_id)}
                    rows.append((policies[policy_id], tags))
            return len(rows), rows

    total, rows = _run(main())
    if count:
        typer.echo(str(total))
        return
    for policy, tags in sorted(rows, key=lambda r: r[0].backup_policy_name or ""):
        sp = policy.scheduled_policy
        when = f"every {sp.frequency}d" if sp.frequency else ",".join(map(str, sp.week_frequency or []))
        keep = f"keep {sp.retention_num}" if sp.retention_num else f"keep {sp.retention_day}d"
        shown = " ".join(f"{k}={v}" for k, v in sorted(tags.items()))
        typer.echo(
            f"{policy.backup_policy_name}  {policy.backup_policy_id}  {sp.status}  {sp.start_time} {when}  "
            f"{keep}  {policy.policy_resource_count} disk(s)  {shown}".rstrip()
        )
    typer.echo(f"{total} policies")


@policies_app.command("tags")
def tags_cmd() -> None:
    """Every tag key used on the project's policies, with its values."""
    client = _client()

    async def main():
        async with client:
            return await client.vbs.list_project_policy_tags()

    for item in sorted(_run(main()), key=lambda t: t.key):
        typer.echo(f"{item.key}: {', '.join(sorted(item.values))}")


@policies_app.command("audit")
def audit_cmd(
    since_hours: Annotated[
        int, typer.Option(min=1, max=24 * 31, help="Fail on tasks that failed within this many hours.")
    ] = 24,
) -> None:
    """Record every policy backup task in the ledger; exit 1 if one failed or timed out in the window."""
    raise typer.Exit(run_flow("policy-audit", since_hours=since_hours))
