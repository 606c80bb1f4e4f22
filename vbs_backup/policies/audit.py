"""What native backup policies did: their backup tasks (reference §3.9) read page by page, recorded in the
ledger, and judged; and running one policy now (§3.7) and following its tasks.

A task that ended `EXECUTE_FAIL` or `EXECUTE_TIMEOUT` within the audit window is a finding: the disk it was
for has no new policy backup (§4.13: for a timeout the backup may exist anyway; the finding says so). The
window is judged on the task's end (`finished_at`, else `created_at`), so an hourly audit with a one-hour
window still sees a task that started before the window and failed inside it. `SKIP` is reported, not a
finding (its meaning is unconfirmed). The ledger is written in a thread (`asyncio.to_thread`), off the
event loop, as the nightly run does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from ..clock import SYSTEM_CLOCK, Clock, poll_until
from ..cloud import CloudClient
from ..cloud.errors import NotFoundError
from ..cloud.models.policies import Policy, PolicyTask, TaskStatus
from ..ledger.policy_audit import TaskSighting, upsert_policy_tasks

__all__ = [
    "FINISHED",
    "PROBLEMS",
    "Execution",
    "PolicyAudit",
    "PolicyNotFoundError",
    "audit_policy",
    "audit_summary",
    "disk_names",
    "execute_policy_by_name",
    "find_policy",
]

PROBLEMS = frozenset({TaskStatus.EXECUTE_FAIL, TaskStatus.EXECUTE_TIMEOUT})
FINISHED = frozenset(
    {TaskStatus.EXECUTE_SUCCESS, TaskStatus.SKIP, *PROBLEMS}
)  # WAITING and RUNNING are not; an undocumented status counts as unfinished
TASK_PAGE = 100


class PolicyNotFoundError(LookupError):
    """No policy (or more than one) has the given name."""


def sighting(policy: Policy, task: PolicyTask) -> TaskSighting:
    return TaskSighting(
        job_id=task.job_id,
        policy_id=policy.backup_policy_id,
        policy_name=policy.backup_policy_name,
        resource_id=task.resource_id,
        backup_name=task.backup_name,
        status=str(task.status),
        created_at=task.created_at,
        finished_at=task.finished_at,
        vbs_job_id=task.vbs_job_id,
    )


@dataclass
class PolicyAudit:
    policy_id: str
    policy_name: str
    tasks: int = 0
    inserted: int = 0
    updated: int = 0
    skipped: int = 0  # SKIP tasks in the window
    findings: list[TaskSighting] = field(default_factory=list)


async def audit_policy(
    client: CloudClient, engine: Engine, policy: Policy, *, since: datetime, now: datetime
) -> PolicyAudit:
    """Read every task of the policy (all pages), upsert them into the ledger, and return the failed or
    timed-out ones that ended at or after `since`."""
    tasks = [
        sighting(policy, t)
        async for t in client.vbs.iter_policy_tasks(policy.backup_policy_id, page_size=TASK_PAGE)
    ]
    inserted, updated = await asyncio.to_thread(_record_tasks, engine, tasks, now)
    audit = PolicyAudit(
        policy.backup_policy_id,
        policy.backup_policy_name or policy.backup_policy_id,
        tasks=len(tasks),
        inserted=inserted,
        updated=updated,
    )
    for task in tasks:
        ended = task.finished_at or task.created_at
        if ended < since:
            continue
        if task.status in PROBLEMS:
            audit.findings.append(task)
        elif task.status == TaskStatus.SKIP:
            audit.skipped += 1
    audit.findings.sort(key=lambda t: (t.finished_at or t.created_at, t.job_id))
    return audit


def _record_tasks(engine: Engine, tasks: list[TaskSighting], seen_at: datetime) -> tuple[int, int]:
    with Session(engine) as session:
        return upsert_policy_tasks(session=session, tasks=tasks, seen_at=seen_at)


async def disk_names(client: CloudClient, volume_ids: Iterable[str]) -> dict[str, str]:
    """Names for the disks of the findings: `web-01-data (5c1f...)`; a deleted disk says so."""
    names: dict[str, str] = {}
    for volume_id in sorted(set(volume_ids)):
        try:
            volume = await client.evs.get_volume(volume_id)
            names[volume_id] = f"{volume.name or 'unnamed'} ({volume_id})"
        except NotFoundError:
            names[volume_id] = f"deleted disk {volume_id}"
        except ValueError:  # not a UUID: shown as it came
            names[volume_id] = volume_id
    return names


def finding_text(task: TaskSighting, names: dict[str, str]) -> str:
    disk = names.get(task.resource_id or "", task.resource_id or "unknown disk")
    text = f"policy {task.policy_name or task.policy_id}: disk {disk} backup {task.backup_name} {task.status}"
    if task.status == TaskStatus.EXECUTE_TIMEOUT:
        text += " (check whether that backup exists and is available, §4.13)"
    return text


def audit_summary(audits: Sequence[PolicyAudit], names: dict[str, str]) -> tuple[str, bool]:
    """One line for the flow run and whether it is a failure."""
    findings = [f for a in audits for f in a.findings]
    tasks = sum(a.tasks for a in audits)
    line = f"{len(audits)} policies, {tasks} tasks recorded ({sum(a.inserted for a in audits)} new)"
    skipped = sum(a.skipped for a in audits)
    if skipped:
        line += f", {skipped} skipped"
    if findings:
        line += "; FAILED: " + "; ".join(finding_text(f, names) for f in findings)
    return line, bool(findings)


# --------------------------------------------------------------------------------------------------------
# Running a policy now (§3.7)


async def find_policy(client: CloudClient, name: str) -> Policy:
    """The one policy with this name (policies have no single GET, §3.0)."""
    policies = await client.vbs.list_policies()
    matches = [p for p in policies if p.backup_policy_name == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise PolicyNotFoundError(f"{len(matches)} policies are named {name}: rename all but one")
    known = ", ".join(sorted(p.backup_policy_name or p.backup_policy_id for p in policies)) or "none"
    raise PolicyNotFoundError(f"no backup policy named {name} (policies: {known})")


@dataclass
class Execution:
    policy: Policy
    tasks: list[PolicyTask] = field(default_factory=list)  # the tasks this execution started
    finished: bool = False  # every task ended (only known when waiting)

    @property
    def problems(self) -> list[PolicyTask]:
        return [t for t in self.tasks if t.status in PROBLEMS]


async def execute_policy_by_name(
    client: CloudClient,
    name: str,
    *,
    wait: bool = False,
    timeout: float = 3600.0,
    interval: float = 30.0,
    clock: Clock = SYSTEM_CLOCK,
) -> Execution:
    """Run the policy now; with `wait`, follow the tasks it started until each ended or `timeout` passed.
    Its tasks are those absent from the task list before the call (one task per member disk)."""
    policy = await find_policy(client, name)
    before = {
        t.job_id async for t in client.vbs.iter_policy_tasks(policy.backup_policy_id, page_size=TASK_PAGE)
    }
    await client.vbs.execute_policy(policy.backup_policy_id)
    execution = Execution(policy)
    if not wait:
        return execution
    expected = policy.policy_resource_count

    def all_ended(tasks: list[PolicyTask]) -> bool:
        return len(tasks) >= expected and all(t.status in FINISHED for t in tasks)

    execution.tasks = await poll_until(
        lambda: _new_tasks(client, policy.backup_policy_id, before),
        all_ended,
        timeout=timeout,
        interval=interval,
        clock=clock,
    )
    execution.finished = all_ended(execution.tasks)
    return execution


async def _new_tasks(client: CloudClient, policy_id: str, before: set[str]) -> list[PolicyTask]:
    """Tasks not in `before`, newest first, reading pages only until a known task shows up."""
    found: list[PolicyTask] = []
    offset = 0
    while True:
        page = await client.vbs.list_policy_tasks(policy_id, sort_dir="desc", limit=TASK_PAGE, offset=offset)
        fresh = [t for t in page.tasks if t.job_id not in before]
        found += fresh
        if len(fresh) < len(page.tasks) or len(page.tasks) < TASK_PAGE:
            return found
        offset += len(page.tasks)
